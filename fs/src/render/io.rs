//! /proc/diskstats and /proc/pressure/* from the cgroup's own io.stat and *.pressure
//! (cgroup v2).

/// One line per device the cgroup has done I/O on, named as the host names it: reads,
/// sectors read, writes, sectors written, discards and sectors discarded from io.stat;
/// merges and times, which io.stat does not count, are 0.
pub fn render_diskstats(host: &str, io_stat: &str) -> String {
    let mut out = String::new();
    for line in io_stat.lines() {
        let mut fields = line.split_whitespace();
        let Some((major, minor)) = fields.next().and_then(|d| d.split_once(':')) else { continue };
        let kv: std::collections::HashMap<&str, u64> =
            fields.filter_map(|f| f.split_once('=')).filter_map(|(k, v)| Some((k, v.parse().ok()?))).collect();
        let get = |k: &str| kv.get(k).copied().unwrap_or(0);
        let Some(name) = host.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[0] == major && f[1] == minor).then(|| f[2].to_owned())
        }) else {
            continue;
        };
        out.push_str(&format!(
            "{major:>4} {minor:>7} {name} {} 0 {} 0 {} 0 {} 0 0 0 0 {} 0 {} 0 0 0\n",
            get("rios"),
            get("rbytes") / 512,
            get("wios"),
            get("wbytes") / 512,
            get("dios"),
            get("dbytes") / 512
        ));
    }
    out
}

/// A pressure file: the cgroup's as it is, or nothing stalled when there is none. `full`:
/// the resource has a "full" line (memory and io; cpu has one too since 5.13, kept if the
/// cgroup's file has it).
pub fn render_pressure(cgroup: &str, full: bool) -> String {
    if !cgroup.trim().is_empty() {
        return cgroup.to_owned();
    }
    let zero = "avg10=0.00 avg60=0.00 avg300=0.00 total=0";
    if full {
        format!("some {zero}\nfull {zero}\n")
    } else {
        format!("some {zero}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diskstats_show_the_cgroups_io_by_device_name() {
        let host =
            "   8       0 sda 9 9 9 9 9 9 9 9 9 9 9 0 0 0 0 0 0\n 254       0 vda 1 1 1 1 1 1 1 1 1 1 1 0 0 0 0 0 0\n";
        let io = "254:0 rbytes=1048576 wbytes=512 rios=3 wios=1 dbytes=0 dios=0\n7:9 rbytes=1 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n";
        let out = render_diskstats(host, io);
        assert_eq!(out, " 254       0 vda 3 0 2048 0 1 0 1 0 0 0 0 0 0 0 0 0 0\n", "unknown devices skipped");
        assert_eq!(render_diskstats(host, ""), "", "no I/O, no lines");
    }

    #[test]
    fn pressure_is_the_cgroups_or_zero() {
        assert_eq!(
            render_pressure("some avg10=1.00 avg60=0.00 avg300=0.00 total=5\n", true),
            "some avg10=1.00 avg60=0.00 avg300=0.00 total=5\n"
        );
        assert!(render_pressure("", true).starts_with("some avg10=0.00") && render_pressure("", true).contains("full"));
    }
}
