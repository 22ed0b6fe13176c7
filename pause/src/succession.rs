//! Who serves the view after its processes are killed: the keeper's standby and takeover.
//! Part of podrun-keeper (keeper.rs); no std, no libc.
//!
//! ```text
//! podrun:[backup]      the standby: holds the same connection, listeners, sockets; told
//!   │                   each new listener and the server's pidfd; when the keeper dies,
//!   │                   forks the next keeper, and stays the standby
//!   └─ podrun:[keeper]  active: holds the lock (flock of <root>/procview.active)
//!        └─ podrun:[view] the server: also holds the connection and every listener;
//!                         starts a keeper when both keepers are gone (podrun_procfs::server)
//! ```
//! (The first keeper, which podrun starts, is the parent of its first standby; from the
//! first takeover on, the standby is the parent of the keepers.) Each of the three holds
//! everything a container's view needs (the /dev/fuse connection, every container's
//! seccomp listener, the agent's socket, the shared memory), so killing any one or two of
//! them, in any order, loses nothing:
//! - the server dies: the active keeper starts another (keeper.rs);
//! - the keeper dies: its standby sees the channel hang up, takes the lock, forks the next
//!   keeper (which execs the keeper's binary afresh, with the lock and a channel back to
//!   this standby), and ends the old server (a pidfd the keeper sent); the new keeper
//!   starts its own. The standby never stops being the standby, so killing the keeper and
//!   the server, again and again and however fast, never leaves a single holder that a
//!   next kill of "the keeper and the server" would take (a loaded CI run did that when
//!   the standby became the keeper itself and forked a standby of its own only later);
//! - the standby dies: the keeper forks another;
//! - both keepers die: the server, left without a channel, starts a keeper (with its
//!   listeners, its fork's copies), which forks a standby, ends it and starts its own.
//!
//! Between a death and its successor's start, the two left hold everything for a few
//! milliseconds (a fork, an exec: longer on a loaded machine); killing both of them then
//! ends the view.
//!
//! A keeper tells its standby of each server before the server may run (keeper.rs,
//! start_server), so no server the standby does not know of serves beside the next
//! keeper's, whose stores and answers would disagree with its own.
//!
//! Which keeper is active is the kernel's word: the holder of the lock, which it loses
//! only by dying. The lock file says who holds it (`PID PGID`), for podrun. Every process
//! of the view stays in the process group podrun's setsid made, which podrun kills to
//! stop the view.

use crate::rt::*;
use crate::{close, is_listener, path, receive_tagged, Agent, PollFd};
use crate::{AGENT, ENDS, FUSE, KEEPER_EXE, LOCK, POLLERR, POLLHUP, POLLIN, POLLNVAL, SERVER_EXE, SHARED, STANDBY};
// The numbers keeper.rs defines too.
use crate::{AF_UNIX, O_CLOEXEC, SOCK_CLOEXEC, SOCK_SEQPACKET, SYS_DUP2, SYS_FORK, SYS_OPEN, SYS_POLL, SYS_SOCKETPAIR};

/// The byte of a message on the standby's channel: a listener, or the server's pidfd.
pub const LISTENER: u8 = b'L';
pub const SERVER: u8 = b'S';

const SYS_PWRITE64: usize = 18;
const SYS_GETPID: usize = 39;
const SYS_FLOCK: usize = 73;
const SYS_FTRUNCATE: usize = 77;
const SYS_GETPGID: usize = 121;
const SYS_DUP3: usize = 292;
const SYS_PIDFD_SEND_SIGNAL: usize = 424;
const SYS_PIDFD_OPEN: usize = 434;
const F_GETFD: usize = 1;
const F_DUPFD_CLOEXEC: usize = 1030;
const O_RDONLY: usize = 0;
const O_RDWR: usize = 2;
const LOCK_EX: usize = 2;
const LOCK_NB: usize = 4;
const SIGKILL: usize = 9;
/// Descriptors looked at for listeners when taking over: the keeper holds at most
/// LISTENERS_MAX of them, above its own few and the connections waiting.
const FD_SCAN: usize = 1200;

/// Takes the view's lock (on this process's description) if no other keeper holds it.
pub fn take_lock() -> bool {
    // SAFETY: flock of our descriptor.
    unsafe { syscall4(SYS_FLOCK, LOCK, LOCK_EX | LOCK_NB, 0, 0) == 0 }
}

