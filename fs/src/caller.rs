//! Who is reading: the reader's cgroup in each hierarchy, from /proc/<pid>/cgroup (paths are
//! relative to the server's cgroup namespace, which is the host's), and the view computed
//! for it from podrun-cgroup's numbers, each controller read at the reader's own path in
//! its own hierarchy, and kept for a moment (`Recent`).
//! A file that cannot be made from what the kernel gives is an error (`render_for`);
//! sysinfo(2) is answered all the same, from what could be read (`sysinfo_for`).

use std::path::Path;
use std::sync::Arc;

use podrun_cgroup::snapshot::{self, Checked};
use podrun_cgroup::{Cgroups, Hierarchy};

use crate::clock::{container_uptime, ticks_per_second};
use crate::error::ViewError;
use crate::recent::Recent;
use crate::render::sysinfo::Asker;
use crate::render::{cpu, meminfo, uptime};

/// The cgroups of process `pid`, from its /proc/<pid>/cgroup (as `cgroup_file` keeps it).
pub fn cgroups_of(pid: u32) -> Result<Cgroups, ViewError> {
    cgroup_file(pid).map(|text| Cgroups::parse(&text))
}

/// /proc/<pid>/cgroup, read at most once per FRESH: a reader's open, its reads from offset 0
/// and a container start's lookups each need it. A process that moves to another cgroup
/// is seen there within FRESH; a pid is not reused that soon.
/// (A process gone, or not in the pid namespace of the view's mount, has none.)
pub fn cgroup_file(pid: u32) -> Result<Arc<String>, ViewError> {
    static FILES: Recent<Result<Arc<String>, ViewError>> = Recent::new();
    FILES.get(&pid.to_string(), || match podrun_cgroup::read_kernel_file(format!("/proc/{pid}/cgroup")) {
        Ok(text) => Ok(Arc::new(text)),
        Err(e) => Err(ViewError::Reader { pid, errno: crate::error::errno_of(&e) }),
    })
}

/// A host /proc file, read at most once per FRESH.
fn host_file(path: &str) -> Result<Arc<String>, ViewError> {
    static FILES: Recent<Result<Arc<String>, ViewError>> = Recent::new();
    FILES.get(path, || host_file_now(path).map(Arc::new))
}

/// A host file, read now.
fn host_file_now(path: &str) -> Result<String, ViewError> {
    podrun_cgroup::read_kernel_file(path).map_err(|e| ViewError::read(Path::new(path), None, &e))
}

/// The cgroup's memory numbers, looked at most once per FRESH.
fn memory_recent(h: &Hierarchy, c: &Cgroups) -> Arc<Checked<snapshot::MemorySnapshot>> {
    static MEMORY: Recent<Arc<Checked<snapshot::MemorySnapshot>>> = Recent::new();
    let key = format!("{:?}{:?}", c.v2_path(), c.v1_path("memory"));
    MEMORY.get(&key, || Arc::new(snapshot::memory(h, c)))
}

/// Where the cgroup's tasks are listed, for its load average.
pub fn task_list(h: &Hierarchy, c: &Cgroups) -> Option<crate::load::TaskList> {
    use crate::load::TaskList;
    match (h, c.v2_path()) {
        (Hierarchy::V2 { mount }, Some(p)) => {
            Some(TaskList { dir: mount.join(p.trim_start_matches('/')), file: "cgroup.threads" })
        }
        (Hierarchy::V1 { .. }, _) => Some(TaskList { dir: h.dir_of("cpu", c.v1_path("cpu")?)?, file: "tasks" }),
        _ => None,
    }
}

/// The cgroup's I/O as v2's io.stat says it (v1's blkio counters put in that form); empty
/// where neither is.
fn io_stat(h: &Hierarchy, groups: &Cgroups) -> Result<String, ViewError> {
    let blkio = groups.v1_path("blkio").and_then(|p| Some((h.dir_of("blkio", p)?, p)));
    match (h, blkio) {
        (Hierarchy::V2 { .. }, _) => v2_file(h, groups, "io.stat"),
        (Hierarchy::V1 { .. }, Some((dir, p))) => {
            let read = |f: &str| podrun_cgroup::read_if_present(&dir.join(f), Some(p)).map(Option::unwrap_or_default);
            Ok(crate::render::io::io_stat_from_blkio(
                &read("blkio.throttle.io_service_bytes_recursive")?,
                &read("blkio.throttle.io_serviced_recursive")?,
            ))
        }
        _ => Ok(String::new()),
    }
}

