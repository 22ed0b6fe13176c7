//! Who is reading: the reader's cgroup in each hierarchy, from /proc/<pid>/cgroup (paths are
//! relative to the server's cgroup namespace, which is the host's), and the view computed
//! for it. Each controller is looked up at the reader's own path in its own hierarchy.

use std::path::PathBuf;

use crate::render::{cpu, meminfo};
use crate::snapshot;

/// Where the cgroup hierarchies are mounted, as podrun's runtime found them.
#[derive(Debug, Clone, Default)]
pub struct CgroupRoots {
    /// The cgroup2 mount of a pure v2 host.
    pub v2: Option<PathBuf>,
    /// The v1 memory, cpu and cpuset mounts of a v1 or hybrid host.
    pub memory: Option<PathBuf>,
    pub cpu: Option<PathBuf>,
    pub cpuset: Option<PathBuf>,
}

/// The reader's cgroup path per v1 controller name, and its v2 path (`0::`).
fn cgroups_of(pid: u32) -> (Option<String>, Vec<(String, String)>) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let mut v2 = None;
    let mut v1 = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        if ctrls.is_empty() {
            v2 = Some(path.to_owned());
        } else {
            for c in ctrls.split(',') {
                v1.push((c.to_owned(), path.to_owned()));
            }
        }
    }
    (v2, v1)
}

/// The files the view serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewFile {
    Meminfo,
    Cpuinfo,
    CpuOnline,
}

impl ViewFile {
    pub const ALL: [ViewFile; 3] = [ViewFile::Meminfo, ViewFile::Cpuinfo, ViewFile::CpuOnline];

    pub fn name(self) -> &'static str {
        match self {
            ViewFile::Meminfo => "meminfo",
            ViewFile::Cpuinfo => "cpuinfo",
            ViewFile::CpuOnline => "online",
        }
    }
}

fn host_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Renders `file` for the process `pid`.
pub fn render_for(roots: &CgroupRoots, pid: u32, file: ViewFile) -> String {
    let (v2, v1) = cgroups_of(pid);
    let path_of = |c: &str| v1.iter().find(|(n, _)| n == c).map(|(_, p)| p.clone());
    let mem = || match (&roots.v2, &roots.memory, &v2, path_of("memory")) {
        (Some(root), _, Some(p), _) => snapshot::memory_v2(root, p),
        (_, Some(root), _, Some(p)) => snapshot::memory_v1(root, &p),
        _ => snapshot::MemorySnapshot::default(),
    };
    let cpus = || {
        let c = match (&roots.v2, &v2) {
            (Some(root), Some(p)) => snapshot::cpu_v2(root, p),
            _ => match (&roots.cpu, path_of("cpu"), &roots.cpuset, path_of("cpuset")) {
                (Some(cr), Some(cp), Some(sr), Some(sp)) => snapshot::cpu_v1(cr, &cp, sr, &sp),
                _ => snapshot::CpuSnapshot::default(),
            },
        };
        snapshot::cpu_count(&c, host_cpus())
    };
    match file {
        ViewFile::Meminfo => {
            meminfo::render_meminfo(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default(), &mem())
        }
        ViewFile::Cpuinfo => cpu::render_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default(), cpus()),
        ViewFile::CpuOnline => cpu::render_online(cpus()),
    }
}
