//! sysinfo(2) answered for containers, through seccomp user notifications (seccomp_unotify(2)).
//! A container process with the view installs a filter that turns its sysinfo calls into
//! notifications on a listener descriptor, which reaches the view's keeper and from it the
//! server (podrun's procview.rs). The server receives each call, computes the caller's
//! numbers, writes them into the caller's buffer (process_vm_writev) and lets the call
//! return 0. Anything else that arrives is let through to the kernel unchanged.
//!
//! Crash-proof as the FUSE side is: the keeper holds every listener, so a dead server loses
//! none, and the call a server was answering when it died is noted in memory shared with
//! the keeper (`InFlight`), so the next server answers it: no caller waits for ever, also
//! when servers are killed in a row before each has answered what it found.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// A call being answered, in memory every server of a view maps (server::Shared): `busy`
/// is set once the call is received and cleared once answered. A server that starts
/// answers the calls it finds busy, and clears each only once it has answered it: a server
/// killed before then leaves it to the next.
#[repr(C)]
pub struct InFlight {
    busy: AtomicU64,
    id: AtomicU64,
    pid: AtomicU64,
    addr: AtomicU64,
}

/// Places for calls in flight: one a server is answering, and those left by servers killed
/// in a row before each answered the ones it found.
pub const IN_FLIGHT: usize = 8;

/// A left call not answered by this long after a server started belongs to no listener
/// the keeper sent (its container is gone): its place is freed.
const LEFT_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// When a server looks again for calls waiting with no one to answer them.
const RESTART_AGAIN: std::time::Duration = std::time::Duration::from_secs(1);

fn ioctl<T>(fd: RawFd, req: libc::Ioctl, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is the struct the request names, valid for the kernel to read and write.
    if unsafe { libc::ioctl(fd, req, arg as *mut T) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Answers notification `id` of `listener`: writes `info` to `addr` in process `pid` and
/// makes its sysinfo return 0 (EFAULT where the buffer is not writable, as the kernel's).
/// Nothing is written once the call is gone (the process died; its pid may be reused).
fn reply(listener: RawFd, id: u64, pid: u32, addr: u64, info: &libc::sysinfo) {
    let mut check = id;
    if ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut check).is_err() {
        return;
    }
    let len = std::mem::size_of::<libc::sysinfo>();
    let local = libc::iovec { iov_base: info as *const libc::sysinfo as *mut libc::c_void, iov_len: len };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: len };
    // SAFETY: one local iovec over `info`, one remote one; the kernel checks the remote.
    let written = unsafe { libc::process_vm_writev(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    let mut resp = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: if written == len as isize { 0 } else { -libc::EFAULT },
        flags: 0,
    };
    let _ = ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp);
}

/// Makes every sysinfo call waiting in a seccomp user notification start again, so that it
/// becomes a new notification this server receives. A server killed inside its RECV, after
/// the kernel handed it a call and before it noted the call in its InFlight place, leaves
/// that call received and never answered, and nothing names it (its id is known to none).
/// A caller waits interruptibly; ptrace's interrupt wakes it, and the kernel restarts the
/// call when it resumes. Waking a caller whose call was not lost costs it one notification
/// more; one traced by someone else is left alone.
pub fn restart_waiting_calls() {
    for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if !p.file_name().as_encoded_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        for t in std::fs::read_dir(p.path().join("task")).into_iter().flatten().flatten() {
            let read = |f: &str| podrun_cgroup::read_kernel_file(t.path().join(f)).unwrap_or_default();
            // A thread's system call shows there only while it is blocked in it, and
            // sysinfo blocks nowhere but in the notification.
            if read("syscall").split(' ').next() != Some(&libc::SYS_sysinfo.to_string()) {
                continue;
            }
            let Some(tid) = t.file_name().to_str().and_then(|n| n.parse::<libc::pid_t>().ok()) else { continue };
            restart_call(tid);
        }
    }
}

/// Interrupts thread `tid` in its system call and lets it go on (the kernel restarts the
/// call): seize, interrupt, wait for the stop, detach.
fn restart_call(tid: libc::pid_t) {
    let null = std::ptr::null_mut::<libc::c_void>();
    // SAFETY: ptrace requests on a thread id, with no memory passed.
    if unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, null, null) } != 0 {
        return;
    }
    // SAFETY: as above; the thread is this thread's tracee now.
    unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, null, null) };
    let mut status = 0;
    // SAFETY: waits for this thread's tracee to stop (or end).
    unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
    // SAFETY: detaching a stopped tracee resumes it; its interrupted call starts again.
    unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, null, null) };
}

/// Lets notification `id` go on to the kernel as if there were no filter.
fn pass(listener: RawFd, id: u64) {
    let mut resp =
        libc::seccomp_notif_resp { id, val: 0, error: 0, flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32 };
    let _ = ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp);
}

