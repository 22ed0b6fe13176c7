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

pub mod fifo;
pub mod status;
