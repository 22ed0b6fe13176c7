//! Containers: `run` (in a sandbox, or with namespaces of their own), `exec`, `kill`, `rm`,
//! `ps`, `logs`. The start path: resolve the image and sandbox, create the rootfs dirs,
//! build the OCI spec, spawn (clone.rs) with the join stage entering the sandbox and the init
//! stage building the mounts (mount/rootfs.rs) and the process (exec.rs); then wait in the
//! foreground, or hand the waiting to a detached monitor that records the exit status.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use nix::errno::Errno;

use nix::sys::signal::Signal;
use nix::unistd::{fork, ForkResult};
use oci_spec::runtime::Spec;

use crate::cgroup;
use crate::clone::{self, Signals};
use crate::exec;
use crate::ids::{self, ContainerId};
use crate::image::{self, Rootfs, Store};
use crate::mount::rootfs;
use crate::ns;
use crate::proc::ProcRef;
use crate::restart::{Policy, Restart};
use crate::sandbox;
use crate::spec::{self, Join, RunOptions};
use crate::state::{self, now, ContainerState, ExitInfo, Paths, ViewMode};
use crate::sync::{ChildError, StageError};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Image(#[from] image::Error),
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error(transparent)]
    User(#[from] exec::UserError),
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    #[error(transparent)]
    BadName(#[from] ids::BadId),
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error(transparent)]
    View(#[from] crate::procview::ViewError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error(transparent)]
    IdMap(#[from] crate::idmap::IdMapError),
    #[error("a container that joins a sandbox has the sandbox's user namespace: give --userns, --uidmap or --gidmap to `podrun sandbox create` instead")]
    UsernsWithJoin,
    #[error("sandbox {0} is not running (its pause process is gone); remove it with `podrun sandbox rm -f {0}`")]
    SandboxDown(String),
    #[error("the container name {0} is already in use; remove it with `podrun rm {0}` or choose another --name")]
    NameInUse(String),
    #[error("no such container: {0} (see `podrun ps -a`)")]
    NotFound(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} is running; stop it first, or use -f")]
    Running(String),
    #[error("container {0} is in back-off, waiting to be started again by its restart policy; stop it first (`podrun kill {0}`), or use -f")]
    BackingOff(String),
    #[error("--restart needs -d: a container that is started again runs in the background, its output in `podrun logs` (without --restart it can run in the foreground)")]
    RestartNeedsDetach,
    #[error("--restart cannot be combined with --rm: a container removed when it exits cannot be started again")]
    RestartWithRm,
    #[error("container {0} is already running; `podrun ps` shows its status")]
    AlreadyRunning(String),
    #[error("container {0} ran with a terminal (-t); `podrun start` starts only containers without one: run it again with `podrun run -it`")]
    StartTerminal(String),
    #[error("{0} is the name of the sandbox's own pause process; choose another --name")]
    ReservedName(String),
    #[error("volume source {0} does not exist; create it first")]
    NoVolumeSource(String),
    #[error(transparent)]
    Child(#[from] ChildError),
    #[error("cannot start container {id}: {source}")]
    Start { id: String, source: crate::lifecycle::fifo::StartError },
    #[error("{op}")]
    Io { op: String, source: std::io::Error },
}

impl ContainerError {
    /// docker's exit codes: 127 command not found, 126 cannot execute, 125 podrun's own.
    pub fn exit_code(&self) -> u8 {
        match self {
            ContainerError::Child(c) => c.exit_code().unwrap_or(125),
            _ => 125,
        }
    }
}

pub(crate) fn io(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContainerError {
    let op = op.into();
    move |source| ContainerError::Io { op, source }
}

/// What `podrun run` asks for.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub image: String,
    pub name: Option<String>,
    pub join: Option<String>,
    pub detach: bool,
    pub auto_remove: bool,
    pub interactive: bool,
    pub user: Option<String>,
    pub options: RunOptions,
    pub limits: cgroup::Limits,
    /// The resource view: None takes the sandbox's setting (on without a sandbox).
    pub procview: Option<crate::state::ViewMode>,
    /// A lone container's own user namespace (a joined one has its sandbox's).
    pub userns: crate::idmap::UsernsMode,
    pub pool: crate::idmap::Pool,
    /// `--restart` and `--restart-backoff` (None: never).
    pub restart: Option<Restart>,
}

/// How a `run` ended, for the CLI.
pub enum RunOutcome {
    Detached(String),
    Exited(ExitInfo),
}

/// Everything one start of a container needs, made before anything is spawned.
pub(crate) struct Prepared {
    pub(crate) state: ContainerState,
    spec: Spec,
    pub(crate) rootfs: Rootfs,
    join: Option<(ProcRef, bool)>,
    interactive: bool,
    /// How the join stage enters the container's cgroup.
    entry: cgroup::Entry,
    /// A lone container's new user namespace, for the join stage to enter.
    userns: Option<OwnedFd>,
    /// The sandbox has a user namespace: the join stage enters it with the others.
    join_userns: bool,
    /// Mounts made here for a container in a user namespace.
    premade: rootfs::Premade,
    /// The view's directory and its binds' lock file (rootfs::ViewLock), if it has the view.
    view: Option<(PathBuf, PathBuf)>,
    /// The lock, held from `premade`'s clones of the view's files until the spawn is done.
    view_lock: Option<rootfs::ViewLock>,
    /// Made by this `run` (a failed start removes it); false: started again (a failed
    /// start is recorded as its exit, and it stays).
    pub(crate) fresh: bool,
    /// OOM kills its cgroup has seen before this start (the kernel's count is cumulative).
    pub(crate) oom_before: u64,
}

/// The top cgroup a container's cgroup was made under.
pub(crate) fn top_of(paths: &Paths, c: &ContainerState) -> String {
    c.cgroup_top.clone().unwrap_or_else(|| paths.cgroup_top())
}

/// Removes what a container start made (its cgroup, rootfs and state), after a failure.
pub(crate) fn discard(paths: &Paths, store: &Store, state: &ContainerState) {
    if let (Some(cg), Ok(h)) = (&state.cgroup, cgroup::Hierarchy::host()) {
        let _ = cgroup::remove(&h, &top_of(paths, state), cg);
    }
    if let Ok(id) = ContainerId::parse(&state.id) {
        let _ = store.remove_rootfs(&id);
    }
    release_userns(paths, state);
    crate::procview::release_if_unused(paths);
}

/// Gives a lone container's id range back to the pool.
fn release_userns(paths: &Paths, state: &ContainerState) {
    if state.userns.is_some() {
        crate::idmap::release(&paths.userns(), &format!("container/{}", state.id));
    }
}

pub fn run(paths: &Paths, store: &Store, req: RunRequest) -> Result<RunOutcome, ContainerError> {
    let id = ContainerId::parse(&req.name.clone().unwrap_or_else(|| ids::generate("")))?;
    let image = store.resolve(&req.image)?;
    let sb = match &req.join {
        Some(name) => {
            let sb = sandbox::load(paths, name)?;
            if !sb.pause.alive() {
                return Err(ContainerError::SandboxDown(name.clone()));
            }
            Some(sb)
        }
        None => None,
    };
    for v in &req.options.volumes {
        if !v.host.exists() {
            return Err(ContainerError::NoVolumeSource(v.host.display().to_string()));
        }
    }
    if sb.is_some() && id.as_str() == cgroup::PAUSE {
        return Err(ContainerError::ReservedName(id.to_string()));
    }
    if sb.is_some() && req.userns != crate::idmap::UsernsMode::Host {
        return Err(ContainerError::UsernsWithJoin);
    }
    let restart = req.restart.filter(|r| r.policy != Policy::Never);
    if restart.is_some() && !req.detach {
        return Err(ContainerError::RestartNeedsDetach);
    }
    if restart.is_some() && req.auto_remove {
        return Err(ContainerError::RestartWithRm);
    }
    let rootfs = store.create_rootfs(&id, &image).map_err(|e| match e {
        image::Error::RootfsExists(n) => ContainerError::NameInUse(n),
        e => e.into(),
    })?;
    // A joined container's cgroup is inside its sandbox's, under the sandbox's top.
    let top = sb.as_ref().and_then(|s| s.cgroup_top.clone()).unwrap_or_else(|| paths.cgroup_top());
    let cgroup_path = match &sb {
        Some(s) => format!("{}/{id}", s.cgroup.clone().unwrap_or_else(|| format!("{top}/{}", s.name))),
        // `@` is outside the name alphabet: a container alone never meets a sandbox's cgroup.
        None => format!("{top}/{}{id}", cgroup::LONE_PREFIX),
    };
    let mut made_cgroup = false;
    let owner = format!("container/{id}");
    let prepared = (|| {
        // A lone container's range is recorded once its directory exists (the rootfs's).
        let own_maps =
            crate::idmap::allocate(&paths.userns(), &owner, &req.userns, &req.pool, |o| paths.owner_exists(o))?;
        let h = cgroup::Hierarchy::host()?;
        // Set first: a create that fails halfway (a limit the kernel refuses) has made dirs.
        made_cgroup = true;
        // A container's cgroup always gets the device allow-list (with its --device ones).
        let mut limits = req.limits.clone();
        limits.devices = Some(req.options.devices.clone());
        cgroup::create(&h, &top, &cgroup_path, &limits)?;
        let entry = cgroup::Entry::open(&h, &cgroup_path)?;
        let who = exec::identity(req.user.as_deref().or(image.config.user.as_deref()), &rootfs.lowers)?;
        let mut options = req.options.clone();
        options.hostname = sb.as_ref().map_or_else(|| id.to_string(), |s| s.hostname.clone());
        let view = req.procview.unwrap_or_else(|| sb.as_ref().map_or(ViewMode::On, |s| s.procview));
        if view != ViewMode::Off {
            options.procview = Some(crate::procview::ensure(paths)?);
        }
        if view == ViewMode::On {
            // Spread over the allowed CPUs by pod (or container), so pods share them evenly.
            let key = sb.as_ref().map_or(id.as_str(), |s| s.name.as_str());
            options.affinity = crate::procview::affinity(&h, &cgroup_path, key);
            options.sysinfo_agent = Some(crate::procview::agent_path(paths));
        }
        options.idmaps = own_maps.clone().or_else(|| sb.as_ref().and_then(|s| s.userns.clone()));
        // The user namespace: a lone container's is made now; a pod's is pause's.
        let userns = match (&own_maps, &sb) {
            (Some(m), _) => Some(crate::idmap::create_userns(m)?),
            (None, Some(s)) if s.userns.is_some() => {
                Some(crate::idmap::userns_of(&s.pause).map_err(|_| ContainerError::SandboxDown(s.name.clone()))?)
            }
            _ => None,
        };
        let join =
            sb.as_ref().map(|s| Join { pause_pid: s.pause.pid, share_pid: s.share_pid, dir: paths.sandbox(&s.name) });
        let spec = spec::build(&image, &options, &who, join.as_ref(), &h)?;
        let view_paths = options.procview.clone().map(|d| (d, crate::procview::binds_lock(paths)));
        let (premade, view_lock) = premake(&rootfs, &spec, userns.as_ref(), options.idmaps.as_ref(), &view_paths)?;
        let state = ContainerState {
            id: id.to_string(),
            sandbox: sb.as_ref().map(|s| s.name.clone()),
            image: req.image.clone(),
            image_id: image.id.clone(),
            command: spec.process().as_ref().and_then(|p| p.args().clone()).unwrap_or_default(),
            created: now(),
            init: None,
            detached: req.detach,
            auto_remove: req.auto_remove,
            exit: None,
            cgroup: Some(cgroup_path.clone()),
            cgroup_top: Some(top.clone()),
            userns: own_maps.clone(),
            restart,
            restarts: 0,
            last_exit: None,
            next_try_ms: None,
            monitor: None,
            stopped: false,
            dir: Some(rootfs.dir.clone()),
        };
        // config.json is read only once state.json exists, so it needs no rename.
        fs::write(rootfs.dir.join("config.json"), serde_json::to_vec(&spec).unwrap_or_default())
            .map_err(io("write config.json"))?;
        Ok::<_, ContainerError>(Prepared {
            state,
            spec,
            rootfs: rootfs.clone(),
            join: sb.map(|s| (s.pause, s.share_pid)),
            interactive: req.interactive,
            entry,
            join_userns: own_maps.is_none() && userns.is_some(),
            userns: if own_maps.is_some() { userns } else { None },
            premade,
            view: view_paths,
            view_lock,
            fresh: true,
            oom_before: 0,
        })
    })();
    let p = match prepared {
        Ok(p) => p,
        Err(e) => {
            if made_cgroup {
                if let Ok(h) = cgroup::Hierarchy::host() {
                    let _ = cgroup::remove(&h, &top, &cgroup_path);
                }
            }
            let _ = store.remove_rootfs(&id);
            crate::idmap::release(&paths.userns(), &owner);
            crate::procview::release_if_unused(paths);
            return Err(e);
        }
    };
    if req.detach {
        crate::monitor::run_detached(paths, store, p).map(RunOutcome::Detached)
    } else {
        run_foreground(paths, store, p).map(RunOutcome::Exited)
    }
}

/// The mounts made on the host's side for a container in a user namespace, and the view's
/// lock held from their clones on (see rootfs::ViewLock).
fn premake(
    rootfs: &Rootfs,
    spec: &Spec,
    userns: Option<&OwnedFd>,
    maps: Option<&crate::idmap::IdMaps>,
    view: &Option<(PathBuf, PathBuf)>,
) -> Result<(rootfs::Premade, Option<rootfs::ViewLock>), ContainerError> {
    let (Some(u), Some(m)) = (userns, maps) else { return Ok((rootfs::Premade::default(), None)) };
    let lock = view.as_ref().map(|(_, file)| rootfs::ViewLock::take(file)).transpose().map_err(ChildError::from)?;
    let premade = rootfs::premake(rootfs, spec, u.as_fd(), m).map_err(ChildError::from)?;
    Ok((premade, lock))
}

/// Prepares another start of an existing container (restart.rs's policy, or `podrun
/// start`), from its rootfs and config.json: into its sandbox again (which must still
/// run), in its own cgroup (emptied first), in a user namespace with the same maps.
pub(crate) fn prepare_again(paths: &Paths, store: &Store, st: ContainerState) -> Result<Prepared, ContainerError> {
    let cid = ContainerId::parse(&st.id)?;
    let spec: Spec = state::read_json(&paths.container(cid.as_str()).join("config.json"))
        .map_err(io(format!("read config.json of container {cid}")))?;
    if spec.process().as_ref().is_some_and(|p| p.terminal().unwrap_or(false)) {
        return Err(ContainerError::StartTerminal(st.id.clone()));
    }
    let rootfs = store.rootfs(&cid)?;
    let sb = match &st.sandbox {
        Some(name) => {
            let sb = sandbox::load(paths, name).map_err(|_| ContainerError::SandboxDown(name.clone()))?;
            if !sb.pause.alive() {
                return Err(ContainerError::SandboxDown(name.clone()));
            }
            Some(sb)
        }
        None => None,
    };
    let h = cgroup::Hierarchy::host()?;
    let cg = st.cgroup.clone().ok_or_else(|| ContainerError::NotFound(st.id.clone()))?;
    // What the last run left (its orphans, with a shared pid namespace) goes first.
    cgroup::kill_all(&h, &cg)?;
    let entry = cgroup::Entry::open(&h, &cg)?;
    let oom_before = cgroup::oom_kills(&h, &cg);
    // The view may have stopped meanwhile (with no container left for a moment).
    let view_dir = crate::procview::dir(paths);
    let view_paths =
        if spec.mounts().iter().flatten().any(|m| m.source().as_ref().is_some_and(|s| s.starts_with(&view_dir))) {
            Some((crate::procview::ensure(paths)?, crate::procview::binds_lock(paths)))
        } else {
            None
        };
    let userns = match (&st.userns, &sb) {
        (Some(m), _) => Some(crate::idmap::create_userns(m)?),
        (None, Some(s)) if s.userns.is_some() => {
            Some(crate::idmap::userns_of(&s.pause).map_err(|_| ContainerError::SandboxDown(s.name.clone()))?)
        }
        _ => None,
    };
    let maps = st.userns.clone().or_else(|| sb.as_ref().and_then(|s| s.userns.clone()));
    let (premade, view_lock) = premake(&rootfs, &spec, userns.as_ref(), maps.as_ref(), &view_paths)?;
    let own = st.userns.is_some();
    Ok(Prepared {
        spec,
        rootfs,
        join: sb.map(|s| (s.pause, s.share_pid)),
        interactive: false,
        entry,
        join_userns: !own && userns.is_some(),
        userns: if own { userns } else { None },
        premade,
        view: view_paths,
        view_lock,
        fresh: false,
        oom_before,
        state: st,
    })
}

/// Creates the container (its init waits for `start`), then starts it.
pub(crate) fn launch(p: &Prepared) -> Result<clone::Spawned, ContainerError> {
    let created = create(p);
    // The child's binds of the view's files are done (or failed) once create returns.
    if let Some(l) = &p.view_lock {
        l.unlock();
    }
    let spawned = created?;
    let started = match ProcRef::of(spawned.pid.as_raw()) {
        Some(init) => crate::lifecycle::fifo::start(&p.rootfs.dir, &init),
        None => Err(crate::lifecycle::fifo::StartError::InitGone),
    };
    match started {
        Ok(()) => Ok(spawned),
        Err(source) => {
            let _ = nix::sys::signal::kill(spawned.pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(spawned.pid, None);
            Err(ContainerError::Start { id: p.state.id.clone(), source })
        }
    }
}

/// Spawns the container's init, which does everything but its exec and waits for `start`
/// (lifecycle/fifo.rs); returns once it waits, its pid recorded in the state.
fn create(p: &Prepared) -> Result<clone::Spawned, ContainerError> {
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
    let fifo = crate::lifecycle::fifo::make(&p.rootfs.dir).map_err(io("make the exec fifo"))?;
    let merged = std::cell::OnceCell::new();
    let pid = clone::spawn(
        p.entry.clone_into(),
        |placed| {
            // Into the container's cgroup first: as the host's root (before any user
            // namespace), and before unsharing the cgroup namespace, so that cgroup is the
            // namespace's root.
            p.entry.join(placed).map_err(StageError::at("join", "enter the container's cgroup"))?;
            if let Some(fd) = &pause_fd {
                ns::join(fd, share_pid, p.join_userns, clock)
                    .map_err(StageError::at("join", "setns into the sandbox"))?;
            }
            // A lone container's user namespace before the namespaces it owns.
            if let Some(u) = &p.userns {
                crate::idmap::enter(u.as_fd()).map_err(StageError::at("join", "enter the user namespace"))?;
            }
            let own = ns::own_flags(share_pid, standalone, clock);
            if ns::unshare_with_clock(own).map_err(StageError::at("join", "unshare"))? {
                ns::start_clock().map_err(StageError::at("join", "set the container's clock (timens_offsets)"))?;
            }
            if p.premade.userns {
                // The rootfs's mount point, in the new mount namespace, while still the
                // host's uid 0 (see idmap::become_root).
                let dir = nix::fcntl::open(
                    &p.rootfs.merged,
                    nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(StageError::at("join", format!("open {}", p.rootfs.merged.display())))?;
                let _ = merged.set(dir);
                crate::idmap::become_root().map_err(StageError::at("join", "become root in the user namespace"))?;
            }
            Ok(())
        },
        |sync| init_stage(p, standalone, merged.get(), seccomp.as_ref(), &fifo, sync),
        // Recorded before the workload may run: whatever happens to podrun from here on,
        // the state names the process, so `rm -f` can always stop it.
        |pid| {
            let mut st = p.state.clone();
            st.init = ProcRef::of(pid.as_raw());
            state::write_json(&p.rootfs.dir, "state.json", &st).map_err(|e| ChildError {
                stage: "state".into(),
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
        nix::unistd::setsid().map_err(StageError::at("init", "setsid"))?;
        if !p.interactive {
            let null = nix::fcntl::open("/dev/null", nix::fcntl::OFlag::O_RDONLY, nix::sys::stat::Mode::empty())
                .map_err(StageError::at("init", "open /dev/null"))?;
            // SAFETY: dup2 onto stdin.
            Errno::result(unsafe { libc::dup2(null.as_raw_fd(), 0) }).map_err(StageError::at("init", "dup2"))?;
        }
        if standalone {
            let h = p.spec.hostname().clone().unwrap_or_default();
            nix::unistd::sethostname(&h).map_err(StageError::at("init", "sethostname"))?;
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
    exec_process(p.spec.process().as_ref(), seccomp, Some(fifo), sync)
}

fn sandbox_loopback() -> Result<(), StageError> {
    crate::sandbox::loopback_up().map_err(StageError::at("init", "bring up lo"))
}

/// Identity, caps, cwd, fds, then execve of the spec's process (returns only on failure).
/// With an exec fifo (a container's init), it waits for `start` before the exec; an exec
/// that fails after that is said on the workload's stderr, and ends the init with the
/// shell's status (127 not found, 126 cannot execute): `create` has returned by then.
fn exec_process(
    process: Option<&oci_spec::runtime::Process>,
    seccomp: Option<&crate::seccomp::Filter>,
    fifo: Option<&OwnedFd>,
    sync: &crate::sync::ChildEnd,
) -> StageError {
    let Some(process) = process else { return StageError::new("exec", Errno::EINVAL, "the spec has no process") };
    if let Err(e) = exec::setup_process(process, seccomp) {
        return e;
    }
    let args = process.args().clone().unwrap_or_default();
    let env = process.env().clone().unwrap_or_default();
    let Some(arg0) = args.first() else { return StageError::new("exec", Errno::EINVAL, "the spec has no command") };
    let file = match exec::find_executable(arg0, &env).and_then(|f| exec::check_executable(&f).map(|()| f)) {
        Ok(f) => f,
        Err(e) => return e,
    };
    if let Err(e) = exec::close_fds_on_exec() {
        return e;
    }
    if !sync.wait_go() {
        return StageError::new("exec", Errno::ECANCELED, "podrun went away before the container started");
    }
    let Some(fifo) = fifo else { return exec::execve(&file, &args, &env) };
    if let Err(e) = crate::lifecycle::fifo::wait_for_start(fifo, sync) {
        return e;
    }
    let e = exec::execve(&file, &args, &env);
    eprintln!("podrun: {}", e.message);
    let code = ChildError::from(e).exit_code().unwrap_or(126);
    // SAFETY: the init stage ends here, as clone.rs's children do.
    unsafe { libc::_exit(code as i32) }
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

fn run_foreground(paths: &Paths, store: &Store, mut p: Prepared) -> Result<ExitInfo, ContainerError> {
    // This podrun is the one that waits: if it is killed, `ps` says so.
    p.state.monitor = ProcRef::of(std::process::id() as i32);
    let started = (|| {
        clone::set_subreaper().map_err(|e| io("become a subreaper")(e.into()))?;
        let signals = Signals::block(true).map_err(|e| io("block signals")(e.into()))?;
        let spawned = launch(&p)?;
        Ok::<_, ContainerError>((signals, spawned))
    })();
    let (mut signals, spawned) = match started {
        Ok(x) => x,
        Err(e) => {
            discard(paths, store, &p.state);
            return Err(e);
        }
    };
    let pid = spawned.pid;
    // Held so that the container's mount namespace outlives its last process: unmounting
    // its overlay, /proc, /dev and the rest (0.3–0.5 ms here) then happens when this is
    // closed, in the --rm cleanup child, not in the workload's exit that podrun waits for.
    let mounts = fs::File::open(format!("/proc/{pid}/ns/mnt")).ok();
    let exit = match spawned.terminal {
        Some(master) => crate::terminal::proxy(master, &mut signals, pid),
        None => signals.wait(pid),
    };
    Ok(record_exit(paths, store, &p.state.id, exit, true, mounts, p.oom_before))
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
        Status::Running => {
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
        Status::Running if !force => return Err(ContainerError::Running(c.id.clone())),
        Status::BackOff { .. } if !force => return Err(ContainerError::BackingOff(c.id.clone())),
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
    store.remove_rootfs(&ContainerId::parse(&c.id)?)?;
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
    let init = c.init.filter(|i| i.alive()).ok_or_else(|| ContainerError::NotRunning(id.to_owned()))?;
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
    let pidfd = init.pidfd().map_err(|_| ContainerError::NotRunning(id.to_owned()))?;
    // Its user namespace, when it is not ours (setns refuses to re-enter one's own).
    let userns = ns::inode(init.pid, ns::NsKind::User) != ns::inode(std::process::id() as i32, ns::NsKind::User);
    // Its clock likewise (a container with the resource view has one of its own).
    let clock = ns::inode(init.pid, ns::NsKind::Time) != ns::inode(std::process::id() as i32, ns::NsKind::Time);
    let entry = match &c.cgroup {
        Some(cg) => Some(cgroup::Entry::open(&cgroup::Hierarchy::host()?, cg)?),
        None => None,
    };
    let seccomp = crate::seccomp::Filter::prepare(&spec, id, &paths.container(id))?;
    clone::set_subreaper().map_err(|e| io("become a subreaper")(e.into()))?;
    let mut signals = Signals::block(true).map_err(|e| io("block signals")(e.into()))?;
    let spawned = clone::spawn(
        entry.as_ref().and_then(|e| e.clone_into()),
        |placed| {
            // The container's cgroup first: the exec'd process counts against its limits.
            if let Some(e) = &entry {
                e.join(placed).map_err(StageError::at("join", "enter the container's cgroup"))?;
            }
            ns::enter_all(&pidfd, userns, clock).map_err(StageError::at("join", "setns into the container"))
        },
        |sync| {
            clone::reset_signals();
            if userns {
                if let Err(e) =
                    crate::idmap::become_root().map_err(StageError::at("exec", "become root in the user namespace"))
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
                    .map_err(StageError::at("exec", "setsid"))
                    .and_then(|_| crate::terminal::attach_console(sync))
                {
                    return e;
                }
            }
            exec_process(Some(&process), seccomp.as_ref(), None, sync)
        },
        |_| Ok(()),
    )?;
    Ok(match spawned.terminal {
        Some(master) => crate::terminal::proxy(master, &mut signals, spawned.pid),
        None => signals.wait(spawned.pid),
    })
}
