//! The numbers a resource view needs from one cgroup, read from either cgroup world under an
//! injectable root (the real /sys/fs/cgroup, or a fixture tree in tests). Limits are the
//! smallest over the cgroup and its ancestors, so a pod's limit shows in a container that has
//! none of its own. Files are parsed by exact key; nothing here renders.
//!
//! An absent file (a controller not enabled, a file the root cgroup lacks) is "no limit"
//! or 0. So is a file that exists and cannot be read, as the runtime's numbers and
//! sysinfo(2) have always taken it; but a snapshot says which (`Checked`), and a view's
//! file is not made from such a snapshot.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::ViewError;

/// Memory of one cgroup, in bytes, with memory.stat's keys normalised to v2's names
/// (`anon`, `file`, `shmem`, `file_mapped`, `active_anon`, `inactive_anon`, `active_file`,
/// `inactive_file`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemorySnapshot {
    /// The smallest limit over the cgroup and its ancestors; None when there is none.
    pub limit: Option<u64>,
    pub usage: u64,
    /// Swap the cgroup may use beyond `limit`; None when unlimited.
    pub swap_limit: Option<u64>,
    pub swap_usage: u64,
    pub stat: BTreeMap<String, u64>,
}

impl MemorySnapshot {
    pub fn stat(&self, key: &str) -> u64 {
        self.stat.get(key).copied().unwrap_or(0)
    }
}

/// A snapshot, and the first of its files that exists and could not be read (which the
/// snapshot took as absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked<T> {
    pub value: T,
    pub failed: Option<ViewError>,
}

impl<T> Checked<T> {
    /// The snapshot if every file it needed was read.
    pub fn result(&self) -> Result<&T, ViewError> {
        self.failed.clone().map_or(Ok(&self.value), Err)
    }

    pub fn into_result(self) -> Result<T, ViewError> {
        self.failed.map_or(Ok(self.value), Err)
    }
}

/// Reads one snapshot's files, for a reader in `cgroup`: a file as text, or None where it
/// is absent or cannot be read; the first that could not be read is kept.
struct Files<'c> {
    cgroup: &'c str,
    failed: Cell<Option<ViewError>>,
}

impl<'c> Files<'c> {
    fn new(cgroup: &'c str) -> Files<'c> {
        Files { cgroup, failed: Cell::new(None) }
    }

    fn read(&self, p: &Path) -> Option<String> {
        match crate::read_if_present(p, Some(self.cgroup)) {
            Ok(text) => text,
            Err(e) => {
                let first = self.failed.take().unwrap_or(e);
                self.failed.set(Some(first));
                None
            }
        }
    }

    fn done<T>(self, value: T) -> Checked<T> {
        Checked { value, failed: self.failed.into_inner() }
    }
}

/// A flat-keyed file ("key value" per line) as a map, by exact key.
pub fn keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_owned(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// The value of `key` in a flat-keyed file, by exact key (no prefix matching).
pub fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key)).then(|| it.next()?.parse().ok()).flatten()
    })
}

/// A limit file's value: "max" (v2) or v1's near-2^63 "unlimited" read as None.
pub fn limit(text: &str) -> Option<u64> {
    match text.trim() {
        "max" => None,
        v => v.parse::<u64>().ok().filter(|&n| n < (1 << 62)),
    }
}

/// `/a/b/c` -> [`/a/b/c`, `/a/b`, `/a`] joined under `root` (the root cgroup itself is not
/// a limit holder).
fn ancestry(root: &Path, cgroup: &str) -> Vec<PathBuf> {
    let comps: Vec<&str> = cgroup.split('/').filter(|c| !c.is_empty()).collect();
    (1..=comps.len()).rev().map(|n| root.join(comps[..n].join("/"))).collect()
}

/// A cgroup v2 memory snapshot, as far as its files could be read (the runtime's numbers).
pub fn memory_v2(root: &Path, cgroup: &str) -> MemorySnapshot {
    checked_memory_v2(root, cgroup).value
}

/// A cgroup v1 memory snapshot, as far as its files could be read (the runtime's numbers).
pub fn memory_v1(root: &Path, cgroup: &str) -> MemorySnapshot {
    checked_memory_v1(root, cgroup).value
}

