//! state, kill and delete: a container's record, its status, signals, removal, and what a
//! start that failed or a run that ended leaves to clean up or record.

use std::fs;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{fork, ForkResult};

use super::*;
use crate::cgroup;
use crate::ids::ContainerId;
use crate::image::Store;
use crate::state::{self, ContainerState, ExitInfo, Paths};

/// The top cgroup a container's cgroup was made under.
pub(crate) fn top_of(paths: &Paths, c: &ContainerState) -> String {
    c.cgroup_top.clone().unwrap_or_else(|| paths.cgroup_top())
}

/// Removes what a container start made (its cgroup, rootfs and state), after a failure.
pub(crate) fn discard(paths: &Paths, store: &Store, state: &ContainerState) {
    if let (Some(cg), Ok(h)) = (&state.cgroup, cgroup::Hierarchy::host()) {
        let _ = cgroup::remove(&h, &top_of(paths, state), cg);
    }
    let _ = store.remove_rootfs(&state.id);
    release_userns(paths, state);
    crate::procview::release_if_unused(paths);
}

/// Gives a lone container's id range back to the pool.
fn release_userns(paths: &Paths, state: &ContainerState) {
    if state.userns.is_some() {
        crate::idmap::release(&paths.userns(), &format!("container/{}", state.id));
    }
}

/// Docker's OOMKilled: the cgroup's OOM kill count (cumulative, read while the cgroup
/// exists) rose past `before`, its value when the run started.
pub(crate) fn oom_killed(st: &ContainerState, before: u64) -> bool {
    match (&st.cgroup, cgroup::Hierarchy::host()) {
        (Some(cg), Ok(h)) => cgroup::oom_kills(&h, cg) > before,
        _ => false,
    }
}

/// Records how the container ended, under its lock; if `rm` removed it meanwhile (its
/// directory or state.json is gone), there is nothing to record. With `background`, a
/// --rm container's removal is left to a child, which also drops `mounts` (see
/// `run_foreground`).
pub(crate) fn record_exit(
    paths: &Paths,
    store: &Store,
    id: &str,
    mut exit: ExitInfo,
    background: bool,
    mounts: Option<fs::File>,
    oom_before: u64,
) -> ExitInfo {
    let dir = paths.container(id);
    let Ok(lock) = state::lock(&dir) else { return exit };
    let Ok(mut st) = state::read_json::<ContainerState>(&dir.join("state.json")) else { return exit };
    exit.oom_killed = oom_killed(&st, oom_before);
    st.exit = Some(exit);
    if !st.auto_remove {
        let _ = state::write_json(&dir, "state.json", &st);
        return exit;
    }
    drop(lock);
    release_userns(paths, &st);
    if !background {
        let _ = remove_state(paths, store, &st, true);
        return exit;
    }
    // `run --rm` in the foreground: the name is free once the rootfs is renamed into the
    // store's tmp/; removing its cgroup and deleting its files is left to a child, so podrun
    // returns the workload's status without waiting for either (nothing stays mounted: the
    // container's mounts went with its mount namespace).
    let Ok(cid) = ContainerId::parse(id) else { return exit };
    let Ok(trash) = store.retire_rootfs(&cid) else { return exit };
    let top = top_of(paths, &st);
    // SAFETY: single-threaded; the child only removes a cgroup and a directory and _exits.
    // Its parent, this podrun, exits right after, so PID 1 reaps it.
    if let Ok(ForkResult::Child) = unsafe { fork() } {
        let _ = nix::unistd::setsid();
        // The last reference: the container's mounts go now, before its upper dir does.
        drop(mounts);
        if let (Some(cg), Ok(h)) = (&st.cgroup, cgroup::Hierarchy::host()) {
            let _ = cgroup::remove(&h, &top, cg);
        }
        let _ = fs::remove_dir_all(&trash);
        crate::procview::release_if_unused(paths);
        // SAFETY: see clone.rs: children _exit.
        unsafe { libc::_exit(0) }
    }
    exit
}

/// The container's state, by name.
pub fn load(paths: &Paths, id: &str) -> Result<ContainerState, ContainerError> {
    let cid = ContainerId::parse(id)?;
    let dir = paths.container(cid.as_str());
    let mut c: ContainerState =
        state::read_json(&dir.join("state.json")).map_err(|_| ContainerError::NotFound(id.to_owned()))?;
    c.dir = Some(dir);
    Ok(c)
}

pub use crate::lifecycle::status::Status;

/// Recomputed from liveness on every call (lifecycle::status).
pub fn status(c: &ContainerState) -> Status {
    crate::lifecycle::status::Facts::of(c).status()
}

/// Whether the process that records the container's exits (and applies its restart
/// policy) still runs.
pub fn supervised(c: &ContainerState) -> bool {
    c.monitor.is_some_and(|m| m.alive())
}

