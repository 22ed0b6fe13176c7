//! The keeper's messages on unix sockets: a descriptor with a byte of tag (SCM_RIGHTS), a
//! byte alone, and receiving them. Part of podrun-keeper (keeper.rs); no std, no libc.

use crate::rt::*;
use crate::{close, MSG_CMSG_CLOEXEC, MSG_DONTWAIT, MSG_NOSIGNAL, SCM_RIGHTS, SOL_SOCKET, SYS_RECVMSG, SYS_SENDMSG};

/// Sends `fd` over the unix socket `chan` in a message of one byte, `tag`.
pub fn send_fd(chan: i32, fd: i32, tag: u8) {
    let byte = tag;
    let iov = [&byte as *const u8 as usize, 1];
    // cmsghdr: cmsg_len (usize), level, type (i32 each), then the descriptor, padded to 8.
    let mut control = [0u64; 3];
    control[0] = 20;
    control[1] = (SOL_SOCKET as u32 as u64) | ((SCM_RIGHTS as u32 as u64) << 32);
    control[2] = fd as u32 as u64;
    // msghdr: name, namelen, iov, iovlen, control, controllen, flags.
    let msg: [usize; 7] = [0, 0, iov.as_ptr() as usize, 1, control.as_ptr() as usize, 24, 0];
    // SAFETY: msg and what it points at live across the call.
    unsafe { syscall4(SYS_SENDMSG, chan as usize, msg.as_ptr() as usize, MSG_NOSIGNAL, 0) };
}

/// Sends a message of one byte, `tag`, and no descriptor.
pub fn send_byte(chan: i32, tag: u8) {
    let iov = [&tag as *const u8 as usize, 1];
    let msg: [usize; 7] = [0, 0, iov.as_ptr() as usize, 1, 0, 0, 0];
    // SAFETY: msg and what it points at live across the call.
    unsafe { syscall4(SYS_SENDMSG, chan as usize, msg.as_ptr() as usize, MSG_NOSIGNAL, 0) };
}

/// Receives a message from `conn` and returns the first descriptor it carried, or -1. Any
/// other descriptor is closed, so that none leaks into this long-lived process.
pub fn receive(conn: i32) -> i32 {
    receive_tagged(conn).0
}

/// `receive`, and the message's byte (-1: the peer is gone, or nothing was there).
pub fn receive_tagged(conn: i32) -> (i32, i16) {
    let mut byte = 0u8;
    let iov = [&mut byte as *mut u8 as usize, 1];
    // Room for eight descriptors in one header; more are closed by the kernel (MSG_CTRUNC).
    const CONTROL: usize = 16 + 8 * 4;
    let mut control = [0u64; CONTROL / 8];
    let mut msg: [usize; 7] = [0, 0, iov.as_ptr() as usize, 1, control.as_mut_ptr() as usize, CONTROL, 0];
    // SAFETY: msg and the buffers it points at live across the call.
    let n =
        unsafe { syscall4(SYS_RECVMSG, conn as usize, msg.as_mut_ptr() as usize, MSG_CMSG_CLOEXEC | MSG_DONTWAIT, 0) };
    if n <= 0 {
        return (-1, -1);
    }
    // Walk the headers the kernel wrote (msg_controllen is now their length): each is
    // cmsg_len, level, type, data, padded to 8 bytes.
    let (mut at, end) = (0usize, msg[5].min(CONTROL));
    let mut first = -1;
    let words = control.as_ptr() as *const u8;
    while at + 16 <= end {
        // SAFETY: at + 16 <= end <= CONTROL: the header lies within `control`.
        let (len, level, kind) = unsafe {
            (
                (words.add(at) as *const usize).read(),
                (words.add(at + 8) as *const i32).read(),
                (words.add(at + 12) as *const i32).read(),
            )
        };
        if len < 16 || at + len > end {
            break;
        }
        if level == SOL_SOCKET && kind == SCM_RIGHTS {
            for i in 0..(len - 16) / 4 {
                // SAFETY: within this header's data.
                let fd = unsafe { (words.add(at + 16 + 4 * i) as *const i32).read() };
                if first < 0 {
                    first = fd;
                } else {
                    close(fd);
                }
            }
        }
        at += (len + 7) & !7;
    }
    (first, byte as i16)
}
