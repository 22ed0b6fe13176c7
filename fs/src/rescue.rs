//! A server left without keepers starts one (pause/src/succession.rs has the whole
//! succession). Only the active keeper holds the other end of the server's channel: when
//! it hangs up, the keeper is gone, and its standby takes over (holding the lock within
//! microseconds, and ending this server) unless it is gone too. So the server waits for
//! the lock; once no keeper holds it, the server takes it and execs the keeper's binary
//! (which it was given) with the connection, the agent's socket, the shared memory, the
//! server's binary, the lock, taken (no other can come between), a pidfd of this server,
//! and every listener it holds: the new process's copies of its descriptors, taken at one
//! instant, so none is lost if this server is killed meanwhile. That keeper starts its
//! standby, ends this server and starts one of its own. Until then this one serves on, and
//! does not end for want of work (`orphaned`).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::fds::{AGENT_FD, FUSE_FD, KEEPER_EXE_FD, LISTEN_FD, LOCK_FD, SERVER_EXE_FD, SHARED_FD};

static ORPHANED: AtomicBool = AtomicBool::new(false);

/// The keepers are gone: this server must not end, or the connection would go with it.
pub fn orphaned() -> bool {
    ORPHANED.load(Ordering::SeqCst)
}

/// In the keeper's start (succession.rs): a pidfd of the server to end. Held in the
/// server (`reserve`), so no listener it receives takes this number.
const ENDS: RawFd = 8;

/// Keeps ENDS taken in the server (by a copy of stdin, /dev/null), so that the keeper it
/// may start finds every listener at a place of its own.
pub fn reserve() {
    // SAFETY: dup3 of stdin onto the reserved place, close-on-exec.
    unsafe { libc::dup3(0, ENDS, libc::O_CLOEXEC) };
}

/// How long a server left without its keeper leaves the lock to the standby: as long as
/// the standby tries (pause/src/succession.rs, take_lock_soon).
const STANDBY_FIRST: Duration = Duration::from_millis(100);

/// Watches `chan` (a copy of the server's channel) from a thread of its own, and once the
/// keepers have hung up, starts a keeper until one holds the lock. At once: until a
/// keeper runs, this server is all that holds the view. (A standby taking over holds the
/// lock within microseconds, and this server waits STANDBY_FIRST before it tries; if this
/// server's keeper gets it first, the standby ends.)
/// Not in the sysinfo thread, which may first wait for a dying predecessor.
pub fn watch_keepers(chan: OwnedFd) {
    let _ = std::thread::Builder::new().name("rescue".into()).stack_size(crate::THREAD_STACK).spawn(move || {
        let mut p = libc::pollfd { fd: chan.as_raw_fd(), events: 0, revents: 0 };
        // SAFETY: poll of one live pollfd; a hang-up is reported whatever the events.
        while unsafe { libc::poll(&mut p, 1, -1) } <= 0 {}
        ORPHANED.store(true, Ordering::SeqCst);
        // The standby first, if there is one: it tries the lock for STANDBY_FIRST from the
        // same hang-up, and a blocked flock of ours would otherwise be granted before its
        // next try (then the standby ends, and the view loses the process that outlives
        // every keeper: succession.rs).
        std::thread::sleep(STANDBY_FIRST);
        loop {
            // Waits while a keeper holds the lock (one taking over ends this server), then
            // hands the lock, taken, to the keeper it starts: no other can come between.
            if let Some(lock) = wait_for_lock() {
                spawn_keeper(&lock);
            }
            std::thread::sleep(Duration::from_millis(100));
            // A keeper that could not start ended at once.
            // SAFETY: waitpid of any child (a server has no others), not waiting.
            while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        }
    });
}

/// The view's lock, taken (LOCK_EX) on a description of our own once no keeper holds it.
fn wait_for_lock() -> Option<std::fs::File> {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(format!("/proc/self/fd/{LOCK_FD}")).ok()?;
    // SAFETY: flock of a descriptor we own, waiting.
    (unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0).then_some(f)
}

