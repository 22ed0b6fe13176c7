//! Images: import from OCI layouts, docker-save archives and rootfs tarballs into a
//! content-addressed layer store, and the overlay rootfs a container runs on.

pub mod digest;
pub mod layer;
pub mod reference;
pub mod whiteout;
