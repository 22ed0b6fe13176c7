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

/// The view's lock: held (flock) by its active keeper, which it loses only by dying, and
/// saying who that is (`PID PGID`). Its keepers and server hand it on among themselves
/// (pause/src/succession.rs).
fn lock_file(paths: &Paths) -> PathBuf {
    paths.root.join("procview.active")
}

/// The view's active keeper: its pid, and the process group of every process of the view.
#[derive(Debug, Clone, Copy)]
pub struct Keeper {
    pub pid: i32,
    pub group: i32,
}

/// The active keeper of this root's view, if one holds the lock.
pub fn keeper(paths: &Paths) -> Option<Keeper> {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(lock_file(paths)).ok()?;
    // SAFETY: flock of a descriptor we own. Taken: no keeper holds it (released on drop).
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        return None;
    }
    let text = fs::read_to_string(lock_file(paths)).ok()?;
    let mut words = text.split_whitespace().map(|w| w.parse::<i32>().ok());
    Some(Keeper { pid: words.next()??, group: words.next()?? })
}

/// Waits up to a second for a keeper: one that takes over from killed ones (the backup,
/// or one the server starts) holds the lock within milliseconds.
fn keeper_soon(paths: &Paths) -> Option<Keeper> {
    for _ in 0..50 {
        if let Some(k) = keeper(paths) {
            return Some(k);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The CPUs a container with the view gets, so that `nproc` (which counts affinity) says
/// what /sys/devices/system/cpu/online says: the view's count of them, from its cgroup's
/// cpuset (or podrun's own affinity), starting at a place that depends on `key` so pods
/// spread over the CPUs. None when that is all of them.
pub fn affinity(h: &Hierarchy, cgroup: &str, key: &str) -> Option<Vec<u32>> {
    use podrun_cgroup::snapshot;
    let snap = snapshot::cpu(h, &podrun_cgroup::Cgroups::at(cgroup)).value;
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
    let start = (podrun_cgroup::fnv1a(key.as_bytes()) % allowed.len() as u64) as usize;
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
    if is_mounted(&dir) && keeper_soon(paths).is_some() {
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
        .chain(server::args(&paths.root, &h))
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
    // The lock, taken here on the description the keeper is given: it holds it from its
    // first instruction, so no podrun sees the view unkept in between.
    let lock = match take_lock(paths) {
        Ok(l) => l,
        Err(e) => {
            drop((fuse, agent));
            stop_locked(paths);
            return Err(start_err(format!("lock {}", lock_file(paths).display()))(e));
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
                // Its record: this process, and the group setsid made (every process of
                // the view is in it).
                let me = std::process::id();
                let _ = nix::unistd::write(&lock, format!("{me} {}\n", nix::unistd::getpgrp()).as_bytes());
                let _ = nix::unistd::write(&wr, &me.to_le_bytes());
                drop(wr);
                exec_keeper([fuse, agent, shared, server_bin.into(), lock], &keeper_bin, &argv)
            }
            // SAFETY: the intermediate child ends here.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(wr);
            drop((fuse, agent, shared, server_bin, keeper_bin, lock));
            let _ = waitpid(child, None);
            let mut buf = [0u8; 4];
            if !matches!(nix::unistd::read(&rd, &mut buf), Ok(4)) {
                stop_locked(paths);
                return Err(start_err("start the keeper")(std::io::Error::other("it did not start")));
            }
            Ok(dir)
        }
        Err(e) => {
            drop((fuse, agent, lock));
            stop_locked(paths);
            Err(start_err("fork the keeper")(e.into()))
        }
    }
}

/// The view's lock file, created empty, locked (LOCK_EX) on a new open description.
fn take_lock(paths: &Paths) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f =
        fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).mode(0o600).open(lock_file(paths))?;
    // SAFETY: flock of a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(f.into())
}

/// Becomes the keeper: nothing of the podrun that started it (stdio on /dev/null; the
/// connection, the agent's socket, the shared memory, the server's binary and the lock at
/// descriptors 3 to 7, every other one closed), with a command line of its own
/// (`podrun-keeper podrun-view --root ROOT ...`), not a copy of the user's `podrun run ...`.
fn exec_keeper(fds: [OwnedFd; 5], keeper: &OwnedFd, argv: &[std::ffi::CString]) -> ! {
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
        let places = [server::FUSE_FD, server::AGENT_FD, server::SHARED_FD, server::SERVER_EXE_FD, server::LOCK_FD];
        for (fd, place) in high.iter().zip(places) {
            libc::dup2(*fd, place);
        }
        libc::dup2(bin, KEEPER_BIN_FD);
        libc::fcntl(KEEPER_BIN_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        // Below the keeper's binary too: the places the keeper fills itself (8 to 10),
        // which must not hold what podrun's caller left open there.
        libc::syscall(libc::SYS_close_range, server::LOCK_FD as u32 + 1, KEEPER_BIN_FD as u32 - 1, 0u32);
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

/// Where the keeper's own binary is, until it is exec'd: above the places the keeper and
/// its successors use (pause/src/keeper.rs: 3 to 10).
const KEEPER_BIN_FD: i32 = 11;
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

/// Unmounts the view of `paths`' root and ends its keepers and server.
pub fn stop(paths: &Paths) {
    if let Ok(_lock) = state::lock(&paths.root) {
        stop_locked(paths);
    }
}

/// Unmounts the view and ends its keepers and server (the root is locked).
fn stop_locked(paths: &Paths) {
    let dir = dir(paths);
    // Unconditionally (EINVAL when nothing is mounted): a connection whose server died
    // with a killed podrun fails statfs, but its mount is still there. Detached: the
    // server reads ENODEV once no container holds a bind of it any more.
    let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
    if let Some(k) = keeper(paths) {
        // All at once, keepers and server: each one left would start the others again.
        // The group is the keeper's (it holds the lock, so the group is in use and its
        // number cannot name another); only the view's processes are in it (setsid).
        if ProcRef::of(k.pid).is_some_and(|r| r.alive()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(k.group), nix::sys::signal::Signal::SIGKILL);
        }
        for _ in 0..100 {
            if keeper(paths).is_none() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = fs::remove_file(lock_file(paths));
    let _ = fs::remove_file(agent_path(paths));
    let _ = fs::remove_dir(&dir);
}
