//! /proc/uptime and /proc/stat: time since the container started, and the CPU time of its
//! cgroup, not the host's.

/// A cgroup's threads by state, as /proc/stat's procs_running and procs_blocked and
/// /proc/loadavg's running/total count the host's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tasks {
    pub running: usize,
    pub blocked: usize,
    pub total: usize,
}

/// `up`: seconds since the container started. The idle column counts every view CPU as
/// idle for the whole time (the second field is the sum over CPUs, as the kernel's is).
pub fn render_uptime(up: f64, cpus: usize) -> String {
    format!("{:.2} {:.2}\n", up, up * cpus as f64)
}

/// /proc/stat for the view's CPUs (by their host numbers): the cgroup's user and system time
/// (microseconds), split evenly over them, idle the rest of `up` seconds on each, in clock ticks; `btime` moved to
/// the container's start; `processes` (forks since boot) the tasks it has now, and
/// procs_running and procs_blocked its own. Interrupts, context switches and softirqs are
/// counted by no cgroup: zeros, so vmstat's `in` and `cs` are 0 rather than the host's
/// totals over the container's uptime.
pub fn render_stat(host: &str, ids: &[u32], user_us: u64, system_us: u64, up: f64, hz: u64, tasks: Tasks) -> String {
    let cpus = ids.len().max(1) as u64;
    let ticks = |us: u64| us * hz / 1_000_000;
    let (user, system) = (ticks(user_us), ticks(system_us));
    let total_idle = ((up * hz as f64) as u64 * cpus).saturating_sub(user + system);
    let line = |name: &str, u: u64, s: u64, i: u64| format!("{name} {u} 0 {s} {i} 0 0 0 0 0 0\n");
    let share = |v: u64, n: u64| v / cpus + u64::from(n < v % cpus);
    let mut out = line("cpu ", user, system, total_idle);
    for (n, id) in (0..cpus).zip(ids) {
        out.push_str(&line(&format!("cpu{id}"), share(user, n), share(system, n), share(total_idle, n)));
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    for l in host.lines().filter(|l| !l.starts_with("cpu")) {
        let (key, rest) = l.split_once(' ').unwrap_or((l, ""));
        let line = match key {
            "btime" => format!("btime {}", now.saturating_sub(up as u64)),
            "intr" | "ctxt" => format!("{key} 0"),
            // Its fields: the total, then one per softirq kind.
            "softirq" => format!("softirq{}", " 0".repeat(rest.split_whitespace().count())),
            "processes" => format!("processes {}", tasks.total),
            "procs_running" => format!("procs_running {}", tasks.running),
            "procs_blocked" => format!("procs_blocked {}", tasks.blocked),
            _ => l.to_owned(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_counts_from_the_container_start() {
        assert_eq!(render_uptime(9.5, 2), "9.50 19.00\n");
    }

    #[test]
    fn stat_splits_the_cgroups_time_over_the_view_cpus() {
        let host = "cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 1 2 3 4 5 6 7 8 9 10\ncpu1 1 2 3 4 5 6 7 8 9 10\n\
                    cpu2 1 1 1 1 1 1 1 1 1 1\nintr 5 1\nctxt 77\nbtime 100\nprocesses 9\n";
        // 2 CPUs, 3.01 s user and 1 s system, up 10 s, 100 Hz.
        let tasks = Tasks { running: 2, blocked: 1, total: 5 };
        let out = render_stat(host, &[0, 1], 3_010_000, 1_000_000, 10.0, 100, tasks);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "cpu  301 0 100 1599 0 0 0 0 0 0");
        assert_eq!(lines[1], "cpu0 151 0 50 800 0 0 0 0 0 0");
        assert_eq!(lines[2], "cpu1 150 0 50 799 0 0 0 0 0 0");
        assert!(!out.contains("cpu2"), "only the view's CPUs");
        assert!(out.contains("intr 0\nctxt 0\n"), "no cgroup counts interrupts or switches: {out}");
        assert!(out.contains("processes 5\n"), "the container's tasks: {out}");
        assert!(!out.contains("btime 100"), "btime is the container's start");
        let pinned = render_stat(host, &[2], 3_010_000, 1_000_000, 10.0, 100, tasks);
        assert!(pinned.contains("\ncpu2 301 0 100 599 ") && !pinned.contains("cpu0"), "by its host number: {pinned}");
    }
}
