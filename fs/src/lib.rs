//! podrun-procfs: the resource view of a container (issue 6). The numbers read from a
//! cgroup of either world (snapshot.rs), the files rendered from them (render/), computed
//! for the reading process (caller.rs) and served over FUSE (fuse.rs, which speaks the
//! kernel protocol itself so that a restarted server can take over a live connection).
//! What cannot be made is an error (error.rs), which a reader gets as an errno.

/// FNV-1a: a hash stable across runs and builds (unlike std's), for names and keys.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// A kernel file (procfs, sysfs, cgroupfs) as text, in as few system calls as it takes:
/// open, reads into a 4 kB buffer (twice as large each time reads fill it) until a read
/// returns nothing, close. Such files say st_size 0, so std's read_to_string stats the file
/// and then reads it in growing pieces (32, 32, 64, ... bytes: 8 calls for
/// /proc/<pid>/cgroup), which a view serving every open from a reader's files pays on each.
/// A short read is not the end: a file of records (/proc/cpuinfo, one per CPU;
/// /proc/diskstats; cgroup.procs) gives at most a page of whole records per read, so
/// cpuinfo of a host with more than three CPUs comes in several.
pub fn read_kernel_file(path: impl AsRef<std::path::Path>) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    // On the heap: a buffer on the stack keeps its pages resident in every thread that
    // ever read a file.
    let (mut buf, mut len) = (vec![0u8; 4096], 0);
    loop {
        match f.read(&mut buf[len..])? {
            0 => break,
            n => len += n,
        }
        if len == buf.len() {
            buf.resize(2 * len, 0);
        }
    }
    buf.truncate(len);
    // What is kept (a cached file) is only as large as the text.
    buf.shrink_to_fit();
    String::from_utf8(buf).map_err(|_| std::io::ErrorKind::InvalidData.into())
}

/// A kernel file that may be absent, as text: None if it is (ENOENT: a controller not
/// enabled on this host, a file of the other cgroup world, one the root cgroup lacks), an
/// error (of a reader in `cgroup`) if it exists and cannot be read.
pub fn read_if_present(path: &std::path::Path, cgroup: Option<&str>) -> Result<Option<String>, error::ViewError> {
    match read_kernel_file(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(error::ViewError::read(path, cgroup, &e)),
    }
}

/// The stack of the view's threads (FUSE workers, the sysinfo agent, the rescue): requests
/// need little (rendering allocates on the heap).
pub const THREAD_STACK: usize = 128 * 1024;

pub mod caller;
mod clock;
pub mod error;
pub mod fds;
pub mod fuse;
pub mod load;
pub mod memory;
pub mod notify;
mod recent;
pub mod render;
pub mod rescue;
pub mod server;
pub mod snapshot;

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
    use super::snapshot::*;
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
        let m = memory_v2(r, "/podrun/pod/c1");
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
        let m = memory_v1(&r.join("memory"), "/podrun/pod/c1");
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
    fn kernel_files_are_read_whole_in_one_piece_or_more() {
        let d = tempfile::tempdir().unwrap();
        let big = "x".repeat(40_000);
        write(d.path(), "big", &big);
        assert_eq!(super::read_kernel_file(d.path().join("big")).unwrap(), big, "a full buffer reads on");
        let cg = super::read_kernel_file("/proc/self/cgroup").unwrap();
        assert_eq!(cg, fs::read_to_string("/proc/self/cgroup").unwrap());
        // A file of records gives a page of them per read: kallsyms is megabytes of lines.
        let syms = super::read_kernel_file("/proc/kallsyms").unwrap();
        assert!(syms.len() > 64 * 1024, "{} bytes of /proc/kallsyms", syms.len());
        assert_eq!(syms.lines().count(), fs::read_to_string("/proc/kallsyms").unwrap().lines().count());
        assert!(super::read_kernel_file(d.path().join("none")).is_err());
    }

    #[test]
    fn cpulists_parse_and_refuse_garbage() {
        assert_eq!(parse_cpulist("0-2,5,7-8\n"), Some(vec![0, 1, 2, 5, 7, 8]));
        assert_eq!(parse_cpulist("3-1"), None);
        assert_eq!(parse_cpulist("x"), None);
    }
}
