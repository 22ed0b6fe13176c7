//! Process creation: the two-stage spawn every container, exec and sandbox start uses, and
//! waiting for the workload while forwarding signals to it.
//!
//! ```text
//! podrun (parent) ──fork──▶ join stage ──fork──▶ init stage ──execve──▶ workload
//!   reads sync msgs          setns/unshare         mounts, identity,
//!   waits for the workload   reports init's pid    caps, exec
//!                            and _exits
//! ```
//! The join stage exists because a pid namespace, joined or new, applies only to children.
//! The parent is a child subreaper (when it must wait), so the init stage, orphaned when the
//! join stage exits, is re-parented to it. The join stage is created straight in its cgroup
//! on v2 (clone3 CLONE_INTO_CGROUP, see `cgroup::Entry` for why); other forks go through
//! glibc's `fork`. After a raw clone3 glibc's cached thread id is still the parent's; the
//! join stage only makes syscalls and forks (glibc's fork sets the new child's), and
//! glibc 2.34+ `abort()` signals the caller by its real tid. Children end with `_exit`,
//! never by returning or unwinding.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::state::{now, ExitInfo};
use crate::sync::{self, ChildEnd, ChildError, Msg, Stage, StageError};

/// Names this process for ps: `podrun:[join]`, `podrun:[init]`.
pub fn set_name(name: &str) {
    if let Ok(c) = std::ffi::CString::new(name) {
        // SAFETY: prctl with a NUL-terminated name of at most 16 bytes (longer is truncated).
        unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr()) };
    }
}

/// For a long-lived helper (monitor, view keeper): gives back what the start path left
/// behind, which would otherwise count against the host for as long as the container
/// runs. Freed heap goes back to the kernel (malloc_trim), and the page-table entries of
/// podrun's code and read-only data, which the start faulted in (64 kB around each fault),
/// are dropped: MADV_DONTNEED on every private mapping of the executable that is not
/// writable and holds no anonymous (copied-on-write, e.g. relocated RELRO) page. Those
/// pages equal the file's, stay in the page cache and fault back in on use.
pub fn shed_memory() {
    // SAFETY: malloc_trim only releases free memory.
    unsafe { libc::malloc_trim(0) };
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else { return };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return };
    for (range, anonymous) in exe_mappings(&smaps, &exe.to_string_lossy()) {
        if anonymous != Some(0) {
            continue;
        }
        // SAFETY: a private, read-only mapping of the executable without anonymous pages:
        // dropping its pages loses nothing. MADV_RANDOM: a later fault reads no more of
        // the file ahead. (The kernel still maps the cached pages around each fault, 64 kB,
        // so code the helper runs later brings some of the rest back.)
        unsafe {
            libc::madvise(range.0 as *mut libc::c_void, range.1 - range.0, libc::MADV_DONTNEED);
            libc::madvise(range.0 as *mut libc::c_void, range.1 - range.0, libc::MADV_RANDOM);
        }
    }
}

/// From smaps text: the not-writable private mappings of `path`, with their `Anonymous:` kB.
fn exe_mappings(smaps: &str, path: &str) -> Vec<((usize, usize), Option<u64>)> {
    let mut out: Vec<((usize, usize), Option<u64>)> = Vec::new();
    let mut current = false;
    for line in smaps.lines() {
        let mut f = line.split_ascii_whitespace();
        let first = f.next().unwrap_or_default();
        if let Some((a, b)) = first.split_once('-').filter(|(a, _)| a.bytes().all(|c| c.is_ascii_hexdigit())) {
            let perms = f.next().unwrap_or_default();
            let name = f.nth(3).unwrap_or_default();
            let range = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16));
            current = false;
            if let (Ok(a), Ok(b), true, true) =
                (range.0, range.1, perms.len() == 4 && !perms.contains('w') && perms.ends_with('p'), name == path)
            {
                out.push(((a, b), None));
                current = true;
            }
        } else if current && first == "Anonymous:" {
            if let Some(last) = out.last_mut() {
                last.1 = f.next().and_then(|v| v.parse().ok());
            }
        }
    }
    out
}

pub fn set_subreaper() -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }).map(drop)
}

fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process without running the parent's atexit handlers or
    // unwinding into frames that belong to the parent.
    unsafe { libc::_exit(code) }
}

/// What `spawn` started: the init stage's pid, and the pty master of a `-t` workload.
pub struct Spawned {
    pub pid: Pid,
    pub terminal: Option<std::os::fd::OwnedFd>,
}

