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
        .map(|p| PathBuf::from(OsStr::from_bytes(&super::unescape_mountinfo(p))))
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
