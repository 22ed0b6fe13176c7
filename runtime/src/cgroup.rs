//! Cgroups, the pure part (issue 5 wires it into sandboxes and containers): which cgroup
//! world this host is (pure v2, or v1 controllers with an optional cgroup2 mount: hybrid),
//! limit values parsed the way docker reads them, and the exact files and values each
//! limit becomes in either world.
//!
//! Detection reads mountinfo text given to it, so it is tested on fixtures of both worlds;
//! nothing here touches /sys/fs/cgroup.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The cgroup world of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// One cgroup2 hierarchy holding every controller (most hosts).
    V2 { mount: PathBuf },
    /// One hierarchy per v1 controller (cpu and cpuacct may be apart), and, on hybrid
    /// hosts, a cgroup2 mount without controllers (systemd's `unified`).
    V1 { controllers: BTreeMap<String, PathBuf>, unified: Option<PathBuf> },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    #[error("invalid size {0:?}: use a number with an optional unit b, k, m or g (e.g. 256m)")]
    Size(String),
    #[error("invalid --cpus {0:?}: use a positive number of CPUs, e.g. 0.5 or 2")]
    Cpus(String),
    #[error("invalid --cpu-shares {0:?}: use 2 to 262144")]
    Shares(String),
    #[error("invalid --pids-limit {0:?}: use a positive number, or -1 for no limit")]
    Pids(String),
    #[error("no cgroup hierarchy found in /proc/self/mountinfo")]
    NoHierarchy,
    #[error("invalid --io-weight {0:?}: use 1 to 10000")]
    IoWeight(String),
    #[error("invalid device rate {0:?}: use DEVICE:RATE, e.g. /dev/sda:1m, with a block device")]
    DeviceRate(String),
    #[error("io limits need cgroup v2; this host's io controller is on cgroup v1")]
    IoNeedsV2,
}

/// The v1 controllers podrun puts containers in: those it sets limits with or reads usage
/// from (blkio: the I/O the resource view's /proc/diskstats shows), the freezer, which
/// holds a container still while it is killed, and devices, whose allow-list keeps a
/// container off the host's devices (see devices.rs). On a hybrid host a container also
/// gets a cgroup in the controller-less cgroup2 mount (`unified`): the kernel keeps
/// pressure (PSI) per cgroup only there, for the view's /proc/pressure files. Others (net_cls,
/// perf_event, ...) are left alone: a container stays in its creator's cgroup there.
pub const V1_CONTROLLERS: [&str; 8] = ["blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids"];

/// The name `Hierarchy::dirs` gives a hybrid host's cgroup2 mount.
pub const UNIFIED: &str = "unified";

/// Works out the hierarchy from /proc/self/mountinfo: fields are `id parent major:minor
/// root mountpoint options [optional...] - fstype source superoptions`.
pub fn detect(mountinfo: &str) -> Result<Hierarchy, LimitError> {
    let mut v2 = Vec::new();
    let mut controllers = BTreeMap::new();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else { continue };
        let (Some(mount), Some(fstype), Some(opts)) = (fields.get(4), fields.get(dash + 1), fields.get(dash + 3))
        else {
            continue;
        };
        let mount =
            PathBuf::from(String::from_utf8_lossy(&crate::mount::unescape_mountinfo(mount.as_bytes())).into_owned());
        match *fstype {
            "cgroup2" => v2.push(mount),
            "cgroup" => {
                for o in opts.split(',') {
                    if V1_CONTROLLERS.contains(&o) {
                        controllers.entry(o.to_owned()).or_insert_with(|| mount.clone());
                    }
                }
            }
            _ => {}
        }
    }
    if controllers.is_empty() {
        return v2.into_iter().next().map(|mount| Hierarchy::V2 { mount }).ok_or(LimitError::NoHierarchy);
    }
    Ok(Hierarchy::V1 { controllers, unified: v2.into_iter().next() })
}

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
    /// Debian's older layout: cpu and cpuacct co-mounted.
    const COMOUNTED: &str = "\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn detect_tells_pure_v2_from_hybrid_and_v1() {
        assert_eq!(detect(PURE_V2).unwrap(), Hierarchy::V2 { mount: "/sys/fs/cgroup".into() });
        let Hierarchy::V1 { controllers, unified } = detect(HYBRID).unwrap() else { panic!("not v1") };
        assert_eq!(controllers["cpu"], PathBuf::from("/sys/fs/cgroup/cpu"));
        assert_eq!(controllers["cpuacct"], PathBuf::from("/sys/fs/cgroup/cpuacct"));
        assert!(!controllers.contains_key("name=systemd"));
        assert_eq!(unified, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let Hierarchy::V1 { controllers, unified } = detect(COMOUNTED).unwrap() else { panic!("not v1") };
        assert_eq!(controllers["cpu"], controllers["cpuacct"]);
        assert_eq!(unified, None);
        assert_eq!(detect(""), Err(LimitError::NoHierarchy));
    }

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

