//! podrun-cgroup: podrun's one model of a host's cgroups, for the runtime (`podrun`) and
//! the resource view (`podrun-procfs`) alike. Where the hierarchies are and which
//! controller lives where, pure v2 or hybrid (v1 controllers and a controller-less
//! cgroup2 mount), and where a process is in them (hierarchy.rs); how a cgroup's limit and
//! usage files read (snapshot.rs), in the kernel's formats (parse.rs), from kernel files
//! read whole (files.rs).
//!
//! It reads; it never creates, writes or enters a cgroup (the runtime's cgroup/ does),
//! and it renders nothing (the view does). It needs libc alone at run time (thiserror
//! only derives), so the view's binary stays small.

mod files;
mod hierarchy;
mod parse;
pub mod snapshot;

pub use files::{errno_of, read_if_present, read_kernel_file, ReadError};
pub use hierarchy::{
    detect, unescape_mountinfo, Cgroups, Controllers, Hierarchy, HostError, UNIFIED, V1_CONTROLLERS, V2_CONTROLLERS,
};
pub use parse::{keyed, keyed_value, limit, parse_cpulist};

/// FNV-1a: a hash stable across runs and builds (unlike std's), for names and keys (the
/// top cgroup of a podrun root that is not the default one, `/podrun-<hash>`; where the
/// CPUs of a pod start; the view's cache keys).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    #[test]
    fn fnv1a_is_the_published_function() {
        // The FNV-1a test vectors (Fowler, Noll, Vo): stable, so a root's cgroup name is too.
        assert_eq!(super::fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
