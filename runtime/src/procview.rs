//! The resource view's lifetime: one FUSE mount per podrun root, `<root>/procview/`, whose
//! files (meminfo, cpuinfo, ...; see `podrun_procfs::caller::ViewFile`) are bind-mounted over
//! /proc and /sys files in each container that wants the view. podrun mounts it and starts
//! its keeper (`podrun-keeper`, no-std and embedded like pause: pause/src/keeper.rs), which
//! holds the connection and starts the server, the `podrun-view` binary
//! (podrun_procfs::server): together they serve it and survive a server's death. The view
//! is started by the first container that wants it and stopped (unmounted; keeper and
//! server end) when the root's last container or sandbox is removed.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};
use podrun_procfs::caller::CgroupRoots;
use podrun_procfs::server;

use crate::cgroup::Hierarchy;
use crate::proc::ProcRef;
use crate::state::{self, Paths};

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error(
        "cannot start the resource view ({what}); /dev/fuse is needed (modprobe fuse), or run with --procview=off"
    )]
    Start { what: String, source: std::io::Error },
    #[error(
        "the resource view's binary {} is missing: install it beside podrun (cargo install installs both), or run with --procview=off",
        path.display()
    )]
    Missing { path: PathBuf },
}

fn start_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ViewError {
    let what = what.into();
    move |source| ViewError::Start { what, source }
}

/// The view's directory under `paths`' root.
pub fn dir(paths: &Paths) -> PathBuf {
    paths.root.join("procview")
}

/// The lock file that serializes starts' binds of the view's files (rootfs::ViewLock).
pub fn binds_lock(paths: &Paths) -> PathBuf {
    paths.root.join("procview.lock")
}

/// Where containers' processes hand the keeper their seccomp listeners (for sysinfo).
pub fn agent_path(paths: &Paths) -> PathBuf {
    paths.root.join("procview.sock")
}