// ---- The kernel-facing part: create, place, remove. ----------------------------------------

use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error("{op} {path}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("cgroup {0} still has processes after they were killed")]
    Busy(String),
    #[error("this host's cgroups offer no {file}{why}", file = .0, why = unsupported_why(.0))]
    Unsupported(&'static str),
    #[error("cgroup parent {0} does not exist; podrun creates cgroups only under its own `podrun` cgroup")]
    NoParent(PathBuf),
}

fn unsupported_why(file: &str) -> &'static str {
    if file == "io.weight" {
        " (neither the iocost controller nor the BFQ scheduler)"
    } else {
        " (its controller is not available here)"
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError {
    let path = path.to_owned();
    move |source| CgroupError::Io { op, path, source }
}

impl Hierarchy {
    /// This host's hierarchy, from /proc/self/mountinfo, read once per process (podrun
    /// asks on every start and removal; the answer does not change while it runs).
    pub fn host() -> Result<Hierarchy, CgroupError> {
        static HOST: std::sync::OnceLock<Hierarchy> = std::sync::OnceLock::new();
        if let Some(h) = HOST.get() {
            return Ok(h.clone());
        }
        let text = fs::read_to_string("/proc/self/mountinfo").map_err(io("read", Path::new("/proc/self/mountinfo")))?;
        let h = detect(&text)?;
        Ok(HOST.get_or_init(|| h).clone())
    }

    /// The directories holding cgroup `path`: one on v2; on v1 one per distinct mount of
    /// podrun's controllers, and on a hybrid host the cgroup2 mount's (named UNIFIED).
    pub fn dirs(&self, path: &str) -> Vec<(Option<&str>, PathBuf)> {
        let rel = path.trim_start_matches('/');
        match self {
            Hierarchy::V2 { mount } => vec![(None, mount.join(rel))],
            Hierarchy::V1 { controllers, unified } => {
                let mut out: Vec<(Option<&str>, PathBuf)> = Vec::new();
                for (name, mount) in controllers {
                    let d = mount.join(rel);
                    if !out.iter().any(|(_, o)| *o == d) {
                        out.push((Some(name.as_str()), d));
                    }
                }
                if let Some(u) = unified {
                    out.push((Some(UNIFIED), u.join(rel)));
                }
                out
            }
        }
    }

    fn dir_of(&self, controller: &str, path: &str) -> Option<PathBuf> {
        let rel = path.trim_start_matches('/');
        match self {
            Hierarchy::V2 { mount } => Some(mount.join(rel)),
            Hierarchy::V1 { unified: Some(u), .. } if controller == UNIFIED => Some(u.join(rel)),
            Hierarchy::V1 { controllers, .. } => controllers.get(controller).map(|m| m.join(rel)),
        }
    }
}

/// The cgroup of a sandbox's pause: `<top>/<sandbox>/pause`, beside its containers'.
pub const PAUSE: &str = "pause";
/// Prefix of the cgroup of a container without a sandbox: `<top>/container@<name>`.
pub const LONE_PREFIX: &str = "container@";

/// The v2 controllers podrun uses, enabled in subtree_control along the path.
const V2_CONTROLLERS: [&str; 5] = ["cpu", "cpuset", "io", "memory", "pids"];

/// Creates cgroup `path` (absolute in the hierarchy, under podrun's own `top`), with every
/// missing level, and writes `limits`. Only directories at or below `top` are created;
/// above it podrun only enables controllers (v2), as the kernel requires for `top` to use
/// them.
pub fn create(h: &Hierarchy, top: &str, path: &str, limits: &Limits) -> Result<(), CgroupError> {
    if limits.has_io() && matches!(h, Hierarchy::V1 { .. }) {
        return Err(LimitError::IoNeedsV2.into());
    }
    let levels: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let top_depth = top.trim_start_matches('/').split('/').count();
    for (controller, dir) in h.dirs(path) {
        // A v1 cpuset cgroup only where a cpuset is asked for, here or above (the parent
        // has one): otherwise the container stays in the root cpuset, which is every CPU,
        // and skips a mkdir, two copies and an attach.
        if controller == Some("cpuset")
            && limits.cpuset_cpus.is_none()
            && !dir.parent().is_some_and(|p| p.is_dir() && levels.len() > top_depth)
        {
            continue;
        }
        // The parent usually exists (the sandbox's cgroup, or podrun's top): then one mkdir
        // does, and the walk below (a mkdir per level, two reads per level on v2) is for
        // the first cgroup and for a leaf that already exists.
        if let (Ok(()), Some(parent)) = (fs::create_dir(&dir), dir.parent()) {
            if matches!(h, Hierarchy::V2 { .. }) {
                enable_controllers(parent)?;
            }
            if controller == Some("cpuset") {
                fill_cpuset(parent, &dir)?;
            }
            if let Some(extra) = &limits.devices {
                restrict_devices(controller, &dir, extra)?;
            }
            continue;
        }
        let base = dir.ancestors().nth(levels.len()).unwrap_or(Path::new("/")).to_owned();
        let mut cur = base.clone();
        for (i, level) in levels.iter().enumerate() {
            if matches!(h, Hierarchy::V2 { .. }) && controller.is_none() {
                enable_controllers(&cur)?;
            }
            let next = cur.join(level);
            if i + 1 < top_depth {
                // Above podrun's own top: it must exist; podrun creates nothing there.
                if !next.is_dir() {
                    return Err(CgroupError::NoParent(next));
                }
                cur = next;
                continue;
            }
            let fresh = match fs::create_dir(&next) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(io("create cgroup", &next)(e)),
            };
            if controller == Some("cpuset") {
                fill_cpuset(&cur, &next)?;
            }
            if let (true, true, Some(extra)) = (fresh, i + 1 == levels.len(), &limits.devices) {
                restrict_devices(controller, &next, extra)?;
            }
            cur = next;
        }
    }
    for (controller, file, value) in limit_files(h, limits) {
        let Some(dir) = h.dir_of(controller, path) else { continue };
        // Written without a look first: a missing file is the rare case.
        let write =
            |f: &Path| fs::OpenOptions::new().write(true).open(f).and_then(|mut w| w.write_all(value.as_bytes()));
        let mut f = dir.join(file);
        let mut r = write(&f);
        if file == "io.weight" && r.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
            // Without the iocost controller the weight is BFQ's, when that scheduler is in use.
            f = dir.join("io.bfq.weight");
            r = write(&f);
        }
        match r {
            Ok(()) => {}
            // Swap limits need swap accounting; without it there is no swap to limit.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file.contains("sw") => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(CgroupError::Unsupported(file)),
            Err(e) => return Err(io("write", &f)(e)),
        }
    }
    Ok(())
}

