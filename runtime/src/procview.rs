//! The resource view's lifetime: one FUSE mount per podrun root, `<root>/procview/`, whose
//! files (meminfo, cpuinfo, ...; see `podrun_procfs::caller::ViewFile`) are bind-mounted over
//! /proc and /sys files in each container that wants the view.
//!
//! ```text
//! podrun:[keeper]   holds the /dev/fuse connection; restarts the server when it dies
//!   └─ podrun:[view]  serves requests (threads); a fork of the keeper
//! ```
//! The keeper does nothing but wait (and hold the seccomp listeners through which the
//! server answers containers' sysinfo(2) calls), so it has nothing to crash on. A server that dies
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
    #[error(
        "cannot start the resource view ({what}); /dev/fuse is needed (modprobe fuse), or run with --procview=off"
    )]
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
                exec_keeper(fuse, agent, &paths.root)
            }
            // SAFETY: the intermediate child ends here.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(wr);
            drop((fuse, agent));
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

/// Becomes the keeper: nothing of the podrun that started it (stdio on /dev/null, the
/// connection at descriptor 3, the agent's socket at 4, every other one closed), and a
/// command line of its own, `podrun --root ROOT view-keeper`, not a copy of the user's
/// `podrun run ...`.
fn exec_keeper(fuse: OwnedFd, agent: OwnedFd, root: &Path) -> ! {
    if let Ok(null) = fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for n in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), n) };
        }
    }
    // SAFETY: dup2 to 3 and 4 (without close-on-exec), from copies above 4 so that
    // neither overwrites the other, then close everything above 4.
    unsafe {
        let (f, a) =
            (libc::fcntl(fuse.as_raw_fd(), libc::F_DUPFD, 10), libc::fcntl(agent.as_raw_fd(), libc::F_DUPFD, 10));
        libc::dup2(f, 3);
        libc::dup2(a, 4);
        libc::syscall(libc::SYS_close_range, 5u32, u32::MAX, 0u32);
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
    let is_fuse = nix::sys::stat::fstat(&fuse)
        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == nix::sys::stat::makedev(10, 229));
    if !is_fuse {
        std::mem::forget(fuse);
        return Err(ViewError::NotAKeeper);
    }
    let roots = roots(&Hierarchy::host().map_err(|e| ViewError::Start {
        what: "find the cgroup hierarchy".into(),
        source: std::io::Error::other(e.to_string()),
    })?);
    crate::clone::set_name("podrun:[keeper]");
    // SAFETY: fd 4 is used only if it is a socket (the agent's, from `ensure`).
    let socket = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(4) };
    let socket = match nix::sys::stat::fstat(&socket) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFSOCK => Some(socket),
        _ => {
            std::mem::forget(socket);
            None
        }
    };
    let slot = podrun_procfs::notify::InFlight::shared()
        .map_err(|e| ViewError::Start { what: "map the shared slot".into(), source: e })?;
    // Load averages a new server goes on from.
    let kept = podrun_procfs::load::Kept::shared()
        .map_err(|e| ViewError::Start { what: "map the load averages".into(), source: e })?;
    let mut agent = Agent { socket, pending: Vec::new(), listeners: Vec::new(), to_server: None };
    let mut resume = false;
    crate::clone::shed_memory();
    loop {
        // A channel per server: a new one starts with the listeners the keeper holds, and
        // gets later ones through its own channel.
        let chan = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        );
        // SAFETY: the keeper is single-threaded; the server child ends with _exit.
        match (chan, unsafe { fork() }) {
            (Ok((_, theirs)), Ok(ForkResult::Child)) => {
                crate::clone::set_name("podrun:[view]");
                // One malloc arena for all threads: glibc's default of one per thread cost
                // about 150 kB each, most of the server's memory; requests allocate little.
                // SAFETY: mallopt before any thread of this process exists.
                unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
                let listeners = std::mem::take(&mut agent.listeners);
                drop(agent);
                let view = std::sync::Arc::new(podrun_procfs::fuse::ProcView::with_kept_loads(roots, Some(kept)));
                let v = view.clone();
                let _ = std::thread::Builder::new()
                    .name("sysinfo".into())
                    .spawn(move || podrun_procfs::notify::serve(theirs, listeners, slot, |pid| v.sysinfo_for(pid)));
                let code = i32::from(view.serve(fuse.as_fd(), 2, resume).is_err());
                // SAFETY: the server ends here.
                unsafe { libc::_exit(code) }
            }
            (chan, Ok(ForkResult::Parent { child })) => {
                agent.to_server = chan.ok().map(|(ours, _)| ours);
                if watch(child, &mut agent) {
                    // The view was unmounted: the keeper's work is done.
                    return Ok(0);
                }
            }
            (_, Ok(ForkResult::Child)) => {
                // SAFETY: no channel, no server: this child ends at once.
                unsafe { libc::_exit(1) }
            }
            (_, Err(_)) => std::thread::sleep(Duration::from_millis(50)),
        }
        resume = true;
    }
}