/// Writes `PID PGID` of this process into the lock file (the active keeper, which holds
/// the lock), padded to a fixed length: written over the last record, never truncated
/// first, so a reader never sees an empty file.
pub fn record() {
    const LEN: usize = 32;
    let mut text = [b' '; LEN];
    // SAFETY: getpid and getpgid(0) have no pointer arguments.
    let (pid, pgid) = unsafe { (syscall4(SYS_GETPID, 0, 0, 0, 0), syscall4(SYS_GETPGID, 0, 0, 0, 0)) };
    let at = crate::put_number(&mut text, 0, pid as u64);
    crate::put_number(&mut text, at + 1, pgid as u64);
    text[LEN - 1] = b'\n';
    // SAFETY: pwrite of our descriptor from a live buffer, then ftruncate to its length
    // (podrun's first record may be longer than nothing, never longer than LEN).
    unsafe {
        syscall4(SYS_PWRITE64, LOCK, text.as_ptr() as usize, LEN, 0);
        syscall4(SYS_FTRUNCATE, LOCK, LEN, 0, 0);
    }
}

/// take_lock, tried for 100 ms: podrun looks whether a keeper holds the lock by taking it
/// shared for a moment. Another keeper that has it keeps it.
fn take_lock_soon() -> bool {
    for _ in 0..10 {
        if take_lock() {
            return true;
        }
        // SAFETY: poll of no descriptors: a 10 ms sleep.
        unsafe { syscall4(SYS_POLL, 0, 0, 10, 0) };
    }
    false
}

/// Gives this process a lock description of its own at LOCK (an open file description
/// shared with the active keeper would keep its lock held after it died).
pub fn reopen_lock() {
    let mut p = [0u8; 64];
    let p = path(&mut p, b"/proc/self/fd/", LOCK as u64, b"");
    // SAFETY: open of a NUL-terminated path; dup3 onto LOCK, close of the copy.
    unsafe {
        let fd = syscall4(SYS_OPEN, p.as_ptr() as usize, O_RDWR | O_CLOEXEC, 0, 0);
        if fd >= 0 {
            syscall4(SYS_DUP3, fd as usize, LOCK, O_CLOEXEC, 0);
            close(fd as i32);
        }
    }
}

/// Keeps the keeper's own binary at KEEPER_EXE: a standby execs it to take over, and the
/// server starts a keeper from it.
pub fn open_own_binary() {
    // SAFETY: open of a NUL-terminated path; dup3 onto KEEPER_EXE, close of the copy.
    unsafe {
        let fd = syscall4(SYS_OPEN, c"/proc/self/exe".as_ptr() as usize, O_RDONLY | O_CLOEXEC, 0, 0);
        // (It may be KEEPER_EXE already: the lowest free number.)
        if fd >= 0 && fd as usize != KEEPER_EXE {
            syscall4(SYS_DUP3, fd as usize, KEEPER_EXE, O_CLOEXEC, 0);
            close(fd as i32);
        }
    }
}

/// The connection is gone: the view was unmounted and its last bind let go.
fn fuse_gone() -> bool {
    let mut p = PollFd { fd: FUSE as i32, events: 0, revents: 0 };
    // SAFETY: poll of one live pollfd, not waiting.
    unsafe { syscall4(SYS_POLL, &mut p as *mut PollFd as usize, 1, 0, 0) };
    p.revents & POLLERR != 0
}

/// Holds ENDS and STANDBY in every keeper (copies of stdin, /dev/null), so that no
/// listener received later takes those numbers, which a takeover writes over.
fn reserve() {
    // SAFETY: dup3 of stdin onto the reserved places, close-on-exec.
    unsafe {
        syscall4(SYS_DUP3, 0, ENDS, O_CLOEXEC, 0);
        syscall4(SYS_DUP3, 0, STANDBY, O_CLOEXEC, 0);
    }
}

fn is_open(fd: usize) -> bool {
    // SAFETY: fcntl F_GETFD of a descriptor number.
    unsafe { syscall4(SYS_FCNTL, fd, F_GETFD, 0, 0) >= 0 }
}

/// Moves a descriptor found at a reserved place above them, close-on-exec.
fn move_up(fd: usize) -> i32 {
    // SAFETY: the copy above the reserved places is ours, close-on-exec; the original closed.
    let up = unsafe { syscall4(SYS_FCNTL, fd, F_DUPFD_CLOEXEC, KEEPER_EXE + 2, 0) } as i32;
    close(fd as i32);
    up
}

/// At a keeper's start: what an earlier one left. The listeners it was started with: a
/// standby's, kept open across its exec, or those of a server left without keepers (its
/// fork's copy of its descriptors, taken at one instant, so a server killed as it starts
/// the keeper loses none); the channel to the standby that forked it (STANDBY: its
/// parent, already the standby); and the server to end (ENDS), kept as `agent.orphan`
/// for `end_orphan`. True if this keeper takes over (a server ran).
pub fn adopt(agent: &mut Agent) -> bool {
    for fd in 3..FD_SCAN {
        if is_listener(fd as i32) {
            // SAFETY: fcntl of a descriptor we now own.
            unsafe { syscall4(SYS_FCNTL, fd, F_SETFD, FD_CLOEXEC, 0) };
            if !agent.listeners.push(fd as i32) {
                close(fd as i32);
            }
        }
    }
    if is_open(STANDBY) {
        // Its pid stays 0: it is our parent, not a child to reap.
        agent.standby = move_up(STANDBY);
    }
    let takes_over = is_open(ENDS);
    if takes_over {
        agent.orphan = move_up(ENDS);
    }
    reserve();
    takes_over
}

