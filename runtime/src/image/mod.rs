//! Images: import from OCI layouts, docker-save archives and rootfs tarballs into a
//! content-addressed layer store, and the overlay rootfs a container runs on.

pub mod archive;
pub mod digest;
mod error;
pub mod progress;
pub mod store;

pub use error::{Error, Result};
pub mod layer;
pub mod reference;
pub mod whiteout;

pub use store::{ImageRecord, Imported, Rootfs, Store};
