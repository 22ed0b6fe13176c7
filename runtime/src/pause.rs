//! The embedded podrun-pause binary (built by build.rs from pause/) and the sealed memfd it
//! is started from: nothing on disk to find, replace or overwrite (CVE-2019-5736), and
//! nothing to install beside podrun. Started as `podrun-exec`, the same binary is the
//! trampoline every workload is exec'd through (see `exec::execve`).

use std::io::Write;
use std::os::fd::OwnedFd;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

/// The static podrun-pause executable.
pub static PAUSE_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/podrun-pause"));

/// The static podrun-keeper executable (the resource view's keeper, runtime/src/procview.rs).
pub static KEEPER_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/podrun-keeper"));

/// A sealed, close-on-exec memfd holding podrun-pause, ready for `execveat(fd, "", AT_EMPTY_PATH)`.
pub fn pause_memfd() -> nix::Result<OwnedFd> {
    sealed_memfd(c"podrun-pause", PAUSE_ELF)
}

/// A sealed, close-on-exec memfd named `name` holding `elf`.
pub fn sealed_memfd(name: &std::ffi::CStr, elf: &[u8]) -> nix::Result<OwnedFd> {
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    let mut f = std::fs::File::from(fd);
    f.write_all(elf).map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    let fd = OwnedFd::from(f);
    let seals = SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE;
    fcntl(&fd, FcntlArg::F_ADD_SEALS(seals))?;
    Ok(fd)
}
