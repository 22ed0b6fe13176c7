//! A container's cgroups made, entered, emptied and removed, under podrun's own top only.

use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use podrun_cgroup::{UNIFIED, V2_CONTROLLERS};

use super::*;

/// The cgroup of a sandbox's pause: `<top>/<sandbox>/pause`, beside its containers'.
pub const PAUSE: &str = "pause";
/// Prefix of the cgroup of a container without a sandbox: `<top>/container@<name>`.
pub const LONE_PREFIX: &str = "container@";

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
    set_limits(h, path, limits)
}

/// Writes `limits` into existing cgroup `path` (at create, and the OCI `update`); limits
/// it does not name stay as they are.
pub fn set_limits(h: &Hierarchy, path: &str, limits: &Limits) -> Result<(), CgroupError> {
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

/// The processes in cgroup `path` (in any hierarchy it is in; each once).
pub fn pids(h: &Hierarchy, path: &str) -> Vec<i32> {
    let mut v: Vec<i32> = h.dirs(path).iter().flat_map(|(_, d)| pids_in(d)).collect();
    v.sort_unstable();
    v.dedup();
    v
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
