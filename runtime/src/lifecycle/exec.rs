//! exec: a new process in a running container.

use std::fs;
use std::os::fd::AsRawFd;

use oci_spec::runtime::Spec;

use super::spawn::exec_process;
use super::*;
use crate::cgroup;
use crate::clone::{self, Signals};
use crate::ns;
use crate::state::{self, ContainerState, ExitInfo, Paths};
use crate::sync::Stage;
use crate::sync::StageError;

/// `podrun exec`: a new process in every namespace of a running container, with its root,
/// cwd, user, capabilities and environment (plus `env`).
pub fn exec_in(
    paths: &Paths,
    id: &str,
    command: Vec<String>,
    env: Vec<String>,
    interactive: bool,
    tty: bool,
) -> Result<ExitInfo, ContainerError> {
    let c = load(paths, id)?;
    let spec: Spec = state::read_json(&paths.container(id).join("config.json")).map_err(io("read config.json"))?;
    let mut process = spec.process().clone().ok_or_else(|| ContainerError::NotRunning(id.to_owned()))?;
    let mut full_env = process.env().clone().unwrap_or_default();
    for e in env {
        let key = e.split('=').next().unwrap_or(&e).to_owned();
        full_env.retain(|x| x.split('=').next() != Some(key.as_str()));
        full_env.push(e);
    }
    if tty && !full_env.iter().any(|e| e.starts_with("TERM=")) {
        full_env.push(crate::spec::TERM.to_owned());
    }
    process.set_args(Some(command));
    process.set_env(Some(full_env));
    process.set_terminal(Some(tty));
    match exec_into(&c, &spec, &paths.container(id), process, interactive, false, 0)? {
        Exec::Waited(exit) => Ok(exit),
        Exec::Detached(_) => unreachable!("exec_into waits unless detached"),
    }
}

/// How an exec ended, or (detached) what it started.
pub enum Exec {
    Waited(ExitInfo),
    /// The process's pid, and its terminal's master (process.terminal).
    Detached(clone::Spawned),
}

/// Runs `process` in container `c` (its state in `dir`, its spec `spec`): in every
/// namespace of its init, its cgroup, its seccomp filter. Waits for it and returns how it
/// ended, or with `detach` returns once it has exec'd (the OCI `exec --detach`: the
/// caller's subreaper becomes its parent).
pub fn exec_into(
    c: &ContainerState,
    spec: &Spec,
    dir: &std::path::Path,
    process: oci_spec::runtime::Process,
    interactive: bool,
    detach: bool,
    preserve_fds: u32,
) -> Result<Exec, ContainerError> {
    let id = c.id.as_str();
    let init = c.init.filter(|i| i.alive()).ok_or_else(|| ContainerError::NotRunning(id.to_owned()))?;
    let tty = process.terminal().unwrap_or(false);
    let pidfd = init.pidfd().map_err(|_| ContainerError::NotRunning(id.to_owned()))?;
    // Its user namespace, when it is not ours (setns refuses to re-enter one's own).
    let userns = ns::inode(init.pid, ns::NsKind::User) != ns::inode(std::process::id() as i32, ns::NsKind::User);
    // Its clock likewise (a container with the resource view has one of its own).
    let clock = ns::inode(init.pid, ns::NsKind::Time) != ns::inode(std::process::id() as i32, ns::NsKind::Time);
    let entry = match &c.cgroup {
        Some(cg) => Some(cgroup::Entry::open(&cgroup::Hierarchy::host()?, cg)?),
        None => None,
    };
    let seccomp = crate::seccomp::Filter::prepare(spec, id, dir)?;
    let mut signals = None;
    if !detach {
        clone::set_subreaper().map_err(|e| io("become a subreaper")(e.into()))?;
        signals = Some(Signals::block(true).map_err(|e| io("block signals")(e.into()))?);
    }
    let spawned = clone::spawn(
        entry.as_ref().and_then(|e| e.clone_into()),
        |placed| {
            // The container's cgroup first: the exec'd process counts against its limits.
            if let Some(e) = &entry {
                e.join(placed).map_err(StageError::at(Stage::Join, "enter the container's cgroup"))?;
            }
            ns::enter_all(&pidfd, userns, clock).map_err(StageError::at(Stage::Join, "setns into the container"))
        },
        |sync| {
            clone::reset_signals();
            if userns {
                if let Err(e) = crate::idmap::become_root()
                    .map_err(StageError::at(Stage::Exec, "become root in the user namespace"))
                {
                    return e;
                }
            }
            if !interactive {
                if let Ok(null) = fs::File::open("/dev/null") {
                    // SAFETY: dup2 onto stdin.
                    unsafe { libc::dup2(null.as_raw_fd(), 0) };
                }
            }
            if tty {
                if let Err(e) = nix::unistd::setsid()
                    .map_err(StageError::at(Stage::Exec, "setsid"))
                    .and_then(|_| crate::terminal::attach_console(sync))
                {
                    return e;
                }
            }
            exec_process(Some(&process), seccomp.as_ref(), None, preserve_fds, sync)
        },
        |_| Ok(()),
    )?;
    let Some(mut signals) = signals else { return Ok(Exec::Detached(spawned)) };
    Ok(Exec::Waited(match spawned.terminal {
        Some(master) => crate::terminal::proxy(master, &mut signals, spawned.pid),
        None => signals.wait(spawned.pid),
    }))
}
