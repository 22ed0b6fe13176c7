//! Mounts podrun makes: the overlay rootfs (later: /proc, /dev, masks, pivot_root).

pub mod overlay;
