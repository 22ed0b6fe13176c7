//! Pure renderers: host file text plus a cgroup snapshot in, the container's view out.

pub mod cpu;
pub mod io;
pub mod meminfo;
pub mod sysinfo;
pub mod uptime;
pub mod vmstat;