/// The cgroup's threads by state, counted at most once per FRESH (each is a file read).
fn tasks(list: &crate::load::TaskList, reader: u32) -> uptime::Tasks {
    static STATES: Recent<std::sync::Arc<crate::load::States>> = Recent::new();
    STATES.get(&list.dir.to_string_lossy(), || std::sync::Arc::new(crate::load::States::of(list))).seen_by(reader)
}

/// The files the view serves: the name in the view's directory, and where a container
/// sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewFile {
    Meminfo,
    Cpuinfo,
    Uptime,
    Swaps,
    Stat,
    Loadavg,
    Diskstats,
    PressureCpu,
    PressureMemory,
    PressureIo,
    CpuOnline,
    CpuPresent,
    CpuPossible,
    Vmstat,
    NodeCpumap,
    NodeCpulist,
}

impl ViewFile {
    pub const ALL: [ViewFile; 16] = [
        ViewFile::Meminfo,
        ViewFile::Cpuinfo,
        ViewFile::Uptime,
        ViewFile::Swaps,
        ViewFile::Stat,
        ViewFile::Loadavg,
        ViewFile::Diskstats,
        ViewFile::PressureCpu,
        ViewFile::PressureMemory,
        ViewFile::PressureIo,
        ViewFile::CpuOnline,
        ViewFile::CpuPresent,
        ViewFile::CpuPossible,
        ViewFile::Vmstat,
        ViewFile::NodeCpumap,
        ViewFile::NodeCpulist,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ViewFile::Meminfo => "meminfo",
            ViewFile::Cpuinfo => "cpuinfo",
            ViewFile::Uptime => "uptime",
            ViewFile::Swaps => "swaps",
            ViewFile::Stat => "stat",
            ViewFile::Loadavg => "loadavg",
            ViewFile::Diskstats => "diskstats",
            ViewFile::PressureCpu => "pressure-cpu",
            ViewFile::PressureMemory => "pressure-memory",
            ViewFile::PressureIo => "pressure-io",
            ViewFile::CpuOnline => "online",
            ViewFile::CpuPresent => "present",
            ViewFile::CpuPossible => "possible",
            ViewFile::Vmstat => "vmstat",
            ViewFile::NodeCpumap => "node0-cpumap",
            ViewFile::NodeCpulist => "node0-cpulist",
        }
    }

    /// The path in the container this file is mounted over.
    pub fn target(self) -> &'static str {
        match self {
            ViewFile::Meminfo => "/proc/meminfo",
            ViewFile::Cpuinfo => "/proc/cpuinfo",
            ViewFile::Uptime => "/proc/uptime",
            ViewFile::Swaps => "/proc/swaps",
            ViewFile::Stat => "/proc/stat",
            ViewFile::Loadavg => "/proc/loadavg",
            ViewFile::Diskstats => "/proc/diskstats",
            ViewFile::PressureCpu => "/proc/pressure/cpu",
            ViewFile::PressureMemory => "/proc/pressure/memory",
            ViewFile::PressureIo => "/proc/pressure/io",
            ViewFile::CpuOnline => "/sys/devices/system/cpu/online",
            ViewFile::CpuPresent => "/sys/devices/system/cpu/present",
            ViewFile::CpuPossible => "/sys/devices/system/cpu/possible",
            ViewFile::Vmstat => "/proc/vmstat",
            ViewFile::NodeCpumap => NODE0_CPUMAP,
            ViewFile::NodeCpulist => "/sys/devices/system/node/node0/cpulist",
        }
    }
}

impl ViewFile {
    /// Whether a container on a host with cgroup hierarchy `h` gets the file: diskstats
    /// comes from cgroup v2's io.stat or v1's blkio, pressure from the reader's cgroup2
    /// cgroup (on a hybrid host, the controller-less one) where the kernel has PSI. Where
    /// neither is, the container keeps the host's file.
    pub fn served(self, h: &Hierarchy) -> bool {
        match self {
            ViewFile::Diskstats => h.mount_of("blkio").is_some(),
            ViewFile::PressureCpu | ViewFile::PressureMemory | ViewFile::PressureIo => {
                h.cgroup2().is_some() && std::path::Path::new("/proc/pressure/cpu").exists()
            }
            // lscpu's "NUMA node0 CPU(s)". Other nodes of a NUMA host keep theirs.
            ViewFile::NodeCpumap | ViewFile::NodeCpulist => std::path::Path::new(NODE0_CPUMAP).exists(),
            _ => true,
        }
    }
}