/// Gives a cgroup podrun just created the device allow-list (devices.rs): on v1 in its
/// devices hierarchy, on v2 as an eBPF program (once: programs attached to a cgroup add
/// up).
fn restrict_devices(controller: Option<&str>, dir: &Path, extra: &[crate::devices::Device]) -> Result<(), CgroupError> {
    match controller {
        Some("devices") => {
            let write = |file: &str, line: &str| {
                let f = dir.join(file);
                fs::OpenOptions::new()
                    .write(true)
                    .open(&f)
                    .and_then(|mut w| w.write_all(line.as_bytes()))
                    .map_err(io("write", &f))
            };
            write("devices.deny", "a")?;
            for line in crate::devices::v1_allow(extra) {
                write("devices.allow", &line)?;
            }
            Ok(())
        }
        None => {
            let flags = nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC;
            let fd =
                nix::fcntl::open(dir, flags, nix::sys::stat::Mode::empty()).map_err(|e| io("open", dir)(e.into()))?;
            use std::os::fd::AsFd;
            crate::devices::attach_v2(fd.as_fd(), extra).map_err(io("attach the device filter (eBPF) to", dir))
        }
        Some(_) => Ok(()),
    }
}

/// A v1 cpuset starts empty and takes no task until cpus and mems are set; an existing one
/// may be empty too, if a podrun was killed right after its mkdir. Fills them from `parent`.
fn fill_cpuset(parent: &Path, dir: &Path) -> Result<(), CgroupError> {
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let mine = fs::read_to_string(dir.join(f)).unwrap_or_default();
        if mine.trim().is_empty() {
            let v = fs::read_to_string(parent.join(f)).map_err(io("read", &parent.join(f)))?;
            fs::write(dir.join(f), v.trim()).map_err(io("write", &dir.join(f)))?;
        }
    }
    Ok(())
}