/// The keeper's side of sysinfo(2): the socket container processes hand their seccomp
/// listeners to (seccomp.rs), the connections that have not yet, every listener still in
/// use (held here so that a server's death loses none), and the current server's channel.
struct Agent {
    socket: Option<OwnedFd>,
    pending: Vec<OwnedFd>,
    listeners: Vec<OwnedFd>,
    to_server: Option<OwnedFd>,
}

/// At most this many connections wait to deliver a listener; the oldest is dropped.
const PENDING_MAX: usize = 64;

impl Agent {
    /// Waits up to `timeout` for the agent's work and does it: accepts connections, takes
    /// the listener each delivers (passing it on to the server), drops listeners whose
    /// processes have all ended.
    fn wait(&mut self, timeout: Duration) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let (accepted, delivered, hung_up) = {
            let mut fds: Vec<PollFd> = Vec::new();
            if let Some(s) = &self.socket {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
            }
            fds.extend(self.pending.iter().map(|c| PollFd::new(c.as_fd(), PollFlags::POLLIN)));
            // No events asked: only a hang-up (every process of the filter gone) wakes us.
            fds.extend(self.listeners.iter().map(|l| PollFd::new(l.as_fd(), PollFlags::empty())));
            let ms = PollTimeout::try_from(timeout.as_millis() as i32).unwrap_or(PollTimeout::ZERO);
            if poll(&mut fds, ms).unwrap_or(0) <= 0 {
                return;
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            let skip = usize::from(self.socket.is_some());
            let accepted = self.socket.is_some() && ready(&fds[0]);
            let delivered: Vec<usize> = (0..self.pending.len()).filter(|&i| ready(&fds[skip + i])).collect();
            let hung_up: Vec<usize> =
                (0..self.listeners.len()).filter(|&i| ready(&fds[skip + self.pending.len() + i])).collect();
            (accepted, delivered, hung_up)
        };
        for i in hung_up.into_iter().rev() {
            self.listeners.swap_remove(i);
        }
        for i in delivered.into_iter().rev() {
            let conn = self.pending.swap_remove(i);
            if let Ok(Some(l)) = podrun_procfs::notify::receive(conn.as_raw_fd()) {
                if is_listener(&l) {
                    if let Some(chan) = &self.to_server {
                        // A server that is gone gets it at its successor's start instead.
                        let _ = podrun_procfs::notify::send_fd(chan.as_raw_fd(), l.as_raw_fd(), &[]);
                    }
                    self.listeners.push(l);
                }
            }
        }
        if accepted {
            let Some(s) = &self.socket else { return };
            while let Ok(fd) = nix::sys::socket::accept4(
                s.as_raw_fd(),
                nix::sys::socket::SockFlag::SOCK_CLOEXEC | nix::sys::socket::SockFlag::SOCK_NONBLOCK,
            ) {
                if self.pending.len() >= PENDING_MAX {
                    self.pending.remove(0);
                }
                // SAFETY: accept4 returned a new descriptor that is ours.
                self.pending.push(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
            }
        }
    }
}

/// Whether `fd` is a seccomp listener (and not anything else a process could send).
fn is_listener(fd: &OwnedFd) -> bool {
    fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .is_ok_and(|t| t.as_os_str() == "anon_inode:seccomp notify")
}

/// Waits until `server` ends (true: cleanly, the view is unmounted) or is dying: killed,
/// but held by a thread the kernel cannot wake until a request is answered (storing a page
/// waits for a reader's lock, the reader for a READ): a new server must start without
/// waiting for the old one to be reaped. Reaps any server that has ended. Meanwhile it does
/// the agent's work.
fn watch(server: nix::unistd::Pid, agent: &mut Agent) -> bool {
    loop {
        match waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == server => return code == 0,
            Ok(WaitStatus::Signaled(pid, ..)) if pid == server => return false,
            Ok(WaitStatus::StillAlive) | Err(_) => {
                if dying(server) {
                    return false;
                }
                agent.wait(Duration::from_millis(20));
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
    let _ = fs::remove_file(agent_path(paths));
    let _ = fs::remove_dir(&dir);
}
