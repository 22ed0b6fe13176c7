//! podrun-keeper: the resource view's keeper (podrun's procview.rs starts it). Like
//! podrun-pause (main.rs), no std and no libc, and embedded in podrun; a binary of its own
//! so that pause, which runs once per sandbox, stays one page.
//!
//! ```text
//! podrun:[keeper]   this: holds the /dev/fuse connection and the sysinfo listeners
//!   └─ podrun:[view]  the server, the podrun-view binary (podrun_procfs::server), exec'd
//! ```
//! It holds what must outlive a server (the FUSE connection, the memory the servers share,
//! every container's seccomp listener), starts a server and starts another when one dies,
//! so a container never sees its view's mount fail. A server that had nothing to do for a
//! while ends (exit status 3); the keeper then waits on the connection and the listeners
//! and starts the next one when a request or call comes. It is no-std, not a Rust std
//! program, because it lives as long as a root has containers: so it takes a few kB; as
//! part of podrun-view it took about 700 kB (its code, libc's, and a heap).
//!
//! Started with argv `podrun-keeper SERVER_ARGV0 SERVER_ARGS... --resume 0` and:
//! - fd 3: the /dev/fuse connection; fd 4: the socket containers hand their seccomp
//!   listeners to (the agent); fd 5: the memory servers share (a memfd); fd 6: the server's
//!   binary; fd 7: the view's lock file (`<root>/procview.active`), open read-write;
//! - when it takes over from keepers that died (succession.rs): fd 8, a pidfd of the
//!   server to end, and the listeners, open at any other places; and when its standby
//!   forked it, fd 10, the channel to that standby.
//!
//! A server is started with fd 3 and fd 5 as they are, its channel from the keeper at fd 4
//! (every listener held is sent there at once, later ones as they come), fd 6, fd 7 (a lock
//! description of its own), the keeper's binary at fd 9 and the agent's socket at fd 10,
//! and the argv from SERVER_ARGV0 on, whose last word says 1 once a server has run before
//! (the new one has the kernel resend what the dead one had read).
//!
//! No process of the view is a single point of failure (succession.rs): this keeper, a
//! standby keeper (`podrun:[backup]`) and the server each hold the connection and every
//! listener, and whichever of them is left when the others are killed starts the rest
//! again.

#![no_std]
#![no_main]
// As in main.rs.
#![no_builtins]

mod messages;
mod rt;
mod succession;
use messages::*;
use rt::*;

const SYS_CLOSE: usize = 3;
const SYS_FSTAT: usize = 5;
const SYS_POLL: usize = 7;
const SYS_DUP2: usize = 33;
const SYS_SENDMSG: usize = 46;
const SYS_RECVMSG: usize = 47;
const SYS_SOCKETPAIR: usize = 53;
const SYS_FORK: usize = 57;
const SYS_OPEN: usize = 2;
const SYS_READLINK: usize = 89;
const SYS_ACCEPT4: usize = 288;

const FUSE: usize = 3;
const AGENT: usize = 4;
const SHARED: usize = 5;
const SERVER_EXE: usize = 6;
const LOCK: usize = 7;
/// At start, after keepers died: a pidfd of the server to end (succession::take_over).
const ENDS: usize = 8;
/// The keeper's own binary, for a standby to exec and for the server to start a keeper.
const KEEPER_EXE: usize = 9;
/// At start, in a keeper its standby forked: the channel to that standby.
const STANDBY: usize = 10;
/// In the server: the agent's socket (for a keeper it starts).
const SERVER_AGENT: usize = 10;

