//! /proc/diskstats and /proc/pressure/* from the cgroup's own io.stat (cgroup v2; v1's
//! blkio numbers are put in its form) and *.pressure.

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

/// v1's per-device counts as v2's io.stat lines: `bytes` and `ios` are
/// blkio.throttle.io_service_bytes_recursive and io_serviced_recursive ("MAJ:MIN Read N"
/// lines, then "Total N"). The kernel counts there only on devices with throttling active
/// (a blkio.throttle limit was ever set on them); a device with nothing counted has no
/// line, as in io.stat.
pub fn io_stat_from_blkio(bytes: &str, ios: &str) -> String {
    let mut devs: std::collections::BTreeMap<(u32, u32), [u64; 6]> = Default::default();
    for (text, base) in [(bytes, 0), (ios, 1)] {
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [dev, op, n] = f[..] else { continue };
            let (Some((major, minor)), Ok(n)) = (dev.split_once(':'), n.parse::<u64>()) else { continue };
            let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else { continue };
            let slot = match op {
                "Read" => 0,
                "Write" => 2,
                "Discard" => 4,
                _ => continue,
            };
            devs.entry((major, minor)).or_default()[slot + base] = n;
        }
    }
    let mut out = String::new();
    for ((major, minor), [rbytes, rios, wbytes, wios, dbytes, dios]) in devs {
        if rbytes + rios + wbytes + wios + dbytes + dios > 0 {
            out.push_str(&format!(
                "{major}:{minor} rbytes={rbytes} wbytes={wbytes} rios={rios} wios={wios} dbytes={dbytes} dios={dios}\n"
            ));
        }
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
    fn v1_blkio_counts_become_io_stat_lines() {
        let bytes =
            "7:0 Read 1048576\n7:0 Write 4096\n7:0 Sync 1052672\n7:0 Async 0\n7:0 Discard 0\n7:0 Total 1052672\n\
                     8:0 Read 0\n8:0 Write 0\n8:0 Total 0\nTotal 1052672\n";
        let ios = "7:0 Read 16\n7:0 Write 1\n7:0 Sync 17\n7:0 Async 0\n7:0 Discard 0\n7:0 Total 17\nTotal 17\n";
        let io = io_stat_from_blkio(bytes, ios);
        assert_eq!(io, "7:0 rbytes=1048576 wbytes=4096 rios=16 wios=1 dbytes=0 dios=0\n", "idle devices dropped");
        let host = "   7       0 loop0 1 1 1 1 1 1 1 1 1 1 1 0 0 0 0 0 0\n";
        assert_eq!(render_diskstats(host, &io), "   7       0 loop0 16 0 2048 0 1 0 8 0 0 0 0 0 0 0 0 0 0\n");
        assert_eq!(io_stat_from_blkio("Total 0\n", "garbage line here\n"), "");
    }

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