/// The agent's socket, for root only, non-blocking (the keeper polls it).
fn bind_agent(path: &Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::remove_file(path);
    let l = std::os::unix::net::UnixListener::bind(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    l.set_nonblocking(true)?;
    Ok(OwnedFd::from(l))
}

fn keeper_file(paths: &Paths) -> PathBuf {
    paths.root.join("procview.keeper")
}

/// The keeper recorded for this root, if it still runs.
pub fn keeper(paths: &Paths) -> Option<ProcRef> {
    let r: ProcRef = state::read_json(&keeper_file(paths)).ok()?;
    r.alive().then_some(r)
}

/// Where the view reads each controller: the cgroup2 mount, or the v1 hierarchies.
pub fn roots(h: &Hierarchy) -> CgroupRoots {
    match h {
        Hierarchy::V2 { mount } => CgroupRoots { v2: Some(mount.clone()), ..Default::default() },
        Hierarchy::V1 { controllers, unified } => CgroupRoots {
            memory: controllers.get("memory").cloned(),
            cpu: controllers.get("cpu").cloned(),
            cpuacct: controllers.get("cpuacct").cloned(),
            cpuset: controllers.get("cpuset").cloned(),
            blkio: controllers.get("blkio").cloned(),
            unified: unified.clone(),
            ..Default::default()
        },
    }
}

/// The CPUs a container with the view gets, so that `nproc` (which counts affinity) says
/// what /sys/devices/system/cpu/online says: the view's count of them, from its cgroup's
/// cpuset (or podrun's own affinity), starting at a place that depends on `key` so pods
/// spread over the CPUs. None when that is all of them.
pub fn affinity(h: &Hierarchy, cgroup: &str, key: &str) -> Option<Vec<u32>> {
    use podrun_procfs::{caller, snapshot};
    let snap = caller::cpu_snapshot(&roots(h), &caller::Cgroups::at(cgroup));
    let allowed: Vec<u32> = match &snap.cpuset {
        Some(s) => s.clone(),
        None => {
            let mine = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
            (0..nix::sched::CpuSet::count() as u32).filter(|&c| mine.is_set(c as usize).unwrap_or(false)).collect()
        }
    };
    let n = snapshot::cpu_count(&snap, allowed.len());
    if n >= allowed.len() {
        return None;
    }
    let start = (podrun_procfs::fnv1a(key.as_bytes()) % allowed.len() as u64) as usize;
    let mut cpus: Vec<u32> = (0..n).map(|i| allowed[(start + i) % allowed.len()]).collect();
    cpus.sort_unstable();
    Some(cpus)
}

fn is_mounted(dir: &Path) -> bool {
    let Ok(st) = nix::sys::statfs::statfs(dir) else { return false };
    st.filesystem_type() == nix::sys::statfs::FUSE_SUPER_MAGIC
}

/// Makes sure the view of this root is mounted and served; returns its directory.
pub fn ensure(paths: &Paths) -> Result<PathBuf, ViewError> {
    let dir = dir(paths);
    let _lock = state::lock(&paths.root).map_err(start_err(format!("lock {}", paths.root.display())))?;
    if keeper(paths).is_some() && is_mounted(&dir) {
        return Ok(dir);
    }
    stop_locked(paths);
    let exe = view_binary()?;
    let h = Hierarchy::host().map_err(|e| ViewError::Start {
        what: "find the cgroup hierarchy".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    // The keeper's argv: its name, then the server's.
    let argv: Vec<std::ffi::CString> = std::iter::once("podrun-keeper".into())
        .chain(server::args(&paths.root, &roots(&h)))
        .filter_map(|a| std::ffi::CString::new(a.into_encoded_bytes()).ok())
        .collect();
    let keeper_bin = crate::pause::sealed_memfd(c"podrun-keeper", crate::pause::KEEPER_ELF)
        .map_err(|e| start_err("load the keeper")(e.into()))?;
    let server_bin = fs::File::open(&exe).map_err(start_err(format!("open {}", exe.display())))?;
    let shared = server::shared_memory().map_err(start_err("make the view's shared memory"))?;
    fs::create_dir_all(&dir).map_err(start_err(format!("create {}", dir.display())))?;
    let fuse = podrun_procfs::fuse::mount(&dir).map_err(start_err(format!("mount FUSE on {}", dir.display())))?;
    let agent = match bind_agent(&agent_path(paths)) {
        Ok(a) => a,
        Err(e) => {
            drop(fuse);
            stop_locked(paths);
            return Err(start_err(format!("listen on {}", agent_path(paths).display()))(e));
        }
    };
    // The keeper must not be our child (a foreground podrun reaps its children) nor hold
    // anything of ours: an intermediate child starts it and exits.
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| start_err("pipe")(e.into()))?;
    // SAFETY: podrun is single-threaded here; both children end with _exit.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(rd);
            let _ = nix::unistd::setsid();
            // SAFETY: as above.
            if let Ok(ForkResult::Child) = unsafe { fork() } {
                let me = std::process::id().to_le_bytes();
                let _ = nix::unistd::write(&wr, &me);
                drop(wr);
                exec_keeper([fuse, agent, shared, server_bin.into()], &keeper_bin, &argv)
            }
            // SAFETY: the intermediate child ends here.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(wr);
            drop((fuse, agent, shared, server_bin, keeper_bin));
            let _ = waitpid(child, None);
            let mut buf = [0u8; 4];
            let pid = match nix::unistd::read(&rd, &mut buf) {
                Ok(4) => u32::from_le_bytes(buf) as i32,
                _ => {
                    stop_locked(paths);
                    return Err(start_err("start the keeper")(std::io::Error::other("it did not start")));
                }
            };
            if let Some(r) = ProcRef::of(pid) {
                state::write_json(&paths.root, "procview.keeper", &r)
                    .map_err(start_err(format!("write {}", keeper_file(paths).display())))?;
            }
            Ok(dir)
        }
        Err(e) => {
            drop((fuse, agent));
            stop_locked(paths);
            Err(start_err("fork the keeper")(e.into()))
        }
    }
}

