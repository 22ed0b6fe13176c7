//! Mounts a container rootfs: overlayfs with the image's layers as read-only lowerdirs and
//! the container's own upper and work dirs. Layer dirs are never written: overlayfs only
//! writes to the upper dir.
//!
//! Uses the new mount API (fsopen/fsconfig/fsmount/move_mount): each layer is passed with
//! its own `lowerdir+` (Linux 6.8+), so there is no page-size limit on the number of layers
//! and no escaping of ':' or ','. Older kernels fall back to one `lowerdir` string. The
//! kernel's own message for a failure (read from the fs context) goes into the error.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::image::Rootfs;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{op} {path}: {errno}{}", kernel_says(.kernel))]
    Sys { op: &'static str, path: PathBuf, errno: Errno, kernel: String },
    #[error("{0}: a layer path holds ':', which this kernel's overlayfs cannot take (Linux 6.8+ can)")]
    BadPath(PathBuf),
}

fn kernel_says(k: &str) -> String {
    if k.is_empty() {
        String::new()
    } else {
        format!(" (kernel: {k})")
    }
}

// From <linux/mount.h>; the libc crate does not export them all.
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

fn cstr(b: &[u8]) -> Result<CString, Errno> {
    CString::new(b).map_err(|_| Errno::EINVAL)
}

struct FsContext(OwnedFd);

impl FsContext {
    fn open(fstype: &str) -> Result<FsContext, Errno> {
        let t = cstr(fstype.as_bytes())?;
        // SAFETY: t is NUL-terminated; fsopen returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), FSOPEN_CLOEXEC) };
        Errno::result(fd)?;
        // SAFETY: fsopen succeeded, so fd is a new descriptor that only we own.
        Ok(FsContext(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), Errno> {
        let (k, v) = (cstr(key.as_bytes())?, cstr(value)?);
        // SAFETY: both strings are NUL-terminated and outlive the call.
        let rc = unsafe {
            libc::syscall(libc::SYS_fsconfig, self.0.as_raw_fd(), FSCONFIG_SET_STRING, k.as_ptr(), v.as_ptr(), 0)
        };
        Errno::result(rc).map(drop)
    }

    fn create(&self) -> Result<(), Errno> {
        // SAFETY: FSCONFIG_CMD_CREATE takes no key or value.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.0.as_raw_fd(),
                FSCONFIG_CMD_CREATE,
                std::ptr::null::<u8>(),
                std::ptr::null::<u8>(),
                0,
            )
        };
        Errno::result(rc).map(drop)
    }

    /// The messages the kernel logged for this context (fsopen(2): "e ..." lines).
    fn log(&self) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            // SAFETY: buf is a live, writable buffer of the given length.
            let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            out.push(String::from_utf8_lossy(&buf[..n as usize]).trim().to_owned());
        }
        out.join("; ")
    }

    fn mount(&self) -> Result<OwnedFd, Errno> {
        // SAFETY: plain syscall on a live fd; returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_fsmount, self.0.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
        Errno::result(fd)?;
        // SAFETY: fsmount succeeded, so fd is a new descriptor that only we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }
}

fn move_mount(mnt: &OwnedFd, target: &Path) -> Result<(), Errno> {
    let empty = cstr(b"")?;
    let t = cstr(target.as_os_str().as_bytes())?;
    // SAFETY: strings are NUL-terminated; mnt is a live detached mount fd.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    Errno::result(rc).map(drop)
}

/// Mounts `rootfs` at `target` (usually `rootfs.merged`) in the caller's mount namespace.
pub fn mount_rootfs(rootfs: &Rootfs, target: &Path) -> Result<(), MountError> {
    let fail = |op: &'static str, ctx: Option<&FsContext>| {
        let kernel = ctx.map(FsContext::log).unwrap_or_default();
        move |errno| MountError::Sys { op, path: target.to_owned(), errno, kernel }
    };
    let ctx = FsContext::open("overlay").map_err(fail("fsopen overlay", None))?;
    set_lowers(&ctx, &rootfs.lowers).map_err(|e| match e {
        Lower::Errno(errno) => fail("fsconfig lowerdir", Some(&ctx))(errno),
        Lower::Path(p) => MountError::BadPath(p),
    })?;
    ctx.set("upperdir", rootfs.upper.as_os_str().as_bytes()).map_err(|e| fail("fsconfig upperdir", Some(&ctx))(e))?;
    ctx.set("workdir", rootfs.work.as_os_str().as_bytes()).map_err(|e| fail("fsconfig workdir", Some(&ctx))(e))?;
    ctx.create().map_err(|e| fail("create overlay", Some(&ctx))(e))?;
    let mnt = ctx.mount().map_err(|e| fail("fsmount overlay", Some(&ctx))(e))?;
    move_mount(&mnt, target).map_err(fail("move_mount", None))
}

enum Lower {
    Errno(Errno),
    Path(PathBuf),
}

fn set_lowers(ctx: &FsContext, lowers: &[PathBuf]) -> Result<(), Lower> {
    let Some((first, rest)) = lowers.split_first() else { return Err(Lower::Errno(Errno::EINVAL)) };
    match ctx.set("lowerdir+", first.as_os_str().as_bytes()) {
        Ok(()) => {
            for l in rest {
                ctx.set("lowerdir+", l.as_os_str().as_bytes()).map_err(Lower::Errno)?;
            }
            Ok(())
        }
        // Before Linux 6.8 "lowerdir+" is an unknown parameter: use one colon-separated list.
        Err(Errno::EINVAL) => {
            let mut joined = Vec::new();
            for (i, l) in lowers.iter().enumerate() {
                let b = l.as_os_str().as_bytes();
                if b.contains(&b':') {
                    return Err(Lower::Path(l.clone()));
                }
                if i > 0 {
                    joined.push(b':');
                }
                joined.extend_from_slice(b);
            }
            ctx.set("lowerdir", &joined).map_err(Lower::Errno)
        }
        Err(e) => Err(Lower::Errno(e)),
    }
}

/// Lazily unmounts everything mounted at or below `dir` in this mount namespace, deepest
/// first, so removing `dir` never descends into a mounted filesystem.
pub fn unmount_all_under(dir: &Path) -> io::Result<()> {
    let info = std::fs::read("/proc/self/mountinfo")?;
    let mut points: Vec<PathBuf> = info
        .split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|p| PathBuf::from(OsStr::from_bytes(&unescape(p))))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in points {
        nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH).or_else(|e| {
            if e == Errno::EINVAL || e == Errno::ENOENT {
                Ok(())
            } else {
                Err(e)
            }
        })?;
    }
    Ok(())
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 3 < s.len() && s[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((s[i + 1] - b'0') * 64 + (s[i + 2] - b'0') * 8 + (s[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape(br"/a\040b\134c"), b"/a b\\c".to_vec());
        assert_eq!(unescape(br"/plain"), b"/plain".to_vec());
    }
}
