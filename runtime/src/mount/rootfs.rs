//! Builds a container's file system view inside its new mount namespace, in this order:
//! make every mount private; mount the overlay rootfs; the spec's mounts (/proc, /dev and
//! its nodes, /dev/pts, /dev/shm, /dev/mqueue, /sys, volumes), each attached to a target
//! resolved *inside* the rootfs with `openat2(RESOLVE_IN_ROOT)`; /etc/hostname, hosts and
//! resolv.conf; masked and read-only paths (after /proc exists); then `pivot_root(".", ".")`
//! and a lazy unmount of the old root, which leaves no host path reachable.
//!
//! Runs only in the container's init stage, after `unshare(CLONE_NEWNS)`: nothing it mounts
//! is visible on the host, and everything goes when the namespace does.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fstat, makedev, mkdirat, mknodat, Mode, SFlag};
use nix::unistd::{fchdir, pivot_root, symlinkat, unlinkat, UnlinkatFlags};
use oci_spec::runtime::{Mount, Spec};

use super::api::{self, FsContext};
use super::overlay::mount_rootfs;
use crate::mount::Rootfs;
use crate::sync::Stage;
use crate::sync::StageError;

const STAGE: Stage = Stage::Mount;

fn at(what: impl std::fmt::Display) -> impl FnOnce(Errno) -> StageError {
    StageError::at(STAGE, what)
}

/// Opens `path` inside `root`: symlinks resolve as if `root` were `/`, so nothing outside is
/// reachable; magic links (/proc/self/...) are refused.
fn open_in(root: BorrowedFd<'_>, path: &str, flags: OFlag) -> Result<OwnedFd, Errno> {
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, rel, how)
}

fn file_type(fd: BorrowedFd<'_>) -> Option<SFlag> {
    fstat(fd).ok().map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT)
}

/// The mount target `path` inside `root`, created (as a directory, or an empty file when
/// `file`) where missing. The target itself must not be a symlink.
fn target(root: BorrowedFd<'_>, path: &str, file: bool) -> Result<OwnedFd, StageError> {
    // One fstat answers both questions: not a symlink, and the right kind.
    let want = |fd: OwnedFd| match file_type(fd.as_fd()) {
        Some(SFlag::S_IFLNK) => Err(StageError::new(STAGE, Errno::ELOOP, format!("mount target {path} is a symlink"))),
        Some(SFlag::S_IFDIR) if !file => Ok(fd),
        Some(t) if file && t != SFlag::S_IFDIR => Ok(fd),
        _ => Err(StageError::new(
            STAGE,
            Errno::ENOTDIR,
            format!("mount target {path} is not a {}", if file { "file" } else { "directory" }),
        )),
    };
    match open_in(root, path, OFlag::O_PATH | OFlag::O_NOFOLLOW) {
        Ok(fd) => want(fd),
        Err(Errno::ENOENT) => {
            let (parent, name) = path.trim_end_matches('/').rsplit_once('/').unwrap_or(("", path));
            let dir = target(root, parent, false)?;
            let name = name.trim_start_matches('/');
            if file {
                openat(
                    &dir,
                    name,
                    OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
                    Mode::from_bits_truncate(0o644),
                )
                .map_err(at(format!("create {path}")))?;
            } else {
                match mkdirat(&dir, name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(at(format!("mkdir {path}"))(e)),
                }
            }
            let fd = openat(&dir, name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(at(format!("open {path}")))?;
            want(fd)
        }
        Err(e) => Err(at(format!("open mount target {path}"))(e)),
    }
}

/// MOUNT_ATTR_* flags and filesystem parameters from OCI mount options.
fn split_options(options: &[String]) -> (u64, Vec<(&str, Option<&str>)>) {
    let mut attrs = 0;
    let mut params = Vec::new();
    for o in options {
        match o.as_str() {
            "ro" => attrs |= api::MOUNT_ATTR_RDONLY,
            "nosuid" => attrs |= api::MOUNT_ATTR_NOSUID,
            "nodev" => attrs |= api::MOUNT_ATTR_NODEV,
            "noexec" => attrs |= api::MOUNT_ATTR_NOEXEC,
            "strictatime" => attrs |= api::MOUNT_ATTR_STRICTATIME,
            // Every devpts mount is a new instance since Linux 4.7; binds are handled apart.
            "rw" | "newinstance" | "bind" | "rbind" => {}
            kv => params.push(kv.split_once('=').map_or((kv, None), |(k, v)| (k, Some(v)))),
        }
    }
    (attrs, params)
}

/// Mounts made in the host's namespaces for a container in a user namespace, where only the
/// host's root can make them (see `premake`).
#[derive(Default)]
pub struct Premade {
    /// The rootfs (overlay::idmapped_rootfs), attached on the merged dir, which the
    /// container's join stage opens (`prepare`'s `merged`).
    pub rootfs: Option<OwnedFd>,
    /// Every bind mount, detached, by destination.
    pub binds: Vec<(String, OwnedFd)>,
    /// The container is in a user namespace: /dev's nodes are the host's, bound in
    /// (mknod is refused there, and a tmpfs mounted there opens no device anyway).
    pub userns: bool,
}

fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref().unwrap_or("bind") == "bind" || m.options().iter().flatten().any(|o| o == "bind" || o == "rbind")
}

