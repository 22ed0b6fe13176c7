//! The parent/child protocol of one container or sandbox start: one
//! `SOCK_SEQPACKET | SOCK_CLOEXEC` socketpair, one JSON message per packet.
//!
//! | from | message | meaning |
//! | --- | --- | --- |
//! | join stage | `Pid { pid }` | it forked the init stage; `pid` is the init's pid in podrun's pid namespace |
//! | parent | `Go` | podrun has recorded that pid in the state: the init stage may exec the workload. Without it (podrun was killed: end of file) the init stage exits instead, so no workload ever runs that podrun's state does not name |
//! | init stage | `Terminal` with the pty master fd (SCM_RIGHTS) | `-t`: the container's console; its slave is the workload's stdio |
//! | any child stage | `Failed { stage, errno, message }` | the stage failed; the parent reports it and cleans up |
//! | (none) | end of file | every child copy of the socket is closed: the last stage's `execve` succeeded (the socket is close-on-exec), a created container's init let go of it to wait for `start` (lifecycle/fifo.rs), or the children died |
//!
//! Apart from `Go`, the parent never writes: every decision a child needs is made before
//! the fork.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    recvmsg, send, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag,
    SockType,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Msg {
    Pid { pid: i32 },
    Go,
    Terminal,
    Failed { stage: Stage, errno: i32, message: String },
}

/// A child stage's failure, as the parent sees it.
/// Where in a start a failure happened (named in `Failed` messages by its lowercase word).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Making the stages (socket, fork) and reading their messages.
    Spawn,
    /// Entering the cgroup and namespaces.
    Join,
    /// The init stage's setup: mounts, hostname, lo.
    Init,
    /// The container's mounts, made host-side for a user namespace.
    Mount,
    /// Identity, capabilities, seccomp of the process.
    Process,
    /// Waiting for `start` (the exec fifo).
    Start,
    /// Finding and running the command: ENOENT is 127, anything else 126.
    Exec,
    /// Recording the state.
    State,
    /// A sandbox's pause.
    Pause,
    Seccomp,
    Terminal,
    /// A detached container's monitor.
    Monitor,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct ChildError {
    pub stage: Stage,
    pub errno: i32,
    pub message: String,
}

impl ChildError {
    /// The exit status a shell would give: 127 command not found, 126 cannot execute.
    pub fn exit_code(&self) -> Option<u8> {
        if self.stage != Stage::Exec {
            return None;
        }
        match Errno::from_raw(self.errno) {
            Errno::ENOENT => Some(127),
            _ => Some(126),
        }
    }
}

/// A failure inside a child stage, before it is sent: what failed, on what, and errno.
#[derive(Debug)]
pub struct StageError {
    pub stage: Stage,
    pub errno: Errno,
    pub message: String,
}

impl StageError {
    /// `what` failed with `errno`: the message reads like crun's, "what: strerror".
    pub fn new(stage: Stage, errno: Errno, what: impl std::fmt::Display) -> StageError {
        StageError { stage, errno, message: format!("{what}: {}", errno.desc()) }
    }

    /// A closure for `map_err`.
    pub fn at(stage: Stage, what: impl std::fmt::Display) -> impl FnOnce(Errno) -> StageError {
        move |errno| StageError::new(stage, errno, what)
    }
}

/// A stage's work done in the parent instead (a user namespace's mounts, made host-side)
/// fails the way the stage would have.
impl From<StageError> for ChildError {
    fn from(e: StageError) -> ChildError {
        ChildError { stage: e.stage, errno: e.errno as i32, message: e.message }
    }
}

pub struct ParentEnd(OwnedFd);
pub struct ChildEnd(OwnedFd);

pub fn pair() -> Result<(ParentEnd, ChildEnd), Errno> {
    let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
    Ok((ParentEnd(a), ChildEnd(b)))
}

impl ChildEnd {
    fn send(&self, msg: &Msg) {
        // Serialising a plain enum cannot fail; a lost message shows up as EOF in the parent.
        let bytes = serde_json::to_vec(msg).unwrap_or_default();
        let _ = send(self.0.as_raw_fd(), &bytes, MsgFlags::MSG_NOSIGNAL);
    }

    pub fn report_pid(&self, pid: i32) {
        self.send(&Msg::Pid { pid });
    }

    /// Waits for the parent's `Go`; false if podrun is gone (or said anything else).
    pub fn wait_go(&self) -> bool {
        let mut buf = [0u8; 64];
        loop {
            match nix::sys::socket::recv(self.0.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => return serde_json::from_slice::<Msg>(&buf[..n]).is_ok_and(|m| m == Msg::Go),
                Err(Errno::EINTR) => continue,
                Err(_) => return false,
            }
        }
    }