/// Forks the join stage (created in cgroup `into` where given and possible), which runs
/// `join(placed)` and forks the init stage, which runs `init` (returning only with an
/// error; it must call `ChildEnd::wait_go` before its exec). `placed` says whether the
/// join stage was born in `into`. `started` runs with the init's pid before it may exec
/// (to record it); then the init gets `Go`. Returns once the workload has exec'd.
pub fn spawn(
    into: Option<BorrowedFd<'_>>,
    join: impl FnOnce(bool) -> Result<(), StageError>,
    init: impl FnOnce(&ChildEnd) -> StageError,
    mut started: impl FnMut(Pid) -> Result<(), ChildError>,
) -> Result<Spawned, ChildError> {
    let proto = |e: Errno| ChildError { stage: Stage::Spawn, errno: e as i32, message: format!("spawn: {}", e.desc()) };
    let (parent, child) = sync::pair().map_err(proto)?;
    // SAFETY: podrun is single-threaded here; the child only runs the stages and _exits.
    let (forked, placed) = unsafe { fork_into(into) }.map_err(proto)?;
    match forked {
        ForkResult::Child => {
            drop(parent);
            set_name("podrun:[join]");
            crate::proc::set_non_dumpable();
            exit_now(join_stage(|| join(placed), init, &child))
        }
        ForkResult::Parent { child: join_pid } => {
            drop(child);
            let mut pid = None;
            let mut failure = None;
            let mut terminal = None;
            loop {
                match parent.recv() {
                    Ok(Some((Msg::Pid { pid: p }, _))) => {
                        let p = Pid::from_raw(p);
                        pid = Some(p);
                        if let Err(e) = started(p) {
                            failure = Some(e);
                            break;
                        }
                        // If the init stage already failed, its message follows; a lost Go
                        // only means there is nobody left to start.
                        let _ = parent.go();
                    }
                    Ok(Some((Msg::Terminal, fd))) => terminal = fd,
                    Ok(Some((Msg::Go, _))) => {}
                    Ok(Some((Msg::Failed { stage, errno, message }, _))) => {
                        failure = Some(ChildError { stage, errno, message })
                    }
                    Ok(None) => break,
                    Err(e) => {
                        failure = Some(proto(e));
                        break;
                    }
                }
            }
            let _ = waitpid(join_pid, None);
            match (pid, failure) {
                (Some(pid), None) => Ok(Spawned { pid, terminal }),
                (p, f) => {
                    if let Some(p) = p {
                        // The init stage reported failure (or vanished): make sure it is gone.
                        let _ = nix::sys::signal::kill(p, Signal::SIGKILL);
                        let _ = waitpid(p, None);
                    }
                    Err(f.unwrap_or(ChildError {
                        stage: Stage::Spawn,
                        errno: libc::ECHILD,
                        message: "the container's init ended before it could run the command".into(),
                    }))
                }
            }
        }
    }
}

/// <linux/sched.h>; libc's constant is an overflowing c_int (libc issue 3584).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `fork`, or with a cgroup v2 directory, clone3 with CLONE_INTO_CGROUP, falling back to
/// `fork` where the kernel lacks it (the caller then moves the child itself). Returns
/// whether the child was born in the cgroup.
///
/// # Safety
/// As `fork`: the caller is single-threaded, and the child only makes syscalls and ends
/// with `_exit`.
unsafe fn fork_into(cgroup: Option<BorrowedFd<'_>>) -> Result<(ForkResult, bool), Errno> {
    if let Some(dir) = cgroup {
        // SAFETY: clone_args is plain data; zero is "not set" for every field.
        let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
        args.flags = CLONE_INTO_CGROUP;
        args.exit_signal = libc::SIGCHLD as u64;
        args.cgroup = dir.as_raw_fd() as u64;
        // SAFETY: no CLONE_VM: the child gets a copy of this (single-threaded) process,
        // like fork, and returns here with 0.
        let r = unsafe {
            libc::syscall(libc::SYS_clone3, &mut args as *mut libc::clone_args, size_of::<libc::clone_args>())
        };
        match r {
            0 => return Ok((ForkResult::Child, true)),
            r if r > 0 => return Ok((ForkResult::Parent { child: Pid::from_raw(r as i32) }, true)),
            // Before 5.7 (no CLONE_INTO_CGROUP: E2BIG, EINVAL) or 5.3 (no clone3: ENOSYS),
            // or a cgroup the kernel will not take (the cgroup.procs write says why).
            _ => {}
        }
    }
    // SAFETY: as this function's.
    unsafe { fork() }.map(|f| (f, false))
}

fn join_stage(
    join: impl FnOnce() -> Result<(), StageError>,
    init: impl FnOnce(&ChildEnd) -> StageError,
    sync: &ChildEnd,
) -> i32 {
    if let Err(e) = join() {
        sync.fail(&e);
        return 1;
    }
    // SAFETY: still single-threaded; the child runs `init` and _exits.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            set_name("podrun:[init]");
            let e = init(sync);
            sync.fail(&e);
            exit_now(1)
        }
        Ok(ForkResult::Parent { child }) => {
            sync.report_pid(child.as_raw());
            0
        }
        Err(e) => {
            sync.fail(&StageError::new(Stage::Spawn, e, "fork the init stage"));
            1
        }
    }
}

