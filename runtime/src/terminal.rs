//! `-t`: the container's console. The init stage opens a pty in the container's own devpts
//! (after pivot_root), makes the slave its controlling terminal and stdio, and passes the
//! master to podrun over the sync socket. podrun puts its own terminal in raw mode and
//! copies bytes both ways until the workload exits, passing window-size changes on.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use nix::unistd::Pid;

use crate::clone::{forward, reap, Signals};
use crate::state::ExitInfo;
use crate::sync::{ChildEnd, Stage, StageError};

/// In the init stage, after pivot_root: opens /dev/ptmx, makes the slave the controlling
/// terminal and stdin/stdout/stderr, and sends the master to the parent.
pub fn attach_console(sync: &ChildEnd) -> Result<(), StageError> {
    const S: Stage = Stage::Terminal;
    let master = nix::fcntl::open(
        "/dev/ptmx",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(StageError::at(S, "open /dev/ptmx"))?;
    let unlock: libc::c_int = 0;
    // SAFETY: ioctls on a live pty master with the argument types pty(7) documents.
    unsafe {
        Errno::result(libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock))
            .map_err(StageError::at(S, "unlock the pty"))?;
        // TIOCGPTPEER opens the slave from the master itself: no path lookup to race.
        let slave = Errno::result(libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY))
            .map_err(StageError::at(S, "open the pty slave"))?;
        let slave = OwnedFd::from_raw_fd(slave);
        // Size the pty like podrun's terminal now, before the workload can ask (our stdio
        // is still podrun's here); podrun keeps it in step on SIGWINCH.
        let mut ws: libc::winsize = std::mem::zeroed();
        if (0..3).any(|fd| libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) == 0) {
            libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
        Errno::result(libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0))
            .map_err(StageError::at(S, "make the pty the controlling terminal"))?;
        for fd in 0..3 {
            Errno::result(libc::dup2(slave.as_raw_fd(), fd)).map_err(StageError::at(S, "dup2"))?;
        }
    }
    bind_console()?;
    sync.send_terminal(master.as_fd()).map_err(StageError::at(S, "pass the pty to podrun"))
}

/// Makes /dev/console the container's terminal, as runc does: a bind mount of the pty
/// slave (our stdin now) over an empty file in the container's /dev tmpfs. Skipped for
/// `exec`, whose /dev/console belongs to the container already.
fn bind_console() -> Result<(), StageError> {
    const S: Stage = Stage::Terminal;
    let console = std::path::Path::new("/dev/console");
    if console.exists() {
        return Ok(());
    }
    let slave =
        std::fs::read_link("/proc/self/fd/0").map_err(|_| StageError::new(S, Errno::ENOENT, "find the pty slave"))?;
    std::fs::File::create(console).map_err(|e| {
        StageError::new(S, Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)), "create /dev/console")
    })?;
    nix::mount::mount(Some(&slave), console, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
        .map_err(StageError::at(S, "bind the pty on /dev/console"))
}

/// Restores the terminal's settings when dropped.
struct RawMode(Option<Termios>);

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(stdin.as_fd()) else { return RawMode(None) };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

fn copy_size(master: BorrowedFd<'_>) {
    // SAFETY: winsize is plain data; TIOCGWINSZ/TIOCSWINSZ read and write one.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

fn write_all(fd: i32, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: writing from a live buffer.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        if n <= 0 {
            return false;
        }
        buf = &buf[n as usize..];
    }
    true
}

/// Copies between our terminal and the container's until `pid` exits; returns its status.
pub fn proxy(master: OwnedFd, signals: &mut Signals, pid: Pid) -> ExitInfo {
    let _raw = RawMode::enter();
    copy_size(master.as_fd());
    let mut buf = [0u8; 16 * 1024];
    let mut stdin_open = true;
    loop {
        let stdin = std::io::stdin();
        let mut fds =
            vec![PollFd::new(master.as_fd(), PollFlags::POLLIN), PollFd::new(signals.fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            continue;
        }
        let ready = |i: usize| fds.get(i).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
        let (out, sig, inp) = (ready(0), ready(1), ready(2));
        drop(fds);
        if out {
            // SAFETY: reading into a live buffer.
            let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                write_all(1, &buf[..n as usize]);
            }
        }
        if inp {
            // SAFETY: reading into a live buffer.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 || !write_all(master.as_raw_fd(), &buf[..n as usize]) {
                stdin_open = false;
            }
        }
        if sig {
            match signals.next_signal() {
                Some(Signal::SIGWINCH) => copy_size(master.as_fd()),
                Some(s) => forward(pid, s),
                None => {
                    if let Some(exit) = reap(pid) {
                        drain(&master, &mut buf);
                        return exit;
                    }
                }
            }
        }
    }
}

/// Prints what the workload wrote just before it exited.
fn drain(master: &OwnedFd, buf: &mut [u8]) {
    let _ = nix::fcntl::fcntl(master, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
    loop {
        // SAFETY: reading into a live buffer.
        let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return;
        }
        write_all(1, &buf[..n as usize]);
    }
}
