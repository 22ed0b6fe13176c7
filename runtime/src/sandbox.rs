//! Sandboxes (pods): a pause process holding new ipc, net (loopback up) and uts namespaces,
//! and the pid namespace too with `share_pid`; plus the pod's /dev/shm, a tmpfs every
//! container of the sandbox mounts.
//!
//! Pause gets a mount namespace of its own whose root is an empty read-only tmpfs, so
//! /proc/1/root of a shared pid namespace leads nowhere; it is started from a sealed memfd
//! (pause.rs). Creation is undone completely on any error: pause killed, shm unmounted,
//! state directory removed.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use serde::Serialize;

use crate::clone;
use crate::ids::SandboxId;
use crate::lifecycle::Status;
use crate::ns::{self, NsKind};
use crate::proc::ProcRef;
use crate::state::{self, now, ContainerState, Paths, SandboxState};
use crate::sync::{ChildError, Stage, StageError};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    BadName(#[from] crate::ids::BadId),
    #[error("sandbox {0} already exists")]
    Exists(String),
    #[error("no such sandbox: {0}")]
    NotFound(String),
    #[error("sandbox {0} has running containers ({1})")]
    Busy(String, String),
    #[error("starting pause")]
    Start(#[from] ChildError),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    #[error(transparent)]
    Hierarchy(#[from] crate::cgroup::HostError),
    #[error(transparent)]
    IdMap(#[from] crate::idmap::IdMapError),
    #[error("{op} {path}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
}

fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SandboxError {
    let path = path.into();
    move |source| SandboxError::Io { op, path, source }
}

pub struct CreateOptions {
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub share_pid: bool,
    pub labels: BTreeMap<String, String>,
    /// Pod-level limits, on the sandbox's cgroup: they bind every container in it.
    pub limits: crate::cgroup::Limits,
    /// The default of its containers for the resource view.
    pub procview: crate::state::ViewMode,
    /// A user namespace for the pod (held by pause), or the host's.
    pub userns: crate::idmap::UsernsMode,
    /// Where --userns=auto takes id ranges from.
    pub pool: crate::idmap::Pool,
}

const SHM_OPTIONS: &str = "mode=1777,size=65536k";

/// The pause-init stage, before exec: a private mount namespace whose root is an empty
/// read-only tmpfs, stdio on /dev/null, then pause itself from the memfd. `root_dir` was
/// opened in pause's mount namespace before it became the user namespace's root, which
/// could not reach it by path (the sandbox directory is the host root's, mode 0700).
fn exec_pause(pause: &OwnedFd, root_dir: &OwnedFd, hostname: &str, sync: &crate::sync::ChildEnd) -> StageError {
    let run = || -> Result<(), StageError> {
        const S: Stage = Stage::Pause;
        nix::unistd::sethostname(hostname).map_err(StageError::at(S, "sethostname"))?;
        crate::ns::loopback_up().map_err(StageError::at(S, "bring up lo"))?;
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
            .map_err(StageError::at(S, "make / private"))?;
        let null = nix::fcntl::open("/dev/null", nix::fcntl::OFlag::O_RDWR, nix::sys::stat::Mode::empty())
            .map_err(StageError::at(S, "open /dev/null"))?;
        for fd in 0..3 {
            // SAFETY: dup2 onto the stdio numbers.
            Errno::result(unsafe { libc::dup2(null.as_raw_fd(), fd) }).map_err(StageError::at(S, "dup2"))?;
        }
        drop(null);
        use crate::mount::api;
        let ctx = api::FsContext::open("tmpfs").map_err(StageError::at(S, "fsopen tmpfs"))?;
        for (k, v) in [("size", "4k"), ("mode", "0555")] {
            ctx.set(k, v.as_bytes()).map_err(StageError::at(S, format!("tmpfs {k}")))?;
        }
        let root = ctx
            .mount(api::MOUNT_ATTR_RDONLY | api::MOUNT_ATTR_NOSUID | api::MOUNT_ATTR_NODEV | api::MOUNT_ATTR_NOEXEC)
            .map_err(StageError::at(S, "mount pause's root"))?;
        api::attach(root.as_fd(), root_dir.as_fd()).map_err(StageError::at(S, "attach pause's root"))?;
        // The descriptor is the attached mount's root now.
        nix::unistd::fchdir(&root).map_err(StageError::at(S, "chdir"))?;
        nix::unistd::pivot_root(".", ".").map_err(StageError::at(S, "pivot_root"))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(StageError::at(S, "unmount the old root"))?;
        nix::unistd::chdir("/").map_err(StageError::at(S, "chdir /"))?;
        nix::unistd::setsid().map_err(StageError::at(S, "setsid"))?;
        crate::exec::close_fds_on_exec(0)?;
        clone::reset_signals();
        Ok(())
    };
    if let Err(e) = run() {
        return e;
    }
    if !sync.wait_go() {
        return StageError::new(Stage::Pause, Errno::ECANCELED, "podrun went away before the sandbox was recorded");
    }
    let argv = [c"podrun-pause"];
    let envp: [&std::ffi::CStr; 0] = [];
    let e = nix::unistd::execveat(pause.as_fd(), c"", &argv, &envp, nix::fcntl::AtFlags::AT_EMPTY_PATH)
        .err()
        .unwrap_or(Errno::EINVAL);
    StageError::new(Stage::Pause, e, "exec podrun-pause")
}

pub fn create(paths: &Paths, opts: CreateOptions) -> Result<SandboxState, SandboxError> {
    let name = match &opts.name {
        Some(n) => SandboxId::parse(n)?,
        None => SandboxId::parse(&crate::ids::generate("pod"))?,
    };
    let hostname = opts.hostname.clone().unwrap_or_else(|| name.to_string());
    if hostname.is_empty() || hostname.len() > 64 || hostname.contains(['/', ' ', '\0']) {
        return Err(SandboxError::BadName(crate::ids::BadId { kind: "host", name: hostname }));
    }
    let dir = paths.sandbox(name.as_str());
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(paths.sandboxes())
        .map_err(io("create", paths.sandboxes()))?;
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(SandboxError::Exists(name.to_string())),
        Err(e) => return Err(io("create", &dir)(e)),
    }
    let top = paths.cgroup_top();
    let cgroup = format!("{top}/{name}");
    let owner = format!("sandbox/{name}");
    let made = start(paths, &dir, &name, &hostname, opts, &top, &cgroup);
    if made.is_err() {
        crate::idmap::release(&paths.userns(), &owner);
        // Cgroups first: if podrun is killed in the middle of this, the directory is still
        // there for `sandbox rm -f` to find, and it knows the cgroups' names.
        if let Ok(h) = crate::cgroup::Hierarchy::host() {
            let _ = crate::cgroup::remove(&h, &top, &format!("{cgroup}/{}", crate::cgroup::PAUSE));
            let _ = crate::cgroup::remove(&h, &top, &cgroup);
        }
        cleanup(&dir, None);
    }
    made
}

fn start(
    paths: &Paths,
    dir: &Path,
    name: &SandboxId,
    hostname: &str,
    opts: CreateOptions,
    top: &str,
    cgroup: &str,
) -> Result<SandboxState, SandboxError> {
    let CreateOptions { share_pid, labels, limits, procview, userns, pool, .. } = opts;
    let limits = &limits;
    let _lock = state::lock(dir).map_err(io("lock", dir))?;
    let maps =
        crate::idmap::allocate(&paths.userns(), &format!("sandbox/{name}"), &userns, &pool, |o| paths.owner_exists(o))?;
    let userns = maps.as_ref().map(crate::idmap::create_userns).transpose()?;
    // What the pod's root owns: its /dev/shm and /etc files (the host's root owns them in a
    // pod without a user namespace).
    let owner = maps.as_ref().map_or((0, 0), |m| m.root());
    // The pod's cgroup holds its limits; pause has a leaf of its own beside the containers'
    // (cgroup v2 allows processes only in leaves).
    let h = crate::cgroup::Hierarchy::host()?;
    crate::cgroup::create(&h, top, cgroup, limits)?;
    let pause_cgroup = format!("{cgroup}/{}", crate::cgroup::PAUSE);
    crate::cgroup::create(&h, top, &pause_cgroup, &crate::cgroup::Limits::default())?;
    let entry = crate::cgroup::Entry::open(&h, &pause_cgroup)?;
    let (shm, pause_root) = (dir.join("shm"), dir.join("pause-root"));
    for d in [&shm, &pause_root] {
        fs::DirBuilder::new().mode(0o755).create(d).map_err(io("create", d))?;
    }
    mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(format!("{SHM_OPTIONS},uid={},gid={}", owner.0, owner.1).as_str()),
    )
    .map_err(|e| io("mount /dev/shm tmpfs on", &shm)(e.into()))?;
    // The pod's /etc/hostname, hosts and resolv.conf, bind-mounted into each container.
    for (name, content) in crate::mount::rootfs::etc_contents(hostname) {
        let path = dir.join(name);
        fs::write(&path, content).map_err(io("write", &path))?;
        if maps.is_some() {
            std::os::unix::fs::chown(&path, Some(owner.0), Some(owner.1)).map_err(io("chown", &path))?;
        }
    }
    let pause =
        crate::pause::pause_memfd().map_err(|e| io("create the pause memfd", "memfd:podrun-pause")(e.into()))?;
    // pause's root: opened in its own mount namespace, while it is still the host's uid 0.
    let root_dir = std::cell::OnceCell::new();
    let flags = ns::sandbox_flags(share_pid) | CloneFlags::CLONE_NEWNS;
    let mut recorded = None;
    clone::spawn(
        entry.clone_into(),
        |placed| {
            entry.join(placed).map_err(StageError::at(Stage::Pause, "enter the sandbox's cgroup"))?;
            // The user namespace first: the namespaces unshared next are then its own, so
            // its root may set the hostname, bring up lo and mount pause's root.
            if let Some(u) = &userns {
                crate::idmap::enter(u.as_fd()).map_err(StageError::at(Stage::Pause, "enter the user namespace"))?;
            }
            if ns::unshare_with_clock(flags).map_err(StageError::at(Stage::Pause, "unshare"))? {
                ns::start_clock().map_err(StageError::at(Stage::Pause, "set the pod's clock (timens_offsets)"))?;
            }
            let dir = nix::fcntl::open(
                &pause_root,
                nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(StageError::at(Stage::Pause, format!("open {}", pause_root.display())))?;
            let _ = root_dir.set(dir);
            if userns.is_some() {
                crate::idmap::become_root()
                    .map_err(StageError::at(Stage::Pause, "become root in the user namespace"))?;
            }
            Ok(())
        },
        |sync| match root_dir.get() {
            Some(dir) => exec_pause(&pause, dir, hostname, sync),
            None => StageError::new(Stage::Pause, Errno::EBADF, "pause's root directory"),
        },
        // Recorded before pause may exec: a podrun killed from here on leaves a sandbox
        // that `sandbox rm -f` finds and stops.
        |pid| {
            let fail = |errno: i32, message: String| ChildError { stage: Stage::Pause, errno, message };
            let pause = ProcRef::of(pid.as_raw())
                .ok_or_else(|| fail(libc::ESRCH, "pause exited right after it started".into()))?;
            let st = SandboxState {
                name: name.to_string(),
                hostname: hostname.to_owned(),
                share_pid,
                labels: labels.clone(),
                created: now(),
                pause,
                cgroup: Some(cgroup.to_owned()),
                cgroup_top: Some(top.to_owned()),
                procview,
                userns: maps.clone(),
            };
            state::write_json(dir, "state.json", &st).map_err(|e| {
                fail(e.raw_os_error().unwrap_or(libc::EIO), format!("write {}: {e}", dir.join("state.json").display()))
            })?;
            recorded = Some(st);
            Ok(())
        },
    )?;
    let st = recorded.ok_or_else(|| ChildError {
        stage: Stage::Pause,
        errno: libc::ESRCH,
        message: "pause did not start".into(),
    })?;
    Ok(st)
}

/// Unmounts the pod's /dev/shm and removes the sandbox directory.
fn cleanup(dir: &Path, pause: Option<&ProcRef>) {
    if let Some(p) = pause {
        if p.alive() {
            let _ = p.signal(Signal::SIGKILL);
            p.wait_gone(Duration::from_secs(5));
        }
    }
    let _ = umount2(&dir.join("shm"), MntFlags::MNT_DETACH);
    let _ = fs::remove_dir_all(dir);
}

pub fn load(paths: &Paths, name: &str) -> Result<SandboxState, SandboxError> {
    SandboxId::parse(name)?;
    state::read_json(&paths.sandbox(name).join("state.json")).map_err(|_| SandboxError::NotFound(name.to_owned()))
}

pub fn list(paths: &Paths) -> Vec<SandboxState> {
    state::list(&paths.sandboxes()).iter().filter_map(|n| load(paths, n).ok()).collect()
}

/// Containers whose state names this sandbox.
pub fn containers_of(paths: &Paths, name: &str) -> Vec<ContainerState> {
    state::list(&paths.containers())
        .iter()
        .filter_map(|c| state::read_json::<ContainerState>(&paths.container(c).join("state.json")).ok())
        .filter(|c| c.sandbox.as_deref() == Some(name))
        .collect()
}

/// Removes a sandbox: refuses while containers run unless `force`; with `force` they are
/// killed first. Then pause, the shm mount and the state. Returns the containers removed.
pub fn remove(
    paths: &Paths,
    store: &crate::image::Store,
    name: &str,
    force: bool,
) -> Result<Vec<String>, SandboxError> {
    let sb = load(paths, name);
    let dir = paths.sandbox(name);
    if sb.is_err() && !dir.exists() {
        return Err(SandboxError::NotFound(name.to_owned()));
    }
    let members = containers_of(paths, name);
    // In back-off counts as running: its monitor would start it again.
    let running: Vec<&ContainerState> = members
        .iter()
        .filter(|c| matches!(crate::lifecycle::status(c), Status::Created | Status::Running | Status::BackOff { .. }))
        .collect();
    if !running.is_empty() && !force {
        let names = running.iter().map(|c| c.id.as_str()).collect::<Vec<_>>().join(", ");
        return Err(SandboxError::Busy(name.to_owned(), names));
    }
    let mut removed = Vec::new();
    for c in &members {
        if crate::lifecycle::remove_state(paths, store, c, true).is_ok() {
            removed.push(c.id.to_string());
        }
    }
    let _lock = state::lock(&dir).ok();
    // pause, then the cgroups, then the directory: a podrun killed in between leaves the
    // directory, which names everything that is left, for the next `sandbox rm -f`.
    if let Ok(s) = &sb {
        if s.pause.alive() {
            let _ = s.pause.signal(Signal::SIGKILL);
            s.pause.wait_gone(Duration::from_secs(5));
        }
    }
    let top = sb.as_ref().ok().and_then(|s| s.cgroup_top.clone()).unwrap_or_else(|| paths.cgroup_top());
    let cgroup = sb.as_ref().ok().and_then(|s| s.cgroup.clone()).unwrap_or_else(|| format!("{top}/{name}"));
    let h = crate::cgroup::Hierarchy::host()?;
    crate::cgroup::remove(&h, &top, &format!("{cgroup}/{}", crate::cgroup::PAUSE))?;
    crate::cgroup::remove(&h, &top, &cgroup)?;
    cleanup(&dir, None);
    crate::idmap::release(&paths.userns(), &format!("sandbox/{name}"));
    crate::procview::release_if_unused(paths);
    Ok(removed)
}

/// The namespace types a sandbox shares with its containers.
pub fn ns_kinds(sb: &SandboxState) -> Vec<NsKind> {
    let mut k = vec![NsKind::Ipc, NsKind::Net, NsKind::Uts];
    if sb.share_pid {
        k.push(NsKind::Pid);
        k.push(NsKind::Time);
    }
    if sb.userns.is_some() {
        k.push(NsKind::User);
    }
    k
}

/// One cell of the namespace matrix.
#[derive(Debug, Clone, Serialize)]
pub struct NsCell {
    pub inode: Option<u64>,
    /// "pod": the sandbox's (pause's) namespace; "own": the container's; "host": the host's.
    pub shared: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct NsRow {
    pub process: String,
    pub pid: i32,
    pub namespaces: BTreeMap<NsKind, NsCell>,
}

/// The namespace matrix: pause and each running container's init, one column per
/// namespace type, each cell marked pod / own / host by comparing inodes.
pub fn matrix(paths: &Paths, sb: &SandboxState) -> Vec<NsRow> {
    let me = std::process::id() as i32;
    let pod_kinds: Vec<NsKind> = ns_kinds(sb);
    let row = |process: String, pid: i32, is_pause: bool| NsRow {
        process,
        pid,
        namespaces: NsKind::ALL
            .iter()
            .map(|&k| {
                let inode = ns::inode(pid, k);
                let same = |other: i32| inode.is_some() && inode == ns::inode(other, k);
                let shared = if same(me) {
                    "host"
                } else if pod_kinds.contains(&k) && (is_pause || same(sb.pause.pid)) {
                    "pod"
                } else {
                    "own"
                };
                (k, NsCell { inode, shared })
            })
            .collect(),
    };
    let mut rows = Vec::new();
    if sb.pause.alive() {
        rows.push(row("pause".into(), sb.pause.pid, true));
    }
    for c in containers_of(paths, &sb.name) {
        if let Some(init) = c.init.filter(|i| i.alive()) {
            rows.push(row(c.id.to_string(), init.pid, false));
        }
    }
    rows
}