/// Ends the server before this keeper (adopt), once this keeper has its standby: until
/// then that server is the only other holder of the view. Its exit is then awaited (its
/// pidfd in Agent::wait) to have the kernel resend what it had read.
pub fn end_orphan(agent: &Agent) {
    if agent.orphan >= 0 {
        // SAFETY: pidfd_send_signal on a pidfd we hold.
        unsafe { syscall4(SYS_PIDFD_SEND_SIGNAL, agent.orphan as usize, SIGKILL, 0, 0) };
    }
}

impl Agent {
    /// Starts a standby if there is none.
    pub fn keep_standby(&mut self, argv: *const *const u8, envp: *const *const u8) {
        if self.standby >= 0 || fuse_gone() {
            return;
        }
        let mut pair = [-1i32; 2];
        // SAFETY: socketpair fills two ints; fork has no arguments.
        let pid = unsafe {
            if syscall4(SYS_SOCKETPAIR, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair.as_mut_ptr() as usize) != 0 {
                return;
            }
            syscall4(SYS_FORK, 0, 0, 0, 0)
        };
        if pid == 0 {
            close(pair[0]);
            standby(self, pair[1], argv, envp)
        }
        close(pair[1]);
        if pid < 0 {
            close(pair[0]);
            return;
        }
        self.standby = pair[0];
        self.standby_pid = pid as i32;
        self.tell_standby_server();
    }

    /// Sends the standby a pidfd of the server now running, for it to end if it takes over.
    pub fn tell_standby_server(&self) {
        if self.standby < 0 || self.server <= 0 {
            return;
        }
        // SAFETY: pidfd_open of our child (it cannot be reaped and reused meanwhile).
        let fd = unsafe { syscall4(SYS_PIDFD_OPEN, self.server as usize, 0, 0, 0) };
        if fd >= 0 {
            crate::send_fd(self.standby, fd as i32, SERVER);
            close(fd as i32);
        }
    }

    /// The standby's channel hung up: it ended. Reaps it.
    pub fn lost_standby(&mut self) {
        close(self.standby);
        self.standby = -1;
        if self.standby_pid > 0 {
            let mut status = 0i32;
            // SAFETY: wait4 of our child (already reaped: ECHILD at once) into a live int.
            unsafe { syscall4(SYS_WAIT4, self.standby_pid as usize, &mut status as *mut i32 as usize, 0, 0) };
        }
        self.standby_pid = 0;
    }
}

/// The standby (in the keeper's fork): holds everything, learns each new listener and
/// server from the keeper, and when the keeper's end of `chan` closes, forks the next
/// keeper and goes on as its standby.
fn standby(agent: &mut Agent, mut chan: i32, argv: *const *const u8, envp: *const *const u8) -> ! {
    // SAFETY: prctl with a NUL-terminated name.
    unsafe { syscall4(SYS_PRCTL, PR_SET_NAME, c"podrun:[backup]".as_ptr() as usize, 0, 0) };
    reopen_lock();
    // The keeper's, not ours: connections it will read, its channel to the server, a
    // server it waits on.
    for i in 0..agent.pending.len {
        close(agent.pending.fd[i]);
    }
    agent.pending.len = 0;
    for fd in [agent.to_server, agent.orphan] {
        if fd >= 0 {
            close(fd);
        }
    }
    let mut server = -1;
    const N: usize = 2 + crate::LISTENERS_MAX;
    let mut fds = core::mem::MaybeUninit::<[PollFd; N]>::uninit();
    let fds = fds.as_mut_ptr() as *mut PollFd;
    loop {
        let nl = agent.listeners.len;
        // SAFETY: i < N for every entry set: 2 + nl <= N.
        let set = |i: usize, fd: i32, events: i16| unsafe { fds.add(i).write(PollFd { fd, events, revents: 0 }) };
        set(0, chan, POLLIN);
        set(1, FUSE as i32, 0);
        for i in 0..nl {
            set(2 + i, agent.listeners.fd[i], 0);
        }
        // SAFETY: the first 2 + nl entries are set.
        if unsafe { syscall4(SYS_POLL, fds as usize, 2 + nl, usize::MAX, 0) } <= 0 {
            continue;
        }
        // SAFETY: entries below 2 + nl were set, and poll filled their revents.
        let revents = |i: usize| unsafe { (*fds.add(i)).revents };
        if revents(1) & POLLERR != 0 {
            // The connection is gone (the view was unmounted): nothing left to keep.
            exit(0);
        }
        for i in (0..nl).rev() {
            if revents(2 + i) & (POLLHUP | POLLERR | POLLNVAL) != 0 {
                agent.listeners.remove(i);
            }
        }
        if revents(0) & POLLIN != 0 {
            match receive_tagged(chan) {
                (fd, t) if fd >= 0 && t == LISTENER as i16 => {
                    if !(is_listener(fd) && agent.listeners.push(fd)) {
                        close(fd);
                    }
                    continue;
                }
                (fd, t) if fd >= 0 && t == SERVER as i16 => {
                    if server >= 0 {
                        close(server);
                    }
                    server = fd;
                    continue;
                }
                (fd, t) if t >= 0 => {
                    if fd >= 0 {
                        close(fd);
                    }
                    continue;
                }
                _ => {}
            }
        } else if revents(0) == 0 {
            continue;
        }
        // The keeper is gone (a keeper this standby forked is reaped here).
        reap();
        if fuse_gone() || !take_lock_soon() {
            exit(0);
        }
        match fork_keeper(agent, server, argv, envp) {
            Some(next) => {
                close(chan);
                chan = next;
            }
            // No fork: this process becomes the keeper, which forks a standby.
            None => take_over(agent, server, argv, envp),
        }
        if server >= 0 {
            // Here, not only in the new keeper's end_orphan: a keeper killed before it
            // got that far would leave this server serving beside its successor's.
            // SAFETY: pidfd_send_signal on a pidfd we hold.
            unsafe { syscall4(SYS_PIDFD_SEND_SIGNAL, server as usize, SIGKILL, 0, 0) };
            close(server);
            server = -1;
        }
    }
}