/// A detached copy of a bind mount's source with the mount's flags; idmapped through
/// `userns` when given.
fn bind_tree(m: &Mount, userns: Option<BorrowedFd<'_>>) -> Result<OwnedFd, StageError> {
    let dest = m.destination().display();
    let options = m.options().clone().unwrap_or_default();
    let (attrs, _) = split_options(&options);
    let source = m.source().as_deref().unwrap_or(Path::new(""));
    let recursive = options.iter().any(|o| o == "rbind");
    let tree = api::clone_tree(None, source, recursive).map_err(at(format!("bind source {}", source.display())))?;
    if attrs != 0 || userns.is_some() {
        api::set_attrs_idmap(tree.as_fd(), attrs, userns, recursive).map_err(at(format!("mount_setattr {dest}")))?;
    }
    Ok(tree)
}

/// For a container in user namespace `userns` with `maps`: its idmapped overlay and every
/// bind mount of its spec, made now, as the host's root. Inside the namespace the bind
/// sources under podrun's root (the pod's /dev/shm and /etc files, the resource view) are
/// out of reach (mode 0700, the host root's), and only the host's root may idmap. Volumes
/// marked `ridmap` (not `-v ...:noidmap`) are idmapped.
pub fn premake(
    rootfs: &Rootfs,
    spec: &Spec,
    userns: BorrowedFd<'_>,
    maps: &crate::idmap::IdMaps,
) -> Result<Premade, StageError> {
    let mut binds = Vec::new();
    for m in spec.mounts().iter().flatten().filter(|m| is_bind(m)) {
        let idmap = m.options().iter().flatten().any(|o| o == "ridmap" || o == "idmap");
        binds.push((m.destination().to_string_lossy().into_owned(), bind_tree(m, idmap.then_some(userns))?));
    }
    let overlay = super::overlay::idmapped_rootfs(rootfs, userns, maps.root()).map_err(|e| StageError {
        stage: STAGE,
        errno: Errno::EINVAL,
        message: e.to_string(),
    })?;
    Ok(Premade { rootfs: Some(overlay), binds, userns: true })
}

