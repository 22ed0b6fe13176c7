//! The view's FUSE server: the kernel protocol spoken directly on a /dev/fuse descriptor.
//!
//! Why not a FUSE library: a restarted server must take over the *same* connection, which
//! is already initialised (the kernel sends INIT once per mount), so that containers keep
//! their bind mounts and never see "Transport endpoint is not connected". Libraries (fuser
//! included) insist on the INIT handshake. A flat read-only directory of generated files
//! needs only a dozen opcodes, all here. On takeover the new server asks the kernel to
//! resend the requests the dead one had read but not answered (FUSE_NOTIFY_RESEND, Linux
//! 6.9), so no reader waits forever.
//!
//! Every file is rendered at open for the process that opens it (the request carries its
//! pid). Each container has inodes of its own (see `node_of`), whose page cache holds the
//! text last opened: an open that renders the same text reads it from the cache, so a read
//! costs one round trip (OPEN) instead of three (OPEN, READ, READ at the end). A new text
//! is stored into the cache at open while no reader has the inode open through it; one
//! that would change it under another reader reads its own copy with direct I/O instead.
//! A descriptor kept open and read again from the start (procps: top, free, vmstat) gets
//! a fresh text: a file's attributes live FILE_ATTR_VALID_NS, and the kernel asks for
//! them again (GETATTR) before such a read, when the server stores the reader's text anew.
//!
//! Here: the view's state, and what it has put in each inode's page cache. The wire format
//! is fuse/proto.rs's, what each request is answered fuse/requests.rs's, and how requests
//! are taken (worker threads) fuse/workers.rs's.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::caller::ViewFile;
use crate::error::{LogLimit, ViewError};
use proto::{Valid, FUSE_NOTIFY_RESEND, ROOT};

mod proto;
mod requests;
mod workers;

/// How many OPEN replies are kept for requests read again (ProcView::opened).
const OPENS_KEPT: usize = 64;
/// A page: what of a worker's buffer requests fill (workers.rs), and the most a text can be
/// for a reader at its end to find no more of it (refresh).
const PAGE: usize = 4096;

/// How long after a server starts its stores wait for its predecessors to have exited
/// (ProcView::wait_for_predecessor): its last stores take a round trip or two.
const PREDECESSOR_WAIT: Duration = Duration::from_millis(500);

/// How an open file reads.
enum Held {
    /// Through its inode's page cache (Node::text).
    Cached,
    /// Its own copy, with direct I/O; and whether it has been read from the start.
    Copy(Vec<u8>, bool),
}

impl Held {
    fn cached(&self) -> bool {
        matches!(self, Held::Cached)
    }
}

/// What this server has put in the kernel's page cache for one inode.
#[derive(Default)]
struct Node {
    /// The text the cache holds, whose length is the inode's size. None: not known (before
    /// the first open, or under a new server).
    text: Option<Vec<u8>>,
    /// A longer (or as long) text being stored: it becomes `text` once it is in the
    /// kernel's cache. Until then a READ (of a page the kernel dropped) must get the old
    /// text, whose length the inode's size still is: the new one's first bytes up to the
    /// old size would be a cut text.
    pending: Option<Vec<u8>>,
    /// Descriptors open on the inode that read through the cache.
    open: usize,
    /// Descriptors open on it with direct I/O. Their read(2) gets their own copy, but
    /// sendfile and splice read the page cache all the same (busybox cat): a store under
    /// one of them, which raises the size before it writes the pages, could give it the
    /// old size and the new text's first bytes ("10.09 10.0" for "10.09 10.09"). So no
    /// store runs while one is open.
    direct: usize,
    /// When the last store began. A reader in the middle of a text asks for the size
    /// (GETATTR) too: Python's read() stats the file, and its read at the end of the text
    /// makes the kernel ask again. A longer text stored then would be read on from where
    /// the reader is: the first text's bytes, then the second's tail (a /proc/stat that
    /// ended "\n\n", seen in a slow guest). So a longer text (or one past a page) is
    /// stored for an asker only once the cached one is REFRESH_AFTER old: a reader that
    /// reads the file again later (procps) gets a fresh text, one in the middle of it
    /// keeps its own.
    stored: Option<Instant>,
    /// A store is under way. No lock is held while writing to the kernel (a store waits
    /// for the pages it writes, which a reader's READ may hold), so opens meanwhile read
    /// their own copies.
    storing: bool,
}

impl Node {
    /// Begins a store of `text` (under way until finish_store). Returns whether the cache
    /// is dropped first: the text is shorter, or the cache unknown. A shorter text is the
    /// cache's at once: a READ after the drop gets it, and its shortness cuts the inode's
    /// size to it. A longer one is `pending` until it is stored.
    fn begin_store(&mut self, text: &[u8]) -> bool {
        self.storing = true;
        self.stored = Some(Instant::now());
        let shrinks = self.text.as_ref().is_none_or(|t| t.len() > text.len());
        match shrinks {
            true => self.text = Some(text.to_vec()),
            false => self.pending = Some(text.to_vec()),
        }
        shrinks
    }
}

