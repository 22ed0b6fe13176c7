//! /proc/meminfo as a container should see it: MemTotal is its memory limit, and the other
//! lines are derived from its cgroup's memory.stat so that procps' and busybox's `free` and
//! `top` add up (total = used + free + buff/cache). Slab is the cgroup's (0 on v1, which
//! has no slab counters); lines podrun cannot attribute to the cgroup are the host's, as
//! in LXCFS.

use podrun_cgroup::snapshot::MemorySnapshot;

fn kb(bytes: u64) -> u64 {
    bytes / 1024
}

/// The value of `key:` in the host's meminfo, in kB.
fn host_kb(host: &str, key: &str) -> Option<u64> {
    host.lines().find_map(|l| {
        let (k, rest) = l.split_once(':')?;
        (k == key).then(|| rest.split_whitespace().next()?.parse().ok()).flatten()
    })
}

/// The numbers both meminfo and sysinfo(2) give a container with a memory limit, in kB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemView {
    pub total: u64,
    pub free: u64,
    pub available: u64,
    pub cached: u64,
    pub shmem: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

/// The container's memory as the host's meminfo would show it; None without a limit (the
/// host's numbers stand).
pub fn mem_view(host: &str, m: &MemorySnapshot) -> Option<MemView> {
    let host_total = host_kb(host, "MemTotal").unwrap_or(0);
    let limit = m.limit?;
    let total = kb(limit).min(host_total);
    let used = kb(m.usage).min(total);
    let free = total - used;
    let (active_file, inactive_file) = (kb(m.stat("active_file")), kb(m.stat("inactive_file")));
    let host_swap = host_kb(host, "SwapTotal").unwrap_or(0);
    let swap_total = m.swap_limit.map_or(host_swap, |s| kb(s).min(host_swap));
    Some(MemView {
        total,
        free,
        // What the kernel could give back without swapping: free memory plus the page cache.
        available: (free + active_file + inactive_file).min(total),
        cached: kb(m.stat("file")).min(used),
        shmem: kb(m.stat("shmem")),
        swap_total,
        swap_free: swap_total.saturating_sub(kb(m.swap_usage)),
    })
}