/// Enables podrun's controllers for the children of `dir` (v2), where available and not
/// enabled yet.
fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let avail = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let on = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    let want: Vec<String> = V2_CONTROLLERS
        .iter()
        .filter(|c| avail.split_whitespace().any(|a| a == **c) && !on.split_whitespace().any(|a| a == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if want.is_empty() {
        return Ok(());
    }
    let f = dir.join("cgroup.subtree_control");
    fs::write(&f, want.join(" ")).map_err(io("enable controllers in", &f))
}

/// How a new process enters cgroup `path`, prepared before the spawn (opening files is
/// the parent's work, not the child's).
///
/// Moving a process through `cgroup.procs` takes the kernel's global
/// cgroup_threadgroup_rwsem for writing, which waits for an RCU grace period whenever it
/// was idle: measured here, 5–14 ms per start, more than a whole `podrun run`. So podrun
/// does not migrate processes: on v2 the join stage is created in its cgroup (clone3
/// CLONE_INTO_CGROUP, see `clone::spawn`); on v1, where that flag does not apply, the
/// single-threaded join stage writes "0" to each hierarchy's `tasks` file, which moves
/// only the calling thread and so needs no global lock. `cgroup.procs` remains the v2
/// fallback for kernels without CLONE_INTO_CGROUP (before 5.7). A hybrid host's cgroup2
/// cgroup is entered as v2's is, and its v1 hierarchies through `tasks`.
pub struct Entry {
    /// v2 (or hybrid's cgroup2 mount): the cgroup's directory, for CLONE_INTO_CGROUP.
    dir: Option<OwnedFd>,
    /// v1: each hierarchy's `tasks`.
    tasks: Vec<OwnedFd>,
}

impl Entry {
    pub fn open(h: &Hierarchy, path: &str) -> Result<Entry, CgroupError> {
        let v2 = matches!(h, Hierarchy::V2 { .. });
        let open_w =
            |f: PathBuf| fs::OpenOptions::new().write(true).open(&f).map(OwnedFd::from).map_err(io("open", &f));
        let mut entry = Entry { dir: None, tasks: Vec::new() };
        for (c, d) in h.dirs(path).into_iter().filter(|(_, d)| d.is_dir()) {
            if v2 || c == Some(UNIFIED) {
                let flags = nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC;
                entry.dir = Some(
                    nix::fcntl::open(&d, flags, nix::sys::stat::Mode::empty()).map_err(|e| io("open", &d)(e.into()))?,
                );
            } else {
                entry.tasks.push(open_w(d.join("tasks"))?);
            }
        }
        Ok(entry)
    }

    /// The directory a v2 child can be created in.
    pub fn clone_into(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.dir.as_ref().map(|d| d.as_fd())
    }

    /// Moves the calling (single-threaded) process in: into the v1 hierarchies, and into
    /// the cgroup2 cgroup unless it was created there (`placed`).
    pub fn join(&self, placed: bool) -> Result<(), nix::errno::Errno> {
        if let (Some(dir), false) = (&self.dir, placed) {
            let flags = nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC;
            let procs = nix::fcntl::openat(dir, "cgroup.procs", flags, nix::sys::stat::Mode::empty())?;
            nix::unistd::write(&procs, b"0")?;
        }
        for fd in &self.tasks {
            nix::unistd::write(fd, b"0")?;
        }
        Ok(())
    }
}

fn pids_in(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Kills every process left in cgroup `path` (cgroup.kill on v2, SIGKILL to each on v1),
/// removes it in every hierarchy, then removes its parents up to `top` that are empty.
/// A cgroup that does not exist is already removed.
pub fn remove(h: &Hierarchy, top: &str, path: &str) -> Result<(), CgroupError> {
    let dirs: Vec<PathBuf> = h.dirs(path).into_iter().map(|(_, d)| d).filter(|d| d.exists()).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    let freezer = h.dir_of("freezer", path).filter(|d| matches!(h, Hierarchy::V1 { .. }) && d.is_dir());
    if let Some(freezer) = freezer {
        kill_frozen(&freezer, deadline);
    }
    for d in &dirs {
        loop {
            // v2 kills the whole cgroup atomically; on v1 each listed process is killed,
            // again on every round, so a fork loop cannot outrun the removal for long.
            kill_listed(d, true);
            match fs::remove_dir(d) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                // EBUSY while the killed processes finish exiting.
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
                Err(_) => return Err(CgroupError::Busy(path.to_owned())),
            }
        }
    }
    // Parents podrun created, up to and including `top`, once nothing else is in them.
    let top_depth = top.trim_start_matches('/').split('/').count();
    let levels: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    for depth in (top_depth..levels.len()).rev() {
        let parent = format!("/{}", levels[..depth].join("/"));
        for (_, d) in h.dirs(&parent) {
            let _ = fs::remove_dir(d);
        }
    }
    Ok(())
}

/// Kills what cgroup dir `d` lists: all at once with cgroup.kill (v2, when `whole`), else
/// each process. Returns whether anything was listed.
fn kill_listed(d: &Path, whole: bool) -> bool {
    let left = pids_in(d);
    if left.is_empty() {
        return false;
    }
    let kill = d.join("cgroup.kill");
    if whole && kill.exists() {
        let _ = fs::write(&kill, "1");
    } else {
        for pid in left {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
    true
}

/// Kills every process left in cgroup `path` and waits (up to 5 s) until none is listed;
/// the cgroup stays, for a container started again in it (a shared pid namespace keeps a
/// dead container's orphans alive, under pause). Process by process, never cgroup.kill:
/// on Linux 7.2 a process cloned into a cgroup (CLONE_INTO_CGROUP) after a cgroup.kill of
/// it is killed at once (found by tests/restart.rs in the v2 guest).
pub fn kill_all(h: &Hierarchy, path: &str) -> Result<(), CgroupError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    for (_, d) in h.dirs(path) {
        while kill_listed(&d, false) {
            if Instant::now() >= deadline {
                return Err(CgroupError::Busy(path.to_owned()));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    Ok(())
}

/// v1: freezes the cgroup (a fork loop stops forking), kills every process in it, and
/// thaws it so the killed can exit, as runc does. v2 has cgroup.kill instead; without a
/// freezer the kill loop in `remove` still ends a fork loop, only more slowly.
fn kill_frozen(freezer: &Path, deadline: Instant) {
    let state = freezer.join("freezer.state");
    if fs::write(&state, "FROZEN").is_err() {
        return;
    }
    // FREEZING until every task has stopped; bounded, since killing works either way.
    let frozen_by = (Instant::now() + Duration::from_secs(1)).min(deadline);
    while fs::read_to_string(&state).is_ok_and(|s| s.trim() != "FROZEN") && Instant::now() < frozen_by {
        std::thread::sleep(Duration::from_millis(1));
    }
    for pid in pids_in(freezer) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    let _ = fs::write(&state, "THAWED");
}

/// Removes podrun's top cgroup `top` if nothing is in it (rmdir refuses otherwise).
pub fn prune(h: &Hierarchy, top: &str) {
    for (_, d) in h.dirs(top) {
        let _ = fs::remove_dir(d);
    }
}

/// The cgroups container `name` may have: alone under `top`, or in a sandbox's cgroup:
/// where a container whose state was never written may have left its cgroup.
pub fn find(h: &Hierarchy, top: &str, name: &str) -> Vec<String> {
    let Some((_, dir)) = h.dirs(top).into_iter().next() else { return Vec::new() };
    let mut found = Vec::new();
    let lone = format!("{LONE_PREFIX}{name}");
    if dir.join(&lone).is_dir() {
        found.push(format!("{top}/{lone}"));
    }
    for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
        let sub = e.file_name().to_string_lossy().into_owned();
        if e.path().join(name).is_dir() {
            found.push(format!("{top}/{sub}/{name}"));
        }
    }
    found
}

/// OOM kills in cgroup `path` so far (one file read, for a container's exit).
pub fn oom_kills(h: &Hierarchy, path: &str) -> u64 {
    match h {
        Hierarchy::V2 { .. } => keyed(&read(h, "memory", path, "memory.events").unwrap_or_default(), "oom_kill"),
        Hierarchy::V1 { .. } => keyed(&read(h, "memory", path, "memory.oom_control").unwrap_or_default(), "oom_kill"),
    }
    .unwrap_or(0)
}

/// The limit a cgroup file holds, read back (for `inspect` and tests).
pub fn read(h: &Hierarchy, controller: &str, path: &str, file: &str) -> Option<String> {
    fs::read_to_string(h.dir_of(controller, path)?.join(file)).ok().map(|s| s.trim().to_owned())
}

/// What a cgroup has used, read from either world's files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub memory_bytes: u64,
    /// The limit that binds it: the smallest over the cgroup and its ancestors (a pod's
    /// limit binds a container without its own), as the resource view shows it. None: no
    /// limit.
    pub memory_limit: Option<u64>,
    pub cpu_usec: u64,
    pub throttled_periods: u64,
    pub throttled_usec: u64,
    pub pids: u64,
    pub pids_limit: Option<u64>,
    /// OOM kills in this cgroup so far.
    pub oom_kills: u64,
}

// Kernel files are parsed in one place, shared with the resource view.
use podrun_procfs::snapshot::{keyed_value as keyed, limit as limit_value};

pub fn usage(h: &Hierarchy, path: &str) -> Usage {
    let r = |c: &str, f: &str| read(h, c, path, f).unwrap_or_default();
    match h {
        Hierarchy::V2 { .. } => {
            let cpu = r("cpu", "cpu.stat");
            Usage {
                memory_bytes: r("memory", "memory.current").parse().unwrap_or(0),
                memory_limit: effective_memory_limit(h, path),
                cpu_usec: keyed(&cpu, "usage_usec").unwrap_or(0),
                throttled_periods: keyed(&cpu, "nr_throttled").unwrap_or(0),
                throttled_usec: keyed(&cpu, "throttled_usec").unwrap_or(0),
                pids: r("pids", "pids.current").parse().unwrap_or(0),
                pids_limit: limit_value(&r("pids", "pids.max")),
                oom_kills: keyed(&r("memory", "memory.events"), "oom_kill").unwrap_or(0),
            }
        }
        Hierarchy::V1 { .. } => {
            let cpu = r("cpu", "cpu.stat");
            Usage {
                memory_bytes: r("memory", "memory.usage_in_bytes").parse().unwrap_or(0),
                memory_limit: effective_memory_limit(h, path),
                cpu_usec: r("cpuacct", "cpuacct.usage").parse::<u64>().unwrap_or(0) / 1000,
                throttled_periods: keyed(&cpu, "nr_throttled").unwrap_or(0),
                throttled_usec: keyed(&cpu, "throttled_time").unwrap_or(0) / 1000,
                pids: r("pids", "pids.current").parse().unwrap_or(0),
                pids_limit: limit_value(&r("pids", "pids.max")),
                oom_kills: keyed(&r("memory", "memory.oom_control"), "oom_kill").unwrap_or(0),
            }
        }
    }
}

/// The smallest memory limit over `path` and its ancestors, read as the view reads it
/// (v2: each ancestor's memory.max; v1: the kernel's hierarchical_memory_limit).
fn effective_memory_limit(h: &Hierarchy, path: &str) -> Option<u64> {
    use podrun_procfs::snapshot;
    match h {
        Hierarchy::V2 { mount } => snapshot::memory_v2(mount, path).limit,
        Hierarchy::V1 { controllers, .. } => snapshot::memory_v1(controllers.get("memory")?, path).limit,
    }
}

#[cfg(test)]
mod usage_tests {
    use super::*;

    #[test]
    fn flat_keyed_files_are_read_by_exact_key() {
        let stat = "usage_usec 1500\nuser_usec 1000\nnr_throttled 7\nthrottled_usec 900\n";
        assert_eq!(keyed(stat, "usage_usec"), Some(1500));
        assert_eq!(keyed(stat, "throttled_usec"), Some(900));
        assert_eq!(keyed(stat, "usage"), None, "no prefix matching");
        assert_eq!(keyed("oom 0\noom_kill 2\n", "oom_kill"), Some(2));
    }

    #[test]
    fn unlimited_reads_as_none_in_both_worlds() {
        assert_eq!(limit_value("max\n"), None);
        assert_eq!(limit_value("9223372036854771712"), None);
        assert_eq!(limit_value("33554432"), Some(32 << 20));
    }
}