const O_CLOEXEC: usize = 0o2000000;
const SOCK_CLOEXEC: usize = 0o2000000;
const SOCK_NONBLOCK: usize = 0o4000;
const AF_UNIX: usize = 1;
const SOCK_SEQPACKET: usize = 5;
const MSG_DONTWAIT: usize = 0x40;
const MSG_NOSIGNAL: usize = 0x4000;
const MSG_CMSG_CLOEXEC: usize = 0x40000000;
const SOL_SOCKET: i32 = 1;
const SCM_RIGHTS: i32 = 1;
const POLLIN: i16 = 1;
const POLLERR: i16 = 8;
const POLLHUP: i16 = 0x10;
const POLLNVAL: i16 = 0x20;
const S_IFMT: u32 = 0o170000;
const S_IFCHR: u32 = 0o020000;
/// /dev/fuse is character device 10:229: makedev(10, 229) as glibc encodes it.
const FUSE_RDEV: u64 = (10 << 8) | 229;
/// FUSE_NOTIFY_RESEND (Linux 6.9): the kernel puts back every request a server had read.
const FUSE_NOTIFY_RESEND: i32 = 7;
/// Exit status of a server that could not be exec'd.
const CANNOT_EXEC: i32 = 127;
/// Exit status of a server that ended for having nothing to do (podrun_procfs::server).
const IDLE_EXIT: i32 = 3;

/// At most this many connections wait to deliver a listener; the oldest is dropped.
const PENDING_MAX: usize = 64;
/// Listeners held: one per container with the view's sysinfo, and the default limit of
/// open files (1024) would stop the keeper before this does.
const LISTENERS_MAX: usize = 1024;

/// How often the keeper looks whether the server is dying (SIGKILL pending), in ms.
const TICK_MS: isize = 20;

struct Fds<const N: usize> {
    fd: [i32; N],
    len: usize,
}

impl<const N: usize> Fds<N> {
    fn push(&mut self, fd: i32) -> bool {
        if self.len == N {
            return false;
        }
        self.fd[self.len] = fd;
        self.len += 1;
        true
    }

    /// Closes and forgets the one at `i`; the last takes its place.
    fn remove(&mut self, i: usize) {
        close(self.fd[i]);
        self.len -= 1;
        self.fd[i] = self.fd[self.len];
    }
}

/// The keeper's side of sysinfo(2): the agent's socket, the connections that have not yet
/// delivered their listener, every listener still in use, and the current server's channel
/// and pid; and its successors': the standby's channel and pid, and a server it did not
/// start and ended (a pidfd; once that one has exited, the kernel resends what it had read).
struct Agent {
    pending: Fds<PENDING_MAX>,
    listeners: Fds<LISTENERS_MAX>,
    to_server: i32,
    server: i32,
    standby: i32,
    standby_pid: i32,
    orphan: i32,
}

#[repr(C)]
struct PollFd {
    fd: i32,
    events: i16,
    revents: i16,
}

/// How a server ended.
enum End {
    /// Cleanly: the view was unmounted, the keeper's work is done.
    Done,
    /// Killed, crashed or dying: the next one starts at once.
    Died,
    /// Its binary could not be run: the next one waits a second, not to spin.
    CannotExec,
    /// It had nothing to do: the next one starts when a request or call comes.
    Idle,
}