    /// Passes the pty master of a `-t` container to the parent.
    pub fn send_terminal(&self, master: BorrowedFd<'_>) -> Result<(), Errno> {
        let bytes = serde_json::to_vec(&Msg::Terminal).unwrap_or_default();
        let fds = [master.as_raw_fd()];
        sendmsg::<()>(
            self.0.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map(drop)
    }

    /// Reports a failure; the caller then `_exit`s.
    pub fn fail(&self, e: &StageError) {
        self.send(&Msg::Failed { stage: e.stage, errno: e.errno as i32, message: e.message.clone() });
    }

    /// Lets go of the socket (a created container's init, before it waits for `start`):
    /// /dev/null takes its place, so the parent sees end of file, and a later `fail` or
    /// `send` writes nowhere rather than into a descriptor that took the number.
    pub fn let_go(&self) {
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            // SAFETY: dup3 onto our own descriptor's number, close-on-exec kept.
            unsafe { libc::dup3(null.as_raw_fd(), self.0.as_raw_fd(), libc::O_CLOEXEC) };
        }
    }
}

impl ParentEnd {
    /// Lets the init stage exec the workload.
    pub fn go(&self) -> Result<(), Errno> {
        let bytes = serde_json::to_vec(&Msg::Go).unwrap_or_default();
        send(self.0.as_raw_fd(), &bytes, MsgFlags::MSG_NOSIGNAL).map(drop)
    }

    /// The next message and the fd it carries, if any; None at end of file.
    pub fn recv(&self) -> Result<Option<(Msg, Option<OwnedFd>)>, Errno> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let (n, fd) = match recvmsg::<()>(self.0.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
            {
                Ok(m) => {
                    let mut fd = None;
                    for c in m.cmsgs().map_err(|_| Errno::EPROTO)? {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            // SAFETY: the kernel installed these fds for us; we own them now.
                            fd = fds.first().map(|&f| unsafe { OwnedFd::from_raw_fd(f) });
                        }
                    }
                    (m.bytes, fd)
                }
                // A child that exits with our Go unread resets the connection; the error is
                // reported once, and what it sent before is still queued behind it.
                Err(Errno::EINTR | Errno::ECONNRESET) => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(None);
            }
            return serde_json::from_slice(&buf[..n]).map(|m| Some((m, fd))).map_err(|_| Errno::EPROTO);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_the_socket_and_eof_ends_them() {
        let (p, c) = pair().unwrap();
        c.report_pid(42);
        c.fail(&StageError { stage: Stage::Exec, errno: Errno::ENOENT, message: "not found".into() });
        drop(c);
        let msg = |p: &ParentEnd| p.recv().unwrap().map(|(m, _)| m);
        assert_eq!(msg(&p), Some(Msg::Pid { pid: 42 }));
        assert_eq!(msg(&p), Some(Msg::Failed { stage: Stage::Exec, errno: libc::ENOENT, message: "not found".into() }));
        assert_eq!(msg(&p), None);
    }

    #[test]
    fn go_reaches_the_child_and_a_dead_parent_is_no_go() {
        let (p, c) = pair().unwrap();
        p.go().unwrap();
        assert!(c.wait_go());
        drop(p);
        assert!(!c.wait_go());
    }

    #[test]
    fn a_terminal_fd_crosses_the_socket() {
        let (p, c) = pair().unwrap();
        let f = std::fs::File::open("/dev/null").unwrap();
        c.send_terminal(std::os::fd::AsFd::as_fd(&f)).unwrap();
        let (m, fd) = p.recv().unwrap().unwrap();
        assert_eq!(m, Msg::Terminal);
        assert!(fd.is_some());
    }

    #[test]
    fn exec_failures_map_to_shell_exit_codes() {
        let e = |stage, errno| ChildError { stage, errno, message: String::new() };
        assert_eq!(e(Stage::Exec, libc::ENOENT).exit_code(), Some(127));
        assert_eq!(e(Stage::Exec, libc::EACCES).exit_code(), Some(126));
        assert_eq!(e(Stage::Mount, libc::ENOENT).exit_code(), None);
    }

    #[test]
    fn a_stage_crosses_the_socket_as_its_word() {
        let m = Msg::Failed { stage: Stage::Join, errno: 1, message: "x".into() };
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains(r#""stage":"join""#), "{json}");
        assert_eq!(serde_json::from_str::<Msg>(&json).unwrap(), m);
    }
}
