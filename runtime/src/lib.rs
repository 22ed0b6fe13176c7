//! podrun: pod sandboxes and joined containers, built from scratch.
//!
//! The library holds everything the `podrun` binary does; the binary only parses the command
//! line and reports errors.

pub mod cgroup;
pub mod clone;
pub mod container;
pub mod devices;
pub mod exec;
pub mod idmap;
pub mod ids;
pub mod image;
pub mod lifecycle;
pub mod monitor;
pub mod mount;
pub mod ns;
pub mod pause;
pub mod proc;
pub mod procview;
pub mod record;
pub mod restart;
pub mod sandbox;
pub mod seccomp;
#[cfg(target_arch = "x86_64")]
mod seccomp_x86_64;
pub mod spec;
pub mod state;
pub mod sync;
pub mod terminal;
