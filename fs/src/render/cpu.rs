//! The CPU files of the view: /sys/devices/system/cpu/online (and present, possible) and the
//! number of processor entries, all from one count (`snapshot::cpu_count`).

/// "0" for one CPU, "0-3" for four: the view's CPUs are always numbered from 0.
pub fn render_online(count: usize) -> String {
    if count <= 1 {
        "0\n".to_owned()
    } else {
        format!("0-{}\n", count - 1)
    }
}

/// Keeps the first `count` processor blocks of the host's /proc/cpuinfo, numbered 0..count.
pub fn render_cpuinfo(host: &str, count: usize) -> String {
    let mut out = String::with_capacity(host.len());
    for (n, block) in host.split("\n\n").filter(|b| !b.trim().is_empty()).take(count).enumerate() {
        for line in block.lines() {
            if line.starts_with("processor") {
                out.push_str(&format!("processor\t: {n}\n"));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_lists_the_view_cpus() {
        assert_eq!(render_online(1), "0\n");
        assert_eq!(render_online(4), "0-3\n");
    }

    #[test]
    fn cpuinfo_keeps_count_processors_renumbered() {
        let host =
            "processor\t: 0\nmodel name\t: X\n\nprocessor\t: 5\nmodel name\t: X\n\nprocessor\t: 7\nmodel name\t: X\n";
        let out = render_cpuinfo(host, 2);
        assert_eq!(out.matches("processor").count(), 2);
        assert!(out.contains("processor\t: 1\n") && !out.contains(": 5"));
    }
}
