//! What podrun's no-std binaries (podrun-pause, podrun-keeper) share in place of a C
//! runtime: raw syscalls, the entry point, memcpy/memset, and a panic that exits.
//! Each binary includes it as `mod rt` and defines `fn main(sp: *const usize) -> !`.

use core::arch::{asm, naked_asm};

#[cfg(not(target_arch = "x86_64"))]
compile_error!("podrun's no-std binaries have syscall numbers for x86_64 only");

const SYS_EXIT_GROUP: usize = 231;

// Syscall numbers and flags both binaries use.
pub const SYS_READ: usize = 0;
pub const SYS_WRITE: usize = 1;
pub const SYS_WAIT4: usize = 61;
pub const SYS_FCNTL: usize = 72;
pub const SYS_PRCTL: usize = 157;
pub const SYS_EXECVEAT: usize = 322;
pub const F_SETFD: usize = 2;
pub const FD_CLOEXEC: usize = 1;
pub const AT_EMPTY_PATH: usize = 0x1000;
pub const PR_SET_NAME: usize = 15;
pub const WNOHANG: usize = 1;
pub const EINTR: isize = -4;

pub unsafe fn syscall4(n: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller passes a valid syscall number and arguments for it; the kernel
    // clobbers rcx and r11 only.
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a, in("rsi") b, in("rdx") c, in("r10") d,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

pub unsafe fn syscall5(n: usize, a: usize, b: usize, c: usize, d: usize, e: usize) -> isize {
    let ret: isize;
    // SAFETY: as syscall4's, with a fifth argument in r8.
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a, in("rsi") b, in("rdx") c, in("r10") d,
             in("r8") e, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

pub fn exit(code: usize) -> ! {
    // SAFETY: exit_group takes one integer and does not return.
    unsafe { asm!("syscall", in("rax") SYS_EXIT_GROUP, in("rdi") code, options(noreturn, nostack)) }
}

/// True if the NUL-terminated `s` is exactly `want`.
///
/// # Safety
/// `s` points at a NUL-terminated string.
pub unsafe fn is(s: *const u8, want: &[u8]) -> bool {
    for (i, &w) in want.iter().enumerate() {
        // SAFETY: we stop at the first mismatch, and the NUL terminator mismatches.
        if unsafe { *s.add(i) } != w {
            return false;
        }
    }
    // SAFETY: all of `want` matched, so the string is at least that long plus its NUL.
    unsafe { *s.add(want.len()) == 0 }
}

/// Called by `_start` with the initial stack.
///
/// # Safety
/// `sp` is the initial stack pointer the kernel set up.
unsafe extern "C" fn entry(sp: *const usize) -> ! {
    // SAFETY: passed on as it came.
    unsafe { crate::main(sp) }
}

/// The ELF entry point: pass the initial stack (argc, argv, envp) to `main`, with the stack
/// aligned as the ABI wants at a call; never return.
#[unsafe(naked)]
#[unsafe(no_mangle)]
extern "C" fn _start() -> ! {
    naked_asm!("xor ebp, ebp", "mov rdi, rsp", "and rsp, -16", "call {main}", "ud2", main = sym entry)
}

/// What the compiler calls to copy memory (there is no libc to provide it).
///
/// # Safety
/// As C's: `d` and `s` are valid for `n` bytes and do not overlap.
#[unsafe(no_mangle)]
unsafe extern "C" fn memcpy(d: *mut u8, s: *const u8, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: i < n, within both buffers (the caller's promise).
        unsafe { *d.add(i) = *s.add(i) };
    }
    d
}

/// What the compiler calls to fill memory.
///
/// # Safety
/// As C's: `d` is valid for `n` bytes.
#[unsafe(no_mangle)]
unsafe extern "C" fn memset(d: *mut u8, c: i32, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: i < n, within the buffer (the caller's promise).
        unsafe { *d.add(i) = c as u8 };
    }
    d
}

/// Referenced by the precompiled `core` of debug builds; never called, since podrun-pause
/// aborts instead of unwinding.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(2)
}
