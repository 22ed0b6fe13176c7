//! Mounts a container rootfs: overlayfs with the image's layers as read-only lowerdirs and
//! the container's own upper and work dirs. Layer dirs are never written: overlayfs only
//! writes to the upper dir.
//!
//! Uses the new mount API (fsopen/fsconfig/fsmount/move_mount): each layer is passed with
//! its own `lowerdir+` (Linux 6.8+), so there is no page-size limit on the number of layers
//! and no escaping of ':' or ','. Older kernels fall back to one `lowerdir` string. The
//! kernel's own message for a failure (read from the fs context) goes into the error.

use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::api::{self, FsContext};
use crate::mount::Rootfs;

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
    let mnt = ctx.mount(0).map_err(|e| fail("fsmount overlay", Some(&ctx))(e))?;
    api::attach_at(mnt.as_fd(), target).map_err(fail("move_mount", None))
}

/// The rootfs for a container in user namespace `userns`, as a detached mount to attach
/// inside the container: made here, in the host's namespaces, because only the host's root
/// may idmap the host's filesystems, and an overlay mounted from the host's user namespace
/// still reads the layers' trusted.overlay.* attributes (opaque dirs).
///
/// The layers are idmapped mounts (one clone of each directory holding layers, not a chown
/// of any file): host root's files in them belong to the container's root. The upper and
/// work dirs are the container's own; their roots are given to `root` (the container
/// root's host uid and gid), and what the container writes there is owned by its host ids.
/// Layers go in by descriptor (Linux 6.13+).
pub fn idmapped_rootfs(
    rootfs: &Rootfs,
    userns: std::os::fd::BorrowedFd<'_>,
    root: (u32, u32),
) -> Result<std::os::fd::OwnedFd, MountError> {
    let sys = |op: &'static str, path: &Path, ctx: Option<&FsContext>| {
        let kernel = ctx.map(FsContext::log).unwrap_or_default();
        let path = path.to_owned();
        move |errno| MountError::Sys { op, path, errno, kernel }
    };
    for d in [&rootfs.upper, &rootfs.work] {
        nix::unistd::chown(d.as_path(), Some(root.0.into()), Some(root.1.into())).map_err(sys("chown", d, None))?;
    }
    let ctx = FsContext::open("overlay").map_err(sys("fsopen overlay", &rootfs.merged, None))?;
    // One idmapped clone per directory of layers (the store keeps them side by side).
    let mut parents: Vec<(PathBuf, std::os::fd::OwnedFd)> = Vec::new();
    for l in &rootfs.lowers {
        let (Some(parent), Some(name)) = (l.parent(), l.file_name()) else {
            return Err(MountError::BadPath(l.clone()));
        };
        let tree = match parents.iter().position(|(p, _)| p == parent) {
            Some(i) => &parents[i].1,
            None => {
                let tree = api::clone_tree(None, parent, false).map_err(sys("open_tree", parent, None))?;
                api::set_attrs_idmap(tree.as_fd(), 0, Some(userns), false).map_err(sys("idmap", parent, None))?;
                parents.push((parent.to_owned(), tree));
                &parents[parents.len() - 1].1
            }
        };
        let layer = nix::fcntl::openat(
            tree,
            name,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(sys("open layer", l, None))?;
        ctx.set_fd("lowerdir+", layer.as_fd()).map_err(|e| {
            let mut err = sys("fsconfig lowerdir+ (by descriptor: Linux 6.13+ for user namespaces)", l, Some(&ctx))(e);
            if let MountError::Sys { kernel, .. } = &mut err {
                let sep = if kernel.is_empty() { "" } else { "; " };
                kernel.push_str(&format!("{sep}this kernel is {}", kernel_release()));
            }
            err
        })?;
    }
    ctx.set("upperdir", rootfs.upper.as_os_str().as_bytes()).map_err(sys(
        "fsconfig upperdir",
        &rootfs.upper,
        Some(&ctx),
    ))?;
    ctx.set("workdir", rootfs.work.as_os_str().as_bytes()).map_err(sys(
        "fsconfig workdir",
        &rootfs.work,
        Some(&ctx),
    ))?;
    ctx.mount(0).map_err(|e| sys("fsmount overlay", &rootfs.merged, Some(&ctx))(e))
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned()
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
        .map(|p| PathBuf::from(OsStr::from_bytes(&podrun_cgroup::unescape_mountinfo(p))))
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
