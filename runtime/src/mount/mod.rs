//! Mounts podrun makes: the overlay rootfs (later: /proc, /dev, masks, pivot_root).

use std::path::PathBuf;

pub mod api;
pub mod overlay;
pub mod rootfs;

/// Undoes /proc/self/mountinfo's escapes of space, tab, newline and backslash (`\ooo`).
pub(crate) fn unescape_mountinfo(s: &[u8]) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape_mountinfo(br"/a\040b\134c"), b"/a b\\c".to_vec());
        assert_eq!(unescape_mountinfo(br"/plain"), b"/plain".to_vec());
    }
}
