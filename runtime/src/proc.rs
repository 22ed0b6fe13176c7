//! A process podrun started, named by pid AND start time, so a recycled pid is never
//! mistaken for it: status comes from liveness checked this way, never from disk, and
//! signals go through a pidfd opened after the check.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRef {
    pub pid: i32,
    /// Field 22 of /proc/<pid>/stat: clock ticks after boot.
    pub start_time: u64,
}

/// The start time of `pid`, or None when there is no such process.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Parses /proc/<pid>/stat after the last ')' (comm may contain spaces and parentheses).
fn parse_start_time(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    // After ')' come field 3 (state) onwards; start time is field 22.
    rest.split_ascii_whitespace().nth(22 - 3)?.parse().ok()
}

/// The state letter of /proc/<pid>/stat (R, S, Z, ...).
fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    std::str::from_utf8(&stat[close + 1..]).ok()?.split_ascii_whitespace().next()?.chars().next()
}

impl ProcRef {
    /// Refers to a live process by pid, reading its start time now.
    pub fn of(pid: i32) -> Option<ProcRef> {
        start_time(pid).map(|start_time| ProcRef { pid, start_time })
    }

    /// Running (not a zombie) and still the same process.
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time) && state(self.pid).is_some_and(|s| s != 'Z' && s != 'X')
    }

    /// A pidfd for the process, opened and then checked against the start time, so it
    /// cannot name a recycled pid.
    pub fn pidfd(&self) -> Result<OwnedFd, Errno> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid, 0) };
        let fd = Errno::result(fd)? as i32;
        // SAFETY: the syscall succeeded, so fd is a new descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if start_time(self.pid) != Some(self.start_time) {
            return Err(Errno::ESRCH);
        }
        Ok(fd)
    }

    /// Sends `sig` through a checked pidfd.
    pub fn signal(&self, sig: Signal) -> Result<(), Errno> {
        let fd = self.pidfd()?;
        // SAFETY: pidfd_send_signal on a live pidfd with no siginfo.
        let rc = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), sig as i32, 0, 0) };
        Errno::result(rc).map(drop)
    }

    /// Waits until the process is gone (or a zombie), up to `timeout`.
    pub fn wait_gone(&self, timeout: std::time::Duration) -> bool {
        let Ok(fd) = self.pidfd() else { return true };
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one live pollfd. A pidfd becomes readable when the process exits.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        n == 1 || !self.alive()
    }
}

/// Not dumpable: no other process of the container can open our /proc/<pid>/exe, memory or
/// fds while podrun's code runs in its namespaces (CVE-2019-5736).
pub fn set_non_dumpable() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_after_the_last_paren() {
        let stat = b"42 (a) b) (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time(b"garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = ProcRef::of(std::process::id() as i32).unwrap();
        assert!(me.alive());
        assert!(!ProcRef { start_time: me.start_time + 1, ..me }.alive());
    }
}
