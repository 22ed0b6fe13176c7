//! The new mount API (fsopen, fsconfig, fsmount, open_tree, move_mount, mount_setattr):
//! mounts are made detached and attached to a target *file descriptor*, so a target resolved
//! inside a container rootfs cannot be swapped for a symlink between lookup and mount.
//! The libc crate has the syscall numbers but not all constants; they are from
//! <linux/mount.h>.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_SET_FD: libc::c_uint = 5;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
pub const OPEN_TREE_CLONE: libc::c_uint = 1;
pub const AT_RECURSIVE: libc::c_uint = 0x8000;

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_IDMAP: u64 = 0x10_0000;

fn cstr(b: &[u8]) -> Result<CString, Errno> {
    CString::new(b).map_err(|_| Errno::EINVAL)
}

fn owned(ret: libc::c_long) -> Result<OwnedFd, Errno> {
    let fd = Errno::result(ret)?;
    // SAFETY: the syscall succeeded and returned a new descriptor that only we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A filesystem context being configured (fsopen).
pub struct FsContext(OwnedFd);

impl FsContext {
    pub fn open(fstype: &str) -> Result<FsContext, Errno> {
        let t = cstr(fstype.as_bytes())?;
        // SAFETY: t is NUL-terminated; fsopen returns a new fd or -1.
        owned(unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), FSOPEN_CLOEXEC) }).map(FsContext)
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), Errno> {
        let (k, v) = (cstr(key.as_bytes())?, cstr(value)?);
        // SAFETY: both strings are NUL-terminated and outlive the call.
        let rc = unsafe {
            libc::syscall(libc::SYS_fsconfig, self.0.as_raw_fd(), FSCONFIG_SET_STRING, k.as_ptr(), v.as_ptr(), 0)
        };
        Errno::result(rc).map(drop)
    }

    /// A parameter given as a descriptor (overlayfs layers, Linux 6.13+: they may be
    /// detached, idmapped mounts).
    pub fn set_fd(&self, key: &str, fd: BorrowedFd<'_>) -> Result<(), Errno> {
        let k = cstr(key.as_bytes())?;
        // SAFETY: k is NUL-terminated; the value is the live descriptor in `aux`.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.0.as_raw_fd(),
                FSCONFIG_SET_FD,
                k.as_ptr(),
                std::ptr::null::<u8>(),
                fd.as_raw_fd(),
            )
        };
        Errno::result(rc).map(drop)
    }

    pub fn flag(&self, key: &str) -> Result<(), Errno> {
        let k = cstr(key.as_bytes())?;
        // SAFETY: k is NUL-terminated; a flag has no value.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.0.as_raw_fd(),
                FSCONFIG_SET_FLAG,
                k.as_ptr(),
                std::ptr::null::<u8>(),
                0,
            )
        };
        Errno::result(rc).map(drop)
    }

    /// Creates the superblock and returns a detached mount with `attrs` (MOUNT_ATTR_*).
    pub fn mount(&self, attrs: u64) -> Result<OwnedFd, Errno> {
        let fd = self.0.as_raw_fd();
        // SAFETY: FSCONFIG_CMD_CREATE takes no key or value.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fd,
                FSCONFIG_CMD_CREATE,
                std::ptr::null::<u8>(),
                std::ptr::null::<u8>(),
                0,
            )
        };
        Errno::result(rc)?;
        // SAFETY: plain syscall on a live fd.
        owned(unsafe { libc::syscall(libc::SYS_fsmount, fd, FSMOUNT_CLOEXEC, attrs as libc::c_uint) })
    }

    /// The messages the kernel logged for this context (fsopen(2): "e ..." lines).
    pub fn log(&self) -> String {
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
}

/// A detached copy of the mount tree at `path` (relative to `dir`; "" for `dir` itself).
pub fn clone_tree(dir: Option<BorrowedFd<'_>>, path: &Path, recursive: bool) -> Result<OwnedFd, Errno> {
    let p = cstr(path.as_os_str().as_bytes())?;
    let dfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    if path.as_os_str().is_empty() {
        flags |= libc::AT_EMPTY_PATH as libc::c_uint;
    }
    // SAFETY: p is NUL-terminated; open_tree returns a new fd or -1.
    owned(unsafe { libc::syscall(libc::SYS_open_tree, dfd, p.as_ptr(), flags) })
}

/// Sets MOUNT_ATTR_* flags on a detached or attached mount (and below it with `recursive`).
pub fn set_attrs(mnt: BorrowedFd<'_>, set: u64, recursive: bool) -> Result<(), Errno> {
    set_attrs_idmap(mnt, set, None, recursive)
}

/// As `set_attrs`, and with `userns` an idmapped mount (MOUNT_ATTR_IDMAP): the files'
/// owners are seen through that namespace's maps, so host root's files belong to its root.
/// Only on a detached mount, and only with CAP_SYS_ADMIN over the filesystem (the host's).
pub fn set_attrs_idmap(
    mnt: BorrowedFd<'_>,
    mut set: u64,
    userns: Option<BorrowedFd<'_>>,
    recursive: bool,
) -> Result<(), Errno> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let userns_fd = match userns {
        Some(u) => {
            set |= MOUNT_ATTR_IDMAP;
            u.as_raw_fd() as u64
        }
        None => 0,
    };
    let attr = MountAttr { attr_set: set, attr_clr: 0, propagation: 0, userns_fd };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: attr is a live mount_attr of the size passed; the path is "".
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(rc).map(drop)
}

/// Attaches the detached mount `mnt` on the directory or file `target` (an fd).
pub fn attach(mnt: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: both fds are live; both paths are "" with the *_EMPTY_PATH flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    Errno::result(rc).map(drop)
}

/// Attaches the detached mount `mnt` at `target` (a path).
pub fn attach_at(mnt: BorrowedFd<'_>, target: &Path) -> Result<(), Errno> {
    let t = cstr(target.as_os_str().as_bytes())?;
    // SAFETY: strings are NUL-terminated; mnt is a live detached mount fd.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    Errno::result(rc).map(drop)
}