const NODE0_CPUMAP: &str = "/sys/devices/system/node/node0/cpumap";

/// How long a cgroup's CPU limits and the host's online CPUs are reused: they take a
/// dozen file reads (each ancestor's quota, the cpuset), and change rarely (podrun sets
/// limits at creation; CPUs go on and off line rarely).
const CPUS_KEPT: std::time::Duration = std::time::Duration::from_secs(1);

/// A cgroup's CPU limits, made at most once per CPUS_KEPT.
fn cpu_snapshot_cached(h: &Hierarchy, c: &Cgroups) -> Checked<snapshot::CpuSnapshot> {
    static SNAPSHOTS: Recent<Checked<snapshot::CpuSnapshot>> = Recent::kept_for(CPUS_KEPT);
    let key = format!("{:?}{:?}{:?}", c.v2_path(), c.v1_path("cpu"), c.v1_path("cpuset"));
    SNAPSHOTS.get(&key, || snapshot::cpu(h, c))
}

/// The view's CPUs for the thread `tid` (snapshot::cpu_ids): of the host's online CPUs,
/// those its affinity allows (which the kernel keeps within its cpuset; podrun sets it to
/// the view's count of them, spread over the CPUs by pod).
fn cpu_ids(h: &Hierarchy, c: &Cgroups, tid: u32) -> Result<Vec<u32>, ViewError> {
    let limits = cpu_snapshot_cached(h, c).into_result()?;
    let online = host_cpus();
    let allowed: Vec<u32> = match affinity(tid) {
        Some(mask) => online.iter().copied().filter(|c| mask.contains(c)).collect(),
        None => online.clone(),
    };
    let allowed = if allowed.is_empty() { online } else { allowed };
    Ok(snapshot::cpu_ids(&limits, &allowed))
}

/// The CPUs thread `tid` may run on (sched_getaffinity).
fn affinity(tid: u32) -> Option<Vec<u32>> {
    // SAFETY: cpu_set_t is plain data, zeroed; sched_getaffinity fills at most its size.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(tid as libc::pid_t, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        set
    };
    // SAFETY: CPU_ISSET reads the set within its size (CPU_SETSIZE bits).
    Some((0..libc::CPU_SETSIZE as u32).filter(|&c| unsafe { libc::CPU_ISSET(c as usize, &set) }).collect())
}

/// A file of the reader's cgroup2 cgroup (on a hybrid host, in the controller-less mount;
/// "" where there is none).
fn v2_file(h: &Hierarchy, c: &Cgroups, name: &str) -> Result<String, ViewError> {
    match (h.cgroup2(), c.v2_path()) {
        (Some(root), Some(p)) => {
            Ok(podrun_cgroup::read_if_present(&root.join(p.trim_start_matches('/')).join(name), Some(p))?
                .unwrap_or_default())
        }
        _ => Ok(String::new()),
    }
}

/// The host's online CPUs (as many as the server may run on, numbered from 0, if that
/// file cannot be read), looked at again after CPUS_KEPT.
fn host_cpus() -> Vec<u32> {
    static ONLINE: Recent<Vec<u32>> = Recent::kept_for(CPUS_KEPT);
    ONLINE.get("", || {
        podrun_cgroup::read_kernel_file("/sys/devices/system/cpu/online")
            .ok()
            .and_then(|t| podrun_cgroup::parse_cpulist(&t))
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| (0..std::thread::available_parallelism().map_or(1, |n| n.get()) as u32).collect())
    })
}

