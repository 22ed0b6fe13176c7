//! Limit values parsed the way docker reads them, and the files and values each becomes in
//! either cgroup world.

use std::collections::BTreeMap;

use super::*;

/// Resource limits of a sandbox or container, as docker's flags give them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// --memory, bytes.
    pub memory: Option<u64>,
    /// --memory-swap, bytes of memory plus swap (docker's meaning); -1 for unlimited swap.
    pub memory_swap: Option<i64>,
    /// --cpus, as (quota, period) in microseconds.
    pub cpu_quota: Option<(u64, u64)>,
    /// --cpu-shares (v1 weight, 2..262144).
    pub cpu_shares: Option<u64>,
    /// --cpuset-cpus, as given ("0-1", "0,2").
    pub cpuset_cpus: Option<String>,
    /// --pids-limit; None for no limit.
    pub pids: Option<u64>,
    /// --io-weight, 1..10000 (v2 only).
    pub io_weight: Option<u64>,
    /// --device-read-bps and --device-write-bps, as ((major, minor), bytes per second) (v2 only).
    pub device_read_bps: Vec<((u64, u64), u64)>,
    pub device_write_bps: Vec<((u64, u64), u64)>,
    /// The device allow-list: the standard devices plus these (--device). None for a
    /// sandbox's cgroup, which stays open so that its containers' lists, each checked by
    /// its own cgroup, can add devices (a v1 child's list must fit in its parent's, and
    /// on v2 every program up the tree must allow).
    pub devices: Option<Vec<crate::devices::Device>>,
}

impl Limits {
    /// io limits exist only on cgroup v2 here (podrun does not use v1's blkio).
    pub fn has_io(&self) -> bool {
        self.io_weight.is_some() || !self.device_read_bps.is_empty() || !self.device_write_bps.is_empty()
    }
}

/// Parses a docker size: `1024`, `512k`, `256m`, `1g` (binary units, case-insensitive).
pub fn parse_size(s: &str) -> Result<u64, LimitError> {
    let bad = || LimitError::Size(s.to_owned());
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').filter(|r| r.ends_with(['k', 'm', 'g'])).unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('b') => (&t[..t.len() - 1], 1),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    if !(n.is_finite() && n > 0.0) {
        return Err(bad());
    }
    let bytes = n * mult as f64;
    if bytes > u64::MAX as f64 / 2.0 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// The CFS period docker uses: 100 ms.
pub const CPU_PERIOD: u64 = 100_000;

/// `--cpus 0.5` -> quota 50000 per 100000 µs.
pub fn parse_cpus(s: &str) -> Result<(u64, u64), LimitError> {
    let n: f64 = s.trim().parse().map_err(|_| LimitError::Cpus(s.to_owned()))?;
    if !(n.is_finite() && (0.01..=1024.0).contains(&n)) {
        return Err(LimitError::Cpus(s.to_owned()));
    }
    Ok(((n * CPU_PERIOD as f64).round() as u64, CPU_PERIOD))
}

pub fn parse_shares(s: &str) -> Result<u64, LimitError> {
    s.trim().parse::<u64>().ok().filter(|n| (2..=262_144).contains(n)).ok_or_else(|| LimitError::Shares(s.to_owned()))
}

/// `--pids-limit N`; 0 or negative means no limit, as in docker.
pub fn parse_pids(s: &str) -> Result<Option<u64>, LimitError> {
    let n: i64 = s.trim().parse().map_err(|_| LimitError::Pids(s.to_owned()))?;
    Ok(u64::try_from(n).ok().filter(|&n| n > 0))
}

pub fn parse_io_weight(s: &str) -> Result<u64, LimitError> {
    s.trim().parse::<u64>().ok().filter(|n| (1..=10_000).contains(n)).ok_or_else(|| LimitError::IoWeight(s.to_owned()))
}

/// `/dev/sda:1m` -> the block device's (major, minor) and the rate in bytes per second.
pub fn parse_device_rate(s: &str) -> Result<((u64, u64), u64), LimitError> {
    let bad = || LimitError::DeviceRate(s.to_owned());
    let (dev, rate) = s.rsplit_once(':').ok_or_else(bad)?;
    let Some((true, major, minor)) = crate::devices::node(dev) else { return Err(bad()) };
    Ok(((u64::from(major), u64::from(minor)), parse_size(rate).map_err(|_| bad())?))
}

