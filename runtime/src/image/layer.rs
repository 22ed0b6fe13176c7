//! Unpacks one layer (a tar stream, plain, gzip or zstd) into an empty directory, safely.
//!
//! Owns the only code that turns tar entries into files. It must never write outside the
//! directory it is given, whatever the archive says: `tar::Archive::unpack` is not used.
//! Every entry's path is normalised (no `..`; a leading `/` means the layer root), its parent
//! is opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` so no symlink is ever
//! followed, and the entry is created with `*at` calls relative to that parent, never
//! replacing a name by writing through it (`O_EXCL | O_NOFOLLOW`). Whiteouts become overlayfs
//! whiteouts (see `whiteout.rs`). Device nodes are skipped: a container gets its /dev from
//! podrun, and a layer must not smuggle in a node for a host disk.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use tar::EntryType;

use super::whiteout::{self, Plan};

/// What an unpacked layer held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LayerStats {
    pub entries: u64,
    /// Bytes of regular-file content.
    pub bytes: u64,
    /// Device nodes in the archive that were not created.
    pub skipped_devices: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("the layer is not a readable tar stream (truncated or corrupt?)")]
    Read(#[source] io::Error),
    #[error("entry {path}: the path leaves the layer through \"..\"")]
    Escape { path: String },
    #[error("entry {path}: a parent is a symlink or not a directory; podrun never writes through links")]
    ThroughLink { path: String },
    #[error("entry {path}: hard link target {target} is not an earlier file of this layer")]
    LinkTarget { path: String, target: String },
    #[error("entry {path}")]
    Whiteout { path: String, source: whiteout::BadWhiteout },
    #[error("entry {path}: it would replace a directory with a non-directory")]
    ReplacesDir { path: String },
    #[error("entry {path}: {op}: {errno}")]
    Sys { path: String, op: &'static str, errno: Errno },
}

/// Shows a raw entry path as a quoted, escaped string (names may hold newlines).
fn show(path: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(path))
}

/// Splits a raw tar path into its components. `.` and empty components go; a leading `/`
/// is relative to the layer root, as in docker and GNU tar; `..` is refused.
pub fn normalize(path: &[u8]) -> Result<Vec<&[u8]>, LayerError> {
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(LayerError::Escape { path: show(path) }),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Returns a reader of the decompressed stream, choosing gzip, zstd or none by magic bytes.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    const GZIP: &[u8] = &[0x1f, 0x8b];
    const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
    let mut r = BufReader::with_capacity(256 * 1024, reader);
    let head = r.fill_buf()?;
    if head.starts_with(GZIP) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(r)))
    } else if head.starts_with(ZSTD) {
        let d = ruzstd::decoding::StreamingDecoder::new(r)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}")))?;
        Ok(Box::new(d))
    } else {
        Ok(Box::new(r))
    }
}

/// Unpacks the (already decompressed) tar stream `tar` into the empty directory `root`.
pub fn unpack<R: Read>(tar: R, root: BorrowedFd<'_>) -> Result<LayerStats, LayerError> {
    let mut u = Unpacker {
        root,
        parents: ParentCache(None),
        dir_times: Vec::new(),
        stats: LayerStats::default(),
        buf: vec![0; 128 * 1024],
    };
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(LayerError::Read)? {
        let entry = entry.map_err(LayerError::Read)?;
        u.entry(entry)?;
    }
    u.finish()
}

struct Unpacker<'r> {
    root: BorrowedFd<'r>,
    parents: ParentCache,
    /// Directory mtimes, set last: creating children changes them.
    dir_times: Vec<(Vec<u8>, i64)>,
    stats: LayerStats,
    buf: Vec<u8>,
}

/// Ownership, mode and time of an entry, from its header.
struct Meta {
    uid: Uid,
    gid: Gid,
    mode: Mode,
    mtime: i64,
}

