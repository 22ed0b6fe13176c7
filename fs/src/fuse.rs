//! The FUSE adapter, the only file that imports fuser: a flat read-only directory of the
//! view's files. Each open renders the file once for the opening process (one consistent
//! snapshot per open, as LXCFS does), with direct I/O and zero TTLs, so nothing is cached
//! between readers of different cgroups.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo, LockOwner, MountOption, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, Request, SessionACL,
};

use crate::caller::{render_for, CgroupRoots, ViewFile};

pub use fuser::BackgroundSession;

const NO_TTL: Duration = Duration::ZERO;

fn attr(ino: u64, dir: bool) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: if dir { FileType::Directory } else { FileType::RegularFile },
        perm: if dir { 0o555 } else { 0o444 },
        nlink: if dir { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        flags: 0,
        blksize: 4096,
    }
}

/// Inode of a view file: 2, 3, 4 in `ViewFile::ALL` order (1 is the directory).
fn file_of(ino: INodeNo) -> Option<ViewFile> {
    let i = u64::from(ino).checked_sub(2)? as usize;
    ViewFile::ALL.get(i).copied()
}

pub struct ProcView {
    roots: CgroupRoots,
    open: Mutex<HashMap<u64, Vec<u8>>>,
    next_fh: AtomicU64,
}

impl ProcView {
    pub fn new(roots: CgroupRoots) -> ProcView {
        ProcView { roots, open: Mutex::new(HashMap::new()), next_fh: AtomicU64::new(1) }
    }
}

impl Filesystem for ProcView {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = ViewFile::ALL.iter().position(|f| Some(f.name()) == name.to_str());
        match (u64::from(parent), found) {
            (1, Some(i)) => reply.entry(&NO_TTL, &attr(i as u64 + 2, false), fuser::Generation(0)),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match u64::from(ino) {
            1 => reply.attr(&NO_TTL, &attr(1, true)),
            n if file_of(ino).is_some() => reply.attr(&NO_TTL, &attr(n, false)),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let Some(file) = file_of(ino) else { return reply.error(Errno::ENOENT) };
        let text = render_for(&self.roots, req.pid(), file);
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut open) = self.open.lock() {
            open.insert(fh, text.into_bytes());
        }
        reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let open = match self.open.lock() {
            Ok(o) => o,
            Err(_) => return reply.error(Errno::EIO),
        };
        let Some(data) = open.get(&u64::from(fh)) else { return reply.error(Errno::EBADF) };
        let start = (offset as usize).min(data.len());
        let end = start.saturating_add(size as usize).min(data.len());
        reply.data(&data[start..end]);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&u64::from(fh));
        }
        reply.ok();
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        if u64::from(ino) != 1 {
            return reply.error(Errno::ENOENT);
        }
        let mut entries = vec![(1u64, FileType::Directory, "."), (1, FileType::Directory, "..")];
        entries.extend(ViewFile::ALL.iter().enumerate().map(|(i, f)| (i as u64 + 2, FileType::RegularFile, f.name())));
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

/// Mounts the view at `dir` and serves it from a background thread until the returned
/// session is dropped. Everyone may read it (containers' processes run as any uid).
pub fn serve(roots: CgroupRoots, dir: &Path) -> std::io::Result<BackgroundSession> {
    let mut config = Config::default();
    config.mount_options = vec![MountOption::RO, MountOption::FSName("podrun-procview".into())];
    // SessionACL::All is the allow_other mount option.
    config.acl = SessionACL::All;
    fuser::spawn_mount(ProcView::new(roots), dir, &config)
}