/// The process starts here with `sp` pointing at argc, then argv[], NULL, envp[], NULL.
///
/// # Safety
/// `sp` is the initial stack pointer the kernel set up.
unsafe fn main(sp: *const usize) -> ! {
    // SAFETY: the initial stack layout of execve(2) on x86_64; envp follows argv's NULL.
    let (argc, argv) = unsafe { (*sp, sp.add(1) as *const *const u8) };
    // SAFETY: as above.
    let envp = unsafe { argv.add(argc + 1) };
    // SAFETY: argc counts argv's entries; each is NUL-terminated.
    let resume = unsafe {
        let last = *argv.add(argc - 1);
        if argc < 4 || !is(*argv.add(argc - 2), b"--resume") || !(is(last, b"0") || is(last, b"1")) {
            exit(125);
        }
        last as *mut u8
    };
    // SAFETY (all calls below): plain syscalls with integer arguments or pointers to live
    // values of the sizes the kernel expects.
    unsafe {
        syscall4(SYS_PRCTL, PR_SET_NAME, c"podrun:[keeper]".as_ptr() as usize, 0, 0);
        if !is_fuse(FUSE) {
            say(b"podrun-keeper is started by podrun, with a FUSE connection at descriptor 3\n");
            exit(125);
        }
        for fd in [AGENT, SHARED, SERVER_EXE, LOCK] {
            syscall4(SYS_FCNTL, fd, F_SETFD, FD_CLOEXEC, 0);
        }
    }
    // One active keeper per view: the one that holds the lock. Another is already serving.
    if !succession::take_lock() {
        exit(0);
    }
    succession::record();
    succession::open_own_binary();
    // Not zeroed (that would call memset, which we do not have): only entries below `len`
    // are read.
    let mut agent = core::mem::MaybeUninit::<Agent>::uninit();
    // SAFETY: the lengths and the channel are set before anything reads the arrays.
    let agent = unsafe {
        let a = agent.as_mut_ptr();
        (*a).pending.len = 0;
        (*a).listeners.len = 0;
        (*a).to_server = -1;
        (*a).server = 0;
        (*a).standby = -1;
        (*a).standby_pid = 0;
        (*a).orphan = -1;
        &mut *a
    };
    if succession::adopt(agent) {
        // SAFETY: `resume` is the last argument, "0" or "1", writable on our stack.
        unsafe { *resume = b'1' };
    }
    agent.keep_standby(argv, envp);
    succession::end_orphan(agent);
    loop {
        agent.keep_standby(argv, envp);
        let mut pair = [-1i32; 2];
        // SAFETY: socketpair fills two ints.
        let ok = unsafe {
            syscall4(SYS_SOCKETPAIR, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair.as_mut_ptr() as usize) == 0
        };
        if !ok {
            agent.wait(50, false, argv, envp);
            continue;
        }
        // SAFETY: fork has no arguments; the child only execs.
        let pid = unsafe { syscall4(SYS_FORK, 0, 0, 0, 0) };
        if pid == 0 {
            // Only the keeper may hold the other end (its death before GO is this child's
            // end of file) and the standby's channel (its hang-up is the standby's sign of
            // that death): a child waiting for GO with copies of them waited for ever, and
            // kept the keeper's lock.
            close(pair[0]);
            if agent.standby >= 0 {
                close(agent.standby);
            }
            // SAFETY: see start_server.
            unsafe { start_server(pair[1], argv.add(1), envp) }
        }
        close(pair[1]);
        if pid < 0 {
            close(pair[0]);
            agent.wait(50, false, argv, envp);
            continue;
        }
        agent.to_server = pair[0];
        agent.server = pid as i32;
        // The standby learns of the server before it may run (start_server waits for GO):
        // a server this keeper dies before telling of never runs, so a standby taking over
        // ends every server there is.
        agent.tell_standby_server();
        send_byte(pair[0], GO);
        for i in 0..agent.listeners.len {
            send_fd(pair[0], agent.listeners.fd[i], 0);
        }
        let end = watch(pid as i32, agent, argv, envp);
        close(pair[0]);
        agent.to_server = -1;
        agent.server = 0;
        match end {
            End::Done => exit(0),
            End::Died => {}
            End::CannotExec => {
                say(b"podrun-keeper: cannot run the view's server (podrun-view); trying again\n");
                for _ in 0..1000 / TICK_MS {
                    agent.wait(TICK_MS, false, argv, envp);
                }
            }
            End::Idle => {
                // A request it may have read as it ended goes back to the queue, and wakes
                // the keeper at once.
                resend();
                while !agent.wait(-1, true, argv, envp) {}
            }
        }
        // SAFETY: `resume` is the last argument, "0" (checked above), writable on our stack.
        unsafe { *resume = b'1' };
    }
}

