//! podrun-pause: the process that holds a sandbox's namespaces.
//!
//! It must stay tiny (a few kB resident), so it is built with no std and no libc: raw
//! syscalls only, no heap, no allocation. It must never exit except on SIGTERM or SIGINT
//! (exit 0), because the pod's shared namespaces live as long as it does. As PID 1 of a
//! shared pid namespace it reaps every zombie; otherwise it becomes a child subreaper so
//! orphans of the sandbox are still reaped here. The pattern is catatonit's and Kubernetes'
//! pause: every signal blocked, one signalfd loop.
//!
//! podrun embeds this binary (see build.rs at the workspace root) and starts it with
//! stdin/stdout/stderr on /dev/null and no other fds.
//!
//! The same binary has a second role: started as `podrun-exec FILE ARGV0 ARGS...`, it only
//! execs FILE. podrun's init stage execs workloads through it, so that at the moment a
//! container file is executed, /proc/self/exe is this sealed memfd and not podrun's own
//! binary on the host: a workload `#!/proc/self/exe` gets no handle on podrun
//! (CVE-2019-5736).
//!
//! A third: started as `podrun-wait PID FD ARG0 ARGS... --status XXXXXXXXXXX`, it is a
//! detached container's monitor while the container runs (podrun's monitor.rs). It waits
//! for its child PID, reaping the orphans it inherits as a subreaper, writes PID's wait
//! status over the X's (-1 if PID was not its child), and execs the binary open at FD (podrun)
//! with ARG0 ARGS... --status STATUS, to record the exit and apply the restart policy. A
//! forked podrun would keep its relocated data, code and heap resident while it waits.

#![no_std]
#![no_main]
// The compiler may call memcpy and memset (rt.rs) for copies and fills; no_builtins keeps
// it from turning their own loops into calls to themselves.
#![no_builtins]

mod rt;
use rt::*;

const SYS_RT_SIGPROCMASK: usize = 14;
const SYS_GETPID: usize = 39;
const SYS_CHDIR: usize = 80;
const SYS_SIGNALFD4: usize = 289;
const SYS_CLOSE_RANGE: usize = 436;
const SYS_EXECVE: usize = 59;
const ENOENT: isize = -2;

const SIG_BLOCK: usize = 0;
const SIGINT: u32 = 2;
const SIGTERM: u32 = 15;
const SIGCHLD: u32 = 17;
const SFD_CLOEXEC: usize = 0o2000000;
const PR_SET_DUMPABLE: usize = 4;
const PR_SET_CHILD_SUBREAPER: usize = 36;

/// signalfd_siginfo is 128 bytes; ssi_signo is its first u32.
const SIGINFO_SIZE: usize = 128;

fn bit(sig: u32) -> u64 {
    1 << (sig - 1)
}

/// The `podrun-exec` role: argv = ["podrun-exec", FILE, ARGV0, ARGS...].
///
/// # Safety
/// `argv` and `envp` are the kernel's NULL-terminated vectors from the initial stack.
unsafe fn exec_role(argc: usize, argv: *const *const u8, envp: *const *const u8) -> ! {
    if argc < 3 {
        exit(125);
    }
    // SAFETY: argc >= 3, so argv[1] and argv[2..] exist and are NUL-terminated strings.
    let err = unsafe { syscall4(SYS_EXECVE, *argv.add(1) as usize, argv.add(2) as usize, envp as usize, 0) };
    let msg: &[u8] =
        if err == ENOENT { b"podrun: exec: no such file or directory\n" } else { b"podrun: exec: cannot execute\n" };
    // SAFETY: writing a static message to stderr.
    unsafe { syscall4(SYS_WRITE, 2, msg.as_ptr() as usize, msg.len(), 0) };
    exit(if err == ENOENT { 127 } else { 126 })
}

/// The `podrun-wait` role: argv = ["podrun-wait", PID, FD, ARG0, ARGS..., "--status",
/// "XXXXXXXXXXX"]. No copies: the status is written over the last argument's X's, and
/// the exec is given the kernel's argv from ARG0 on.
///
/// # Safety
/// `argv` and `envp` are the kernel's NULL-terminated vectors from the initial stack.
unsafe fn wait_role(argc: usize, argv: *const *const u8, envp: *const *const u8) -> ! {
    // SAFETY: each argument read exists (argc checked) and is NUL-terminated.
    let (pid, fd, last) = unsafe {
        if argc < 6 {
            exit(125);
        }
        (number(*argv.add(1)), number(*argv.add(2)), *argv.add(argc - 1) as *mut u8)
    };
    let (Some(pid), Some(fd)) = (pid, fd) else { exit(125) };
    // SAFETY (all calls below): plain syscalls with integer arguments or pointers to live
    // values of the sizes the kernel expects; `last` is a writable argument string on our
    // stack of 11 X's, room for an i32 and its sign.
    unsafe {
        syscall4(SYS_PRCTL, PR_SET_NAME, c"podrun:[monitor]".as_ptr() as usize, 0, 0);
        let mut status: i32 = 0;
        let status = loop {
            let r = syscall4(SYS_WAIT4, usize::MAX, &mut status as *mut i32 as usize, 0, 0);
            if r == pid {
                break status as i64;
            }
            if r < 0 && r != EINTR {
                break -1;
            }
        };
        write_number(last, status);
        syscall4(SYS_FCNTL, fd as usize, F_SETFD, FD_CLOEXEC, 0);
        syscall5(SYS_EXECVEAT, fd as usize, c"".as_ptr() as usize, argv.add(3) as usize, envp as usize, AT_EMPTY_PATH);
        let msg = b"podrun: the monitor cannot run podrun again to record the container's exit\n";
        syscall4(SYS_WRITE, 2, msg.as_ptr() as usize, msg.len(), 0);
    }
    exit(125)
}

