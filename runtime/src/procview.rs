//! The resource view's lifetime: one FUSE mount per podrun root, `<root>/procview/`, whose
//! files (meminfo, cpuinfo, ...; see `podrun_procfs::caller::ViewFile`) are bind-mounted over
//! /proc and /sys files in each container that wants the view.
//!
//! ```text
//! podrun:[keeper]   holds the /dev/fuse connection; restarts the server when it dies
//!   └─ podrun:[view]  serves requests (threads); a fork of the keeper
//! ```
//! The keeper does nothing but wait, so it has nothing to crash on. A server that dies
//! (killed, or a bug) is replaced within 50 ms; the new one takes over the same connection
//! and asks the kernel to resend what the dead one had read, so containers keep their mounts
//! and no reader hangs. The view is started by the first container that wants it and
//! stopped (unmounted; keeper and server end) when the root's last container or sandbox
//! is removed.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use podrun_procfs::caller::CgroupRoots;

use crate::cgroup::Hierarchy;
use crate::proc::ProcRef;
use crate::state::{self, Paths};

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("cannot start the resource view ({what}: {source}); /dev/fuse is needed (modprobe fuse), or run with --procview=off")]
    Start { what: String, source: std::io::Error },
    #[error("view-keeper is started by podrun itself, with a FUSE connection at descriptor 3")]
    NotAKeeper,
}

fn start_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ViewError {
    let what = what.into();
    move |source| ViewError::Start { what, source }
}

/// The view's directory under `paths`' root.
pub fn dir(paths: &Paths) -> PathBuf {
    paths.root.join("procview")
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
        Hierarchy::V1 { controllers, .. } => CgroupRoots {
            memory: controllers.get("memory").cloned(),
            cpu: controllers.get("cpu").cloned(),
            cpuacct: controllers.get("cpuacct").cloned(),
            cpuset: controllers.get("cpuset").cloned(),
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
    fs::create_dir_all(&dir).map_err(start_err(format!("create {}", dir.display())))?;
    let fuse = podrun_procfs::fuse::mount(&dir).map_err(start_err(format!("mount FUSE on {}", dir.display())))?;
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
                exec_keeper(fuse, &paths.root)
            }
            // SAFETY: the intermediate child ends here.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(wr);
            drop(fuse);
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
            drop(fuse);
            stop_locked(paths);
            Err(start_err("fork the keeper")(e.into()))
        }
    }
}

/// Becomes the keeper: nothing of the podrun that started it (stdio on /dev/null, the
/// connection at descriptor 3, every other one closed), and a command line of its own,
/// `podrun --root ROOT view-keeper`, not a copy of the user's `podrun run ...`.
fn exec_keeper(fuse: OwnedFd, root: &Path) -> ! {
    if let Ok(null) = fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for n in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), n) };
        }
    }
    // SAFETY: dup2 to 3 (without close-on-exec), then close everything above it.
    unsafe {
        libc::dup2(fuse.as_raw_fd(), 3);
        libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
    }
    let _ = std::env::set_current_dir("/");
    let arg = |s: &[u8]| std::ffi::CString::new(s).unwrap_or_default();
    let argv = [arg(b"podrun"), arg(b"--root"), arg(root.as_os_str().as_encoded_bytes()), arg(b"view-keeper")];
    let _ = nix::unistd::execv(&arg(b"/proc/self/exe"), &argv);
    // SAFETY: the exec failed; this child ends here.
    unsafe { libc::_exit(127) }
}

/// `podrun view-keeper`: forks a server, waits for it, and forks another when it dies,
/// until a server ends cleanly (the view was unmounted).
pub fn keeper_main() -> Result<u8, ViewError> {
    // SAFETY: fd 3 is checked to be /dev/fuse (misc device 10:229) before it is used.
    let fuse = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(3) };
    let is_fuse = nix::sys::stat::fstat(&fuse).is_ok_and(|st| {
        st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == nix::sys::stat::makedev(10, 229)
    });
    if !is_fuse {
        std::mem::forget(fuse);
        return Err(ViewError::NotAKeeper);
    }
    let roots = roots(&Hierarchy::host().map_err(|e| ViewError::Start {
        what: "find the cgroup hierarchy".into(),
        source: std::io::Error::other(e.to_string()),
    })?);
    crate::clone::set_name("podrun:[keeper]");
    let mut resume = false;
    loop {
        // SAFETY: the keeper is single-threaded; the server child ends with _exit.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                crate::clone::set_name("podrun:[view]");
                let view = podrun_procfs::fuse::ProcView::new(roots);
                let code = i32::from(view.serve(fuse.as_fd(), 2, resume).is_err());
                // SAFETY: the server ends here.
                unsafe { libc::_exit(code) }
            }
            Ok(ForkResult::Parent { child }) => {
                if watch(child) {
                    // The view was unmounted: the keeper's work is done.
                    return Ok(0);
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
        resume = true;
    }
}

/// Waits until `server` ends (true: cleanly, the view is unmounted) or is dying: killed,
/// but held by a thread the kernel cannot wake until a request is answered (storing a page
/// waits for a reader's lock, the reader for a READ): a new server must start without
/// waiting for the old one to be reaped. Reaps any server that has ended.
fn watch(server: nix::unistd::Pid) -> bool {
    loop {
        match waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == server => return code == 0,
            Ok(WaitStatus::Signaled(pid, ..)) if pid == server => return false,
            Ok(WaitStatus::StillAlive) | Err(_) => {
                if dying(server) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // An earlier server that was replaced while dying: reaped now.
            Ok(_) => {}
        }
    }
}

/// SIGKILL is pending for the whole process: it is on its way out.
fn dying(pid: nix::unistd::Pid) -> bool {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("ShdPnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (libc::SIGKILL - 1)) != 0)
}

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
    let _ = fs::remove_dir(&dir);
}
