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

#![no_std]
#![no_main]

use core::arch::{asm, naked_asm};

const SYS_READ: usize = 0;
const SYS_RT_SIGPROCMASK: usize = 14;
const SYS_GETPID: usize = 39;
const SYS_EXIT_GROUP: usize = 231;
const SYS_WAIT4: usize = 61;
const SYS_CHDIR: usize = 80;
const SYS_PRCTL: usize = 157;
const SYS_SIGNALFD4: usize = 289;
const SYS_CLOSE_RANGE: usize = 436;
const SYS_WRITE: usize = 1;
const SYS_EXECVE: usize = 59;
const ENOENT: isize = -2;

const SIG_BLOCK: usize = 0;
const SIGINT: u32 = 2;
const SIGTERM: u32 = 15;
const SIGCHLD: u32 = 17;
const SFD_CLOEXEC: usize = 0o2000000;
const WNOHANG: usize = 1;
const PR_SET_DUMPABLE: usize = 4;
const PR_SET_NAME: usize = 15;
const PR_SET_CHILD_SUBREAPER: usize = 36;
const EINTR: isize = -4;

/// signalfd_siginfo is 128 bytes; ssi_signo is its first u32.
const SIGINFO_SIZE: usize = 128;

#[cfg(not(target_arch = "x86_64"))]
compile_error!("podrun-pause has syscall numbers for x86_64 only");

unsafe fn syscall4(n: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller passes a valid syscall number and arguments for it; the kernel
    // clobbers rcx and r11 only.
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a, in("rsi") b, in("rdx") c, in("r10") d,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

fn exit(code: usize) -> ! {
    // SAFETY: exit_group takes one integer and does not return.
    unsafe { asm!("syscall", in("rax") SYS_EXIT_GROUP, in("rdi") code, options(noreturn, nostack)) }
}

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

/// True if the NUL-terminated `s` is exactly `want`.
///
/// # Safety
/// `s` points at a NUL-terminated string.
unsafe fn is(s: *const u8, want: &[u8]) -> bool {
    for (i, &w) in want.iter().enumerate() {
        // SAFETY: we stop at the first mismatch, and the NUL terminator mismatches.
        if unsafe { *s.add(i) } != w {
            return false;
        }
    }
    // SAFETY: all of `want` matched, so the string is at least that long plus its NUL.
    unsafe { *s.add(want.len()) == 0 }
}

/// The process starts here with `sp` pointing at argc, then argv[], NULL, envp[], NULL.
///
/// # Safety
/// `sp` is the initial stack pointer the kernel set up.
unsafe extern "C" fn main(sp: *const usize) -> ! {
    // SAFETY: the initial stack layout of execve(2) on x86_64.
    let (argc, argv) = unsafe { (*sp, sp.add(1) as *const *const u8) };
    // SAFETY: envp follows argv's NULL terminator.
    let envp = unsafe { argv.add(argc + 1) };
    // SAFETY: argv[0] exists when argc >= 1 and is NUL-terminated.
    if argc >= 1 && unsafe { is(*argv, b"podrun-exec") } {
        // SAFETY: see exec_role.
        unsafe { exec_role(argc, argv, envp) }
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

/// The ELF entry point: pass the initial stack (argc, argv, envp) to `main`, with the stack
/// aligned as the ABI wants at a call; never return.
#[unsafe(naked)]
#[unsafe(no_mangle)]
extern "C" fn _start() -> ! {
    naked_asm!("xor ebp, ebp", "mov rdi, rsp", "and rsp, -16", "call {main}", "ud2", main = sym main)
}

/// Referenced by the precompiled `core` of debug builds; never called, since podrun-pause
/// aborts instead of unwinding.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(2)
}
