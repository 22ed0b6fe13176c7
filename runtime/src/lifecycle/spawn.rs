//! create and start: the init spawned through the join and init stages (clone.rs), waiting
//! on its exec fifo until `start`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;

use super::*;
use crate::clone;
use crate::exec;
use crate::mount::rootfs;
use crate::ns;
use crate::proc::ProcRef;
use crate::state;
use crate::sync::{ChildError, Stage, StageError};

/// Creates the container, then starts it. The fifo is made and opened to read before the
/// init waits on it, so the init goes on to its exec as soon as it is ready, as if create
/// and start were one step (fifo::open_start); a create of its own (the OCI commands) only
/// makes it, and the init waits for a start by another process.
pub(crate) fn launch(p: &Prepared) -> Result<clone::Spawned, ContainerError> {
    use crate::lifecycle::fifo::{self, StartError};
    let dir = &p.rootfs.dir;
    let start_err = |source| ContainerError::Start { id: p.state.id.to_string(), source };
    let created = fifo::make(dir)
        .map_err(io("make the exec fifo"))
        .and_then(|path| Ok((fifo::open_start(dir).map_err(start_err)?, path)))
        .and_then(|(reader, path)| Ok((create(p, &path)?, reader)));
    // The child's binds of the view's files are done (or failed) once create returns.
    if let Some(l) = &p.view_lock {
        l.unlock();
    }
    let (spawned, reader) = created?;
    let started = match ProcRef::of(spawned.pid.as_raw()) {
        Some(init) => fifo::finish_start(reader, dir, &init),
        None => Err(StartError::InitGone),
    };
    match started {
        Ok(()) => Ok(spawned),
        // Killed before it was started (a `kill` of a starting container): its end is the
        // run's end, which the caller waits for, as for a workload killed a moment later.
        Err(StartError::InitGone) => Ok(spawned),
        Err(source) => {
            let _ = nix::sys::signal::kill(spawned.pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(spawned.pid, None);
            Err(start_err(source))
        }
    }
}

/// Spawns the container's init, which does everything but its exec and waits on the exec
/// fifo (`fifo`, an O_PATH descriptor of it: lifecycle/fifo.rs) for `start`; returns once
/// it waits, its pid recorded in the state.
pub(crate) fn create(p: &Prepared, fifo: &OwnedFd) -> Result<clone::Spawned, ContainerError> {
    let pause_fd: Option<OwnedFd> = match &p.join {
        Some((pause, _)) => {
            Some(pause.pidfd().map_err(|_| ContainerError::SandboxDown(p.state.sandbox.clone().unwrap_or_default()))?)
        }
        None => None,
    };
    let share_pid = p.join.is_some_and(|(_, s)| s);
    let standalone = p.join.is_none();
    // The resource view's files count from the container's (or a shared pid namespace's
    // pod's) start: so does its clock (ns.rs).
    let clock = p.view.is_some();
    // Connected to its agent here, while the host's paths are in reach.
    let seccomp = crate::seccomp::Filter::prepare(&p.spec, &p.state.id, &p.rootfs.dir)?;
    let merged = std::cell::OnceCell::new();
    let pid = clone::spawn(
        p.entry.clone_into(),
        |placed| {
            // Into the container's cgroup first: as the host's root (before any user
            // namespace), and before unsharing the cgroup namespace, so that cgroup is the
            // namespace's root.
            p.entry.join(placed).map_err(StageError::at(Stage::Join, "enter the container's cgroup"))?;
            // A bundle's spec names its namespaces itself.
            if let Some(plan) = &p.namespaces {
                // With the view, a new pid namespace gets a clock of its own too.
                let clock = clock && plan.makes(CloneFlags::CLONE_NEWPID);
                if plan.enter(clock).map_err(StageError::at(Stage::Join, "enter the spec's namespaces"))? {
                    ns::start_clock()
                        .map_err(StageError::at(Stage::Join, "set the container's clock (timens_offsets)"))?;
                }
                return Ok(());
            }
            if let Some(fd) = &pause_fd {
                ns::join(fd, share_pid, p.join_userns, clock)
                    .map_err(StageError::at(Stage::Join, "setns into the sandbox"))?;
            }
            // A lone container's user namespace before the namespaces it owns.
            if let Some(u) = &p.userns {
                crate::idmap::enter(u.as_fd()).map_err(StageError::at(Stage::Join, "enter the user namespace"))?;
            }
            let own = ns::own_flags(share_pid, standalone, clock);
            if ns::unshare_with_clock(own).map_err(StageError::at(Stage::Join, "unshare"))? {
                ns::start_clock().map_err(StageError::at(Stage::Join, "set the container's clock (timens_offsets)"))?;
            }
            if p.premade.userns {
                // The rootfs's mount point, in the new mount namespace, while still the
                // host's uid 0 (see idmap::become_root).
                let dir = nix::fcntl::open(
                    &p.rootfs.merged,
                    nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(StageError::at(Stage::Join, format!("open {}", p.rootfs.merged.display())))?;
                let _ = merged.set(dir);
                crate::idmap::become_root()
                    .map_err(StageError::at(Stage::Join, "become root in the user namespace"))?;
            }
            Ok(())
        },
        |sync| init_stage(p, standalone, merged.get(), seccomp.as_ref(), fifo, sync),
        // Recorded before the workload may run: whatever happens to podrun from here on,
        // the state names the process, so `rm -f` can always stop it.
        |pid| {
            let mut st = p.state.clone();
            st.init = ProcRef::of(pid.as_raw());
            state::write_json(&p.rootfs.dir, "state.json", &st).map_err(|e| ChildError {
                stage: Stage::State,
                errno: e.raw_os_error().unwrap_or(libc::EIO),
                message: format!("write {}: {e}", p.rootfs.dir.join("state.json").display()),
            })
        },
    )?;
    Ok(pid)
}

fn init_stage(
    p: &Prepared,
    standalone: bool,
    merged: Option<&OwnedFd>,
    seccomp: Option<&crate::seccomp::Filter>,
    fifo: &OwnedFd,
    sync: &crate::sync::ChildEnd,
) -> StageError {
    let run = || -> Result<(), StageError> {
        clone::reset_signals();
        nix::unistd::setsid().map_err(StageError::at(Stage::Init, "setsid"))?;
        if !p.interactive {
            let null = nix::fcntl::open("/dev/null", nix::fcntl::OFlag::O_RDONLY, nix::sys::stat::Mode::empty())
                .map_err(StageError::at(Stage::Init, "open /dev/null"))?;
            // SAFETY: dup2 onto stdin.
            Errno::result(unsafe { libc::dup2(null.as_raw_fd(), 0) }).map_err(StageError::at(Stage::Init, "dup2"))?;
        }
        let (new_uts, new_net) = match &p.namespaces {
            Some(plan) => (plan.makes(CloneFlags::CLONE_NEWUTS), plan.makes(CloneFlags::CLONE_NEWNET)),
            None => (standalone, standalone),
        };
        if new_uts {
            if let Some(h) = p.spec.hostname().as_deref().filter(|h| standalone || !h.is_empty()) {
                nix::unistd::sethostname(h).map_err(StageError::at(Stage::Init, "sethostname"))?;
            }
        }
        if new_net {
            sandbox_loopback()?;
        }
        let view = p.view.as_ref().map(|(d, f)| (d.as_path(), f.as_path()));
        rootfs::prepare(&p.rootfs, &p.spec, &p.premade, merged, view)?;
        if p.spec.process().as_ref().is_some_and(|pr| pr.terminal().unwrap_or(false)) {
            crate::terminal::attach_console(sync)?;
        }
        Ok(())
    };
    if let Err(e) = run() {
        return e;
    }
    exec_process(p.spec.process().as_ref(), seccomp, Some(fifo), p.preserve_fds, sync)
}

fn sandbox_loopback() -> Result<(), StageError> {
    crate::ns::loopback_up().map_err(StageError::at(Stage::Init, "bring up lo"))
}

/// Identity, caps, cwd, fds, then execve of the spec's process (returns only on failure).
/// With an exec fifo (a container's init), it waits for `start` before the exec; an exec
/// that fails after that is said on the workload's stderr, and ends the init with the
/// shell's status (127 not found, 126 cannot execute): `create` has returned by then.
pub(crate) fn exec_process(
    process: Option<&oci_spec::runtime::Process>,
    seccomp: Option<&crate::seccomp::Filter>,
    fifo: Option<&OwnedFd>,
    preserve_fds: u32,
    sync: &crate::sync::ChildEnd,
) -> StageError {
    let Some(process) = process else { return StageError::new(Stage::Exec, Errno::EINVAL, "the spec has no process") };
    if let Err(e) = exec::setup_process(process, seccomp) {
        return e;
    }
    let args = process.args().clone().unwrap_or_default();
    let env = process.env().clone().unwrap_or_default();
    let Some(arg0) = args.first() else {
        return StageError::new(Stage::Exec, Errno::EINVAL, "the spec has no command");
    };
    let file = match exec::find_executable(arg0, &env).and_then(|f| exec::check_executable(&f).map(|()| f)) {
        Ok(f) => f,
        Err(e) => return e,
    };
    if let Err(e) = exec::close_fds_on_exec(preserve_fds) {
        return e;
    }
    if !sync.wait_go() {
        return StageError::new(Stage::Exec, Errno::ECANCELED, "podrun went away before the container started");
    }
    let Some(fifo) = fifo else { return exec::execve(&file, &args, &env) };
    if let Err(e) = crate::lifecycle::fifo::wait_for_start(fifo, sync) {
        // `create` has returned: the container's stderr is where this can be said.
        eprintln!("podrun: {}", e.message);
        // SAFETY: the init stage ends here, as clone.rs's children do.
        unsafe { libc::_exit(125) }
    }
    let e = exec::execve(&file, &args, &env);
    eprintln!("podrun: {}", e.message);
    let code = ChildError::from(e).exit_code().unwrap_or(126);
    // SAFETY: the init stage ends here, as clone.rs's children do.
    unsafe { libc::_exit(code as i32) }
}