/// Renders `file` for the process `pid`: an error where a file it is made from exists
/// and could not be read, or the reader's cgroups could not be (no text is made up).
pub fn render_for(h: &Hierarchy, loads: &crate::load::Loads, pid: u32, file: ViewFile) -> Result<String, ViewError> {
    let groups = cgroups_of(pid)?;
    let mem = || memory_recent(h, &groups);
    let cpus = || cpu_ids(h, &groups, pid);
    Ok(match file {
        ViewFile::Meminfo => meminfo::render_meminfo(&host_file("/proc/meminfo")?, mem().result()?),
        ViewFile::Cpuinfo => cpu::render_cpuinfo(&host_file("/proc/cpuinfo")?, &cpus()?),
        ViewFile::CpuOnline | ViewFile::CpuPresent | ViewFile::CpuPossible | ViewFile::NodeCpulist => {
            cpu::render_online(&cpus()?)
        }
        ViewFile::NodeCpumap => cpu::render_cpumap(&host_file(NODE0_CPUMAP)?, &cpus()?),
        ViewFile::Uptime => uptime::render_uptime(container_uptime(pid), cpus()?.len()),
        ViewFile::Diskstats => {
            let host = host_file_now("/proc/diskstats")?;
            crate::render::io::render_diskstats(&host, &io_stat(h, &groups)?)
        }
        ViewFile::Vmstat => {
            let m = mem();
            let m = m.result()?;
            let host = host_file("/proc/meminfo")?;
            let view = meminfo::mem_view(&host, m);
            crate::render::vmstat::render_vmstat(&host_file("/proc/vmstat")?, m, view.as_ref(), &io_stat(h, &groups)?)
        }
        ViewFile::PressureCpu => crate::render::io::render_pressure(&v2_file(h, &groups, "cpu.pressure")?, false),
        ViewFile::PressureMemory => crate::render::io::render_pressure(&v2_file(h, &groups, "memory.pressure")?, true),
        ViewFile::PressureIo => crate::render::io::render_pressure(&v2_file(h, &groups, "io.pressure")?, true),
        ViewFile::Loadavg => {
            let host = host_file("/proc/loadavg")?;
            let list = task_list(h, &groups);
            let now = list.as_ref().map(|l| tasks(l, pid)).unwrap_or_default();
            let load = list.map(|l| loads.read(l)).unwrap_or_default();
            crate::load::render_loadavg(&host, &load, now)
        }
        ViewFile::Stat => {
            let host = host_file("/proc/stat")?;
            static USAGE: Recent<Result<(u64, u64), ViewError>> = Recent::new();
            let key = format!("{:?}{:?}", groups.v2_path(), groups.v1_path("cpuacct"));
            let usage = || snapshot::cpu_usage(h, &groups, ticks_per_second()).into_result().map_err(ViewError::from);
            let (user, system) = USAGE.get(&key, usage)?;
            let up = container_uptime(pid);
            let now = task_list(h, &groups).as_ref().map(|l| tasks(l, pid)).unwrap_or_default();
            uptime::render_stat(&host, &cpus()?, user, system, up, ticks_per_second(), now)
        }
        ViewFile::Swaps => meminfo::render_swaps(&host_file("/proc/swaps")?, mem().result()?),
    })
}

/// sysinfo(2) for the process `pid`: the same numbers as its meminfo, uptime and loadavg
/// (see `render::sysinfo`). A call must be answered: what cannot be read counts as absent
/// (the host's numbers where the reader's cgroups are unknown).
pub fn sysinfo_for(h: &Hierarchy, loads: &crate::load::Loads, pid: u32) -> libc::sysinfo {
    // SAFETY: an all-zero sysinfo is a valid value; sysinfo(2) fills it.
    let mut host: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a sysinfo struct.
    unsafe { libc::sysinfo(&mut host) };
    let groups = cgroups_of(pid).unwrap_or_default();
    let meminfo = host_file("/proc/meminfo").unwrap_or_default();
    let mem = meminfo::mem_view(&meminfo, &memory_recent(h, &groups).value);
    let load = task_list(h, &groups).map(|l| loads.read(l));
    let asker = if maps_jvm(pid) { Asker::Jvm } else { Asker::Any };
    crate::render::sysinfo::render_sysinfo(host, mem.as_ref(), container_uptime(pid), load.as_ref(), asker)
}

/// Whether process (or thread) `pid` has a Java virtual machine loaded: its maps name
/// libjvm.so (every launcher, java, javac, jshell, and a JVM embedded in another program,
/// load it before the JVM asks for the machine's memory). sysinfo(2) is rare enough for
/// the read.
fn maps_jvm(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/maps"))
        .is_ok_and(|m| m.split(|&b| b == b'\n').any(|l| l.ends_with(b"/libjvm.so")))
}

