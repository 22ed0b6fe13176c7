//! The container lifecycle, as the OCI runtime spec names it: **create** (the stages run,
//! namespaces, mounts and cgroup made, the init waiting before its exec), **start** (the
//! init execs the workload), **state**, **kill**, **delete**.
//!
//! ```text
//!   create ──► created ──start──► running ──(exit)──► stopped ──delete──► (gone)
//!      │          │                  │
//!      └─ fails: nothing is left     └─ kill ─► stopped
//! ```
//! `create` and `start` may run in separate processes: a created container's init waits on
//! its exec fifo (fifo.rs), which `start` opens.

pub mod bundle;
mod error;
pub mod exec;
pub mod fifo;
mod ops;
mod prepare;
mod spawn;
pub mod status;

pub(crate) use error::io;
pub use error::ContainerError;
pub(crate) use ops::{discard, oom_killed, record_exit};
pub use ops::{kill, list, load, remove, remove_state, status, supervised, Status};
pub(crate) use prepare::{premake, prepare_again};
pub(crate) use spawn::launch;

use std::path::PathBuf;

use crate::cgroup;
use crate::image::Rootfs;
use crate::mount::rootfs;
use crate::proc::ProcRef;
use crate::state::ContainerState;
use oci_spec::runtime::Spec;
use std::os::fd::OwnedFd;

/// Everything one start of a container needs, made before anything is spawned.
pub(crate) struct Prepared {
    pub(crate) state: ContainerState,
    pub(crate) spec: Spec,
    pub(crate) rootfs: Rootfs,
    pub(crate) join: Option<(ProcRef, bool)>,
    pub(crate) interactive: bool,
    /// How the join stage enters the container's cgroup.
    pub(crate) entry: cgroup::Entry,
    /// A lone container's new user namespace, for the join stage to enter.
    pub(crate) userns: Option<OwnedFd>,
    /// The sandbox has a user namespace: the join stage enters it with the others.
    pub(crate) join_userns: bool,
    /// Mounts made here for a container in a user namespace.
    pub(crate) premade: rootfs::Premade,
    /// The view's directory and its binds' lock file (rootfs::ViewLock), if it has the view.
    pub(crate) view: Option<(PathBuf, PathBuf)>,
    /// The lock, held from `premade`'s clones of the view's files until the spawn is done.
    pub(crate) view_lock: Option<rootfs::ViewLock>,
    /// Made by this `run` (a failed start removes it); false: started again (a failed
    /// start is recorded as its exit, and it stays).
    pub(crate) fresh: bool,
    /// OOM kills its cgroup has seen before this start (the kernel's count is cumulative).
    pub(crate) oom_before: u64,
    /// A bundle's container: the namespaces its spec names (podrun's own containers get
    /// theirs from `join` and `userns`).
    pub(crate) namespaces: Option<crate::ns::Plan>,
    /// The caller's descriptors from 3 on that the process gets (runc's --preserve-fds).
    pub(crate) preserve_fds: u32,
}
