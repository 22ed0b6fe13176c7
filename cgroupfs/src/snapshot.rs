//! The numbers of one cgroup that podrun shows (the resource view's files, `podrun stats`'
//! limit, the CPUs a container gets), read from either cgroup world under an injectable
//! root (the real /sys/fs/cgroup, or a fixture tree in tests), each controller at the
//! reader's own path in its own hierarchy. Limits are the smallest over the cgroup and its
//! ancestors, so a pod's limit shows in a container that has none of its own. Files are
//! parsed by exact key; nothing here renders.
//!
//! An absent file (a controller not enabled, a file the root cgroup lacks) is "no limit"
//! or 0. So is a file that exists and cannot be read, as the runtime's numbers and
//! sysinfo(2) have always taken it; but a snapshot says which (`Checked`), and a view's
//! file is not made from such a snapshot.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::files::ReadError;
use crate::hierarchy::{Cgroups, Hierarchy};
use crate::parse::{keyed, keyed_value, limit, parse_cpulist};

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
    pub failed: Option<ReadError>,
}

impl<T> Checked<T> {
    /// The snapshot if every file it needed was read.
    pub fn result(&self) -> Result<&T, ReadError> {
        self.failed.clone().map_or(Ok(&self.value), Err)
    }

    pub fn into_result(self) -> Result<T, ReadError> {
        self.failed.map_or(Ok(self.value), Err)
    }
}

/// Reads one snapshot's files, for a reader in `cgroup`: a file as text, or None where it
/// is absent or cannot be read; the first that could not be read is kept.
struct Files<'c> {
    cgroup: &'c str,
    failed: Cell<Option<ReadError>>,
}