#[cfg(test)]
mod tests {
    //! A reader's cgroups from /proc/PID/cgroup text, and its numbers from fixture trees of
    //! both worlds under a temporary root (for each test, its own drawing).
    use super::*;
    use crate::error::ToErrno;
    use std::fs;
    use std::path::PathBuf;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn tasks_are_listed_in_cgroup_threads_on_v2_and_tasks_on_v1() {
        let c = Cgroups::at("/pod/c1");
        let v2 = Hierarchy::V2 { mount: "/sys/fs/cgroup".into() };
        let l = task_list(&v2, &c).unwrap();
        assert_eq!((l.dir, l.file), (PathBuf::from("/sys/fs/cgroup/pod/c1"), "cgroup.threads"));
        let v1 = Hierarchy::V1 {
            controllers: [("cpu", "/v1/cpu".into())].into_iter().collect(),
            unified: Some("/v1/unified".into()),
        };
        let l = task_list(&v1, &c).unwrap();
        assert_eq!((l.dir, l.file), (PathBuf::from("/v1/cpu/pod/c1"), "tasks"));
        assert!(task_list(&Hierarchy::default(), &c).is_none());
        assert!(task_list(&v1, &Cgroups::parse("0::/pod/c1\n")).is_none(), "no cpu hierarchy path");
    }

    #[test]
    fn cgroup_files_of_io_and_pressure_are_empty_where_absent_and_errors_where_unreadable() {
        // ```text
        // unified/pod/c1  cpu.pressure "some ...", memory.pressure a directory, no io.pressure
        // blkio/pod/c1    io_service_bytes and io_serviced of 8:0; blkio/pod/c2 none; blkio/pod/c3 unreadable
        // expected: the cpu text, EISDIR, ""; c1's io.stat line, "" for c2, EISDIR for c3
        // ```
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(r, "unified/pod/c1/cpu.pressure", "some avg10=1.00 avg60=0.00 avg300=0.00 total=5\n");
        fs::create_dir_all(r.join("unified/pod/c1/memory.pressure")).unwrap();
        write(r, "blkio/pod/c1/blkio.throttle.io_service_bytes_recursive", "8:0 Read 4096\n8:0 Write 0\nTotal 4096\n");
        write(r, "blkio/pod/c1/blkio.throttle.io_serviced_recursive", "8:0 Read 1\n8:0 Write 0\nTotal 1\n");
        fs::create_dir_all(r.join("blkio/pod/c2")).unwrap();
        fs::create_dir_all(r.join("blkio/pod/c3/blkio.throttle.io_service_bytes_recursive")).unwrap();
        let roots = Hierarchy::V1 {
            controllers: [("blkio", r.join("blkio"))].into_iter().collect(),
            unified: Some(r.join("unified")),
        };
        let c1 = Cgroups::at("/pod/c1");
        assert!(v2_file(&roots, &c1, "cpu.pressure").unwrap().starts_with("some avg10=1.00"));
        let e = v2_file(&roots, &c1, "memory.pressure").unwrap_err();
        assert_eq!((e.to_errno(), e.cgroup()), (libc::EIO, Some("/pod/c1")));
        assert_eq!(v2_file(&roots, &c1, "io.pressure").unwrap(), "", "no PSI here: nothing stalled");
        assert_eq!(io_stat(&roots, &c1).unwrap(), "8:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n");
        assert_eq!(io_stat(&roots, &Cgroups::at("/pod/c2")).unwrap(), "", "no throttling files: no counts");
        assert!(matches!(io_stat(&roots, &Cgroups::at("/pod/c3")), Err(ViewError::Read { errno: libc::EISDIR, .. })));
    }

    #[test]
    fn a_reader_whose_cgroups_cannot_be_read_gets_no_text() {
        // pid 0: what the kernel says for a reader outside the view's pid namespace.
        let loads = crate::load::Loads::new(None);
        let e = render_for(&Hierarchy::default(), &loads, 0, ViewFile::Meminfo).unwrap_err();
        assert_eq!(e, ViewError::Reader { pid: 0, errno: libc::ENOENT });
        assert_eq!(cgroups_of(0).unwrap_or_default().v2_path(), None, "sysinfo takes it as the host's");
    }

    #[test]
    fn each_view_file_has_a_name_of_its_own_and_a_target_in_proc_or_sys() {
        let mut names: Vec<&str> = ViewFile::ALL.iter().map(|f| f.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ViewFile::ALL.len());
        assert!(ViewFile::ALL.iter().all(|f| f.target().starts_with("/proc/") || f.target().starts_with("/sys/")));
    }
}