/// v1 cpu.shares to v2 cpu.weight, the conversion runc and crun use.
pub fn shares_to_weight(shares: u64) -> u64 {
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// The files a cgroup's limits are written to, per world: (controller, file, value). The
/// controller names the v1 hierarchy; on v2 every file is in the one cgroup directory.
pub fn limit_files(h: &Hierarchy, l: &Limits) -> Vec<(&'static str, &'static str, String)> {
    let mut w = Vec::new();
    match h {
        Hierarchy::V2 { .. } => {
            if let Some(m) = l.memory {
                w.push(("memory", "memory.max", m.to_string()));
            }
            match (l.memory, l.memory_swap) {
                (_, Some(-1)) => w.push(("memory", "memory.swap.max", "max".into())),
                // docker's --memory-swap counts memory too; v2's swap.max counts swap only.
                (Some(m), Some(total)) if total >= m as i64 => {
                    w.push(("memory", "memory.swap.max", (total as u64 - m).to_string()))
                }
                _ => {}
            }
            if let Some((q, p)) = l.cpu_quota {
                w.push(("cpu", "cpu.max", format!("{q} {p}")));
            }
            if let Some(s) = l.cpu_shares {
                w.push(("cpu", "cpu.weight", shares_to_weight(s).to_string()));
            }
            if let Some(c) = &l.cpuset_cpus {
                w.push(("cpuset", "cpuset.cpus", c.clone()));
            }
            if let Some(p) = l.pids {
                w.push(("pids", "pids.max", p.to_string()));
            }
            if let Some(iw) = l.io_weight {
                w.push(("io", "io.weight", format!("default {iw}")));
            }
            let mut devs: BTreeMap<(u64, u64), String> = BTreeMap::new();
            for ((maj, min), rate) in &l.device_read_bps {
                devs.entry((*maj, *min)).or_default().push_str(&format!(" rbps={rate}"));
            }
            for ((maj, min), rate) in &l.device_write_bps {
                devs.entry((*maj, *min)).or_default().push_str(&format!(" wbps={rate}"));
            }
            for ((maj, min), rates) in devs {
                w.push(("io", "io.max", format!("{maj}:{min}{rates}")));
            }
        }
        Hierarchy::V1 { .. } => {
            if let Some(m) = l.memory {
                w.push(("memory", "memory.limit_in_bytes", m.to_string()));
            }
            match l.memory_swap {
                Some(-1) => w.push(("memory", "memory.memsw.limit_in_bytes", "-1".into())),
                Some(total) if total > 0 => w.push(("memory", "memory.memsw.limit_in_bytes", total.to_string())),
                _ => {}
            }
            if let Some((q, p)) = l.cpu_quota {
                w.push(("cpu", "cpu.cfs_period_us", p.to_string()));
                w.push(("cpu", "cpu.cfs_quota_us", q.to_string()));
            }
            if let Some(s) = l.cpu_shares {
                w.push(("cpu", "cpu.shares", s.to_string()));
            }
            if let Some(c) = &l.cpuset_cpus {
                w.push(("cpuset", "cpuset.cpus", c.clone()));
            }
            if let Some(p) = l.pids {
                w.push(("pids", "pids.max", p.to_string()));
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use podrun_cgroup::detect;

    /// This development VM: v1 controllers (cpu and cpuacct apart) plus an empty cgroup2.
    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
37 31 0:34 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
38 31 0:35 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    /// A systemd host: one cgroup2 mount.
    const PURE_V2: &str = "\
25 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(parse_size("256m"), Ok(256 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1GB"), Ok(1 << 30));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        for bad in ["", "m", "-1m", "12x", "0", "1e400"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpus_become_quota_per_100ms() {
        assert_eq!(parse_cpus("0.5"), Ok((50_000, 100_000)));
        assert_eq!(parse_cpus("2"), Ok((200_000, 100_000)));
        assert!(parse_cpus("0").is_err() && parse_cpus("x").is_err() && parse_cpus("-1").is_err());
        assert_eq!(parse_pids("100"), Ok(Some(100)));
        assert_eq!(parse_pids("-1"), Ok(None));
        assert!(parse_shares("1").is_err() && parse_shares("1024").is_ok());
    }

    #[test]
    fn io_limits_are_v2_files() {
        let l = Limits {
            io_weight: Some(200),
            device_read_bps: vec![((8, 0), 1 << 20)],
            device_write_bps: vec![((8, 0), 2048)],
            ..Limits::default()
        };
        assert_eq!(
            limit_files(&detect(PURE_V2).unwrap(), &l),
            vec![
                ("io", "io.weight", "default 200".to_owned()),
                ("io", "io.max", "8:0 rbps=1048576 wbps=2048".to_owned())
            ]
        );
        assert!(parse_io_weight("0").is_err() && parse_io_weight("10001").is_err() && parse_io_weight("100").is_ok());
        assert!(parse_device_rate("/dev/null:1m").is_err(), "a character device is not a block device");
        assert!(parse_device_rate("/nonexistent:1m").is_err());
    }

    #[test]
    fn shares_map_to_weight_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn limits_become_the_right_files_in_each_world() {
        let l = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            cpu_quota: Some((20_000, 100_000)),
            pids: Some(100),
            ..Limits::default()
        };
        let v2 = limit_files(&detect(PURE_V2).unwrap(), &l);
        assert_eq!(
            v2,
            vec![
                ("memory", "memory.max", "67108864".to_owned()),
                ("memory", "memory.swap.max", "67108864".to_owned()),
                ("cpu", "cpu.max", "20000 100000".to_owned()),
                ("pids", "pids.max", "100".to_owned()),
            ]
        );
        let v1 = limit_files(&detect(HYBRID).unwrap(), &l);
        assert_eq!(
            v1,
            vec![
                ("memory", "memory.limit_in_bytes", "67108864".to_owned()),
                ("memory", "memory.memsw.limit_in_bytes", "134217728".to_owned()),
                ("cpu", "cpu.cfs_period_us", "100000".to_owned()),
                ("cpu", "cpu.cfs_quota_us", "20000".to_owned()),
                ("pids", "pids.max", "100".to_owned()),
            ]
        );
    }
}