/// Renders meminfo for a cgroup. Without a memory limit the host's text comes back as it is.
pub fn render_meminfo(host: &str, m: &MemorySnapshot) -> String {
    let Some(v) = mem_view(host, m) else { return host.to_owned() };
    let (active_file, inactive_file) = (kb(m.stat("active_file")), kb(m.stat("inactive_file")));
    let (active_anon, inactive_anon) = (kb(m.stat("active_anon")), kb(m.stat("inactive_anon")));
    let (total, free, available, cached, swap_total, swap_free) =
        (v.total, v.free, v.available, v.cached, v.swap_total, v.swap_free);
    let ours: [(&str, u64); 14] = [
        ("MemTotal", total),
        ("MemFree", free),
        ("MemAvailable", available),
        ("Buffers", 0),
        ("Cached", cached),
        ("SwapCached", 0),
        ("Active", active_anon + active_file),
        ("Inactive", inactive_anon + inactive_file),
        ("Active(anon)", active_anon),
        ("Inactive(anon)", inactive_anon),
        ("Active(file)", active_file),
        ("Inactive(file)", inactive_file),
        ("SwapTotal", swap_total),
        ("SwapFree", swap_free),
    ];
    // busybox and procps count SReclaimable as cache ("buff/cache"), so it must be the
    // cgroup's and fit in what it uses (v1 has no slab counters: 0).
    let slab_reclaimable = kb(m.stat("slab_reclaimable")).min(total - free - cached);
    let slab_unreclaimable = kb(m.stat("slab_unreclaimable"));
    let more: [(&str, u64); 6] = [
        ("AnonPages", kb(m.stat("anon"))),
        ("Mapped", kb(m.stat("file_mapped"))),
        ("Shmem", v.shmem),
        ("Slab", slab_reclaimable + slab_unreclaimable),
        ("SReclaimable", slab_reclaimable),
        ("SUnreclaim", slab_unreclaimable),
    ];
    let mut out = String::with_capacity(host.len());
    for line in host.lines() {
        let key = line.split(':').next().unwrap_or("");
        match ours.iter().chain(more.iter()).find(|(k, _)| *k == key) {
            // The kernel's layout: "%-16s%8lu kB" with the colon in the name column.
            Some((k, v)) => out.push_str(&format!("{:<16}{:>8} kB\n", format!("{k}:"), v)),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "\
MemTotal:       24684092 kB
MemFree:        21236244 kB
MemAvailable:   23885148 kB
Buffers:           93640 kB
Cached:          2703388 kB
SwapCached:            0 kB
Active:          1448632 kB
Inactive:        1504432 kB
Active(anon):       1516 kB
Inactive(anon):   163352 kB
Active(file):    1447116 kB
Inactive(file):  1341080 kB
SwapTotal:       2097148 kB
SwapFree:        2097148 kB
AnonPages:        166608 kB
Mapped:           145312 kB
Shmem:              8856 kB
Slab:             201500 kB
SReclaimable:     150000 kB
SUnreclaim:        51500 kB
KernelStack:        5000 kB
";

    fn snap(limit: Option<u64>, usage: u64) -> MemorySnapshot {
        let mut m = MemorySnapshot { limit, usage, swap_limit: Some(0), ..Default::default() };
        for (k, v) in [
            ("anon", 60 << 20),
            ("file", 40 << 20),
            ("shmem", 1 << 20),
            ("active_file", 30 << 20),
            ("inactive_file", 10 << 20),
            ("active_anon", 50 << 20),
            ("inactive_anon", 10 << 20),
        ] {
            m.stat.insert(k.to_owned(), v);
        }
        m
    }

    fn field(text: &str, key: &str) -> u64 {
        host_kb(text, key).unwrap_or_else(|| panic!("{key} missing in\n{text}"))
    }

    #[test]
    fn meminfo_total_is_the_limit_and_free_adds_up() {
        let out = render_meminfo(HOST, &snap(Some(256 << 20), 100 << 20));
        assert_eq!(field(&out, "MemTotal"), 262_144);
        assert_eq!(field(&out, "MemFree"), 262_144 - 102_400);
        assert_eq!(field(&out, "Cached"), 40_960);
        assert_eq!(field(&out, "MemAvailable"), 262_144 - 102_400 + 40_960);
        assert_eq!(field(&out, "SwapTotal"), 0, "no swap for a container with swap limit 0");
        assert_eq!(field(&out, "Active"), 80 * 1024);
        assert_eq!(field(&out, "KernelStack"), 5000, "lines podrun cannot attribute stay the host's");
        assert_eq!(field(&out, "SReclaimable"), 0, "the cgroup's slab, not the host's 150000");
        assert_eq!(field(&out, "Slab"), 0);
        assert!(out.contains("MemTotal:         262144 kB\n"), "kernel layout: {out}");
        assert_eq!(out.lines().count(), HOST.lines().count());
    }

    #[test]
    fn busybox_free_never_goes_negative() {
        // busybox: used = MemTotal - MemFree - Cached - SReclaimable.
        let mut m = snap(Some(256 << 20), 100 << 20);
        m.stat.insert("slab_reclaimable".into(), 90 << 20);
        let out = render_meminfo(HOST, &m);
        let cache = field(&out, "Cached") + field(&out, "SReclaimable");
        assert_eq!(field(&out, "SReclaimable"), 60 << 10, "cut to what the cgroup uses");
        assert_eq!(field(&out, "MemTotal") - field(&out, "MemFree") - cache, 0);
    }

    #[test]
    fn meminfo_without_a_limit_is_the_hosts() {
        assert_eq!(render_meminfo(HOST, &snap(None, 100 << 20)), HOST);
    }

    #[test]
    fn meminfo_never_shows_more_than_the_host_has_or_negative_free() {
        let out = render_meminfo(HOST, &snap(Some(1 << 50), 1 << 20));
        assert_eq!(field(&out, "MemTotal"), 24_684_092);
        let out = render_meminfo(HOST, &snap(Some(64 << 20), 200 << 20));
        assert_eq!(field(&out, "MemFree"), 0);
    }
}

/// /proc/swaps: the host's header, and one line for the swap the cgroup may use (none when
/// the host has no swap or the limit is 0), sized by the limit and the host's total.
pub fn render_swaps(host: &str, m: &MemorySnapshot) -> String {
    let mut lines = host.lines();
    let header = lines.next().unwrap_or("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority");
    let host_kb: u64 = lines.filter_map(|l| l.split_whitespace().nth(2).and_then(|s| s.parse::<u64>().ok())).sum();
    let size_kb = m.swap_limit.map_or(host_kb, |l| (l / 1024).min(host_kb));
    let mut out = format!("{header}\n");
    if size_kb > 0 {
        out.push_str(&format!("none\t\t\t\t\tvirtual\t\t{size_kb}\t\t{}\t\t0\n", m.swap_usage / 1024));
    }
    out
}

#[cfg(test)]
mod swap_tests {
    use super::*;

    const HOST: &str = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/vda2 partition\t1048572\t\t0\t\t-2\n";

    #[test]
    fn swaps_show_the_limit_or_nothing() {
        let none = MemorySnapshot { swap_limit: Some(0), ..Default::default() };
        assert_eq!(render_swaps(HOST, &none).lines().count(), 1);
        let some = MemorySnapshot { swap_limit: Some(256 << 20), swap_usage: 1 << 20, ..Default::default() };
        let out = render_swaps(HOST, &some);
        assert!(out.contains("\t262144\t\t1024\t"), "{out}");
        let unlimited = MemorySnapshot::default();
        assert!(render_swaps(HOST, &unlimited).contains("\t1048572\t"));
        assert_eq!(render_swaps("Filename Type Size Used Priority\n", &some).lines().count(), 1, "no host swap");
    }
}