/// Ends a detached container's monitor (never a foreground podrun: that is the user's).
/// Called under the container's lock, so the monitor is not in the middle of a start.
fn stop_monitor(c: &ContainerState) {
    if let Some(m) = c.monitor.filter(|m| c.detached && m.pid != std::process::id() as i32 && m.alive()) {
        let _ = m.signal(Signal::SIGKILL);
        m.wait_gone(Duration::from_secs(2));
    }
}

/// Signals with which `kill` stops a container for good: its restart policy no longer
/// applies (docker's "manually stopped"). Other signals are only delivered.
const STOP_SIGNALS: [Signal; 3] = [Signal::SIGKILL, Signal::SIGTERM, Signal::SIGINT];

pub fn list(paths: &Paths) -> Vec<ContainerState> {
    let mut v: Vec<ContainerState> =
        state::list(&paths.containers()).iter().filter_map(|c| load(paths, c).ok()).collect();
    v.sort_by_key(|c| std::cmp::Reverse(c.created));
    v
}

/// Signals a container's init. KILL, TERM and INT also stop it for good (no restart); a
/// container in back-off is stopped for good by any signal (there is no process to get it).
pub fn kill(paths: &Paths, id: &str, sig: Signal) -> Result<(), ContainerError> {
    let dir = paths.container(ContainerId::parse(id)?.as_str());
    let _lock = state::lock(&dir).map_err(|_| ContainerError::NotFound(id.to_owned()))?;
    let mut c = load(paths, id)?;
    match status(&c) {
        // A created one's init gets the signal as a running one's workload would (runc's).
        Status::Created | Status::Running => {
            if c.restart.is_some() && STOP_SIGNALS.contains(&sig) && !c.stopped {
                c.stopped = true;
                state::write_json(&dir, "state.json", &c).map_err(io(format!("write the state of {id}")))?;
            }
            let init = c.init.ok_or_else(|| ContainerError::NotRunning(id.to_owned()))?;
            init.signal(sig).map_err(|_| ContainerError::NotRunning(id.to_owned()))
        }
        // The monitor is about to record the exit: it finds the stop and does not restart.
        Status::Exiting if c.restart.is_some() => {
            c.stopped = true;
            state::write_json(&dir, "state.json", &c).map_err(io(format!("write the state of {id}")))?;
            Ok(())
        }
        Status::BackOff { .. } => {
            c.stopped = true;
            c.next_try_ms = None;
            state::write_json(&dir, "state.json", &c).map_err(io(format!("write the state of {id}")))?;
            stop_monitor(&c);
            Ok(())
        }
        _ => Err(ContainerError::NotRunning(id.to_owned())),
    }
}

/// Stops (with `force`) and removes a container: its process, rootfs and state. Holds the
/// container's lock throughout, so its monitor records nothing into a half-removed dir.
pub fn remove_state(paths: &Paths, store: &Store, c: &ContainerState, force: bool) -> Result<(), ContainerError> {
    let dir = paths.container(&c.id);
    let _lock = state::lock(&dir).map_err(io(format!("lock container {}", c.id)))?;
    // Read again under the lock: a monitor may have started it again meanwhile.
    let fresh = state::read_json::<ContainerState>(&dir.join("state.json"));
    let c = fresh.as_ref().unwrap_or(c);
    match status(c) {
        Status::Running if !force => return Err(ContainerError::Running(c.id.to_string())),
        Status::BackOff { .. } if !force => return Err(ContainerError::BackingOff(c.id.to_string())),
        _ => {}
    }
    if let Some(init) = c.init.filter(|i| i.alive()) {
        let _ = init.signal(Signal::SIGKILL);
        init.wait_gone(Duration::from_secs(10));
    }
    stop_monitor(c);
    if let Some(cg) = &c.cgroup {
        cgroup::remove(&cgroup::Hierarchy::host()?, &top_of(paths, c), cg)?;
    }
    store.remove_rootfs(&c.id)?;
    release_userns(paths, c);
    crate::procview::release_if_unused(paths);
    Ok(())
}

pub fn remove(paths: &Paths, store: &Store, id: &str, force: bool) -> Result<(), ContainerError> {
    let cid = ContainerId::parse(id)?;
    match load(paths, id) {
        Ok(c) => remove_state(paths, store, &c, force),
        // A container whose start was interrupted has a directory but no state: rm -f
        // cleans that up too.
        Err(e) if force && paths.container(cid.as_str()).exists() => {
            let top = paths.cgroup_top();
            let h = cgroup::Hierarchy::host()?;
            for cg in cgroup::find(&h, &top, cid.as_str()) {
                cgroup::remove(&h, &top, &cg)?;
            }
            // A start killed while it made its cgroup may have made only the top.
            cgroup::prune(&h, &top);
            let removed = store.remove_rootfs(&cid).map_err(|_| e);
            crate::idmap::release(&paths.userns(), &format!("container/{cid}"));
            crate::procview::release_if_unused(paths);
            removed
        }
        Err(e) => Err(e),
    }
}