/// Becomes the keeper: nothing of the podrun that started it (stdio on /dev/null; the
/// connection, the agent's socket, the shared memory and the server's binary at
/// descriptors 3 to 6, every other one closed), with a command line of its own
/// (`podrun-keeper podrun-view --root ROOT ...`), not a copy of the user's `podrun run ...`.
fn exec_keeper(fds: [OwnedFd; 4], keeper: &OwnedFd, argv: &[std::ffi::CString]) -> ! {
    if let Ok(null) = fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for n in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), n) };
        }
    }
    // SAFETY: copies above 10 first, so that no dup2 overwrites one still to be moved;
    // then each onto its place (without close-on-exec), the keeper's binary above them
    // (close-on-exec: fexecve needs it only until the exec), and the rest closed.
    unsafe {
        let high = fds.each_ref().map(|f| libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10));
        let bin = libc::fcntl(keeper.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10);
        let places = [server::FUSE_FD, server::AGENT_FD, server::SHARED_FD, server::SERVER_EXE_FD];
        for (fd, place) in high.iter().zip(places) {
            libc::dup2(*fd, place);
        }
        libc::dup2(bin, KEEPER_BIN_FD);
        libc::fcntl(KEEPER_BIN_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::syscall(libc::SYS_close_range, KEEPER_BIN_FD as u32 + 1, u32::MAX, 0u32);
    }
    let _ = std::env::set_current_dir("/");
    // SAFETY: the keeper's binary, kept open above.
    let bin = unsafe { std::os::fd::BorrowedFd::borrow_raw(KEEPER_BIN_FD) };
    // The server's glibc tuned for memory (the keeper passes its environment on).
    let tunables = match std::env::var_os(TUNABLES) {
        Some(t) if !t.is_empty() => [t.as_encoded_bytes(), b":", SERVER_TUNABLES].concat(),
        _ => SERVER_TUNABLES.to_vec(),
    };
    let env: Vec<std::ffi::CString> = std::env::vars_os()
        .filter(|(k, _)| k != TUNABLES)
        .map(|(k, v)| [k.as_encoded_bytes(), b"=", v.as_encoded_bytes()].concat())
        .chain(std::iter::once([TUNABLES.as_bytes(), b"=", &tunables].concat()))
        .filter_map(|e| std::ffi::CString::new(e).ok())
        .collect();
    let _ = nix::unistd::fexecve(bin, argv, &env);
    // SAFETY: the exec failed; this child ends here.
    unsafe { libc::_exit(127) }
}

/// Where the keeper's own binary is, until it is exec'd: above the four it is given.
const KEEPER_BIN_FD: i32 = server::SERVER_EXE_FD + 1;
const TUNABLES: &str = "GLIBC_TUNABLES";
/// - No per-thread caches of freed blocks: they held most of the server's heap (a reader
///   of every file five times a second grew it to 840 kB resident with them, 100-200 kB
///   without).
/// - No cache of ended threads' stacks: a worker the server no longer needs gives its
///   stack back (16 kB resident each) when it ends.
const SERVER_TUNABLES: &[u8] = b"glibc.malloc.tcache_count=0:glibc.pthread.stack_cache_size=0";

/// The `podrun-view` binary: beside podrun's own (as cargo builds and installs them).
fn view_binary() -> Result<PathBuf, ViewError> {
    let exe = std::env::current_exe().map_err(start_err("find podrun's own binary"))?;
    let view = exe.with_file_name(VIEW_BINARY);
    if !view.is_file() {
        return Err(ViewError::Missing { path: view });
    }
    Ok(view)
}

const VIEW_BINARY: &str = "podrun-view";

/// Stops the view of this root if no container is left to use it and no sandbox to
/// start more (so a pod's containers do not each start it anew).
pub fn release_if_unused(paths: &Paths) {
    let Ok(_lock) = state::lock(&paths.root) else { return };
    if state::list(&paths.containers()).is_empty() && state::list(&paths.sandboxes()).is_empty() {
        stop_locked(paths);
    }
}

/// Unmounts the view and ends its keeper and server (the root is locked).
fn stop_locked(paths: &Paths) {
    let dir = dir(paths);
    let keeper = keeper(paths);
    // Unconditionally (EINVAL when nothing is mounted): a connection whose server died
    // with a killed podrun fails statfs, but its mount is still there. Detached: the
    // server reads ENODEV once no container holds a bind of it any more.
    let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
    if let Some(k) = keeper {
        // The server first: the keeper would start another.
        let server = fs::read_to_string(format!("/proc/{}/task/{}/children", k.pid, k.pid)).unwrap_or_default();
        let _ = k.signal(nix::sys::signal::Signal::SIGKILL);
        for pid in server.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            if let Some(s) = ProcRef::of(pid) {
                let _ = s.signal(nix::sys::signal::Signal::SIGKILL);
            }
        }
        k.wait_gone(Duration::from_secs(1));
    }
    let _ = fs::remove_file(keeper_file(paths));
    let _ = fs::remove_file(agent_path(paths));
    let _ = fs::remove_dir(&dir);
}