/// Receives one listener descriptor from the keeper's channel. Ok(None): the message
/// carried none; Err: the channel is closed.
pub fn receive(chan: RawFd) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // Room for one descriptor: CMSG_SPACE(sizeof(int)), 8-byte aligned.
    let mut control = [0u64; 4];
    // SAFETY: an all-zero msghdr is valid; its pointers are set below to live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg points at live buffers of the sizes given.
    let n = unsafe { libc::recvmsg(chan, &mut msg, libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted {
            Ok(None)
        } else {
            Err(e)
        };
    }
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    // A sender may pass more than one descriptor (in one or more headers): the first is
    // kept, the others closed, so that none leaks into this long-lived process.
    let mut first = None;
    // SAFETY: the control buffer was filled by recvmsg; CMSG_* walk it within its length,
    // and each SCM_RIGHTS header's data holds (len - CMSG_LEN(0)) / 4 descriptors, which
    // are ours to own from here on.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                let data = libc::CMSG_DATA(c) as *const RawFd;
                for i in 0..count {
                    let fd = OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i)));
                    if first.is_none() {
                        first = Some(fd);
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(first)
}

/// Sends `fd` over the unix socket `chan` with `data` (at least one byte: a descriptor
/// travels with data), in one message.
pub fn send_fd(chan: RawFd, fd: RawFd, data: &[u8]) -> io::Result<()> {
    send_fds(chan, &[fd], data)
}

