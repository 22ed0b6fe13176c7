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

/// A CPU mask as the kernel prints one (node0/cpumap): the host's text's shape (its hex
/// digits, in comma-separated groups) with the low `count` bits set: "3" for 2 of 2
/// CPUs, "00000000,00000003" for 2 of 64.
pub fn render_cpumap(host: &str, count: usize) -> String {
    let host = host.trim();
    let digits = host.chars().filter(|c| *c != ',').count().max(1);
    // The mask's hex digits, lowest last: full 'f's, then the partial one.
    let mut hex: Vec<char> = vec!['0'; digits];
    for (i, d) in hex.iter_mut().rev().enumerate() {
        let bits = count.saturating_sub(i * 4).min(4);
        *d = char::from_digit((1u32 << bits) - 1, 16).unwrap_or('0');
    }
    let mut out = String::with_capacity(host.len() + 1);
    let mut it = hex.into_iter();
    for c in host.chars() {
        match c {
            ',' => out.push(','),
            _ => out.extend(it.next()),
        }
    }
    out.push('\n');
    out
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
    fn cpumap_has_the_view_cpus_in_the_hosts_shape() {
        assert_eq!(render_cpumap("3\n", 1), "1\n");
        assert_eq!(render_cpumap("3\n", 2), "3\n");
        assert_eq!(render_cpumap("ff\n", 5), "1f\n");
        assert_eq!(render_cpumap("ffffffff,ffffffff\n", 2), "00000000,00000003\n");
        assert_eq!(render_cpumap("ffffffff,ffffffff\n", 36), "0000000f,ffffffff\n");
    }

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
