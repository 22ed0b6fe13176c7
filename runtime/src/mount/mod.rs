//! Mounts podrun makes: the overlay rootfs (later: /proc, /dev, masks, pivot_root).

use std::path::PathBuf;

pub mod api;
pub mod overlay;
pub mod rootfs;

/// A container's root filesystem: an image's layers (the store unpacks them) under a
/// private upper and work dir; or, without layers, a directory taken as it is (an OCI
/// bundle's `root.path`, which its caller has already made, e.g. containerd's snapshot).
#[derive(Debug, Clone)]
pub struct Rootfs {
    pub dir: PathBuf,
    /// Overlay lowerdirs, top-most first (overlayfs order).
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Where `mount::overlay::mount_rootfs` mounts it unless told otherwise; a bundle's
    /// root directory.
    pub merged: PathBuf,
}

impl Rootfs {
    /// A bundle's root: `merged` as it is, no layers, upper or work dir.
    pub fn directory(dir: PathBuf, root: PathBuf) -> Rootfs {
        Rootfs { dir, lowers: Vec::new(), upper: PathBuf::new(), work: PathBuf::new(), merged: root }
    }

    /// Whether it is a directory taken as it is (no overlay of image layers).
    pub fn is_directory(&self) -> bool {
        self.lowers.is_empty()
    }
}
