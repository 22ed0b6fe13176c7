//! The exec fifo: how a created container's init waits for `start` (runc's exec.fifo).
//!
//! `create` makes `<container dir>/exec.fifo` and spawns the init with an O_PATH
//! descriptor of it; the init, with everything done but the exec (root, identity,
//! capabilities, seccomp), opens it for writing through /proc/self/fd (its root is the
//! container's by then), which blocks until `start` opens it for reading, writes one byte,
//! and execs. `start` reads that byte and removes the fifo: a container whose fifo exists
//! and whose init lives is created; without the fifo, running. `create` and `start` may be
//! separate processes: the fifo is the only thing between them.

use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::proc::ProcRef;
use crate::sync::Stage;
use crate::sync::StageError;

const NAME: &str = "exec.fifo";

/// Where a container's exec fifo is, in its directory.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(NAME)
}

/// Whether the container in `dir` was created and not yet started.
pub fn waiting(dir: &Path) -> bool {
    path(dir).exists()
}

/// Makes the fifo in `dir` (one left by an earlier start goes first) and returns an O_PATH
/// descriptor of it for the init. Mode 0622: an init that has become a user other than
/// root, or one in a user namespace that does not map the host's root, may open it to write.
pub fn make(dir: &Path) -> std::io::Result<OwnedFd> {
    let p = path(dir);
    let _ = fs::remove_file(&p);
    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o622))?;
    // mkfifo's mode is masked by the umask.
    fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o622))?;
    let f = fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_CLOEXEC).open(&p)?;
    Ok(f.into())
}

/// In the init, last before its exec: waits until `start` opens the fifo. `sync`, the
/// socket to the process that created the container, is let go first (put on /dev/null,
/// so nothing later writes into a descriptor that took its number): its end of file tells
/// `create` that the container is created.
pub fn wait_for_start(fifo: &OwnedFd, sync: &crate::sync::ChildEnd) -> Result<(), StageError> {
    sync.let_go();
    let through = format!("/proc/self/fd/{}", fifo.as_raw_fd());
    let mut f = loop {
        match fs::OpenOptions::new().write(true).custom_flags(libc::O_CLOEXEC).open(&through) {
            Ok(f) => break f,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
                return Err(StageError::new(Stage::Start, errno, "open the exec fifo"));
            }
        }
    };
    std::io::Write::write_all(&mut f, b"0").map_err(|e| {
        StageError::new(Stage::Start, Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)), "write the exec fifo")
    })
}

/// Why a container could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("it was not created, or was started already (no {0})")]
    NotCreated(PathBuf),
    #[error("its init ended before it was started")]
    InitGone,
    #[error("{op}: {source}")]
    Io { op: String, source: std::io::Error },
}

/// Starts the created container in `dir` whose init is `init`: opens the fifo (which lets
/// the init's open return), reads the init's byte, and removes the fifo. Fails, changing
/// nothing, if there is no fifo (not created, or started already) or the init has ended.
pub fn start(dir: &Path, init: &ProcRef) -> Result<(), StartError> {
    finish_start(open_start(dir)?, dir, init)
}

/// The first half of `start`: the fifo opened to read. The process that creates a container
/// and starts it at once (`podrun run`) opens it before the init waits, so the init's open
/// returns at once and it execs without waiting for this process to be scheduled again.
pub fn open_start(dir: &Path) -> Result<fs::File, StartError> {
    let p = path(dir);
    match fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(&p) {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StartError::NotCreated(p)),
        Err(source) => Err(StartError::Io { op: format!("open {}", p.display()), source }),
    }
}

/// The second half of `start`: the init's byte (or its end), then the fifo removed.
pub fn finish_start(mut f: fs::File, dir: &Path, init: &ProcRef) -> Result<(), StartError> {
    let p = path(dir);
    let io = |op: &str| {
        let op = format!("{op} {}", p.display());
        move |source| StartError::Io { op, source }
    };
    let Ok(pidfd) = init.pidfd() else {
        // Gone already: it may have run and ended between the open and now (a workload
        // that exits at once, reaped at once by the caller's subreaper), its byte left.
        let mut byte = [0u8; 1];
        return match f.read(&mut byte) {
            Ok(1) => fs::remove_file(&p).map_err(io("remove")),
            _ => Err(StartError::InitGone),
        };
    };
    // The init's byte, or its end (its pidfd becomes readable), whichever comes first.
    loop {
        let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLIN), PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(io("poll")(e.into())),
            Ok(_) => {}
        }
        let ready = |i: usize| fds[i].revents().is_some_and(|r| !r.is_empty());
        if ready(0) {
            let mut byte = [0u8; 1];
            match f.read(&mut byte) {
                Ok(1) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                // The init closed it without its byte: it is ending.
                _ => return Err(StartError::InitGone),
            }
        }
        if ready(1) {
            return Err(StartError::InitGone);
        }
    }
    fs::remove_file(&p).map_err(io("remove"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> ProcRef {
        ProcRef::of(std::process::id() as i32).unwrap()
    }

    #[test]
    fn start_lets_the_waiting_init_go_once_and_removes_the_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = make(dir.path()).unwrap();
        assert!(waiting(dir.path()), "created: the fifo exists");
        let (parent, child) = crate::sync::pair().unwrap();
        // The init's side, in a thread of this process (its /proc/self/fd is ours).
        let init = std::thread::spawn(move || wait_for_start(&fifo, &child).is_ok());
        // The init let go of its socket: the creator sees end of file.
        assert!(matches!(parent.recv(), Ok(None)));
        start(dir.path(), &me()).unwrap();
        assert!(init.join().unwrap(), "the init's open and write went through");
        assert!(!waiting(dir.path()), "running: the fifo is gone");
        assert!(matches!(start(dir.path(), &me()), Err(StartError::NotCreated(_))), "a second start fails");
    }

    #[test]
    fn a_start_whose_init_ended_fails_and_leaves_the_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let _fifo = make(dir.path()).unwrap();
        let mut child = std::process::Command::new("sleep").arg("0.2").spawn().unwrap();
        let init = ProcRef::of(child.id() as i32).unwrap();
        // Nobody opens the fifo to write: start waits until the init ends.
        assert!(matches!(start(dir.path(), &init), Err(StartError::InitGone)));
        child.wait().unwrap();
        assert!(waiting(dir.path()), "a failed start changes nothing");
    }

    #[test]
    fn a_start_whose_init_ran_and_ended_before_it_looked_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = make(dir.path()).unwrap();
        let (_parent, child) = crate::sync::pair().unwrap();
        // A process that is gone (and reaped): its ProcRef names nothing now.
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let init = ProcRef::of(gone.id() as i32).unwrap();
        gone.wait().unwrap();
        // Its byte is in the fifo, written before it ended.
        let reader = open_start(dir.path()).unwrap();
        let writer = std::thread::spawn(move || wait_for_start(&fifo, &child).is_ok());
        assert!(writer.join().unwrap());
        finish_start(reader, dir.path(), &init).unwrap();
        assert!(!waiting(dir.path()), "started: the fifo is gone");
    }

    #[test]
    fn the_fifo_may_be_written_by_any_user() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let _fifo = make(dir.path()).unwrap();
        let meta = fs::metadata(path(dir.path())).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o622);
    }
}
