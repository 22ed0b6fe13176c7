//! The view's processes, as the `podrun-view` binary runs them (podrun's procview.rs mounts
//! the view and execs that binary with the connection at descriptor 3):
//!
//! ```text
//! podrun:[keeper]   holds the /dev/fuse connection; restarts the server when it dies
//!   └─ podrun:[view]  serves requests (threads); a fork of the keeper
//! ```
//! The keeper does nothing but wait (and hold the seccomp listeners through which the
//! server answers containers' sysinfo(2) calls), so it has nothing to crash on. A server that
//! dies (killed, or a bug) is replaced within 50 ms; the new one takes over the same
//! connection and asks the kernel to resend what the dead one had read, so containers keep
//! their mounts and no reader hangs.
//!
//! A binary of its own, not podrun's: the view lives as long as a root has containers, and
//! podrun's code (image store, OCI config, CLI) is most of what a process of podrun's
//! binary keeps resident. This one links only this crate and libc.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use crate::caller::CgroupRoots;
use crate::fuse::ProcView;
use crate::notify;

/// Where the connection and the agent's socket are handed over.
pub const FUSE_FD: RawFd = 3;
pub const AGENT_FD: RawFd = 4;

/// The command line podrun starts the keeper with: `podrun-view --root ROOT` and, for each
/// cgroup mount the view reads, `--v2 DIR`, `--memory DIR`, `--cpu DIR`, `--cpuacct DIR`,
/// `--cpuset DIR`, `--blkio DIR`, `--unified DIR`. The root is there to tell keepers of different roots apart in `ps`.
pub fn args(root: &std::path::Path, roots: &CgroupRoots) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = vec!["podrun-view".into(), "--root".into(), root.into()];
    for (flag, dir) in [
        ("--v2", &roots.v2),
        ("--memory", &roots.memory),
        ("--cpu", &roots.cpu),
        ("--cpuacct", &roots.cpuacct),
        ("--cpuset", &roots.cpuset),
        ("--blkio", &roots.blkio),
        ("--unified", &roots.unified),
    ] {
        if let Some(d) = dir {
            a.push(flag.into());
            a.push(d.into());
        }
    }
    a
}

/// The cgroup mounts from `args`' command line (the first word is the program).
pub fn parse_args(argv: &[std::ffi::OsString]) -> Result<CgroupRoots, String> {
    let mut roots = CgroupRoots::default();
    let mut it = argv.iter().skip(1);
    let mut root = false;
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{} needs a value", flag.to_string_lossy()))?;
        let dir = Some(std::path::PathBuf::from(value));
        match flag.to_str() {
            Some("--root") => root = true,
            Some("--v2") => roots.v2 = dir,
            Some("--memory") => roots.memory = dir,
            Some("--cpu") => roots.cpu = dir,
            Some("--cpuacct") => roots.cpuacct = dir,
            Some("--cpuset") => roots.cpuset = dir,
            Some("--blkio") => roots.blkio = dir,
            Some("--unified") => roots.unified = dir,
            _ => return Err(format!("unknown argument {}", flag.to_string_lossy())),
        }
    }
    if !root {
        return Err("--root is missing".into());
    }
    Ok(roots)
}

/// Sets the calling thread's name (what `ps` shows as the command of a process).
pub fn set_name(name: &str) {
    if let Ok(c) = std::ffi::CString::new(name) {
        // SAFETY: prctl with a NUL-terminated name of at most 16 bytes (longer is truncated).
        unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr()) };
    }
}