/// Reads a cgroup v2 memory snapshot; `root` is the cgroup2 mount.
pub fn checked_memory_v2(root: &Path, cgroup: &str) -> Checked<MemorySnapshot> {
    let files = Files::new(cgroup);
    let read = |p: &Path| files.read(p);
    let dirs = ancestry(root, cgroup);
    let min = |file: &str| dirs.iter().filter_map(|d| read(&d.join(file)).and_then(|t| limit(&t))).min();
    let dir = root.join(cgroup.trim_start_matches('/'));
    let snapshot = MemorySnapshot {
        limit: min("memory.max"),
        usage: read(&dir.join("memory.current")).and_then(|t| t.trim().parse().ok()).unwrap_or(0),
        swap_limit: min("memory.swap.max"),
        swap_usage: read(&dir.join("memory.swap.current")).and_then(|t| t.trim().parse().ok()).unwrap_or(0),
        stat: read(&dir.join("memory.stat")).map(|t| keyed(&t)).unwrap_or_default(),
    };
    files.done(snapshot)
}

/// Reads a cgroup v1 memory snapshot; `root` is the memory hierarchy's mount. v1 gives the
/// smallest limit over the ancestors itself (`hierarchical_memory_limit`), and the `total_`
/// counters cover the cgroup's descendants as v2's do.
pub fn checked_memory_v1(root: &Path, cgroup: &str) -> Checked<MemorySnapshot> {
    let files = Files::new(cgroup);
    let read = |p: &Path| files.read(p);
    let dir = root.join(cgroup.trim_start_matches('/'));
    let stat = read(&dir.join("memory.stat")).map(|t| keyed(&t)).unwrap_or_default();
    let get = |k: &str| stat.get(k).copied();
    let limit_v1 = get("hierarchical_memory_limit").filter(|&n| n < (1 << 62));
    let memsw = get("hierarchical_memsw_limit").filter(|&n| n < (1 << 62));
    let usage = read(&dir.join("memory.usage_in_bytes")).and_then(|t| t.trim().parse().ok()).unwrap_or(0);
    let memsw_usage: u64 =
        read(&dir.join("memory.memsw.usage_in_bytes")).and_then(|t| t.trim().parse().ok()).unwrap_or(usage);
    let mut norm = BTreeMap::new();
    for (v2, v1) in [
        ("anon", "total_rss"),
        ("file", "total_cache"),
        ("shmem", "total_shmem"),
        ("file_mapped", "total_mapped_file"),
        ("active_anon", "total_active_anon"),
        ("inactive_anon", "total_inactive_anon"),
        ("active_file", "total_active_file"),
        ("inactive_file", "total_inactive_file"),
        ("unevictable", "total_unevictable"),
        ("file_dirty", "total_dirty"),
        ("file_writeback", "total_writeback"),
        ("pgfault", "total_pgfault"),
        ("pgmajfault", "total_pgmajfault"),
    ] {
        norm.insert(v2.to_owned(), get(v1).unwrap_or(0));
    }
    let snapshot = MemorySnapshot {
        limit: limit_v1,
        usage,
        // v1 limits memory+swap together; the swap part is what is left over the memory limit.
        swap_limit: match (memsw, limit_v1) {
            (Some(total), Some(mem)) => Some(total.saturating_sub(mem)),
            (Some(total), None) => Some(total),
            _ => None,
        },
        swap_usage: memsw_usage.saturating_sub(usage),
        stat: norm,
    };
    files.done(snapshot)
}

/// (user, system) CPU time in microseconds from v2's cpu.stat.
pub fn checked_cpu_usage_v2(root: &Path, cgroup: &str) -> Checked<(u64, u64)> {
    let files = Files::new(cgroup);
    let t = files.read(&root.join(cgroup.trim_start_matches('/')).join("cpu.stat")).unwrap_or_default();
    files.done((keyed_value(&t, "user_usec").unwrap_or(0), keyed_value(&t, "system_usec").unwrap_or(0)))
}

/// (user, system) CPU time in microseconds from v1's cpuacct.stat, which counts clock ticks.
pub fn checked_cpu_usage_v1(root: &Path, cgroup: &str, ticks_per_second: u64) -> Checked<(u64, u64)> {
    let files = Files::new(cgroup);
    let t = files.read(&root.join(cgroup.trim_start_matches('/')).join("cpuacct.stat")).unwrap_or_default();
    let us = |k| keyed_value(&t, k).unwrap_or(0) * 1_000_000 / ticks_per_second.max(1);
    files.done((us("user"), us("system")))
}