/// A non-negative decimal number, NUL-terminated, of at most 9 digits.
///
/// # Safety
/// `s` points at a NUL-terminated string.
unsafe fn number(s: *const u8) -> Option<isize> {
    let mut n: isize = 0;
    for i in 0..10 {
        // SAFETY: we stop at the NUL terminator.
        match unsafe { *s.add(i) } {
            0 if i > 0 => return Some(n),
            d @ b'0'..=b'9' if i < 9 => n = n * 10 + (d - b'0') as isize,
            _ => return None,
        }
    }
    None
}

/// Writes `n` in decimal, NUL-terminated, at `at` (room for 12 bytes).
///
/// # Safety
/// `at` is writable for 12 bytes.
unsafe fn write_number(at: *mut u8, n: i64) {
    let (mut at, mut n) = (at, n);
    // SAFETY (the writes): at most a sign, 10 digits of an i32 and the NUL.
    unsafe {
        if n < 0 {
            *at = b'-';
            at = at.add(1);
            n = -n;
        }
        let mut div = 1_000_000_000;
        while div > 1 && n / div == 0 {
            div /= 10;
        }
        while div > 0 {
            *at = b'0' + (n / div % 10) as u8;
            at = at.add(1);
            div /= 10;
        }
        *at = 0;
    }
}

/// The process starts here with `sp` pointing at argc, then argv[], NULL, envp[], NULL.
///
/// # Safety
/// `sp` is the initial stack pointer the kernel set up.
unsafe fn main(sp: *const usize) -> ! {
    // SAFETY: the initial stack layout of execve(2) on x86_64.
    let (argc, argv) = unsafe { (*sp, sp.add(1) as *const *const u8) };
    // SAFETY: envp follows argv's NULL terminator.
    let envp = unsafe { argv.add(argc + 1) };
    // SAFETY: argv[0] exists when argc >= 1 and is NUL-terminated.
    if argc >= 1 && unsafe { is(*argv, b"podrun-exec") } {
        // SAFETY: see exec_role.
        unsafe { exec_role(argc, argv, envp) }
    }
    // SAFETY: as above.
    if argc >= 1 && unsafe { is(*argv, b"podrun-wait") } {
        // SAFETY: see wait_role.
        unsafe { wait_role(argc, argv, envp) }
    }
    pause()
}

fn pause() -> ! {
    // SAFETY (all calls below): plain syscalls with integer arguments or pointers to live
    // stack values of the sizes the kernel expects.
    unsafe {
        // Not dumpable: containers sharing our pid namespace cannot reach /proc/1/root,
        // /proc/1/exe or our memory without CAP_SYS_PTRACE.
        syscall4(SYS_PRCTL, PR_SET_DUMPABLE, 0, 0, 0);
        // Started from a memfd, our comm would be its fd number: name ourselves for ps.
        syscall4(SYS_PRCTL, PR_SET_NAME, c"podrun-pause".as_ptr() as usize, 0, 0);
        if syscall4(SYS_GETPID, 0, 0, 0, 0) != 1 {
            syscall4(SYS_PRCTL, PR_SET_CHILD_SUBREAPER, 1, 0, 0);
        }
        syscall4(SYS_CHDIR, c"/".as_ptr() as usize, 0, 0, 0);
        syscall4(SYS_CLOSE_RANGE, 3, usize::MAX, 0, 0);
        // Block everything (SIGKILL and SIGSTOP cannot be), then read the three we act on.
        let all: u64 = !0;
        syscall4(SYS_RT_SIGPROCMASK, SIG_BLOCK, &all as *const u64 as usize, 0, 8);
        let wanted: u64 = bit(SIGCHLD) | bit(SIGTERM) | bit(SIGINT);
        let fd = syscall4(SYS_SIGNALFD4, usize::MAX, &wanted as *const u64 as usize, 8, SFD_CLOEXEC);
        if fd < 0 {
            exit(1);
        }
        // Uninitialised: zeroing it would call memset, which we do not have.
        let mut info = core::mem::MaybeUninit::<[u32; SIGINFO_SIZE / 4]>::uninit();
        loop {
            let n = syscall4(SYS_READ, fd as usize, info.as_mut_ptr() as usize, SIGINFO_SIZE, 0);
            if n == EINTR {
                continue;
            }
            if n != SIGINFO_SIZE as isize {
                exit(1);
            }
            // The kernel filled all 128 bytes (checked above).
            match info.assume_init_ref()[0] {
                SIGTERM | SIGINT => exit(0),
                // Reap everything that has exited: one SIGCHLD may stand for many children.
                _ => while syscall4(SYS_WAIT4, usize::MAX, 0, WNOHANG, 0) > 0 {},
            }
        }
    }
}