/// The keeper's first message to a server it forked: run (the standby knows of it).
const GO: u8 = b'G';

/// In the forked child: once the keeper says GO on `chan` (its death first: this child
/// ends), the channel at fd 4, the connection and shared memory kept, then the server's
/// binary.
///
/// # Safety
/// `argv` and `envp` are NULL-terminated vectors of NUL-terminated strings.
unsafe fn start_server(chan: i32, argv: *const *const u8, envp: *const *const u8) -> ! {
    // A lock description of the server's own, first: the active keeper's is released only
    // when every descriptor of it is closed, so none may outlive the keeper elsewhere (nor
    // in this child while it waits).
    succession::reopen_lock();
    let mut go = 0u8;
    // SAFETY: read of one byte of a message into a live byte.
    if unsafe { syscall4(SYS_READ, chan as usize, &mut go as *mut u8 as usize, 1, 0) } != 1 || go != GO {
        // (Never seen by a live keeper, which would try again.)
        exit(CANNOT_EXEC as usize);
    }
    // SAFETY: dup2 and fcntl on descriptors; execveat with the vectors given.
    unsafe {
        // The agent's socket moves up first: the channel takes its place.
        syscall4(SYS_DUP2, AGENT, SERVER_AGENT, 0, 0);
        if chan as usize != AGENT {
            syscall4(SYS_DUP2, chan as usize, AGENT, 0, 0);
        }
        for fd in [FUSE, AGENT, SHARED, SERVER_EXE, LOCK, KEEPER_EXE, SERVER_AGENT] {
            syscall4(SYS_FCNTL, fd, F_SETFD, 0, 0);
        }
        syscall5(SYS_EXECVEAT, SERVER_EXE, c"".as_ptr() as usize, argv as usize, envp as usize, AT_EMPTY_PATH);
    }
    exit(CANNOT_EXEC as usize)
}

/// Waits until `server` ends or is dying: killed, but held by a thread the kernel cannot
/// wake until a request is answered (storing a page waits for a reader's lock, the reader
/// for a READ), so a new server must start without waiting for the old one to be reaped.
/// Reaps any server that has ended. A dying server's thread may still take a request after
/// its successor had the kernel resend what was taken: once it is reaped, the kernel
/// resends again (else that reader waits for ever). Meanwhile it does the agent's work.
fn watch(server: i32, agent: &mut Agent, argv: *const *const u8, envp: *const *const u8) -> End {
    loop {
        let mut status: i32 = 0;
        // SAFETY: wait4 into a live int.
        let r = unsafe { syscall4(SYS_WAIT4, usize::MAX, &mut status as *mut i32 as usize, WNOHANG, 0) };
        if r == server as isize {
            let (signal, code) = (status & 0x7f, (status >> 8) & 0xff);
            return match (signal, code) {
                (0, 0) => End::Done,
                (0, CANNOT_EXEC) => End::CannotExec,
                (0, IDLE_EXIT) => End::Idle,
                _ => End::Died,
            };
        }
        if r > 0 && r == agent.standby_pid as isize {
            // The standby ended (its channel's hang-up starts the next one).
            continue;
        }
        if r > 0 {
            // An earlier server that was replaced while dying: reaped now.
            resend();
            continue;
        }
        if dying(server) {
            return End::Died;
        }
        agent.wait(TICK_MS, false, argv, envp);
    }
}