/// What a server needs: the cgroup hierarchies to read, and the open files' rendered copies.
pub struct ProcView {
    hierarchy: podrun_cgroup::Hierarchy,
    loads: crate::load::Loads,
    /// Per open file: how it reads (see Held). The next file handle first.
    handles: Mutex<(u64, HashMap<u64, Held>)>,
    /// Per inode: what its page cache holds. Dropped when the kernel forgets the inode.
    nodes: Mutex<HashMap<u64, Node>>,
    /// Notified when a store ends (an open waits for it: see STORE_WAIT).
    store_ended: std::sync::Condvar,
    /// When the view was made, and when it last had a request or call (ms after that).
    born: Instant,
    last: AtomicU64,
    /// An earlier server served this connection: the kernel may hold pages (and a size) of
    /// an inode this server knows nothing of (see `known_size`).
    resumed: AtomicBool,
    /// The servers before this one that may still be exiting (pidfds), and until when a
    /// store waits for them (see `wait_for_predecessor`).
    predecessors: Mutex<(Vec<OwnedFd>, Instant)>,
    /// The connection, once `serve` has it (for `wait_for_predecessor`'s resends).
    conn: std::sync::atomic::AtomicI32,
    /// The replies to the last OPENs, by request: the same request read again after a
    /// resend gets the same handle (not a second one, which would count its reader twice).
    opened: Mutex<std::collections::VecDeque<(u64, Vec<u8>)>>,
    /// When each cgroup's failure to render was last logged (`refuse`).
    logged: Mutex<LogLimit>,
}

impl ProcView {
    pub fn new(hierarchy: podrun_cgroup::Hierarchy) -> ProcView {
        ProcView::with_kept_loads(hierarchy, None)
    }

    /// A view whose load averages go on from, and are kept in, `kept` (memory the keeper holds).
    pub fn with_kept_loads(hierarchy: podrun_cgroup::Hierarchy, kept: Option<&'static crate::load::Kept>) -> ProcView {
        ProcView {
            hierarchy,
            loads: crate::load::Loads::new(kept),
            // File handles outlive a server (the kernel keeps them across a restart): each
            // server numbers its own from its pid up, so a new one never reads an old
            // handle as one of its own (another reader's copy).
            handles: Mutex::new(((u64::from(std::process::id())) << 32 | 1, HashMap::new())),
            nodes: Mutex::default(),
            store_ended: std::sync::Condvar::new(),
            born: Instant::now(),
            last: AtomicU64::new(0),
            resumed: AtomicBool::new(false),
            predecessors: Mutex::new((Vec::new(), Instant::now())),
            conn: std::sync::atomic::AtomicI32::new(-1),
            opened: Mutex::default(),
            logged: Mutex::default(),
        }
    }

    /// The servers before this one that are still running or exiting (pidfds).
    pub fn set_predecessors(&self, pidfds: Vec<OwnedFd>) {
        *self.predecessors.lock().unwrap_or_else(|p| p.into_inner()) = (pidfds, Instant::now() + PREDECESSOR_WAIT);
    }