fn mount_one(root: BorrowedFd<'_>, m: &Mount, premade: &Premade) -> Result<(), StageError> {
    let dest = m.destination().to_string_lossy().into_owned();
    let typ = m.typ().as_deref().unwrap_or("bind");
    let options = m.options().clone().unwrap_or_default();
    let (attrs, params) = split_options(&options);
    if is_bind(m) {
        let made;
        let tree = match premade.binds.iter().find(|(d, _)| *d == dest) {
            Some((_, t)) => t,
            None => {
                made = bind_tree(m, None)?;
                &made
            }
        };
        // The clone says what it is: no second walk of the source path.
        let is_dir = file_type(tree.as_fd()) == Some(SFlag::S_IFDIR);
        let t = target(root, &dest, !is_dir)?;
        let source = m.source().as_deref().unwrap_or(Path::new("")).display();
        return api::attach(tree.as_fd(), t.as_fd()).map_err(at(format!("mount {source} on {dest}")));
    }
    let ctx = FsContext::open(typ).map_err(at(format!("fsopen {typ}")))?;
    for (k, v) in params {
        let r = match v {
            Some(v) => ctx.set(k, v.as_bytes()),
            None => ctx.flag(k),
        };
        r.map_err(|e| StageError::new(STAGE, e, format!("{typ} option {k} for {dest} ({})", ctx.log())))?;
    }
    let mnt =
        ctx.mount(attrs).map_err(|e| StageError::new(STAGE, e, format!("mount {typ} on {dest} ({})", ctx.log())))?;
    let t = target(root, &dest, false)?;
    api::attach(mnt.as_fd(), t.as_fd()).map_err(at(format!("mount {typ} on {dest}")))
}

/// The device nodes every container gets, as (name, major, minor).
const DEVICES: [(&str, u64, u64); 6] =
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

/// Checks that `fd` (opened from the host's `path`) is character device major:minor, as
/// runc checks /dev/null before masking with it: an odd host /dev hands in nothing else.
fn char_device(fd: BorrowedFd<'_>, path: &str, major: u64, minor: u64) -> Result<(), StageError> {
    let st = fstat(fd).map_err(at(format!("stat {path}")))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFCHR || st.st_rdev != makedev(major, minor) {
        return Err(StageError::new(STAGE, Errno::ENODEV, format!("{path} is not device {major}:{minor}")));
    }
    Ok(())
}

fn populate_dev(root: BorrowedFd<'_>, userns: bool) -> Result<(), StageError> {
    let dev = open_in(root, "/dev", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW).map_err(at("open /dev"))?;
    if userns {
        // As runc: the host's nodes, each bound onto an empty file (checked to be the
        // device it names).
        for &(name, major, minor) in &DEVICES {
            let path = format!("/dev/{name}");
            let node = api::clone_tree(None, Path::new(&path), false).map_err(at(format!("bind {path}")))?;
            char_device(node.as_fd(), &path, major, minor)?;
            let t = target(root, &path, true)?;
            api::attach(node.as_fd(), t.as_fd()).map_err(at(format!("bind {path}")))?;
        }
    } else {
        // The nodes are world-usable as in every runtime: no umask while making them (two
        // syscalls, not a chmod per node).
        let umask = nix::sys::stat::umask(Mode::empty());
        let made = DEVICES.iter().try_for_each(|&(name, major, minor)| {
            mknodat(&dev, name, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(major, minor))
                .map_err(at(format!("mknod /dev/{name}")))
        });
        nix::sys::stat::umask(umask);
        made?;
    }
    for (name, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        symlinkat(to, &dev, name).map_err(at(format!("symlink /dev/{name}")))?;
    }
    Ok(())
}