/// `fd` if it is open and `S_IFMT` of it is `kind` (and, for a device, its number is `rdev`).
fn fd_of(fd: RawFd, kind: libc::mode_t, rdev: Option<libc::dev_t>) -> Option<OwnedFd> {
    // SAFETY: an all-zero stat is valid; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat of a descriptor number into a live stat.
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != kind {
        return None;
    }
    if rdev.is_some_and(|r| r != st.st_rdev) {
        return None;
    }
    // SAFETY: the descriptor is open, and the keeper was handed it to own.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The keeper's work: forks a server, waits for it, and forks another when it dies, until
/// a server ends cleanly (the view was unmounted). Returns the process's exit code.
pub fn run(roots: CgroupRoots) -> i32 {
    let Some(fuse) = fd_of(FUSE_FD, libc::S_IFCHR, Some(libc::makedev(10, 229))) else {
        eprintln!("podrun-view is started by podrun, with a FUSE connection at descriptor {FUSE_FD}");
        return 125;
    };
    set_name("podrun:[keeper]");
    let socket = fd_of(AGENT_FD, libc::S_IFSOCK, None);
    let (Ok(slot), Ok(kept)) = (notify::InFlight::shared(), crate::load::Kept::shared()) else {
        return 1;
    };
    let mut agent = Agent { socket, pending: Vec::new(), listeners: Vec::new(), to_server: None };
    let mut resume = false;
    loop {
        // A channel per server: a new one starts with the listeners the keeper holds, and
        // gets later ones through its own channel.
        let chan = seqpacket_pair();
        // SAFETY: the keeper is single-threaded; the server child ends with _exit.
        let pid = unsafe { libc::fork() };
        match (chan, pid) {
            (Some((_, theirs)), 0) => {
                set_name("podrun:[view]");
                // One malloc arena for all threads: glibc's default of one per thread cost
                // about 150 kB each, most of the server's memory; requests allocate little.
                // And free memory at the heap's top goes back past 64 kB (fixed: glibc's
                // default threshold grows with the largest block freed).
                // SAFETY: mallopt before any thread of this process exists.
                unsafe {
                    libc::mallopt(libc::M_ARENA_MAX, 1);
                    libc::mallopt(libc::M_TRIM_THRESHOLD, 64 * 1024);
                    libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
                }
                let listeners = std::mem::take(&mut agent.listeners);
                drop(agent);
                let view = Arc::new(ProcView::with_kept_loads(roots, Some(kept)));
                let v = view.clone();
                let _ = std::thread::Builder::new()
                    .name("sysinfo".into())
                    .stack_size(STACK)
                    .spawn(move || notify::serve(theirs, listeners, slot, |pid| v.sysinfo_for(pid)));
                let code = i32::from(view.serve(std::os::fd::AsFd::as_fd(&fuse), 2, resume).is_err());
                // SAFETY: the server ends here.
                unsafe { libc::_exit(code) }
            }
            (_, 0) => {
                // SAFETY: no channel, no server: this child ends at once.
                unsafe { libc::_exit(1) }
            }
            (_, -1) => std::thread::sleep(Duration::from_millis(50)),
            (chan, child) => {
                agent.to_server = chan.map(|(ours, _)| ours);
                if watch(child, &mut agent, std::os::fd::AsFd::as_fd(&fuse)) {
                    // The view was unmounted: the keeper's work is done.
                    return 0;
                }
            }
        }
        resume = true;
    }
}

/// The stack of the view's threads: requests need little (rendering allocates on the heap).
pub const STACK: usize = 128 * 1024;

fn seqpacket_pair() -> Option<(OwnedFd, OwnedFd)> {
    let mut s = [0; 2];
    // SAFETY: s has room for two descriptors.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, s.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: socketpair returned two new descriptors that nothing else owns.
    Some(unsafe { (OwnedFd::from_raw_fd(s[0]), OwnedFd::from_raw_fd(s[1])) })
}

/// The keeper's side of sysinfo(2): the socket container processes hand their seccomp
/// listeners to (podrun's seccomp.rs), the connections that have not yet, every listener
/// still in use (held here so that a server's death loses none), and the current server's
/// channel.
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
        let poll = |fd: RawFd, events: libc::c_short| libc::pollfd { fd, events, revents: 0 };
        let mut fds: Vec<libc::pollfd> = Vec::new();
        fds.push(poll(self.socket.as_ref().map_or(-1, |s| s.as_raw_fd()), libc::POLLIN));
        fds.extend(self.pending.iter().map(|c| poll(c.as_raw_fd(), libc::POLLIN)));
        // No events asked: only a hang-up (every process of the filter gone) wakes us.
        fds.extend(self.listeners.iter().map(|l| poll(l.as_raw_fd(), 0)));
        // SAFETY: fds is a live array of fds.len() pollfds.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout.as_millis() as i32) } <= 0 {
            return;
        }
        let (np, nl) = (self.pending.len(), self.listeners.len());
        let ready = |i: usize| fds[i].revents != 0;
        let accepted = ready(0);
        let delivered: Vec<usize> = (0..np).filter(|&i| ready(1 + i)).collect();
        let hung_up: Vec<usize> = (0..nl).filter(|&i| ready(1 + np + i)).collect();
        for i in hung_up.into_iter().rev() {
            self.listeners.swap_remove(i);
        }
        for i in delivered.into_iter().rev() {
            let conn = self.pending.swap_remove(i);
            if let Ok(Some(l)) = notify::receive(conn.as_raw_fd()) {
                if is_listener(&l) {
                    if let Some(chan) = &self.to_server {
                        // A server that is gone gets it at its successor's start instead.
                        let _ = notify::send_fd(chan.as_raw_fd(), l.as_raw_fd(), &[]);
                    }
                    self.listeners.push(l);
                }
            }
        }
        if accepted {
            let Some(s) = &self.socket else { return };
            loop {
                // SAFETY: accept4 without an address; the new descriptor is ours.
                let fd = unsafe {
                    libc::accept4(
                        s.as_raw_fd(),
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    )
                };
                if fd < 0 {
                    break;
                }
                if self.pending.len() >= PENDING_MAX {
                    self.pending.remove(0);
                }
                // SAFETY: accept4 returned a new descriptor that is ours.
                self.pending.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
}

/// Whether `fd` is a seccomp listener (and not anything else a process could send).
fn is_listener(fd: &OwnedFd) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .is_ok_and(|t| t.as_os_str() == "anon_inode:seccomp notify")
}

