//! sysinfo(2) as a container should see it: busybox `free` and `uptime`, and glibc's
//! getloadavg, ask the kernel rather than read /proc, so no file view reaches them. podrun
//! answers the call for them (seccomp user notification, see `crate::notify`) with the same
//! numbers as the container's meminfo, uptime and loadavg.

use crate::load::Load;
use crate::render::meminfo::MemView;

/// Fixed-point scale of sysinfo's load averages (the kernel's SI_LOAD_SHIFT).
const SI_LOAD_SCALE: f64 = 65536.0;

/// Who asks, where it changes the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asker {
    Any,
    /// A Java virtual machine (it maps libjvm.so). HotSpot and the JDK's container metrics
    /// take glibc's physical memory (sysconf(_SC_PHYS_PAGES), which is sysinfo's totalram
    /// in whole pages) and ignore a cgroup limit that is not below it: "Memory Limit:
    /// Unlimited" under a view that makes the machine exactly as big as the limit. A JVM is
    /// told of one page more, so it reads its limit; its heap, its total memory
    /// (OperatingSystemMXBean) and everything else are still from the limit, because the
    /// limit is then the smaller. Every other program (free, Python) gets the limit exactly.
    Jvm,
}

/// The page a JVM is told of on top of the limit (x86_64's page).
const JVM_PAGE: u64 = 4096;

/// The host's answer with the container's numbers put in: memory (when it has a limit)
/// counted in bytes (mem_unit 1), uptime since it started, its load averages and task count.
/// Fields the container cannot have (high memory) are zero.
pub fn render_sysinfo(
    host: libc::sysinfo,
    mem: Option<&MemView>,
    up: f64,
    load: Option<&Load>,
    asker: Asker,
) -> libc::sysinfo {
    let mut s = host;
    s.uptime = up as libc::c_long;
    if let Some(l) = load {
        for (out, avg) in s.loads.iter_mut().zip(l.avg) {
            *out = (avg * SI_LOAD_SCALE) as libc::c_ulong;
        }
        s.procs = l.total.min(u16::MAX as usize) as u16;
    }
    if let Some(m) = mem {
        let b = |kb: u64| (kb * 1024) as libc::c_ulong;
        s.mem_unit = 1;
        s.totalram = b(m.total) + if asker == Asker::Jvm { JVM_PAGE as libc::c_ulong } else { 0 };
        s.freeram = b(m.free);
        s.sharedram = b(m.shmem);
        s.bufferram = 0;
        s.totalswap = b(m.swap_total);
        s.freeswap = b(m.swap_free);
        s.totalhigh = 0;
        s.freehigh = 0;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> libc::sysinfo {
        // SAFETY: all-zero is a valid sysinfo.
        let mut h: libc::sysinfo = unsafe { std::mem::zeroed() };
        h.uptime = 86_400;
        h.totalram = 24 << 20;
        h.freeram = 20 << 20;
        h.mem_unit = 1024;
        h.procs = 300;
        h.loads = [3 << 16, 2 << 16, 1 << 16];
        h
    }

    #[test]
    fn sysinfo_is_the_containers_limit_uptime_and_load() {
        let mem = MemView {
            total: 262_144,
            free: 102_400,
            available: 150_000,
            cached: 10_000,
            shmem: 61_440,
            swap_total: 0,
            swap_free: 0,
        };
        let load = Load { avg: [0.5, 0.25, 0.0], running: 1, total: 3 };
        let s = render_sysinfo(host(), Some(&mem), 42.7, Some(&load), Asker::Any);
        assert_eq!((s.totalram, s.mem_unit), (256 << 20, 1), "free -m says 256");
        assert_eq!(s.freeram, 100 << 20);
        assert_eq!(s.sharedram, 60 << 20);
        assert_eq!(s.uptime, 42);
        assert_eq!(s.loads, [32768, 16384, 0]);
        assert_eq!(s.procs, 3);
        // A JVM's glibc counts 65537 pages, so HotSpot takes the 256 MiB limit as one.
        let jvm = render_sysinfo(host(), Some(&mem), 42.7, Some(&load), Asker::Jvm);
        assert_eq!(jvm.totalram / 4096, (256 << 20) / 4096 + 1);
        assert_eq!((jvm.freeram, jvm.uptime), (s.freeram, s.uptime), "only the total differs");
    }

    #[test]
    fn sysinfo_without_a_limit_keeps_the_hosts_memory() {
        let s = render_sysinfo(host(), None, 5.0, None, Asker::Jvm);
        assert_eq!((s.totalram, s.mem_unit, s.procs), (24 << 20, 1024, 300));
        assert_eq!(s.uptime, 5);
    }
}
