//! Pausing a cgroup's processes: the v1 freezer (`freezer.state`) or v2's `cgroup.freeze`,
//! for the OCI `pause` and `resume`.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{io, CgroupError, Hierarchy};

/// The file that freezes cgroup `path`, and the words that mean frozen and thawed.
fn control(h: &Hierarchy, path: &str) -> Option<(PathBuf, &'static str, &'static str)> {
    match h {
        Hierarchy::V2 { .. } => h.dir_of("", path).map(|d| (d.join("cgroup.freeze"), "1", "0")),
        Hierarchy::V1 { .. } => h.dir_of("freezer", path).map(|d| (d.join("freezer.state"), "FROZEN", "THAWED")),
    }
}

/// Freezes (`frozen`) or thaws every process of cgroup `path`, and waits (up to 5 s) until
/// the kernel says it is done: a paused container's processes have all stopped.
pub fn freeze(h: &Hierarchy, path: &str, frozen: bool) -> Result<(), CgroupError> {
    let (file, on, off) = control(h, path).ok_or_else(|| CgroupError::NoFreezer(path.to_owned()))?;
    fs::write(&file, if frozen { on } else { off }).map_err(io("write", &file))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while is_frozen(h, path) != frozen {
        if Instant::now() >= deadline {
            return Err(CgroupError::FreezeTimeout(path.to_owned()));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Whether cgroup `path` is frozen (all of it: v1's FREEZING is not yet).
pub fn is_frozen(h: &Hierarchy, path: &str) -> bool {
    match h {
        Hierarchy::V2 { .. } => h
            .dir_of("", path)
            .and_then(|d| fs::read_to_string(d.join("cgroup.events")).ok())
            .is_some_and(|e| e.lines().any(|l| l == "frozen 1")),
        Hierarchy::V1 { .. } => h
            .dir_of("freezer", path)
            .and_then(|d| fs::read_to_string(d.join("freezer.state")).ok())
            .is_some_and(|s| s.trim() == "FROZEN"),
    }
}