/// Replaces `path` in the rootfs with a regular file holding `content` (never writing
/// through a symlink an image put there).
/// A node of the spec's `linux.devices` (a bundle's), made in the container's /dev with its
/// mode and owner; one already there (a standard device) is replaced.
fn make_device(root: BorrowedFd<'_>, d: &oci_spec::runtime::LinuxDevice) -> Result<(), StageError> {
    use oci_spec::runtime::LinuxDeviceType;
    let path = d.path().to_string_lossy().into_owned();
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(StageError::new(STAGE, Errno::EINVAL, format!("linux.devices: {path}: type a is no node")))
        }
    };
    let (dir, name) = cleared(root, &path)?;
    let mode = Mode::from_bits_truncate(d.file_mode().unwrap_or(0o666));
    let dev = makedev(d.major() as u64, d.minor() as u64);
    mknodat(&dir, name, kind, mode, dev).map_err(at(format!("linux.devices: mknod {path}")))?;
    let (uid, gid) = (d.uid().map(nix::unistd::Uid::from_raw), d.gid().map(nix::unistd::Gid::from_raw));
    if uid.is_some() || gid.is_some() {
        nix::unistd::fchownat(&dir, name, uid, gid, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(at(format!("linux.devices: chown {path}")))?;
    }
    Ok(())
}

/// Sets kernel parameter `key` (`net.ipv4.ping_group_range`) through the container's own
/// /proc (so a namespaced one is its namespace's).
fn sysctl(root: BorrowedFd<'_>, key: &str, value: &str) -> Result<(), StageError> {
    let bad = || StageError::new(STAGE, Errno::EINVAL, format!("linux.sysctl: {key:?} is not a kernel parameter name"));
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err(bad());
    }
    if key.split('.').any(|c| c.is_empty()) {
        return Err(bad());
    }
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let f = open_in(root, &path, OFlag::O_WRONLY | OFlag::O_NOFOLLOW)
        .map_err(|e| StageError::new(STAGE, e, format!("linux.sysctl: {key}: open {path}")))?;
    nix::unistd::write(&f, value.as_bytes())
        .map_err(|e| StageError::new(STAGE, e, format!("linux.sysctl: {key}: write {value:?}")))?;
    Ok(())
}

/// The directory of `path` in the rootfs (made if missing), opened, with `path`'s last
/// component removed from it if it was there: where a new file or node takes its place.
fn cleared<'p>(root: BorrowedFd<'_>, path: &'p str) -> Result<(OwnedFd, &'p str), StageError> {
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    let dir = target(root, if parent.is_empty() { "/" } else { parent }, false)?;
    let dir = openat(&dir, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(at(format!("open {parent}")))?;
    match unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok((dir, name)),
        Err(e) => Err(at(format!("replace {path}"))(e)),
    }
}

