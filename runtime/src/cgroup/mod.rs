//! Cgroups: which cgroup world this host is (pure v2, or v1 controllers with an optional
//! cgroup2 mount: hybrid), and where each controller's directory of a cgroup is (here);
//! limit values parsed the way docker reads them and the files each becomes in either world
//! (limits.rs, pure, tested on fixtures); a container's cgroups made, entered and removed
//! under podrun's own top only (tree.rs); what a cgroup uses, for `stats` (usage.rs).
//!
//! Detection reads mountinfo text given to it, so it is tested on fixtures of both worlds.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

mod freezer;
mod limits;
mod tree;
mod usage;

pub use freezer::*;
pub use limits::*;
pub use tree::*;
pub use usage::*;

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
    #[error("invalid CPU count {0:?}: a positive number of CPUs, e.g. 0.5 or 2")]
    Cpus(String),
    #[error("invalid CPU shares {0:?}: 2 to 262144")]
    Shares(String),
    #[error("invalid pids limit {0:?}: a positive number, or -1 for no limit")]
    Pids(String),
    #[error("no cgroup hierarchy found in /proc/self/mountinfo")]
    NoHierarchy,
    #[error("invalid io weight {0:?}: 1 to 10000")]
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
    #[error("cgroup {0} has no freezer (v1 freezer controller or v2 cgroup.freeze)")]
    NoFreezer(String),
    #[error("cgroup {0} did not finish freezing or thawing within 5 s")]
    FreezeTimeout(String),
}

fn unsupported_why(file: &str) -> &'static str {
    if file == "io.weight" {
        " (neither the iocost controller nor the BFQ scheduler)"
    } else {
        " (its controller is not available here)"
    }
}

pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError {
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

    pub(crate) fn dir_of(&self, controller: &str, path: &str) -> Option<PathBuf> {
        let rel = path.trim_start_matches('/');
        match self {
            Hierarchy::V2 { mount } => Some(mount.join(rel)),
            Hierarchy::V1 { unified: Some(u), .. } if controller == UNIFIED => Some(u.join(rel)),
            Hierarchy::V1 { controllers, .. } => controllers.get(controller).map(|m| m.join(rel)),
        }
    }
}