/// Reaps the keepers this standby forked that have ended.
fn reap() {
    let mut status = 0i32;
    // SAFETY: wait4 of any child, not waiting, into a live int.
    while unsafe { syscall4(SYS_WAIT4, usize::MAX, &mut status as *mut i32 as usize, WNOHANG, 0) } > 0 {}
}

/// Forks the next active keeper, which execs the keeper's binary (take_over) with the
/// lock this standby took, the server to end, and a channel back to this standby at
/// STANDBY. Returns this standby's end of that channel, once this standby has a lock
/// description of its own again (the keeper's must be released by its death alone).
fn fork_keeper(agent: &Agent, server: i32, argv: *const *const u8, envp: *const *const u8) -> Option<i32> {
    let mut pair = [-1i32; 2];
    // SAFETY: socketpair fills two ints; fork has no arguments.
    let pid = unsafe {
        if syscall4(SYS_SOCKETPAIR, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair.as_mut_ptr() as usize) != 0 {
            return None;
        }
        syscall4(SYS_FORK, 0, 0, 0, 0)
    };
    if pid == 0 {
        close(pair[0]);
        // SAFETY: dup2 of our descriptor onto the reserved place (not close-on-exec).
        unsafe { syscall4(SYS_DUP2, pair[1] as usize, STANDBY, 0, 0) };
        take_over(agent, server, argv, envp)
    }
    close(pair[1]);
    if pid < 0 {
        close(pair[0]);
        return None;
    }
    reopen_lock();
    Some(pair[0])
}

/// Becomes the active keeper (a standby's fork, or the standby itself if it cannot fork):
/// execs the keeper's binary afresh, with the listeners kept open for it to find, the
/// server to end at ENDS, and the last argument 1 (the connection has been initialised,
/// or INIT is still to come, which a resumed server answers as well).
fn take_over(agent: &Agent, server: i32, argv: *const *const u8, envp: *const *const u8) -> ! {
    // SAFETY: fcntl and dup2 of descriptors we hold; argv's last string is ours to write
    // (the initial stack); execveat with the vectors the keeper was started with.
    unsafe {
        for i in 0..agent.listeners.len {
            syscall4(SYS_FCNTL, agent.listeners.fd[i] as usize, F_SETFD, 0, 0);
        }
        for fd in [FUSE, AGENT, SHARED, SERVER_EXE, LOCK] {
            syscall4(SYS_FCNTL, fd, F_SETFD, 0, 0);
        }
        if server >= 0 {
            syscall4(SYS_DUP2, server as usize, ENDS, 0, 0);
        }
        let mut argc = 0;
        while !(*argv.add(argc)).is_null() {
            argc += 1;
        }
        *(*argv.add(argc - 1) as *mut u8) = b'1';
        syscall5(SYS_EXECVEAT, KEEPER_EXE, c"".as_ptr() as usize, argv as usize, envp as usize, AT_EMPTY_PATH);
    }
    exit(127)
}
