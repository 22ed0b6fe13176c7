//! Cgroups as podrun makes them: limit values parsed the way docker reads them and the
//! files each becomes in either world (limits.rs, pure, tested on fixtures); a container's
//! cgroups made, entered and removed under podrun's own top only (tree.rs); frozen and
//! thawed, for the OCI `pause` and `resume` (freezer.rs); what a cgroup uses, for `stats`
//! (usage.rs).
//!
//! Where the hierarchies are (pure v2, or v1 controllers with an optional cgroup2 mount:
//! hybrid), which controllers podrun uses, and how a cgroup's numbers read are not here:
//! they are podrun-cgroup's, the one model the resource view uses too.

use std::path::{Path, PathBuf};

mod freezer;
mod limits;
mod tree;
mod usage;

pub use freezer::*;
pub use limits::*;
pub use podrun_cgroup::{Hierarchy, HostError};
pub use tree::*;
pub use usage::*;

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
    #[error("invalid io weight {0:?}: 1 to 10000")]
    IoWeight(String),
    #[error("invalid device rate {0:?}: use DEVICE:RATE, e.g. /dev/sda:1m, with a block device")]
    DeviceRate(String),
    #[error("io limits need cgroup v2; this host's io controller is on cgroup v1")]
    IoNeedsV2,
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
