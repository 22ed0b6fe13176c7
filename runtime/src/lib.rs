//! podrun: pod sandboxes and joined containers, built from scratch.
//!
//! The library holds everything the `podrun` binary does; the binary only parses the command
//! line and reports errors.

pub mod ids;
pub mod image;
pub mod mount;
