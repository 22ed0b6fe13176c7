//! Pure renderers: host file text plus a cgroup snapshot in, the container's view out.

pub mod cpu;
pub mod meminfo;
pub mod uptime;
pub mod io;
