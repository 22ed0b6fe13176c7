//! What a cgroup uses, for `stats`: read from its files in either world.

use std::fs;

use super::*;

/// OOM kills in cgroup `path` so far (one file read, for a container's exit).
pub fn oom_kills(h: &Hierarchy, path: &str) -> u64 {
    match h {
        Hierarchy::V2 { .. } => keyed(&read(h, "memory", path, "memory.events").unwrap_or_default(), "oom_kill"),
        Hierarchy::V1 { .. } => keyed(&read(h, "memory", path, "memory.oom_control").unwrap_or_default(), "oom_kill"),
    }
    .unwrap_or(0)
}

/// The limit a cgroup file holds, read back (for `inspect` and tests).
pub fn read(h: &Hierarchy, controller: &str, path: &str, file: &str) -> Option<String> {
    fs::read_to_string(h.dir_of(controller, path)?.join(file)).ok().map(|s| s.trim().to_owned())
}

/// What a cgroup has used, read from either world's files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub memory_bytes: u64,
    /// The limit that binds it: the smallest over the cgroup and its ancestors (a pod's
    /// limit binds a container without its own), as the resource view shows it. None: no
    /// limit.
    pub memory_limit: Option<u64>,
    pub cpu_usec: u64,
    pub throttled_periods: u64,
    pub throttled_usec: u64,
    pub pids: u64,
    pub pids_limit: Option<u64>,
    /// OOM kills in this cgroup so far.
    pub oom_kills: u64,
}

// Kernel files are parsed in one place, shared with the resource view.
use podrun_cgroup::{keyed_value as keyed, limit as limit_value};

pub fn usage(h: &Hierarchy, path: &str) -> Usage {
    let r = |c: &str, f: &str| read(h, c, path, f).unwrap_or_default();
    match h {
        Hierarchy::V2 { .. } => {
            let cpu = r("cpu", "cpu.stat");
            Usage {
                memory_bytes: r("memory", "memory.current").parse().unwrap_or(0),
                memory_limit: effective_memory_limit(h, path),
                cpu_usec: keyed(&cpu, "usage_usec").unwrap_or(0),
                throttled_periods: keyed(&cpu, "nr_throttled").unwrap_or(0),
                throttled_usec: keyed(&cpu, "throttled_usec").unwrap_or(0),
                pids: r("pids", "pids.current").parse().unwrap_or(0),
                pids_limit: limit_value(&r("pids", "pids.max")),
                oom_kills: keyed(&r("memory", "memory.events"), "oom_kill").unwrap_or(0),
            }
        }
        Hierarchy::V1 { .. } => {
            let cpu = r("cpu", "cpu.stat");
            Usage {
                memory_bytes: r("memory", "memory.usage_in_bytes").parse().unwrap_or(0),
                memory_limit: effective_memory_limit(h, path),
                cpu_usec: r("cpuacct", "cpuacct.usage").parse::<u64>().unwrap_or(0) / 1000,
                throttled_periods: keyed(&cpu, "nr_throttled").unwrap_or(0),
                throttled_usec: keyed(&cpu, "throttled_time").unwrap_or(0) / 1000,
                pids: r("pids", "pids.current").parse().unwrap_or(0),
                pids_limit: limit_value(&r("pids", "pids.max")),
                oom_kills: keyed(&r("memory", "memory.oom_control"), "oom_kill").unwrap_or(0),
            }
        }
    }
}

/// The smallest memory limit over `path` and its ancestors, read as the view reads it
/// (v2: each ancestor's memory.max; v1: the kernel's hierarchical_memory_limit).
fn effective_memory_limit(h: &Hierarchy, path: &str) -> Option<u64> {
    podrun_cgroup::snapshot::memory(h, &podrun_cgroup::Cgroups::at(path)).value.limit
}