impl Agent {
    /// Waits up to `ms` (-1: for ever) for the agent's work and does it: accepts
    /// connections, takes the listener each delivers (passing it on to the server), drops
    /// listeners whose processes have all ended. With no server (`serverless`), a request
    /// on the connection or a call on a listener ends the wait too: true, a server is needed.
    fn wait(&mut self, ms: isize, serverless: bool, argv: *const *const u8, envp: *const *const u8) -> bool {
        const N: usize = 4 + PENDING_MAX + LISTENERS_MAX;
        let mut fds = core::mem::MaybeUninit::<[PollFd; N]>::uninit();
        let fds = fds.as_mut_ptr() as *mut PollFd;
        let (np, nl) = (self.pending.len, self.listeners.len);
        let set = |i: usize, fd: i32, events: i16| {
            // SAFETY: i < N: 1 + np + nl entries at most.
            unsafe { fds.add(i).write(PollFd { fd, events, revents: 0 }) }
        };
        set(0, AGENT as i32, POLLIN);
        for i in 0..np {
            set(1 + i, self.pending.fd[i], POLLIN);
        }
        // A server takes the calls: then only a hang-up (every process of the filter gone)
        // wakes us.
        let calls = if serverless { POLLIN } else { 0 };
        for i in 0..nl {
            set(1 + np + i, self.listeners.fd[i], calls);
        }
        set(1 + np + nl, if serverless { FUSE as i32 } else { -1 }, POLLIN);
        // The standby's hang-up: it ended. An ended server's pidfd: readable once it exited.
        set(2 + np + nl, self.standby, 0);
        set(3 + np + nl, self.orphan, POLLIN);
        // SAFETY: the first 4 + np + nl entries are set.
        let n = unsafe { syscall4(SYS_POLL, fds as usize, 4 + np + nl, ms as usize, 0) };
        if n <= 0 {
            return false;
        }
        // SAFETY: entries below 4 + np + nl were set, and poll filled their revents.
        let revents = |i: usize| unsafe { (*fds.add(i)).revents };
        let ready = |i: usize| revents(i) != 0;
        let mut needed = ready(1 + np + nl);
        if ready(2 + np + nl) {
            self.lost_standby();
            self.keep_standby(argv, envp);
        }
        if ready(3 + np + nl) {
            resend();
            close(self.orphan);
            self.orphan = -1;
        }
        // From the last down: remove() moves the last entry into the place it empties.
        for i in (0..nl).rev() {
            match revents(1 + np + i) {
                0 => {}
                r if r & (POLLHUP | POLLERR | POLLNVAL) != 0 => self.listeners.remove(i),
                _ => needed = true,
            }
        }
        for i in (0..np).rev() {
            if ready(1 + i) {
                let l = receive(self.pending.fd[i]);
                self.pending.remove(i);
                if l >= 0 {
                    if is_listener(l) && self.listeners.push(l) {
                        // The standby first: a keeper killed between the two leaves it
                        // to the standby, which gives it to its own server.
                        if self.standby >= 0 {
                            send_fd(self.standby, l, succession::LISTENER);
                        }
                        if self.to_server >= 0 {
                            // A server that is gone gets it at its successor's start instead.
                            send_fd(self.to_server, l, 0);
                        }
                    } else {
                        close(l);
                    }
                }
            }
        }
        if ready(0) {
            loop {
                // SAFETY: accept4 without an address; the new descriptor is ours.
                let fd = unsafe { syscall4(SYS_ACCEPT4, AGENT, 0, 0, SOCK_CLOEXEC | SOCK_NONBLOCK) };
                if fd == EINTR {
                    continue;
                }
                if fd < 0 {
                    break;
                }
                if self.pending.len == PENDING_MAX {
                    self.pending.remove(0);
                }
                self.pending.push(fd as i32);
            }
        }
        needed
    }
}

fn close(fd: i32) {
    // SAFETY: closes a descriptor the keeper owns.
    unsafe { syscall4(SYS_CLOSE, fd as usize, 0, 0, 0) };
}

fn say(msg: &[u8]) {
    // SAFETY: writes a live buffer to stderr.
    unsafe { syscall4(SYS_WRITE, 2, msg.as_ptr() as usize, msg.len(), 0) };
}

