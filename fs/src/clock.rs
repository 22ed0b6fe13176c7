//! How long the reader's container has run: its clock's boot time (a time namespace of its
//! own), or the start of the first process of its pid namespace. Both are looked up from
//! /proc and fall back (to the host's clock, to the reader's own start) where the kernel
//! has no such thing: an uptime is never an error.

use crate::recent::Recent;

/// Clock ticks per second of /proc/<pid>/stat's times.
pub(crate) fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100).max(1)
}

/// (parent pid, start time in ticks after boot) from /proc/<pid>/stat.
fn parent_and_start(pid: u32) -> Option<(u32, u64)> {
    let stat = podrun_cgroup::read_kernel_file(format!("/proc/{pid}/stat")).ok()?;
    // After the command's closing parenthesis: state, ppid, ... starttime is field 22.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some((rest.get(1)?.parse().ok()?, rest.get(19)?.parse().ok()?))
}

/// When the reader's container started, in ticks after boot: the start of the first
/// process of its pid namespace (the container's init, or with a shared pid namespace the
/// sandbox's pause), found by walking up its parents while they are in the same namespace.
/// The answer is kept per namespace and checked against that process's start time, so a
/// namespace is walked once, not on every read; and a reader's answer is kept for FRESH.
fn container_start(pid: u32) -> Option<u64> {
    static RECENT: Recent<Option<u64>> = Recent::new();
    RECENT.get(&pid.to_string(), || container_start_checked(pid))
}

fn container_start_checked(pid: u32) -> Option<u64> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static FIRST: OnceLock<Mutex<HashMap<std::path::PathBuf, (u32, u64)>>> = OnceLock::new();
    let ns = |p: u32| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    let own = ns(pid)?;
    let cache = FIRST.get_or_init(Mutex::default);
    let known = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&own).copied();
    if let Some((first, start)) = known {
        if parent_and_start(first).is_some_and(|(_, s)| s == start) {
            return Some(start);
        }
    }
    let (mut cur, (mut parent, mut start)) = (pid, parent_and_start(pid)?);
    for _ in 0..64 {
        if parent <= 1 || ns(parent).as_ref() != Some(&own) {
            break;
        }
        cur = parent;
        (parent, start) = parent_and_start(cur)?;
    }
    let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
    if map.len() > 4096 {
        map.clear();
    }
    map.insert(own, (cur, start));
    Some(start)
}

/// Seconds since boot, as /proc/uptime counts them.
fn boottime() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec for clock_gettime to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Seconds since the reader's container started: its clock's boot time. A container with
/// the view has a clock of its own (a time namespace whose boot is its start, or with a
/// shared pid namespace the pod's), which the kernel's own counts (process start times,
/// sysinfo) follow; so the view reads that clock's offset. A reader on the host's clock
/// (a kernel without time namespaces) is timed from its pid namespace's first process.
pub(crate) fn container_uptime(pid: u32) -> f64 {
    // /proc/uptime's first field, without reading it: CLOCK_BOOTTIME.
    let host_up = boottime();
    if let Some(offset) = clock_offset(pid) {
        return (host_up + offset).max(0.0);
    }
    let started = container_start(pid).map_or(host_up, |t| t as f64 / ticks_per_second() as f64);
    (host_up - started).max(0.0)
}

/// The boot-time offset of `pid`'s clock (negative: it booted later than the host), None
/// on the host's clock. Kept for FRESH per reader, as `container_start`.
fn clock_offset(pid: u32) -> Option<f64> {
    static RECENT: Recent<Option<f64>> = Recent::new();
    RECENT.get(&pid.to_string(), || {
        let text = podrun_cgroup::read_kernel_file(format!("/proc/{pid}/timens_offsets")).ok()?;
        parse_boottime_offset(&text).filter(|&o| o != 0.0)
    })
}

/// The boottime line of /proc/PID/timens_offsets (`boottime SECS NANOS`; older kernels
/// name the clock by number, 7).
fn parse_boottime_offset(text: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        if !matches!(f.next()?, "boottime" | "7") {
            return None;
        }
        let (secs, nanos): (i64, i64) = (f.next()?.parse().ok()?, f.next()?.parse().ok()?);
        Some(secs as f64 + nanos as f64 / 1e9)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clocks_boottime_offset_is_read_by_name_or_number() {
        assert_eq!(parse_boottime_offset("monotonic 0 0\nboottime -1234 500000000\n"), Some(-1233.5));
        assert_eq!(parse_boottime_offset("1 0 0\n7 -10 0\n"), Some(-10.0));
        assert_eq!(parse_boottime_offset("monotonic 5 0\n"), None);
        assert_eq!(parse_boottime_offset("boottime x 0\n"), None);
    }
}