impl<'c> Files<'c> {
    fn new(cgroup: &'c str) -> Files<'c> {
        Files { cgroup, failed: Cell::new(None) }
    }

    fn read(&self, p: &Path) -> Option<String> {
        match crate::files::read_if_present(p, Some(self.cgroup)) {
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

/// `/a/b/c` -> [`/a/b/c`, `/a/b`, `/a`] joined under `root` (the root cgroup itself is not
/// a limit holder).
fn ancestry(root: &Path, cgroup: &str) -> Vec<PathBuf> {
    let comps: Vec<&str> = cgroup.split('/').filter(|c| !c.is_empty()).collect();
    (1..=comps.len()).rev().map(|n| root.join(comps[..n].join("/"))).collect()
}

/// `controller`'s v1 hierarchy and the reader's path in it; None on v2, and where either
/// is unknown.
fn v1<'a>(h: &'a Hierarchy, c: &'a Cgroups, controller: &str) -> Option<(&'a Path, &'a str)> {
    match h {
        Hierarchy::V2 { .. } => None,
        Hierarchy::V1 { .. } => Some((h.mount_of(controller)?, c.v1_path(controller)?)),
    }
}

/// The memory numbers of a reader in `c`: its cgroup2 cgroup's on v2, its memory
/// cgroup's on v1; none (the host's) where it has none.
pub fn memory(h: &Hierarchy, c: &Cgroups) -> Checked<MemorySnapshot> {
    match (h, c.v2_path()) {
        (Hierarchy::V2 { mount }, Some(p)) => checked_memory_v2(mount, p),
        _ => v1(h, c, "memory").map(|(root, p)| checked_memory_v1(root, p)).unwrap_or_default(),
    }
}

/// CPU time used by the reader's cgroup (and its descendants): (user, system) in
/// microseconds; v1 counts clock ticks, `ticks_per_second` of them.
pub fn cpu_usage(h: &Hierarchy, c: &Cgroups, ticks_per_second: u64) -> Checked<(u64, u64)> {
    match (h, c.v2_path()) {
        (Hierarchy::V2 { mount }, Some(p)) => checked_cpu_usage_v2(mount, p),
        _ => v1(h, c, "cpuacct").map(|(root, p)| checked_cpu_usage_v1(root, p, ticks_per_second)).unwrap_or_default(),
    }
}

/// The CPU limits of a reader in `c`: on v1 from its cpu and its cpuset cgroups, each at
/// its own path.
pub fn cpu(h: &Hierarchy, c: &Cgroups) -> Checked<CpuSnapshot> {
    match (h, c.v2_path()) {
        (Hierarchy::V2 { mount }, Some(p)) => checked_cpu_v2(mount, p),
        _ => match (v1(h, c, "cpu"), v1(h, c, "cpuset")) {
            (Some((cr, cp)), Some((sr, sp))) => checked_cpu_v1(cr, cp, sr, sp),
            _ => Checked::default(),
        },
    }
}

/// Reads a cgroup v2 memory snapshot; `root` is the cgroup2 mount.
fn checked_memory_v2(root: &Path, cgroup: &str) -> Checked<MemorySnapshot> {
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
fn checked_memory_v1(root: &Path, cgroup: &str) -> Checked<MemorySnapshot> {
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
fn checked_cpu_usage_v2(root: &Path, cgroup: &str) -> Checked<(u64, u64)> {
    let files = Files::new(cgroup);
    let t = files.read(&root.join(cgroup.trim_start_matches('/')).join("cpu.stat")).unwrap_or_default();
    files.done((keyed_value(&t, "user_usec").unwrap_or(0), keyed_value(&t, "system_usec").unwrap_or(0)))
}

/// (user, system) CPU time in microseconds from v1's cpuacct.stat, which counts clock ticks.
fn checked_cpu_usage_v1(root: &Path, cgroup: &str, ticks_per_second: u64) -> Checked<(u64, u64)> {
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

fn tightest(quotas: impl Iterator<Item = (u64, u64)>) -> Option<(u64, u64)> {
    quotas.filter(|&(_, p)| p > 0).min_by(|a, b| (a.0 as u128 * b.1 as u128).cmp(&(b.0 as u128 * a.1 as u128)))
}

fn checked_cpu_v2(root: &Path, cgroup: &str) -> Checked<CpuSnapshot> {
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
fn checked_cpu_v1(cpu_root: &Path, cpu_cgroup: &str, cpuset_root: &Path, cpuset_cgroup: &str) -> Checked<CpuSnapshot> {
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

#[cfg(test)]
mod tests {
    //! Fixture cgroup trees of both worlds, written to a temporary root:
    //!
    //! ```text
    //! v2 root/                      v1 memory/                 v1 cpu/          v1 cpuset/
    //!   podrun/pod   memory.max=256M  podrun/pod/c1 (memory.stat:  podrun/pod      podrun/pod/c1
    //!     cpu.max 50000 100000          hierarchical_memory_limit   cfs 150000/    cpuset.cpus 0-1
    //!     c1   memory.max=max             = 256M)                   100000
    //!          cpu.max max 100000                                  c1 cfs -1
    //! expected for c1: memory limit 256M (the pod's), CPUs = min(ceil(quota/period), cpuset, host)
    //! ```
    use super::*;
    use std::fs;
    use std::path::Path;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn v2_limits_are_the_smallest_over_ancestors() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(r, "podrun/pod/memory.max", "268435456\n");
        write(r, "podrun/pod/cpu.max", "50000 100000\n");
        write(r, "podrun/pod/c1/memory.max", "max\n");
        write(r, "podrun/pod/c1/cpu.max", "max 100000\n");
        write(r, "podrun/pod/c1/memory.current", "104857600\n");
        write(r, "podrun/pod/c1/memory.stat", "anon 62914560\nfile 41943040\nfile_mapped 1\n");
        write(r, "podrun/pod/c1/cpuset.cpus.effective", "0-3\n");
        let m = checked_memory_v2(r, "/podrun/pod/c1").value;
        assert_eq!(m.limit, Some(256 << 20), "the pod's limit binds the container");
        assert_eq!(m.usage, 100 << 20);
        assert_eq!(m.stat("file"), 40 << 20);
        let c = checked_cpu_v2(r, "/podrun/pod/c1").into_result().expect("absent files are no failure");
        assert_eq!(c.quota, Some((50_000, 100_000)));
        assert_eq!(cpu_count(&c, 8), 1, "ceil(0.5) = 1");
        assert_eq!(cpu_count(&CpuSnapshot { quota: None, cpuset: c.cpuset.clone() }, 8), 4);
        assert_eq!(cpu_count(&CpuSnapshot::default(), 2), 2, "no limits: the host's CPUs");
    }

    #[test]
    fn the_view_cpus_are_the_first_the_reader_may_use_by_their_host_numbers() {
        let half = Some((50_000, 100_000));
        let none = CpuSnapshot::default();
        assert_eq!(cpu_ids(&CpuSnapshot { quota: None, cpuset: Some(vec![1]) }, &[1]), [1], "pinned to CPU 1: CPU 1");
        assert_eq!(cpu_ids(&CpuSnapshot { quota: half, cpuset: None }, &[2, 5, 6]), [2]);
        assert_eq!(cpu_ids(&CpuSnapshot { quota: Some((150_000, 100_000)), cpuset: None }, &[0, 1, 2]), [0, 1]);
        assert_eq!(cpu_ids(&none, &[0, 1]), [0, 1], "no limits: every CPU it may use");
        assert_eq!(cpu_ids(&none, &[0, 2, 3]), [0, 2, 3], "an offline CPU is not shown");
        assert_eq!(cpu_ids(&none, &[]), [0], "nothing known: one CPU");
    }

    #[test]
    fn v1_reads_each_controller_at_its_own_path() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(
            r,
            "memory/podrun/pod/c1/memory.stat",
            "total_rss 62914560\ntotal_cache 41943040\nhierarchical_memory_limit 268435456\nhierarchical_memsw_limit 536870912\n",
        );
        write(r, "memory/podrun/pod/c1/memory.usage_in_bytes", "104857600\n");
        write(r, "cpu/podrun/pod/cpu.cfs_quota_us", "150000\n");
        write(r, "cpu/podrun/pod/cpu.cfs_period_us", "100000\n");
        write(r, "cpu/podrun/pod/c1/cpu.cfs_quota_us", "-1\n");
        write(r, "cpu/podrun/pod/c1/cpu.cfs_period_us", "100000\n");
        // A different cpuset path than the cpu path: each is read where it is.
        write(r, "cpuset/other/c1/cpuset.cpus", "0-1\n");
        let m = checked_memory_v1(&r.join("memory"), "/podrun/pod/c1").value;
        assert_eq!(m.limit, Some(256 << 20));
        assert_eq!(m.swap_limit, Some(256 << 20), "memsw minus memory");
        assert_eq!(m.stat("anon"), 60 << 20);
        let c = checked_cpu_v1(&r.join("cpu"), "/podrun/pod/c1", &r.join("cpuset"), "/other/c1")
            .into_result()
            .expect("cpuset.effective_cpus is absent here, and cpuset.cpus read");
        assert_eq!(c.quota, Some((150_000, 100_000)));
        assert_eq!(c.cpuset, Some(vec![0, 1]));
        assert_eq!(cpu_count(&c, 8), 2, "min(ceil(1.5)=2, cpuset 2, host 8)");
    }

    #[test]
    fn a_file_that_exists_and_cannot_be_read_fails_the_snapshot_an_absent_one_does_not() {
        // ```text
        // root/pod        memory.max 256M
        //   c1            memory.max max, memory.current 100M, memory.stat a directory (EISDIR)
        //   c2            memory.max max, no memory.stat (a controller's file the host lacks)
        // expected: c1's snapshot failed on memory.stat, its limit still the pod's; c2's did not fail
        // ```
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(r, "pod/memory.max", "268435456\n");
        write(r, "pod/c1/memory.max", "max\n");
        write(r, "pod/c1/memory.current", "104857600\n");
        fs::create_dir_all(r.join("pod/c1/memory.stat")).unwrap();
        write(r, "pod/c2/memory.max", "max\n");
        let roots = Hierarchy::V2 { mount: r.to_owned() };
        let c1 = memory(&roots, &Cgroups::at("/pod/c1"));
        let stat = r.join("pod/c1/memory.stat");
        let failed = ReadError { path: stat, cgroup: Some("/pod/c1".into()), errno: libc::EISDIR };
        assert_eq!(c1.failed, Some(failed.clone()));
        assert_eq!(c1.value.limit, Some(256 << 20), "the numbers that could be read stay (sysinfo's)");
        assert_eq!(c1.result(), Err(failed));
        let c2 = memory(&roots, &Cgroups::at("/pod/c2"));
        assert_eq!((c2.failed, c2.value.limit, c2.value.usage), (None, Some(256 << 20), 0));
        let outside = memory(&roots, &Cgroups::default());
        assert_eq!(outside, Checked::default(), "a reader with no cgroup2 path: the host's");
    }
}