fn write_file(root: BorrowedFd<'_>, path: &str, content: &[u8]) -> Result<(), StageError> {
    let (dir, name) = cleared(root, path)?;
    let fd = openat(
        &dir,
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(at(format!("create {path}")))?;
    nix::unistd::write(&fd, content).map_err(at(format!("write {path}")))?;
    Ok(())
}

/// The contents of /etc/hostname, /etc/hosts and /etc/resolv.conf for `hostname`. The
/// pod's network namespace has only loopback; the host's resolvers are what a user who adds
/// a network later expects, less the host's loopback ones, which are unreachable from it.
pub fn etc_contents(hostname: &str) -> [(&'static str, String); 3] {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv: String = host
        .lines()
        .filter(|l| !(l.starts_with("nameserver") && (l.contains(" 127.") || l.contains(" ::1"))))
        .map(|l| format!("{l}\n"))
        .collect();
    [
        ("hostname", format!("{hostname}\n")),
        ("hosts", format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n")),
        ("resolv.conf", resolv),
    ]
}

/// Writes the /etc files the spec does not bind-mount (a joined container binds the
/// sandbox's) into the container's own rootfs.
fn etc_files(root: BorrowedFd<'_>, hostname: &str, mounts: &[Mount]) -> Result<(), StageError> {
    for (name, content) in etc_contents(hostname) {
        let path = format!("/etc/{name}");
        if !mounts.iter().any(|m| m.destination() == Path::new(&path)) {
            write_file(root, &path, content.as_bytes())?;
        }
    }
    Ok(())
}

/// Hides masked paths: a directory under an empty read-only tmpfs, a file under /dev/null
/// (checked to be the real null device first, as runc does).
fn mask(root: BorrowedFd<'_>, paths: &[String]) -> Result<(), StageError> {
    let null = std::fs::File::open("/dev/null").map_err(|_| StageError::new(STAGE, Errno::ENODEV, "open /dev/null"))?;
    char_device(null.as_fd(), "/dev/null", 1, 3)?;
    let empty_tmpfs = |p: &str| {
        let ctx = FsContext::open("tmpfs").map_err(at("fsopen tmpfs"))?;
        ctx.set("size", b"0").map_err(at("tmpfs size"))?;
        ctx.mount(api::MOUNT_ATTR_RDONLY | api::MOUNT_ATTR_NOSUID | api::MOUNT_ATTR_NODEV | api::MOUNT_ATTR_NOEXEC)
            .map_err(at(format!("mask {p}")))
    };
    // One empty read-only tmpfs for every masked directory: the first is a new mount, the
    // rest are clones of it (one syscall instead of four), taken once it is attached.
    let mut first: Option<OwnedFd> = None;
    for p in paths {
        let Ok(t) = open_in(root, p, OFlag::O_PATH | OFlag::O_NOFOLLOW) else { continue };
        let mnt = if file_type(t.as_fd()) == Some(SFlag::S_IFDIR) {
            match &first {
                None => nix::unistd::dup(first.insert(empty_tmpfs(p)?)).map_err(at(format!("mask {p}")))?,
                Some(fs) => api::clone_tree(Some(fs.as_fd()), Path::new(""), false).map_err(at(format!("mask {p}")))?,
            }
        } else {
            api::clone_tree(Some(null.as_fd()), Path::new(""), false).map_err(at(format!("mask {p}")))?
        };
        api::attach(mnt.as_fd(), t.as_fd()).map_err(at(format!("mask {p}")))?;
    }
    Ok(())
}

/// Makes paths read-only by cloning each onto itself with MOUNT_ATTR_RDONLY.
fn readonly(root: BorrowedFd<'_>, paths: &[String]) -> Result<(), StageError> {
    for p in paths {
        let Ok(t) = open_in(root, p, OFlag::O_PATH | OFlag::O_NOFOLLOW) else { continue };
        let tree = api::clone_tree(Some(t.as_fd()), Path::new(""), true).map_err(at(format!("open_tree {p}")))?;
        api::set_attrs(
            tree.as_fd(),
            api::MOUNT_ATTR_RDONLY | api::MOUNT_ATTR_NOSUID | api::MOUNT_ATTR_NODEV | api::MOUNT_ATTR_NOEXEC,
            true,
        )
        .map_err(at(format!("read-only {p}")))?;
        api::attach(tree.as_fd(), t.as_fd()).map_err(at(format!("read-only {p}")))?;
    }
    Ok(())
}

/// Everything from the overlay to pivot_root; see the module comment for the order.
/// Serializes the resource view's bind mounts across container starts of one root.
///
/// The view's FUSE server gives each file a different inode per looking-up cgroup, with no
/// entry caching, so a start's path walk of `procview/meminfo` replaces the dentry another
/// start has just cloned; a clone whose root dentry was replaced that way cannot be
/// attached (move_mount: ENOENT). Held from the clone to the attach, that cannot happen.
/// An flock on a file of its own (`<root>/procview.lock`): released by `unlock`, or when
/// the last descriptor of it closes (at exec; the starting podrun unlocks after the spawn).
pub struct ViewLock(std::fs::File);

impl ViewLock {
    pub fn take(path: &Path) -> Result<ViewLock, StageError> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                StageError::new(
                    STAGE,
                    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                    format!("open {}", path.display()),
                )
            })?;
        // SAFETY: flock on a descriptor this function owns.
        Errno::result(unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) })
            .map_err(at(format!("lock {}", path.display())))?;
        Ok(ViewLock(f))
    }

    /// Unlocks for every holder of this descriptor (a spawned child shares it).
    pub fn unlock(&self) {
        // SAFETY: flock on a descriptor this lock owns.
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&self.0), libc::LOCK_UN) };
    }
}