/// CPU limits of one cgroup: the tightest quota over its ancestors, and its cpuset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuSnapshot {
    /// (quota, period) in microseconds, the one with the smallest quota/period.
    pub quota: Option<(u64, u64)>,
    /// CPUs the cgroup may run on; None when the cpuset is not limited (or unknown).
    pub cpuset: Option<Vec<u32>>,
}

/// Parses a cpu list ("0-3,8,10-11").
pub fn parse_cpulist(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if a > b || b - a > 65_536 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

fn tightest(quotas: impl Iterator<Item = (u64, u64)>) -> Option<(u64, u64)> {
    quotas.filter(|&(_, p)| p > 0).min_by(|a, b| (a.0 as u128 * b.1 as u128).cmp(&(b.0 as u128 * a.1 as u128)))
}

pub fn checked_cpu_v2(root: &Path, cgroup: &str) -> Checked<CpuSnapshot> {
    let files = Files::new(cgroup);
    let read = |p: &Path| files.read(p);
    let dirs = ancestry(root, cgroup);
    let quota = tightest(dirs.iter().filter_map(|d| {
        let t = read(&d.join("cpu.max"))?;
        let mut it = t.split_whitespace();
        let (q, p) = (it.next()?, it.next()?);
        Some((q.parse().ok()?, p.parse().ok()?))
    }));
    let cpuset =
        read(&root.join(cgroup.trim_start_matches('/')).join("cpuset.cpus.effective")).and_then(|t| parse_cpulist(&t));
    files.done(CpuSnapshot { quota, cpuset })
}

/// `cpu_root` and `cpuset_root` are the v1 cpu and cpuset mounts: each controller is read at
/// the reader's own path in its own hierarchy.
pub fn checked_cpu_v1(
    cpu_root: &Path,
    cpu_cgroup: &str,
    cpuset_root: &Path,
    cpuset_cgroup: &str,
) -> Checked<CpuSnapshot> {
    let files = Files::new(cpu_cgroup);
    let read = |p: &Path| files.read(p);
    let quota = tightest(ancestry(cpu_root, cpu_cgroup).iter().filter_map(|d| {
        let q: i64 = read(&d.join("cpu.cfs_quota_us"))?.trim().parse().ok()?;
        let p: u64 = read(&d.join("cpu.cfs_period_us"))?.trim().parse().ok()?;
        u64::try_from(q).ok().map(|q| (q, p))
    }));
    let cpuset = read(&cpuset_root.join(cpuset_cgroup.trim_start_matches('/')).join("cpuset.effective_cpus"))
        .or_else(|| read(&cpuset_root.join(cpuset_cgroup.trim_start_matches('/')).join("cpuset.cpus")))
        .and_then(|t| parse_cpulist(&t));
    files.done(CpuSnapshot { quota, cpuset })
}

/// The number of CPUs a view shows: min(ceil(quota/period), cpuset size, host CPUs), at
/// least one.
pub fn cpu_count(cpu: &CpuSnapshot, host_cpus: usize) -> usize {
    let by_quota = cpu.quota.map_or(usize::MAX, |(q, p)| q.div_ceil(p.max(1)) as usize);
    let by_set = cpu.cpuset.as_ref().map_or(usize::MAX, |s| s.len());
    by_quota.min(by_set).min(host_cpus).max(1)
}

/// The CPUs a view shows, by their host numbers: the first `cpu_count` of those the reader
/// may run on (`allowed`: its affinity, within its cpuset, of the host's online CPUs).
/// Numbered as the kernel numbers them, so that a CPU the view lists is one the reader may
/// use: `taskset -c` of a listed CPU, and a thread pool pinning a thread to each, work; and
/// counted as `nproc` (affinity) counts them.
pub fn cpu_ids(cpu: &CpuSnapshot, allowed: &[u32]) -> Vec<u32> {
    if allowed.is_empty() {
        return vec![0];
    }
    let n = cpu_count(cpu, allowed.len());
    allowed.iter().copied().take(n).collect()
}