impl<'r> Unpacker<'r> {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), LayerError> {
        let raw = entry.path_bytes().into_owned();
        let comps = normalize(&raw)?;
        let Some((name, parents)) = comps.split_last() else {
            return Ok(()); // the layer root itself ("./"): podrun owns the root's metadata
        };
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        self.stats.entries += 1;
        let path = show(&raw);
        let plan = whiteout::plan(name).map_err(|source| LayerError::Whiteout { path: path.clone(), source })?;
        let meta = self.meta(&entry, &path)?;
        let xattrs = xattrs(&mut entry).map_err(LayerError::Read)?;
        let parent_path = parents.join(&b'/');
        let parent = self.parents.open(self.root, &parent_path, &path)?;
        let name = OsStr::from_bytes(name);
        let sys = |op: &'static str| {
            let path = path.clone();
            move |errno| LayerError::Sys { path, op, errno }
        };

        let fail = |op: &'static str| {
            let path = path.clone();
            move |e: Replace| match e {
                Replace::Dir => LayerError::ReplacesDir { path },
                Replace::Sys(errno) => LayerError::Sys { path, op, errno },
            }
        };

        match plan {
            Plan::Skip => return Ok(()),
            Plan::Opaque => {
                set_xattr(parent, "trusted.overlay.opaque", b"y").map_err(sys("set trusted.overlay.opaque"))?;
                return Ok(());
            }
            Plan::Whiteout(target) => {
                let target = OsStr::from_bytes(target);
                // overlayfs(5): a whiteout is a character device with device number 0/0.
                replacing(parent, target, || mknodat(parent, target, SFlag::S_IFCHR, Mode::empty(), 0))
                    .map_err(fail("mknod whiteout"))?;
                return Ok(());
            }
            Plan::Entry => {}
        }

        match kind {
            EntryType::Directory => {
                match replacing(parent, name, || mkdirat(parent, name, Mode::S_IRWXU)) {
                    Ok(()) | Err(Replace::Dir) => {} // an existing directory stays; its metadata is updated
                    Err(e) => return Err(fail("mkdir")(e)),
                }
                let dir = openat(
                    parent,
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(sys("open directory"))?;
                fchown(&dir, Some(meta.uid), Some(meta.gid)).map_err(sys("chown"))?;
                fchmod(&dir, meta.mode).map_err(sys("chmod"))?;
                apply_xattrs(dir.as_fd(), &xattrs).map_err(sys("setxattr"))?;
                let mut full = parent_path.clone();
                if !full.is_empty() {
                    full.push(b'/');
                }
                full.extend_from_slice(name.as_bytes());
                self.dir_times.push((full, meta.mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let fd = replacing(parent, name, || openat(parent, name, flags, Mode::S_IRUSR | Mode::S_IWUSR))
                    .map_err(fail("create"))?;
                let mut file = File::from(fd);
                let mut n = 0u64;
                loop {
                    let got = entry.read(&mut self.buf).map_err(LayerError::Read)?;
                    if got == 0 {
                        break;
                    }
                    file.write_all(&self.buf[..got])
                        .map_err(|e| sys("write")(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
                    n += got as u64;
                }
                self.stats.bytes += n;
                // chown before chmod and xattrs: chown(2) clears set-id bits and capabilities.
                fchown(&file, Some(meta.uid), Some(meta.gid)).map_err(sys("chown"))?;
                fchmod(&file, meta.mode).map_err(sys("chmod"))?;
                apply_xattrs(file.as_fd(), &xattrs).map_err(sys("setxattr"))?;
                let t = TimeSpec::new(meta.mtime, 0);
                futimens(&file, &t, &t).map_err(sys("set times"))?;
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                if target.is_empty() {
                    return Err(sys("symlink")(Errno::EINVAL));
                }
                // The target is stored as data and never resolved here.
                let target = OsStr::from_bytes(&target);
                replacing(parent, name, || symlinkat(target, parent, name)).map_err(fail("symlink"))?;
                fchownat(parent, name, Some(meta.uid), Some(meta.gid), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(sys("chown"))?;
                let t = TimeSpec::new(meta.mtime, 0);
                utimensat(parent, name, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(sys("set times"))?;
            }
            EntryType::Link => {
                let target_raw = entry.link_name_bytes().unwrap_or_default().into_owned();
                let target_show = show(&target_raw);
                let not_here = || LayerError::LinkTarget { path: path.clone(), target: target_show.clone() };
                let tcomps = normalize(&target_raw).map_err(|_| not_here())?;
                let Some((tname, tparents)) = tcomps.split_last() else { return Err(not_here()) };
                let tparent = open_beneath(self.root, &tparents.join(&b'/')).map_err(|_| not_here())?;
                let tname = OsStr::from_bytes(tname);
                // linkat without AT_SYMLINK_FOLLOW links a symlink itself, never what it names.
                replacing(parent, name, || linkat(&tparent, tname, parent, name, AtFlags::empty())).map_err(
                    |e| match e {
                        Replace::Sys(Errno::ENOENT | Errno::EPERM) => not_here(),
                        e => fail("link")(e),
                    },
                )?;
            }
            EntryType::Fifo => {
                replacing(parent, name, || mknodat(parent, name, SFlag::S_IFIFO, Mode::S_IRUSR | Mode::S_IWUSR, 0))
                    .map_err(fail("mkfifo"))?;
                fchownat(parent, name, Some(meta.uid), Some(meta.gid), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(sys("chown"))?;
                fchmodat(parent, name, meta.mode, FchmodatFlags::FollowSymlink).map_err(sys("chmod"))?;
            }
            EntryType::Char | EntryType::Block => self.stats.skipped_devices += 1,
            _ => {} // sockets and vendor types carry no content
        }
        Ok(())
    }

    fn meta<R: Read>(&self, entry: &tar::Entry<'_, R>, path: &str) -> Result<Meta, LayerError> {
        let h = entry.header();
        let bad = |op| LayerError::Sys { path: path.to_owned(), op, errno: Errno::EINVAL };
        let uid = h.uid().ok().and_then(|u| u32::try_from(u).ok()).ok_or_else(|| bad("read uid"))?;
        let gid = h.gid().ok().and_then(|g| u32::try_from(g).ok()).ok_or_else(|| bad("read gid"))?;
        let mode = h.mode().map_err(|_| bad("read mode"))? & 0o7777;
        let mtime = h.mtime().ok().and_then(|t| i64::try_from(t).ok()).unwrap_or(0);
        Ok(Meta { uid: Uid::from_raw(uid), gid: Gid::from_raw(gid), mode: Mode::from_bits_truncate(mode), mtime })
    }

    fn finish(mut self) -> Result<LayerStats, LayerError> {
        self.parents.0 = None;
        // Deepest last-listed first, so a parent's time is set after its children's.
        for (dir, mtime) in self.dir_times.iter().rev() {
            let sys = |op| move |errno| LayerError::Sys { path: show(dir), op, errno };
            let fd = open_beneath(self.root, dir).map_err(sys("open directory"))?;
            let t = TimeSpec::new(*mtime, 0);
            futimens(&fd, &t, &t).map_err(sys("set times"))?;
        }
        Ok(self.stats)
    }
}

/// The last parent directory opened, by path: tar streams list a directory's entries
/// together, so one cached fd saves most path walks.
struct ParentCache(Option<(Vec<u8>, OwnedFd)>);

impl ParentCache {
    /// The directory `parent` (a normalised path relative to `root`), created with 0755
    /// components where missing, never through a symlink.
    fn open<'a>(&'a mut self, root: BorrowedFd<'a>, parent: &[u8], path: &str) -> Result<BorrowedFd<'a>, LayerError> {
        if parent.is_empty() {
            return Ok(root);
        }
        if !matches!(&self.0, Some((p, _)) if p == parent) {
            let fd = match open_beneath(root, parent) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => create_dirs(root, parent, path)?,
                Err(Errno::ELOOP | Errno::ENOTDIR | Errno::EXDEV) => {
                    return Err(LayerError::ThroughLink { path: path.to_owned() })
                }
                Err(errno) => return Err(LayerError::Sys { path: path.to_owned(), op: "open parent", errno }),
            };
            self.0 = Some((parent.to_vec(), fd));
        }
        Ok(self.0.as_ref().map_or(root, |(_, fd)| fd.as_fd()))
    }
}

/// Opens directory `path` under `root` without following any symlink or leaving `root`.
fn open_beneath(root: BorrowedFd<'_>, path: &[u8]) -> Result<OwnedFd, Errno> {
    let path: &OsStr = if path.is_empty() { OsStr::new(".") } else { OsStr::from_bytes(path) };
    let how = OpenHow::new().flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC).resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS
            | ResolveFlag::RESOLVE_NO_XDEV,
    );
    openat2(root, path, how)
}

/// Walks `parent` one component at a time from `root`, creating missing directories (0755,
/// as tar does for parents it was not given) and refusing any component that is a symlink.
fn create_dirs(root: BorrowedFd<'_>, parent: &[u8], path: &str) -> Result<OwnedFd, LayerError> {
    let mut cur: Option<OwnedFd> = None;
    for comp in parent.split(|&b| b == b'/') {
        let comp = OsStr::from_bytes(comp);
        let at = cur.as_ref().map_or(root, |fd| fd.as_fd());
        match mkdirat(at, comp, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(errno) => return Err(LayerError::Sys { path: path.to_owned(), op: "mkdir parent", errno }),
        }
        let next = openat(
            at,
            comp,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| match errno {
            Errno::ELOOP | Errno::ENOTDIR => LayerError::ThroughLink { path: path.to_owned() },
            errno => LayerError::Sys { path: path.to_owned(), op: "open parent", errno },
        })?;
        cur = Some(next);
    }
    cur.ok_or(LayerError::Sys { path: path.to_owned(), op: "open parent", errno: Errno::EINVAL })
}

fn is_dir(parent: BorrowedFd<'_>, name: &OsStr) -> bool {
    fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

enum Replace {
    Dir,
    Sys(Errno),
}

/// Runs `create`; if the name exists (a later entry of the same layer wins, as in tar),
/// removes the old non-directory and tries once more. An existing directory is never
/// removed: `Replace::Dir` lets a directory entry keep it and fails anything else.
fn replacing<T>(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    mut create: impl FnMut() -> Result<T, Errno>,
) -> Result<T, Replace> {
    match create() {
        Err(Errno::EEXIST) => {}
        other => return other.map_err(Replace::Sys),
    }
    if is_dir(parent, name) {
        return Err(Replace::Dir);
    }
    unlinkat(parent, name, UnlinkatFlags::NoRemoveDir).map_err(Replace::Sys)?;
    create().map_err(Replace::Sys)
}

/// The xattrs podrun keeps from PAX `SCHILY.xattr.*` records: file capabilities and `user.*`.
/// `trusted.*` (overlayfs's own namespace, e.g. a forged opaque or redirect) and
/// `security.*` labels other than capabilities are dropped.
fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(CString, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else { continue };
            if name == b"security.capability" || name.starts_with(b"user.") {
                if let Ok(name) = CString::new(name) {
                    out.push((name, ext.value_bytes().to_vec()));
                }
            }
        }
    }
    Ok(out)
}

fn apply_xattrs(fd: BorrowedFd<'_>, xattrs: &[(CString, Vec<u8>)]) -> Result<(), Errno> {
    for (name, value) in xattrs {
        set_xattr_c(fd, name, value)?;
    }
    Ok(())
}

fn set_xattr(fd: BorrowedFd<'_>, name: &str, value: &[u8]) -> Result<(), Errno> {
    // The names passed here are literals without NUL bytes.
    let name = CString::new(name).map_err(|_| Errno::EINVAL)?;
    set_xattr_c(fd, &name, value)
}

fn set_xattr_c(fd: BorrowedFd<'_>, name: &CString, value: &[u8]) -> Result<(), Errno> {
    // SAFETY: fd is a live descriptor; name is NUL-terminated; value/len describe a live slice.
    let rc = unsafe { libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    Errno::result(rc).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_drops_dots_and_leading_slash() {
        assert_eq!(normalize(b"./a//b/./c").unwrap(), vec![&b"a"[..], b"b", b"c"]);
        assert_eq!(normalize(b"/etc/passwd").unwrap(), vec![&b"etc"[..], b"passwd"]);
        assert!(normalize(b"./").unwrap().is_empty());
    }

    #[test]
    fn normalize_rejects_dot_dot_anywhere() {
        for p in [&b"../x"[..], b"a/../../x", b"a/..", b"/.."] {
            assert!(matches!(normalize(p), Err(LayerError::Escape { .. })), "{p:?}");
        }
    }

    #[test]
    fn normalize_keeps_names_with_newlines_and_odd_bytes() {
        assert_eq!(normalize(b"a\nb/\xff").unwrap(), vec![&b"a\nb"[..], b"\xff"]);
        assert_eq!(show(b"a\nb"), "\"a\\nb\"");
    }
}