/// Sends up to four descriptors in one message (see `send_fd`).
fn send_fds(chan: RawFd, fds: &[RawFd], data: &[u8]) -> io::Result<()> {
    const MAX: usize = 4;
    if fds.is_empty() || fds.len() > MAX {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    let data = if data.is_empty() { &[0u8][..] } else { data };
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // CMSG_SPACE(4 * sizeof(int)) = 32 bytes.
    let mut control = [0u64; 4];
    let size = std::mem::size_of_val(fds) as u32;
    // SAFETY: as in `receive`; the header and its data are written within the control
    // buffer, which CMSG_SPACE(size) fits for at most MAX descriptors.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(size) as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(size) as _;
        for (i, fd) in fds.iter().enumerate() {
            std::ptr::write_unaligned((libc::CMSG_DATA(c) as *mut RawFd).add(i), *fd);
        }
        let n = libc::sendmsg(chan, &msg, libc::MSG_NOSIGNAL);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if (n as usize) < data.len() {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

/// Serves the notifications of `listeners`, and of each listener the keeper sends over
/// `chan`, with `answer(pid)` computing a caller's numbers. Answers first the calls dead
/// servers left in `slots`, each on whichever listener it belongs to (the keeper sends them
/// all once this server starts). `calls` is held from taking a call to answering it.
/// Returns when the keeper has closed `chan` and no listener is left.
pub fn serve(
    chan: OwnedFd,
    mut listeners: Vec<OwnedFd>,
    slots: &[InFlight; IN_FLIGHT],
    calls: &std::sync::Mutex<()>,
    answer: impl Fn(u32) -> libc::sysinfo,
) {
    let started = std::time::Instant::now();
    // (place, id, pid, addr) of each call left busy.
    let mut left: Vec<(usize, u64, u32, u64)> = (0..IN_FLIGHT)
        .filter(|&i| slots[i].busy.load(Ordering::SeqCst) == 1)
        .map(|i| {
            let s = &slots[i];
            (i, s.id.load(Ordering::SeqCst), s.pid.load(Ordering::SeqCst) as u32, s.addr.load(Ordering::SeqCst))
        })
        .collect();
    // The left calls of listener `l`: answered, and their places freed.
    let answer_left = |left: &mut Vec<(usize, u64, u32, u64)>, l: &OwnedFd| {
        let _taking = calls.lock().unwrap_or_else(|p| p.into_inner());
        left.retain(|&(i, id, pid, addr)| {
            let mut check = id;
            if ioctl(l.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut check).is_err() {
                return true;
            }
            reply(l.as_raw_fd(), id, pid, addr, &answer(pid));
            slots[i].busy.store(0, Ordering::SeqCst);
            false
        });
    };
    listeners.iter().for_each(|l| answer_left(&mut left, l));
    // Calls a killed predecessor received and noted nowhere, once and again a moment
    // later (its predecessors are waited for only so long: they may still be exiting).
    restart_waiting_calls();
    let mut restart_again = Some(started + RESTART_AGAIN);
    let mut chan = Some(chan);
    loop {
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(listeners.len() + 1);
        fds.push(libc::pollfd { fd: chan.as_ref().map_or(-1, |c| c.as_raw_fd()), events: libc::POLLIN, revents: 0 });
        fds.extend(listeners.iter().map(|l| libc::pollfd { fd: l.as_raw_fd(), events: libc::POLLIN, revents: 0 }));
        if chan.is_none() && listeners.is_empty() {
            return;
        }
        // Until the next of: the second look for waiting calls, the end of the left calls.
        let next = [restart_again, (!left.is_empty()).then_some(started + LEFT_FOR)].into_iter().flatten().min();
        let wait = next.map_or(-1, |t| t.saturating_duration_since(std::time::Instant::now()).as_millis() as i32);
        // SAFETY: fds is a live array of fds.len() pollfds.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait) } < 0 {
            continue;
        }
        if restart_again.is_some_and(|t| std::time::Instant::now() >= t) {
            restart_again = None;
            restart_waiting_calls();
        }
        if !left.is_empty() && started.elapsed() >= LEFT_FOR {
            for &(i, ..) in &left {
                slots[i].busy.store(0, Ordering::SeqCst);
            }
            left.clear();
        }
        let mut gone = Vec::new();
        for (i, p) in fds.iter().enumerate().skip(1) {
            let fd = p.fd;
            if p.revents & libc::POLLIN != 0 {
                let _taking = calls.lock().unwrap_or_else(|p| p.into_inner());
                // SAFETY: all-zero is what NOTIF_RECV requires of its argument.
                let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
                if ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut n).is_ok() {
                    if n.data.nr == libc::SYS_sysinfo as i32 {
                        // A free place (none: every one holds a call left unanswered).
                        let slot = slots.iter().find(|s| s.busy.load(Ordering::SeqCst) == 0);
                        if let Some(s) = slot {
                            s.id.store(n.id, Ordering::SeqCst);
                            s.pid.store(u64::from(n.pid), Ordering::SeqCst);
                            s.addr.store(n.data.args[0], Ordering::SeqCst);
                            s.busy.store(1, Ordering::SeqCst);
                        }
                        reply(fd, n.id, n.pid, n.data.args[0], &answer(n.pid));
                        if let Some(s) = slot {
                            s.busy.store(0, Ordering::SeqCst);
                        }
                    } else {
                        pass(fd, n.id);
                    }
                }
            } else if p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                // Every process of that filter has ended.
                gone.push(i - 1);
            }
        }
        for i in gone.into_iter().rev() {
            listeners.swap_remove(i);
        }
        if fds[0].revents != 0 {
            match receive(fds[0].fd) {
                Ok(Some(l)) => {
                    answer_left(&mut left, &l);
                    listeners.push(l)
                }
                Ok(None) => {}
                Err(_) => chan = None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut p = [0; 2];
        // SAFETY: p has room for two descriptors.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) }, 0);
        // SAFETY: pipe2 returned two new descriptors that nothing else owns.
        unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) }
    }

    /// Whether every write end of the pipe read by `r` is closed (a read sees end of file).
    fn writers_gone(r: &OwnedFd) -> bool {
        let mut b = [0u8; 1];
        // SAFETY: reads into b.
        unsafe { libc::read(r.as_raw_fd(), b.as_mut_ptr().cast(), 1) == 0 }
    }

    #[test]
    fn receive_keeps_the_first_descriptor_and_closes_the_rest() {
        let mut s = [0; 2];
        // SAFETY: s has room for two descriptors.
        assert_eq!(
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, s.as_mut_ptr()) },
            0
        );
        // SAFETY: socketpair returned two new descriptors.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(s[0]), OwnedFd::from_raw_fd(s[1])) };
        let pipes: Vec<_> = (0..3).map(|_| pipe()).collect();
        let writers: Vec<RawFd> = pipes.iter().map(|(_, w)| w.as_raw_fd()).collect();
        send_fds(a.as_raw_fd(), &writers, b"x").unwrap();
        let (readers, ours): (Vec<_>, Vec<_>) = pipes.into_iter().unzip();
        drop(ours);
        let kept = receive(b.as_raw_fd()).unwrap().expect("a descriptor");
        // The first pipe is still held (by `kept`); the other two were closed by receive.
        assert!(!writers_gone(&readers[0]));
        assert!(writers_gone(&readers[1]) && writers_gone(&readers[2]));
        drop(kept);
        assert!(writers_gone(&readers[0]));
        // A message without descriptors gives none, and the peer's close an error.
        // SAFETY: writes one byte from a live buffer.
        assert_eq!(unsafe { libc::write(a.as_raw_fd(), b"y".as_ptr().cast(), 1) }, 1);
        assert!(receive(b.as_raw_fd()).unwrap().is_none());
        drop(a);
        assert!(receive(b.as_raw_fd()).is_err());
    }
}