/// Mounts the rootfs and everything the spec lists into it, then pivots into it. `view`:
/// the lock file that serializes binds from the resource view's directory `.0`, taken
/// here unless the caller holds it (`premade`, made on the host's side under it).
pub fn prepare(
    rootfs: &Rootfs,
    spec: &Spec,
    premade: &Premade,
    merged: Option<&OwnedFd>,
    view: Option<(&Path, &Path)>,
) -> Result<(), StageError> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(at("make / private"))?;
    let root = match (&premade.rootfs, merged) {
        // Attached by descriptor; the overlay's descriptor is then its root (the path to
        // `merged` is the host root's, out of a user namespace's reach).
        (Some(fd), Some(merged)) => {
            api::attach(fd.as_fd(), merged.as_fd()).map_err(at("attach the rootfs"))?;
            nix::unistd::dup(fd).map_err(at("dup the rootfs"))?
        }
        // A bundle's root: bound onto itself, so that it is a mount point to pivot into
        // (as runc does), with the mounts under it.
        _ if rootfs.is_directory() => {
            mount(Some(&rootfs.merged), &rootfs.merged, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(at(format!("bind {} onto itself", rootfs.merged.display())))?;
            nix::fcntl::open(&rootfs.merged, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(at("open the rootfs"))?
        }
        _ => {
            mount_rootfs(rootfs, &rootfs.merged).map_err(|e| StageError {
                stage: STAGE,
                errno: Errno::EINVAL,
                message: e.to_string(),
            })?;
            nix::fcntl::open(&rootfs.merged, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(at("open the rootfs"))?
        }
    };
    let mut lock = None;
    for m in spec.mounts().iter().flatten() {
        if let Some((dir, file)) = view {
            let from_view = is_bind(m) && m.source().as_ref().is_some_and(|s| s.starts_with(dir));
            if from_view && lock.is_none() && !premade.userns {
                lock = Some(ViewLock::take(file)?);
            }
        }
        mount_one(root.as_fd(), m, premade)?;
        if m.destination() == Path::new("/dev") {
            populate_dev(root.as_fd(), premade.userns)?;
        }
    }
    for d in spec.linux().as_ref().and_then(|l| l.devices().as_ref()).into_iter().flatten() {
        make_device(root.as_fd(), d)?;
    }
    if let Some(l) = lock {
        l.unlock();
    }
    // An image's container gets podrun's /etc files; a bundle's has what its caller put
    // there (runc writes none either).
    if !rootfs.is_directory() {
        etc_files(
            root.as_fd(),
            spec.hostname().as_deref().unwrap_or("localhost"),
            spec.mounts().as_deref().unwrap_or_default(),
        )?;
    }
    if let Some(linux) = spec.linux() {
        // Before /proc/sys is made read-only.
        for (key, value) in linux.sysctl().iter().flatten() {
            sysctl(root.as_fd(), key, value)?;
        }
        mask(root.as_fd(), linux.masked_paths().as_deref().unwrap_or_default())?;
        readonly(root.as_fd(), linux.readonly_paths().as_deref().unwrap_or_default())?;
    }
    // pivot_root(".", "."): the old root is stacked under the new one and unmounted lazily,
    // so no directory is needed for it (as in runc and youki).
    fchdir(&root).map_err(at("chdir to the rootfs"))?;
    pivot_root(".", ".").map_err(at("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(at("unmount the old root"))?;
    nix::unistd::chdir("/").map_err(at("chdir /"))?;
    if spec.root().as_ref().is_some_and(|r| r.readonly().unwrap_or(false)) {
        // root.readonly: the root mount read-only, the mounts on it as they are.
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(None::<&str>, "/", None::<&str>, flags, None::<&str>).map_err(at("make the root read-only"))?;
    }
    Ok(())
}