/// Waits until `server` ends (true: cleanly, the view is unmounted) or is dying: killed,
/// but held by a thread the kernel cannot wake until a request is answered (storing a page
/// waits for a reader's lock, the reader for a READ): a new server must start without
/// waiting for the old one to be reaped. Reaps any server that has ended. A dying server's
/// thread may still take a request after its successor had the kernel resend what was
/// taken: once it is reaped, the kernel resends again (else that reader waits for ever;
/// tests/procview.rs caught a `cat` so). Meanwhile it does the agent's work.
fn watch(server: libc::pid_t, agent: &mut Agent, fuse: std::os::fd::BorrowedFd<'_>) -> bool {
    loop {
        let mut status = 0;
        // SAFETY: waitpid into a live int.
        match unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } {
            p if p == server && libc::WIFEXITED(status) => return libc::WEXITSTATUS(status) == 0,
            p if p == server && libc::WIFSIGNALED(status) => return false,
            // Nothing ended (or no child at all).
            0 | -1 => {
                if dying(server) {
                    return false;
                }
                agent.wait(Duration::from_millis(20));
            }
            // An earlier server that was replaced while dying: reaped now.
            _ => crate::fuse::resend(fuse),
        }
    }
}

/// SIGKILL is pending for the whole process: it is on its way out.
fn dying(pid: libc::pid_t) -> bool {
    let status = crate::read_kernel_file(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("ShdPnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (libc::SIGKILL - 1)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_carries_the_mounts_both_ways() {
        let v1 = CgroupRoots {
            memory: Some("/sys/fs/cgroup/memory".into()),
            cpu: Some("/sys/fs/cgroup/cpu".into()),
            cpuacct: Some("/sys/fs/cgroup/cpuacct".into()),
            cpuset: Some("/sys/fs/cgroup/cpuset".into()),
            blkio: Some("/sys/fs/cgroup/blkio".into()),
            unified: Some("/sys/fs/cgroup/unified".into()),
            ..Default::default()
        };
        let a = args(std::path::Path::new("/run/podrun"), &v1);
        assert_eq!(a[..3], ["podrun-view", "--root", "/run/podrun"]);
        let back = parse_args(&a).unwrap();
        assert_eq!(
            (back.memory, back.cpu, back.cpuacct, back.cpuset, back.blkio, back.unified),
            (v1.memory, v1.cpu, v1.cpuacct, v1.cpuset, v1.blkio, v1.unified)
        );
        assert_eq!(back.v2, None);
        let v2 = CgroupRoots { v2: Some("/sys/fs/cgroup".into()), ..Default::default() };
        assert_eq!(parse_args(&args(std::path::Path::new("/r"), &v2)).unwrap().v2, v2.v2);
        assert!(parse_args(&["podrun-view".into(), "--v2".into()]).is_err(), "a flag without a value");
        assert!(parse_args(&["podrun-view".into(), "--bogus".into(), "x".into()]).is_err());
        assert!(parse_args(&["podrun-view".into()]).is_err(), "no root");
    }
}
