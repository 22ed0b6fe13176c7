//! The CPU files of the view: /sys/devices/system/cpu/online (and present, possible), node0's
//! CPUs and the processor entries, all from one list of CPUs by their host numbers
//! (`snapshot::cpu_ids`).

/// A CPU list as the kernel prints one: "0", "0-3", "1,3-5".
pub fn render_online(ids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        match i == j {
            true => out.push_str(&ids[i].to_string()),
            false => out.push_str(&format!("{}-{}", ids[i], ids[j])),
        }
        i = j + 1;
    }
    if out.is_empty() {
        out.push('0');
    }
    out.push('\n');
    out
}

/// A CPU mask as the kernel prints one (node0/cpumap): the host's text's shape (its hex
/// digits, in comma-separated groups) with the bits of `ids` set: "3" for CPUs 0 and 1 of
/// 2, "2" for CPU 1, "00000000,00000003" for CPUs 0 and 1 of 64.
pub fn render_cpumap(host: &str, ids: &[u32]) -> String {
    let host = host.trim();
    let digits = host.chars().filter(|c| *c != ',').count().max(1);
    // The mask's hex digits, lowest last.
    let mut hex: Vec<char> = vec!['0'; digits];
    for (i, d) in hex.iter_mut().rev().enumerate() {
        let nibble = ids.iter().filter(|&&c| c as usize / 4 == i).fold(0u32, |m, &c| m | 1 << (c % 4));
        *d = char::from_digit(nibble, 16).unwrap_or('0');
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

/// Keeps the processor blocks of the host's /proc/cpuinfo whose number is in `ids`.
pub fn render_cpuinfo(host: &str, ids: &[u32]) -> String {
    let mut out = String::with_capacity(host.len());
    let number = |block: &str| -> Option<u32> {
        let line = block.lines().find(|l| l.starts_with("processor"))?;
        line.split_once(':')?.1.trim().parse().ok()
    };
    for block in host.split("\n\n").filter(|b| number(b).is_some_and(|n| ids.contains(&n))) {
        out.push_str(block.trim_start_matches('\n'));
        out.push_str("\n\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpumap_has_the_view_cpus_in_the_hosts_shape() {
        assert_eq!(render_cpumap("3\n", &[0]), "1\n");
        assert_eq!(render_cpumap("3\n", &[1]), "2\n", "the CPU's own bit");
        assert_eq!(render_cpumap("3\n", &[0, 1]), "3\n");
        assert_eq!(render_cpumap("ff\n", &[0, 1, 2, 3, 4]), "1f\n");
        assert_eq!(render_cpumap("ffffffff,ffffffff\n", &[0, 1]), "00000000,00000003\n");
        assert_eq!(render_cpumap("ffffffff,ffffffff\n", &(0..36).collect::<Vec<_>>()), "0000000f,ffffffff\n");
        assert_eq!(render_cpumap("ffffffff,ffffffff\n", &[33, 63]), "80000002,00000000\n");
    }

    #[test]
    fn online_lists_the_view_cpus_by_their_numbers() {
        assert_eq!(render_online(&[0]), "0\n");
        assert_eq!(render_online(&[0, 1, 2, 3]), "0-3\n");
        assert_eq!(render_online(&[1]), "1\n");
        assert_eq!(render_online(&[1, 3, 4, 5, 8]), "1,3-5,8\n");
    }

    #[test]
    fn cpuinfo_keeps_the_view_cpus_processors() {
        let host =
            "processor\t: 0\nmodel name\t: X\n\nprocessor\t: 5\nmodel name\t: X\n\nprocessor\t: 7\nmodel name\t: X\n\n";
        let out = render_cpuinfo(host, &[5, 7]);
        assert_eq!(out, "processor\t: 5\nmodel name\t: X\n\nprocessor\t: 7\nmodel name\t: X\n\n");
        assert_eq!(render_cpuinfo(host, &[0]), "processor\t: 0\nmodel name\t: X\n\n");
    }
}
