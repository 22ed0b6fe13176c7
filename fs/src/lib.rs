//! podrun-procfs: the resource view of a container (issue 6). The files rendered (render/)
//! from the numbers of the reader's cgroups (read by podrun-cgroup, the model of cgroups
//! the runtime uses too), computed for the reading process (caller.rs) and served over
//! FUSE (fuse.rs, which speaks the kernel protocol itself so that a restarted server can
//! take over a live connection). What cannot be made is an error (error.rs), which a
//! reader gets as an errno.

/// The stack of the view's threads (FUSE workers, the sysinfo agent, the rescue): requests
/// need little (rendering allocates on the heap).
pub const THREAD_STACK: usize = 128 * 1024;

pub mod caller;
mod clock;
pub mod error;
pub mod fds;
pub mod fuse;
pub mod load;
pub mod memory;
pub mod notify;
mod recent;
pub mod render;
pub mod rescue;
pub mod server;