    /// Waits (at most PREDECESSOR_WAIT after this server started) until the servers before
    /// this one have exited. A server killed in the middle of a page-cache store stays
    /// until that store is written: the kernel waits for a page that a reader holds while
    /// it waits for a READ, which this server answers. Such a late store of an old text,
    /// between this server's drop of the cache and its own store, would leave the old
    /// text's size, or its tail after a shorter new text ("\n\n" at the end of a
    /// /proc/stat, seen under repeated kills). So no store runs beside it. (Nor does the
    /// sysinfo agent look for the call it left: server::run.)
    pub fn wait_for_predecessor(&self) {
        let mut p = self.predecessors.lock().unwrap_or_else(|p| p.into_inner());
        let (fds, until) = &mut *p;
        while !fds.is_empty() {
            // In slices: a dying server's thread may have taken a request after this one's
            // resend (a request pending when it was killed is read without waiting), and
            // a killed server's store may be waiting for that very READ. Each slice that
            // ends with a predecessor still there asks for another resend.
            let ms = until.saturating_duration_since(Instant::now()).as_millis().min(50) as i32;
            if ms == 0 {
                fds.clear();
                break;
            }
            let mut pfds: Vec<libc::pollfd> =
                fds.iter().map(|f| libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
            // SAFETY: poll of live pollfds. A pidfd is readable once its process exited.
            if unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) } <= 0 {
                let conn = self.conn.load(Ordering::SeqCst);
                if conn >= 0 {
                    reply(conn, 0, -FUSE_NOTIFY_RESEND, &[]);
                }
                continue;
            }
            let mut i = 0;
            fds.retain(|_| {
                i += 1;
                pfds[i - 1].revents == 0
            });
        }
    }

    /// Notes a request or call: the view is in use.
    fn touch(&self) {
        self.last.store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long the view has had nothing to do: no request or call, and no cgroup's load
    /// being sampled (None while one is: its averages need this process).
    pub fn idle_for(&self) -> Option<Duration> {
        if self.loads.sampling() {
            return None;
        }
        Some(self.born.elapsed().saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed))))
    }

    /// The size the kernel is told for `node`: the length of the text in its cache (0
    /// before the first open, as /proc says).
    fn size_of(&self, node: u64) -> u64 {
        self.nodes().get(&node).and_then(|n| n.text.as_ref()).map_or(0, |t| t.len() as u64)
    }

    /// The size to tell the kernel for `node`, asked by `pid`: its cached text's length.
    /// Under a server that took over a connection, a node it has not stored is one whose
    /// pages and size an earlier server set, which this one does not know: telling the
    /// kernel 0 (or any other length) would cut the page cache to it, and a descriptor
    /// opened under the earlier server would read nothing (Python stats before a read;
    /// busybox cat reads up to the size). So the asker's text is stored first.
    fn known_size(&self, fd: RawFd, node: u64, pid: u32) -> Result<u64, ViewError> {
        let unknown = self.nodes().get(&node).is_none_or(|n| n.text.is_none());
        if unknown && self.resumed.load(Ordering::Relaxed) {
            if let Some(file) = node_file(node) {
                let fresh = self.render(pid, file)?;
                self.refresh(fd, node, &fresh);
            }
        }
        Ok(self.size_of(node))
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Node>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn opened(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(u64, Vec<u8>)>> {
        self.opened.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handles(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<u64, Held>)> {
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts a reader's fresh `text` into `node`'s page cache, unless a store is under way,
    /// another descriptor than the reader's is open on the inode (a store under a reader
    /// could change the text it is copying), or the text is longer and the cached one
    /// younger than REFRESH_AFTER (the asker may be at its end: Node::stored).
    fn refresh(&self, fd: RawFd, node: u64, text: &[u8]) {
        let shrinks = {
            let mut nodes = self.nodes();
            let n = nodes.entry(node).or_default();
            // A reader at the end of a one-page text finds no more of one as long or
            // shorter (its size says the end); a longer one, or a later page, it would
            // read on into.
            let tears = n.text.as_ref().is_some_and(|t| text.len() > t.len()) || text.len() > PAGE;
            let recent = n.stored.is_some_and(|t| t.elapsed() < REFRESH_AFTER);
            if n.text.as_deref() == Some(text) || n.storing || n.open > 1 || n.direct > 0 || (tears && recent) {
                return;
            }
            n.begin_store(text)
        };
        self.finish_store(fd, node, text, shrinks);
    }

    /// Writes `text` into `node`'s cache, whose store `begin_store` began.
    fn finish_store(&self, fd: RawFd, node: u64, text: &[u8], shrinks: bool) {
        self.wait_for_predecessor();
        // A text as long or longer is written over the cached one, and raises the size. A
        // shorter one (or over an unknown cache) drops the cache and the attributes first:
        // the store then fills no page to the end of the old size, so the kernel asks
        // for the size (GETATTR) and reads the last page (READ), which cuts the size to
        // what it returns.
        if shrinks {
            notify_inval(fd, node);
        }
        notify_store(fd, node, text);
        if let Some(n) = self.nodes().get_mut(&node) {
            if let Some(p) = n.pending.take() {
                n.text = Some(p);
            }
            n.storing = false;
        }
        self.store_ended.notify_all();
    }

    /// sysinfo(2) for process `pid`, from the same numbers as its files.
    pub fn sysinfo_for(&self, pid: u32) -> libc::sysinfo {
        self.touch();
        crate::caller::sysinfo_for(&self.hierarchy, &self.loads, pid)
    }
}

/// A file's inode number: the file in the low byte, and above it a hash of the looking-up
/// process's cgroups. Each container's bind mount, made by a process already in the
/// container's cgroup, pins an inode of its own, so a page cache (which sendfile and splice
/// read through) is never shared between containers. A restarted server needs no table:
/// the file is in the number.
fn node_of(file: usize, pid: u32) -> u64 {
    // A reader whose cgroups cannot be read (gone) gets the inodes of the empty text's hash.
    let h =
        crate::caller::cgroup_file(pid).map_or(podrun_cgroup::fnv1a(b""), |text| podrun_cgroup::fnv1a(text.as_bytes()));
    ((h >> 16) << 8) | (file as u64 + ROOT + 1)
}

fn node_file(node: u64) -> Option<ViewFile> {
    if node == ROOT {
        return None;
    }
    ViewFile::ALL.get(usize::try_from((node & 0xff).checked_sub(ROOT + 1)?).ok()?).copied()
}

/// How long an open waits for a store under way on its inode. A store is one write,
/// unless it waits for a dying predecessor (PREDECESSOR_WAIT) or for a page an earlier
/// server's reader holds; past this the open reads its own copy (direct I/O).
const STORE_WAIT: Duration = Duration::from_secs(1);

/// How old a cached text must be before a reader that asks for its size gets a fresh one
/// that is longer (Node::stored). A reader takes a few milliseconds from its open to its
/// last read (up to 62 ms measured under 9 readers in the single-CPU guest); procps reads
/// again after a second by default (top -d 0.1 at the least, which then sees a text up to
/// this old).
const REFRESH_AFTER: Duration = Duration::from_millis(250);

/// Seconds the kernel may keep the root directory's attributes: they never change.
const ATTR_VALID: u64 = 3600;
/// Nanoseconds it may keep a file's: a descriptor read again after this asks for them
/// (GETATTR), which is when a reader that keeps the file open gets a fresh text. A loop of
/// reads pays one GETATTR per this long.
const FILE_ATTR_VALID_NS: u32 = 10_000_000;

/// attr_valid and its nanoseconds, for `node`.
fn attr_valid(node: u64) -> Valid {
    if node == ROOT {
        (ATTR_VALID, 0)
    } else {
        (0, FILE_ATTR_VALID_NS)
    }
}

/// Writes one reply (or notification) in a single write(2), as the protocol requires.
fn reply(fd: RawFd, unique: u64, error: i32, body: &[u8]) {
    let out = proto::message(unique, error, body);
    // SAFETY: writes `out`, which lives across the call. A reply to an interrupted request
    // fails with ENOENT; there is nobody else to tell.
    unsafe { libc::write(fd, out.as_ptr().cast(), out.len()) };
}

/// FUSE_NOTIFY_INVAL_INODE: drops `node`'s attributes and cached pages.
fn notify_inval(fd: RawFd, node: u64) {
    reply(fd, 0, -proto::FUSE_NOTIFY_INVAL_INODE, &proto::inval_inode(node));
}

/// FUSE_NOTIFY_STORE: `text` into `node`'s page cache from offset 0, raising its size to
/// the text's length if it was less.
fn notify_store(fd: RawFd, node: u64, text: &[u8]) {
    reply(fd, 0, -proto::FUSE_NOTIFY_STORE, &proto::store(node, text));
}

/// Asks the kernel to queue again every request a server has read and not answered
/// (FUSE_NOTIFY_RESEND, Linux 6.9): what a dead server took. One answered meanwhile by a
/// live server is answered again from the queue (the first reply finds it gone).
pub fn resend(fd: BorrowedFd<'_>) {
    reply(fd.as_raw_fd(), 0, -FUSE_NOTIFY_RESEND, &[]);
}

/// Opens /dev/fuse and mounts a view on `dir` (as root; readable by every process).
/// Returns the connection's descriptor, which the caller serves.
pub fn mount(dir: &Path) -> io::Result<OwnedFd> {
    let dev = std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse")?;
    let fd: OwnedFd = dev.into();
    let opts = format!("fd={},rootmode=40000,user_id=0,group_id=0,allow_other", fd.as_raw_fd());
    let c = |s: &str| std::ffi::CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let (src, target, fstype, data) = (
        c("podrun-procview")?,
        c(dir.to_str().ok_or(io::ErrorKind::InvalidInput)?)?,
        c("fuse.podrun-procview")?,
        c(&opts)?,
    );
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY;
    // SAFETY: all pointers are NUL-terminated strings that outlive the call.
    let r = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags, data.as_ptr().cast()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// A view mounted on a directory and served by threads of this process, for tests and
/// tools; dropping it unmounts.
pub struct BackgroundView {
    dir: std::path::PathBuf,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for BackgroundView {
    fn drop(&mut self) {
        if let Ok(c) = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes()) {
            // SAFETY: c is NUL-terminated. MNT_DETACH: the serving threads see ENODEV.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Mounts a view on `dir` and serves it from a background thread.
pub fn serve(hierarchy: podrun_cgroup::Hierarchy, dir: &Path) -> io::Result<BackgroundView> {
    let fd = mount(dir)?;
    let thread = std::thread::spawn(move || {
        ProcView::new(hierarchy).serve(std::os::fd::AsFd::as_fd(&fd), 2, false, |_| {});
    });
    Ok(BackgroundView { dir: dir.to_owned(), thread: Some(thread) })
}