/// Asks the kernel to resend the requests a dead server had read but not answered.
fn resend() {
    let header: [u32; 4] = [16, FUSE_NOTIFY_RESEND as u32, 0, 0];
    // SAFETY: writes the 16-byte fuse_out_header (len, error = the code, unique = 0).
    unsafe { syscall4(SYS_WRITE, FUSE, header.as_ptr() as usize, 16, 0) };
}

/// fd is /dev/fuse.
fn is_fuse(fd: usize) -> bool {
    // struct stat is 144 bytes on x86_64: st_rdev at 40, st_mode (u32) at 24.
    let mut st = core::mem::MaybeUninit::<[u64; 18]>::uninit();
    // SAFETY: fstat fills the 144 bytes on success, and only then are they read.
    unsafe {
        if syscall4(SYS_FSTAT, fd, st.as_mut_ptr() as usize, 0, 0) != 0 {
            return false;
        }
        let st = st.assume_init_ref();
        let mode = st[3] as u32;
        mode & S_IFMT == S_IFCHR && st[5] == FUSE_RDEV
    }
}

/// Writes `n` in decimal at `at`; returns the position after it.
fn put_number(buf: &mut [u8], mut at: usize, n: u64) -> usize {
    let mut div = 1;
    while n / div >= 10 {
        div *= 10;
    }
    while div > 0 {
        buf[at] = b'0' + (n / div % 10) as u8;
        at += 1;
        div /= 10;
    }
    at
}

/// `prefix` N `suffix` NUL, in `buf`.
fn path<'a>(buf: &'a mut [u8; 64], prefix: &[u8], n: u64, suffix: &[u8]) -> &'a [u8] {
    let mut at = 0;
    for &b in prefix {
        buf[at] = b;
        at += 1;
    }
    at = put_number(buf, at, n);
    for &b in suffix {
        buf[at] = b;
        at += 1;
    }
    buf[at] = 0;
    &buf[..=at]
}

/// Whether `fd` is a seccomp listener (and not anything else a process could send).
fn is_listener(fd: i32) -> bool {
    const WANT: &[u8] = b"anon_inode:seccomp notify";
    let mut p = [0u8; 64];
    let p = path(&mut p, b"/proc/self/fd/", fd as u64, b"");
    let mut target = [0u8; 64];
    // SAFETY: readlink of a NUL-terminated path into a live buffer of its size.
    let n = unsafe { syscall4(SYS_READLINK, p.as_ptr() as usize, target.as_mut_ptr() as usize, 64, 0) };
    n == WANT.len() as isize && same(&target[..WANT.len()], WANT)
}

/// SIGKILL is pending for the whole process `pid` (ShdPnd in its status): it is on its way
/// out.
fn dying(pid: i32) -> bool {
    let mut p = [0u8; 64];
    let p = path(&mut p, b"/proc/", pid as u64, b"/status");
    // SAFETY: open of a NUL-terminated path; read into a live buffer; close of ours.
    let (buf, n) = unsafe {
        let fd = syscall4(SYS_OPEN, p.as_ptr() as usize, O_CLOEXEC, 0, 0);
        if fd < 0 {
            return false;
        }
        let mut buf = core::mem::MaybeUninit::<[u8; 4096]>::uninit();
        let n = syscall4(SYS_READ, fd as usize, buf.as_mut_ptr() as usize, 4096, 0);
        close(fd as i32);
        if n <= 0 {
            return false;
        }
        (buf, n as usize)
    };
    // SAFETY: read filled the first n bytes.
    let text = unsafe { core::slice::from_raw_parts(buf.as_ptr() as *const u8, n) };
    const KEY: &[u8] = b"\nShdPnd:\t";
    let Some(at) = text.windows(KEY.len()).position(|w| same(w, KEY)) else { return false };
    let mut mask: u64 = 0;
    for &c in &text[at + KEY.len()..] {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => break,
        };
        mask = mask << 4 | d as u64;
    }
    mask & (1 << 8) != 0
}

/// a == b, byte by byte (a slice comparison would call bcmp, which we do not have).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}
