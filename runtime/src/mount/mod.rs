//! Mounts podrun makes: the overlay rootfs (later: /proc, /dev, masks, pivot_root).

pub mod api;
pub mod overlay;
pub mod rootfs;