/// Signals the foreground podrun passes on to the workload (docker's proxy set).
const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// SIGCHLD and the forwarded signals, blocked and read from a signalfd. Block before
/// spawning, so no exit or signal is missed; children undo it with `reset_signals`.
pub struct Signals(SignalFd);

impl Signals {
    pub fn block(forward: bool) -> Result<Signals, Errno> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGCHLD);
        if forward {
            for s in FORWARDED {
                set.add(s);
            }
        }
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC).map(Signals)
    }

    /// Waits for `pid` (our child) to end, passing forwarded signals on to it.
    pub fn wait(&mut self, pid: Pid) -> ExitInfo {
        loop {
            if let Some(exit) = reap(pid) {
                return exit;
            }
            if let Some(sig) = self.next_signal() {
                forward(pid, sig);
            }
        }
    }

    /// The next signal that is not SIGCHLD (None for SIGCHLD: check the children).
    pub fn next_signal(&mut self) -> Option<Signal> {
        match self.0.read_signal() {
            Ok(Some(info)) if info.ssi_signo != Signal::SIGCHLD as u32 => Signal::try_from(info.ssi_signo as i32).ok(),
            _ => None,
        }
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.0)
    }
}

/// Passes a signal on to `pid`, our unreaped child (so its pid cannot have been recycled).
pub fn forward(pid: Pid, sig: Signal) {
    let _ = nix::sys::signal::kill(pid, sig);
}

/// How a wait status reads: the code, or 128 + signal.
fn exit_info(s: WaitStatus) -> Option<ExitInfo> {
    match s {
        WaitStatus::Exited(_, code) => Some(ExitInfo { code, signal: None, finished: now(), oom_killed: false }),
        WaitStatus::Signaled(_, sig, _) => {
            Some(ExitInfo { code: 128 + sig as i32, signal: Some(sig as i32), finished: now(), oom_killed: false })
        }
        _ => None,
    }
}

/// How `pid` ended, if it has; reaps other children (an exec's join stage) on the way.
pub fn reap(pid: Pid) -> Option<ExitInfo> {
    let mut exit = match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(s) => exit_info(s),
        Err(Errno::ECHILD) => Some(ExitInfo { code: 255, signal: None, finished: now(), oom_killed: false }),
        Err(_) => None,
    };
    while let Ok(s @ (WaitStatus::Exited(p, _) | WaitStatus::Signaled(p, _, _))) =
        waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG))
    {
        // `pid` may end between the two waits: then this is its status, not lost.
        if p == pid {
            exit = exit_info(s);
        }
    }
    exit
}

/// In a child about to exec: unblock every signal and restore default dispositions (Rust
/// ignores SIGPIPE; an ignored signal would stay ignored in the workload).
pub fn reset_signals() {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: restoring SIG_DFL installs no handler code.
            let _ = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d000000000-55d000010000 r--p 00000000 fe:01 42 /usr/bin/podrun
Size:                 64 kB
Anonymous:             0 kB
55d000010000-55d000100000 r-xp 00010000 fe:01 42 /usr/bin/podrun
Size:                960 kB
Anonymous:             0 kB
55d000100000-55d000110000 r--p 00100000 fe:01 42 /usr/bin/podrun
Anonymous:            48 kB
55d000110000-55d000111000 rw-p 00110000 fe:01 42 /usr/bin/podrun
Anonymous:             4 kB
7f0000000000-7f0000010000 r-xp 00000000 fe:01 7 /usr/lib/libc.so.6
Anonymous:             0 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
Anonymous:           132 kB
";

    #[test]
    fn only_the_executables_read_only_mappings_are_candidates() {
        let m = exe_mappings(SMAPS, "/usr/bin/podrun");
        assert_eq!(
            m,
            vec![
                ((0x55d000000000, 0x55d000010000), Some(0)),
                ((0x55d000010000, 0x55d000100000), Some(0)),
                // RELRO: relocated, so it holds copied pages and is left alone by the caller.
                ((0x55d000100000, 0x55d000110000), Some(48)),
            ]
        );
        assert!(exe_mappings(SMAPS, "/usr/bin/other").is_empty());
    }

    #[test]
    fn shedding_keeps_the_process_working() {
        let before = std::fs::read_to_string("/proc/self/status").unwrap();
        shed_memory();
        // Code and data still work after their pages were dropped.
        let after = std::fs::read_to_string("/proc/self/status").unwrap();
        assert_eq!(before.lines().next(), after.lines().next());
        assert_eq!(format!("{:?}", vec![1, 2, 3]), "[1, 2, 3]");
    }
}