/// Forks and execs the keeper: `podrun-keeper` and this server's own command line, whose
/// last word (`--resume`) says 1.
fn spawn_keeper(lock: &std::fs::File) {
    let mut argv: Vec<std::ffi::CString> = std::iter::once(std::ffi::OsString::from("podrun-keeper"))
        .chain(std::env::args_os())
        .filter_map(|a| std::ffi::CString::new(a.into_encoded_bytes()).ok())
        .collect();
    if let Some(last) = argv.last_mut() {
        *last = c"1".into();
    }
    let env: Vec<std::ffi::CString> = std::env::vars_os()
        .filter_map(|(k, v)| std::ffi::CString::new([k.as_encoded_bytes(), b"=", v.as_encoded_bytes()].concat()).ok())
        .collect();
    let ptrs =
        |v: &[std::ffi::CString]| v.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let (argv_p, env_p): (Vec<*const libc::c_char>, Vec<*const libc::c_char>) = (ptrs(&argv), ptrs(&env));
    // SAFETY: pidfd_open of this process, moved above the places the child fills (it
    // would be the lowest free number, 4, the channel's, which the agent's socket takes).
    let me = unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) as RawFd;
        let high = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, LISTEN_FD + 1);
        libc::close(fd);
        high
    };
    if me < 0 {
        return;
    }
    // Above the places the child fills, as `me`.
    // SAFETY: fcntl of a descriptor we own; the copy is ours.
    let lock = unsafe { libc::fcntl(lock.as_raw_fd(), libc::F_DUPFD_CLOEXEC, LISTEN_FD + 1) };
    if lock < 0 {
        // SAFETY: closes our pidfd.
        unsafe { libc::close(me) };
        return;
    }
    // The listeners, kept open across the exec (all this server's descriptors are
    // close-on-exec but those the keeper gave it, which the keeper takes back at their
    // places): the keeper finds them by what they are.
    let listeners: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:seccomp notify"))
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|&fd: &RawFd| fd > LISTEN_FD)
                .collect()
        })
        .unwrap_or_default();
    // posix_spawn, not fork: glibc's clone(CLONE_VM|CLONE_VFORK) shares this process's
    // memory until the exec. A fork would make every page copy-on-write, and the kernel
    // copies each FUSE request into a worker's buffer through get_user_pages: a write
    // fault there, as this server is being killed (the keeper it starts ends it), ends
    // the reader's request with EIO.
    // SAFETY: file actions on a zeroed posix_spawn_file_actions_t, initialised first;
    // posix_spawn with NULL-terminated vectors that outlive the call.
    unsafe {
        let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        if libc::posix_spawn_file_actions_init(&mut fa) == 0 {
            // (dup2 of a descriptor onto itself clears close-on-exec, glibc 2.29+.)
            let mut places = vec![(LISTEN_FD, AGENT_FD), (lock, LOCK_FD), (me, ENDS)];
            places.extend([FUSE_FD, SHARED_FD, SERVER_EXE_FD, KEEPER_EXE_FD].map(|fd| (fd, fd)));
            places.extend(listeners.iter().map(|&l| (l, l)));
            for (from, to) in places {
                libc::posix_spawn_file_actions_adddup2(&mut fa, from, to);
            }
            libc::posix_spawn_file_actions_addclose(&mut fa, LISTEN_FD);
            let mut pid = 0;
            let exe = std::ffi::CString::new(format!("/proc/self/fd/{KEEPER_EXE_FD}")).unwrap_or_default();
            libc::posix_spawn(
                &mut pid,
                exe.as_ptr(),
                &fa,
                std::ptr::null(),
                argv_p.as_ptr().cast(),
                env_p.as_ptr().cast(),
            );
            libc::posix_spawn_file_actions_destroy(&mut fa);
        }
        libc::close(me);
        libc::close(lock);
    }
}
