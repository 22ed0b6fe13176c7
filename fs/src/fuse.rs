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

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::caller::{render_for, CgroupRoots, ViewFile};
use crate::error::{LogLimit, ToErrno, ViewError};

const FUSE_LOOKUP: u32 = 1;
const FUSE_FORGET: u32 = 2;
const FUSE_GETATTR: u32 = 3;
const FUSE_OPEN: u32 = 14;
const FUSE_READ: u32 = 15;
const FUSE_STATFS: u32 = 17;
const FUSE_RELEASE: u32 = 18;
const FUSE_FLUSH: u32 = 25;
const FUSE_INIT: u32 = 26;
const FUSE_OPENDIR: u32 = 27;
const FUSE_READDIR: u32 = 28;
const FUSE_RELEASEDIR: u32 = 29;
const FUSE_ACCESS: u32 = 34;
const FUSE_INTERRUPT: u32 = 36;
const FUSE_DESTROY: u32 = 38;
const FUSE_BATCH_FORGET: u32 = 42;
const FUSE_NOTIFY_INVAL_INODE: i32 = 2;
const FUSE_NOTIFY_STORE: i32 = 4;
const FUSE_NOTIFY_RESEND: i32 = 7;
/// The bit the kernel sets in a request's unique when it resends it.
const FUSE_UNIQUE_RESEND: u64 = 1 << 63;
/// How many OPEN replies are kept for requests read again (ProcView::opened).
const OPENS_KEPT: usize = 64;
const FOPEN_DIRECT_IO: u32 = 1;
const FOPEN_KEEP_CACHE: u32 = 2;
/// fuse_getattr_in.getattr_flags: the request names an open file (fh).
const FUSE_GETATTR_FH: u32 = 1;
/// The header of every request: len, opcode, unique, nodeid, uid, gid, pid, extlen, pad.
const IN_HEADER: usize = 40;
const ROOT: u64 = 1;
/// Requests are small (no writes are accepted). The kernel wants a buffer of at least 8 kB
/// (FUSE_MIN_READ_BUFFER) and room for a write of max_write (4096, set at INIT) after its
/// headers.
const BUFFER: usize = 8 * 1024;
/// What of it requests fill.
const PAGE: usize = 4096;

/// Worker threads: how many wait for a request, and how many there are.
struct Pool {
    idle: AtomicUsize,
    total: AtomicUsize,
    /// The fewest that waited at any moment since the last look (Pool::look).
    fewest_idle: AtomicUsize,
    /// How many may end: the last look found them waiting all through the time before.
    surplus: AtomicUsize,
    /// The connection is gone (unmounted): every worker ends, and `serve` returns.
    ended: AtomicBool,
    /// The thread in `serve`, woken when the session ends.
    main: std::thread::Thread,
}

/// How often `serve`'s thread calls its `tick`.
const TICK: Duration = Duration::from_secs(1);

/// Each second in which requests came, the heap's free pages go back to the kernel (glibc
/// gives back only the heap's top, and the texts of a steady reader leave free pages
/// between live ones: a reader of every file five times a second grew the heap to 1 MB,
/// 400 kB of it in use).
///
/// A second after start-up, and then at most this often while requests come, the code this
/// process has mapped is unmapped (memory::unmap_code): what start-up, a first request of
/// its kind or a new worker mapped, and requests do not use now, stays unmapped. (Once is
/// not enough: each thread start maps the loader's code again, all 150 kB of it.) It costs
/// about 0.1 ms, and the next requests fault back the pages they use.
const UNMAP_EVERY: Duration = Duration::from_secs(2);

impl Pool {
    fn add(&self) {
        self.idle.fetch_add(1, Ordering::SeqCst);
        self.total.fetch_add(1, Ordering::SeqCst);
    }

    /// A worker takes a request: true if it took the last idle place (and should start
    /// another worker, so that one always reads).
    fn take(&self) -> bool {
        let before = self.idle.fetch_sub(1, Ordering::SeqCst);
        self.fewest_idle.fetch_min(before.saturating_sub(1), Ordering::SeqCst);
        before == 1 && self.total.load(Ordering::SeqCst) < THREADS_MAX
    }

    /// Every WORKERS_LOOK: of the workers that waited all through the time since the last
    /// look, all but IDLE_KEPT were not needed, and may end.
    fn look(&self) {
        let fewest = self.fewest_idle.swap(self.idle.load(Ordering::SeqCst), Ordering::SeqCst);
        self.surplus.store(fewest.saturating_sub(IDLE_KEPT), Ordering::SeqCst);
    }

    /// A worker that has answered its request: it waits for the next one, or, if the last
    /// look found workers not needed and more than THREADS_KEPT remain, it ends (true) and
    /// the heap a burst of readers left free goes back to the kernel. (A burst of 8 readers
    /// grew the pool to 16 threads and the heap to 650 kB, for as long as the server ran.)
    fn retire(&self) -> bool {
        let not_needed = self.surplus.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if !not_needed || self.total.load(Ordering::SeqCst) <= THREADS_KEPT {
            self.idle.fetch_add(1, Ordering::SeqCst);
            return false;
        }
        self.total.fetch_sub(1, Ordering::SeqCst);
        crate::memory::trim_heap();
        true
    }
}

/// Workers end only once they have not been needed for a second (WORKERS_LOOK), so none
/// come and go with each request: ending at once on a surplus would start and end a thread
/// per read (a single reader's OPEN comes beside its last close's RELEASE). A steady reader
/// keeps three, and starts a fourth every 10-20 s for a second. (Looking every 30 s kept
/// seven.) At least THREADS_KEPT stay. A worker waiting for a request cannot end: after a
/// burst, the next requests end the workers not needed, or the server ends for want of
/// work (server::idle_limit).
const IDLE_KEPT: usize = 1;
const THREADS_KEPT: usize = 2;
const WORKERS_LOOK: Duration = TICK;

/// How long after a server starts its stores wait for its predecessors to have exited
/// (ProcView::wait_for_predecessor): its last stores take a round trip or two.
const PREDECESSOR_WAIT: Duration = Duration::from_millis(500);

/// At most this many workers.
const THREADS_MAX: usize = 16;

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

/// What a server needs: the cgroup mounts to read, and the open files' rendered copies.
pub struct ProcView {
    roots: CgroupRoots,
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
    pub fn new(roots: CgroupRoots) -> ProcView {
        ProcView::with_kept_loads(roots, None)
    }

    /// A view whose load averages go on from, and are kept in, `kept` (memory the keeper holds).
    pub fn with_kept_loads(roots: CgroupRoots, kept: Option<&'static crate::load::Kept>) -> ProcView {
        ProcView {
            roots,
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
        crate::caller::sysinfo_for(&self.roots, &self.loads, pid)
    }
}

/// A file's inode number: the file in the low byte, and above it a hash of the looking-up
/// process's cgroups. Each container's bind mount, made by a process already in the
/// container's cgroup, pins an inode of its own, so a page cache (which sendfile and splice
/// read through) is never shared between containers. A restarted server needs no table:
/// the file is in the number.
fn node_of(file: usize, pid: u32) -> u64 {
    // A reader whose cgroups cannot be read (gone) gets the inodes of the empty text's hash.
    let h = crate::caller::cgroup_file(pid).map_or(crate::fnv1a(b""), |text| crate::fnv1a(text.as_bytes()));
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
fn attr_valid(node: u64) -> (u64, u32) {
    if node == ROOT {
        (ATTR_VALID, 0)
    } else {
        (0, FILE_ATTR_VALID_NS)
    }
}

/// fuse_attr: ino, size, blocks, a/m/ctime, their nsecs, mode, nlink, uid, gid, rdev,
/// blksize, flags (88 bytes).
fn attr(node: u64, size: u64) -> Vec<u8> {
    let mut a = Vec::with_capacity(88);
    let mode: u32 = if node == ROOT { libc::S_IFDIR | 0o555 } else { libc::S_IFREG | 0o444 };
    for v in [node, size, 0, 0, 0, 0] {
        a.extend_from_slice(&v.to_ne_bytes());
    }
    for v in [0u32, 0, 0, mode, if node == ROOT { 2 } else { 1 }, 0, 0, 0, 4096, 0] {
        a.extend_from_slice(&v.to_ne_bytes());
    }
    a
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |s| u32::from_ne_bytes(s.try_into().unwrap_or_default()))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| u64::from_ne_bytes(s.try_into().unwrap_or_default()))
}

/// Writes one reply (or notification) in a single write(2), as the protocol requires.
fn reply(fd: RawFd, unique: u64, error: i32, body: &[u8]) {
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    out.extend_from_slice(&(-error).to_ne_bytes());
    out.extend_from_slice(&unique.to_ne_bytes());
    out.extend_from_slice(body);
    // SAFETY: writes `out`, which lives across the call. A reply to an interrupted request
    // fails with ENOENT; there is nobody else to tell.
    unsafe { libc::write(fd, out.as_ptr().cast(), out.len()) };
}

fn entry(node: u64, size: u64) -> Vec<u8> {
    // nodeid, generation, entry_valid (0: look up again, the inode depends on who asks),
    // attr_valid, entry_valid_nsec, attr_valid_nsec, attr.
    let (valid, valid_ns) = attr_valid(node);
    let mut e = Vec::with_capacity(128);
    for v in [node, 0, 0, valid] {
        e.extend_from_slice(&v.to_ne_bytes());
    }
    e.extend_from_slice(&0u32.to_ne_bytes());
    e.extend_from_slice(&valid_ns.to_ne_bytes());
    e.extend_from_slice(&attr(node, size));
    e
}

/// FUSE_NOTIFY_INVAL_INODE: drops `node`'s attributes and cached pages.
fn notify_inval(fd: RawFd, node: u64) {
    // fuse_notify_inval_inode_out: ino, off (0: pages from the start), len (0: to the end).
    let mut inval = Vec::with_capacity(24);
    inval.extend_from_slice(&node.to_ne_bytes());
    inval.extend_from_slice(&0i64.to_ne_bytes());
    inval.extend_from_slice(&0i64.to_ne_bytes());
    reply(fd, 0, -FUSE_NOTIFY_INVAL_INODE, &inval);
}

/// FUSE_NOTIFY_STORE: `text` into `node`'s page cache from offset 0, raising its size to
/// the text's length if it was less.
fn notify_store(fd: RawFd, node: u64, text: &[u8]) {
    // fuse_notify_store_out: nodeid, offset, size, padding; then the data.
    let mut store = Vec::with_capacity(24 + text.len());
    store.extend_from_slice(&node.to_ne_bytes());
    store.extend_from_slice(&0u64.to_ne_bytes());
    store.extend_from_slice(&(text.len() as u32).to_ne_bytes());
    store.extend_from_slice(&[0u8; 4]);
    store.extend_from_slice(text);
    reply(fd, 0, -FUSE_NOTIFY_STORE, &store);
}

impl ProcView {
    /// Answers one request (`req` is the whole message, header first).
    fn handle(&self, fd: RawFd, req: &[u8]) {
        let (opcode, unique, node, pid) = (u32_at(req, 4), u64_at(req, 8), u64_at(req, 16), u32_at(req, 32));
        let body = &req[IN_HEADER.min(req.len())..];
        match opcode {
            FUSE_INIT => {
                let (major, minor) = (u32_at(body, 0), u32_at(body, 4));
                if major < 7 {
                    return reply(fd, unique, libc::EPROTO, &[]);
                }
                // major, minor, max_readahead, flags, max_background, congestion_threshold,
                // max_write, time_gran, max_pages, map_alignment, flags2, ... (64 bytes).
                let mut out = Vec::with_capacity(64);
                for v in [7u32, minor.min(40), 0, 0] {
                    out.extend_from_slice(&v.to_ne_bytes());
                }
                out.extend_from_slice(&16u16.to_ne_bytes());
                out.extend_from_slice(&12u16.to_ne_bytes());
                out.extend_from_slice(&4096u32.to_ne_bytes());
                out.extend_from_slice(&1u32.to_ne_bytes());
                out.resize(64, 0);
                reply(fd, unique, 0, &out)
            }
            FUSE_LOOKUP => {
                let name = body.split(|&b| b == 0).next().unwrap_or_default();
                match ViewFile::ALL.iter().position(|f| f.name().as_bytes() == name) {
                    // No rendering here (a container start looks up every file): the size
                    // of the copy last opened, 0 before the first open.
                    Some(i) if node == ROOT => {
                        let n = node_of(i, pid);
                        match self.known_size(fd, n, pid) {
                            Ok(size) => reply(fd, unique, 0, &entry(n, size)),
                            Err(e) => self.refuse(fd, unique, &e),
                        }
                    }
                    _ => reply(fd, unique, libc::ENOENT, &[]),
                }
            }
            FUSE_GETATTR => {
                let size = match node_file(node) {
                    // Asked for an open file that reads through the cache (or one opened
                    // under an earlier server), or for an inode such a file is open on (a
                    // stat names no file; Python's read() stats first): a read, seek or
                    // stat of a descriptor whose attributes are old, maybe procps or
                    // Python reading again. The asker's text goes into the cache first, so
                    // that it reads a fresh one, if no other reader reads through it.
                    Some(file) if self.may_read_again(node, body) => {
                        let fresh = match self.render(pid, file) {
                            Ok(text) => text,
                            Err(e) => return self.refuse(fd, unique, &e),
                        };
                        self.refresh(fd, node, &fresh);
                        self.size_of(node)
                    }
                    Some(_) => match self.known_size(fd, node, pid) {
                        Ok(size) => size,
                        Err(e) => return self.refuse(fd, unique, &e),
                    },
                    None if node == ROOT => 0,
                    None => return reply(fd, unique, libc::ENOENT, &[]),
                };
                let (valid, valid_ns) = attr_valid(node);
                let mut out = Vec::with_capacity(104);
                out.extend_from_slice(&valid.to_ne_bytes());
                out.extend_from_slice(&valid_ns.to_ne_bytes());
                out.extend_from_slice(&[0u8; 4]);
                out.extend_from_slice(&attr(node, size));
                reply(fd, unique, 0, &out)
            }
            FUSE_OPEN => {
                let Some(file) = node_file(node) else { return reply(fd, unique, libc::EISDIR, &[]) };
                if u32_at(body, 0) & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32 {
                    return reply(fd, unique, libc::EACCES, &[]);
                }
                let request = unique & !FUSE_UNIQUE_RESEND;
                if let Some((_, out)) = self.opened().iter().find(|(u, _)| *u == request) {
                    return reply(fd, unique, 0, out);
                }
                let content = match self.render(pid, file) {
                    Ok(text) => text,
                    Err(e) => return self.refuse(fd, unique, &e),
                };
                // Through the cache if it holds this text, or can be given it: no other
                // reader reads through it, and no store is under way. The count is raised
                // and the text recorded at once, so no other open stores meanwhile or
                // takes the old text for the cache's. The inode's size is the text's
                // length, as stat, seeks (`tail -c`) and sendfile need. A direct open is
                // told the cache's size (the text of an open a moment before), and
                // sendfile reads the cache's text, whole; read(2) reads its own copy.
                let (cached, store) = {
                    let mut nodes = self.nodes();
                    // An open during a store waits for it: even a direct one reads the
                    // cache through sendfile, and would find the new text's pages under
                    // the old size, or the old text's under the new one (a first cat of
                    // /proc/cpuinfo cut to its first line, seen in the guest).
                    let until = Instant::now() + STORE_WAIT;
                    while nodes.get(&node).is_some_and(|n| n.storing) && Instant::now() < until {
                        let left = until.saturating_duration_since(Instant::now());
                        nodes = self.store_ended.wait_timeout(nodes, left).unwrap_or_else(|p| p.into_inner()).0;
                    }
                    let n = nodes.entry(node).or_default();
                    if n.storing {
                        n.direct += 1;
                        (false, None)
                    } else if n.text.as_deref() == Some(&content[..]) {
                        n.open += 1;
                        (true, None)
                    } else if n.open == 0 && n.direct == 0 {
                        n.open = 1;
                        (true, Some(n.begin_store(&content)))
                    } else {
                        n.direct += 1;
                        (false, None)
                    }
                };
                if let Some(shrinks) = store {
                    self.finish_store(fd, node, &content, shrinks);
                }
                let held = match cached {
                    true => Held::Cached,
                    false => Held::Copy(content, false),
                };
                let fh = {
                    let mut h = self.handles();
                    let fh = h.0;
                    h.0 += 1;
                    h.1.insert(fh, held);
                    fh
                };
                let mut out = Vec::with_capacity(16);
                out.extend_from_slice(&fh.to_ne_bytes());
                out.extend_from_slice(&(if cached { FOPEN_KEEP_CACHE } else { FOPEN_DIRECT_IO }).to_ne_bytes());
                out.extend_from_slice(&[0u8; 4]);
                {
                    let mut opened = self.opened();
                    if opened.len() == OPENS_KEPT {
                        opened.pop_front();
                    }
                    opened.push_back((request, out.clone()));
                }
                reply(fd, unique, 0, &out)
            }
            FUSE_READ => {
                let (fh, offset, size) = (u64_at(body, 0), u64_at(body, 8), u32_at(body, 16) as usize);
                let slice = |c: &[u8]| {
                    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(c.len());
                    c[start..(start + size).min(c.len())].to_vec()
                };
                // A read through the cache that missed it (pages dropped, or the end of a
                // shorter text stored): the text the cache holds, whose length the kernel
                // has. procps (top, free, vmstat) keeps a direct file open and reads it
                // again from offset 0 after lseek: that read is a fresh look, as LXCFS and
                // /proc give.
                let held = {
                    let mut h = self.handles();
                    match h.1.get_mut(&fh) {
                        Some(Held::Cached) => self.nodes().get(&node).and_then(|n| n.text.as_deref()).map(slice),
                        Some(Held::Copy(copy, started)) if offset > 0 || !*started => {
                            *started = true;
                            Some(slice(copy))
                        }
                        Some(Held::Copy(..)) => None,
                        // A handle of an earlier server: the text this server knows the
                        // cache to hold, if it knows it. A fresh text served into a page
                        // the kernel dropped would make the cache another text than the
                        // one recorded, and a later shorter store would not drop it first
                        // (a /proc/stat that ended in the old text's last newline).
                        None => self.nodes().get(&node).and_then(|n| n.text.as_deref()).map(slice),
                    }
                };
                let data = match (held, node_file(node)) {
                    (Some(d), _) => d,
                    // Read again from the start, or opened under a server that is gone:
                    // rendered afresh for this reader (and kept for the reads that follow).
                    (None, Some(file)) => {
                        let fresh = match self.render(pid, file) {
                            Ok(text) => text,
                            Err(e) => return self.refuse(fd, unique, &e),
                        };
                        let d = slice(&fresh);
                        if let Some(Held::Copy(copy, started)) = self.handles().1.get_mut(&fh) {
                            (*copy, *started) = (fresh, true);
                        }
                        d
                    }
                    (None, None) => return reply(fd, unique, libc::EBADF, &[]),
                };
                reply(fd, unique, 0, &data)
            }
            FUSE_RELEASE => {
                if let Some(held) = self.handles().1.remove(&u64_at(body, 0)) {
                    self.close(node, held.cached());
                }
                reply(fd, unique, 0, &[])
            }
            FUSE_OPENDIR => {
                if node != ROOT {
                    return reply(fd, unique, libc::ENOTDIR, &[]);
                }
                reply(fd, unique, 0, &[0u8; 16])
            }
            FUSE_READDIR => {
                let (offset, size) = (u64_at(body, 8), u32_at(body, 16) as usize);
                let mut out = Vec::new();
                let names = [(ROOT, ".".to_owned()), (ROOT, "..".to_owned())]
                    .into_iter()
                    .chain(ViewFile::ALL.iter().enumerate().map(|(i, f)| (node_of(i, pid), f.name().to_owned())));
                for (i, (ino, name)) in names.enumerate().skip(offset as usize) {
                    // fuse_dirent: ino, off (of the next entry), namelen, type, name, padded to 8.
                    let mut d = Vec::new();
                    d.extend_from_slice(&ino.to_ne_bytes());
                    d.extend_from_slice(&(i as u64 + 1).to_ne_bytes());
                    d.extend_from_slice(&(name.len() as u32).to_ne_bytes());
                    d.extend_from_slice(&(if ino == ROOT { libc::DT_DIR } else { libc::DT_REG } as u32).to_ne_bytes());
                    d.extend_from_slice(name.as_bytes());
                    d.resize(d.len().next_multiple_of(8), 0);
                    if out.len() + d.len() > size {
                        break;
                    }
                    out.extend_from_slice(&d);
                }
                reply(fd, unique, 0, &out)
            }
            FUSE_STATFS => {
                let mut out = vec![0u8; 80];
                out[40..44].copy_from_slice(&4096u32.to_ne_bytes());
                out[44..48].copy_from_slice(&255u32.to_ne_bytes());
                reply(fd, unique, 0, &out)
            }
            FUSE_RELEASEDIR | FUSE_ACCESS => reply(fd, unique, 0, &[]),
            // Nothing to flush: ENOSYS tells the kernel to stop sending FLUSH on every
            // close (one round trip less per read of a file).
            FUSE_FLUSH => reply(fd, unique, libc::ENOSYS, &[]),
            // The kernel dropped the inode, and its page cache with it. No reply is expected.
            FUSE_FORGET => {
                self.nodes().remove(&node);
            }
            FUSE_BATCH_FORGET => {
                // fuse_batch_forget_in: count, dummy; then count fuse_forget_one: nodeid, nlookup.
                let count = u32_at(body, 0) as usize;
                let mut nodes = self.nodes();
                for i in 0..count.min(body.len().saturating_sub(8) / 16) {
                    nodes.remove(&u64_at(body, 8 + 16 * i));
                }
            }
            // No reply is expected to these.
            FUSE_INTERRUPT | FUSE_DESTROY => {}
            _ => reply(fd, unique, libc::ENOSYS, &[]),
        }
    }

    /// Answers with `e`'s errno a request whose text cannot be made, and logs `e` unless a
    /// failure of the same cgroup was logged within the last minute.
    fn refuse(&self, fd: RawFd, unique: u64, e: &ViewError) {
        if self.logged.lock().unwrap_or_else(|p| p.into_inner()).admits(e.cgroup(), Instant::now()) {
            eprintln!("podrun-view: {e}");
        }
        reply(fd, unique, e.to_errno(), &[]);
    }

    /// `file` rendered for the process `pid`.
    fn render(&self, pid: u32, file: ViewFile) -> Result<Vec<u8>, ViewError> {
        render_for(&self.roots, &self.loads, pid, file).map(String::into_bytes)
    }

    /// Whether a GETATTR (`body`) may come before a read of `node` through its cache: it
    /// names an open file that reads so (or one this server did not open: an earlier
    /// server's may), or it names none and such a file is open.
    fn may_read_again(&self, node: u64, body: &[u8]) -> bool {
        match u32_at(body, 0) & FUSE_GETATTR_FH != 0 {
            true => self.handles().1.get(&u64_at(body, 8)).is_none_or(Held::cached),
            false => self.nodes().get(&node).is_some_and(|n| n.open > 0),
        }
    }

    /// One descriptor less is open on `node`, through its cache or direct.
    fn close(&self, node: u64, cached: bool) {
        if let Some(n) = self.nodes().get_mut(&node) {
            match cached {
                true => n.open = n.open.saturating_sub(1),
                false => n.direct = n.direct.saturating_sub(1),
            }
        }
    }

    /// Serves requests from `fd` on `threads` threads until the filesystem is unmounted.
    /// `resume`: the connection was initialised by an earlier server (which is gone):
    /// ask the kernel to resend what that server had read and not answered. The calling
    /// thread calls `tick` every second meanwhile.
    pub fn serve(&self, fd: BorrowedFd<'_>, threads: usize, resume: bool, mut tick: impl FnMut(&ProcView)) {
        let raw = fd.as_raw_fd();
        self.conn.store(raw, Ordering::SeqCst);
        if resume {
            self.resumed.store(true, Ordering::Relaxed);
            resend(fd);
        }
        let main = std::thread::current();
        let pool = Pool {
            idle: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            fewest_idle: AtomicUsize::new(0),
            surplus: AtomicUsize::new(0),
            ended: AtomicBool::new(false),
            main,
        };
        std::thread::scope(|s| {
            for _ in 0..threads.max(1) {
                self.add_worker(raw, s, &pool);
            }
            // This thread samples the loads, gives back the heap a burst of requests left,
            // and calls `tick` every second, until the session ends.
            let mut sample = Instant::now() + crate::load::INTERVAL;
            // The time of the last request (ms since born) when the heap was last trimmed;
            // and when code was last unmapped, and at what time (None: not since start-up).
            let (mut trimmed, mut unmapped) = (0, None::<(u64, Instant)>);
            let mut looked = Instant::now();
            while !pool.ended.load(Ordering::SeqCst) {
                std::thread::park_timeout(sample.saturating_duration_since(Instant::now()).min(TICK));
                if pool.ended.load(Ordering::SeqCst) {
                    break;
                }
                if Instant::now() >= sample {
                    self.loads.sample();
                    sample += crate::load::INTERVAL;
                }
                let last = self.last.load(Ordering::Relaxed);
                if last != trimmed {
                    crate::memory::trim_heap();
                    trimmed = last;
                }
                if unmapped.is_none_or(|(at_last, at)| at_last != last && at.elapsed() >= UNMAP_EVERY) {
                    crate::memory::unmap_code();
                    unmapped = Some((last, Instant::now()));
                }
                if looked.elapsed() >= WORKERS_LOOK {
                    pool.look();
                    looked = Instant::now();
                }
                tick(self);
            }
        });
    }

    /// Starts a worker, counted in `pool` (and not, if the thread cannot be made).
    fn add_worker<'s, 'e>(&'s self, fd: RawFd, s: &'s std::thread::Scope<'s, 'e>, pool: &'s Pool) {
        pool.add();
        let started = std::thread::Builder::new()
            .stack_size(crate::THREAD_STACK)
            .spawn_scoped(s, move || self.worker(fd, s, pool));
        if started.is_err() {
            pool.idle.fetch_sub(1, Ordering::SeqCst);
            pool.total.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Reads and answers requests until the filesystem is unmounted. A worker that takes
    /// the last idle place starts another first, so some worker is always reading.
    fn worker<'s, 'e>(&'s self, fd: RawFd, s: &'s std::thread::Scope<'s, 'e>, pool: &'s Pool) {
        // A request is taken from the connection into a pipe (splice), then read from it.
        // A read(2) of /dev/fuse copies the request into this process's memory through
        // get_user_pages, which fails when this process is being killed and the page is
        // not mapped as the fast path needs (always, on kernels without GUP-fast such as
        // User-Mode Linux); the kernel then ends the reader's request with EIO (`head
        // /proc/meminfo: Input/output error`, seen under repeated kills). Into a pipe it
        // copies into pages of its own: the request is taken whole (then resent to the
        // next server if this one dies) or not at all. Without a pipe (no descriptor
        // left), the buffer's first page is faulted in, which closes that window where
        // GUP-fast exists.
        let pipe = request_pipe();
        let mut buf: Vec<u8> = Vec::with_capacity(BUFFER);
        buf.resize(PAGE, 0);
        buf.clear();
        loop {
            let n = match &pipe {
                Some((r, w)) => take_request(fd, r.as_raw_fd(), w.as_raw_fd(), &mut buf),
                // SAFETY: reads into `buf`'s capacity, BUFFER bytes.
                None => unsafe { libc::read(fd, buf.as_mut_ptr().cast(), BUFFER) },
            };
            if n < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    // Interrupted, or a request withdrawn before we read it.
                    Some(libc::EINTR) | Some(libc::ENOENT) | Some(libc::EAGAIN) => continue,
                    // Unmounted (or broken): the session is over.
                    _ => {
                        pool.ended.store(true, Ordering::SeqCst);
                        pool.main.unpark();
                        return;
                    }
                }
            }
            let n = n as usize;
            // SAFETY: the kernel wrote the first n bytes.
            unsafe { buf.set_len(n) };
            self.touch();
            if pool.take() {
                self.add_worker(fd, s, pool);
            }
            if n >= IN_HEADER {
                self.handle(fd, &buf);
            }
            if pool.retire() {
                return;
            }
        }
    }
}

/// A pipe (read end, write end) a worker takes its requests through; None if none can
/// be made.
fn request_pipe() -> Option<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`, which this process then owns.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return None;
    }
    // SAFETY: both were just made and are owned by nothing else.
    Some(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Moves one request from the connection `fd` into the pipe, then into `buf`'s capacity
/// (BUFFER bytes). Returns its length, or -1 with errno set by the splice.
fn take_request(fd: RawFd, r: RawFd, w: RawFd, buf: &mut Vec<u8>) -> isize {
    // SAFETY: splice between two descriptors this process holds; no memory is passed.
    let n = unsafe { libc::splice(fd, std::ptr::null_mut(), w, std::ptr::null_mut(), BUFFER, 0) };
    if n <= 0 {
        return n;
    }
    let mut got = 0usize;
    while got < n as usize {
        // SAFETY: reads into `buf`'s capacity past what is read, within BUFFER bytes (a
        // request is at most BUFFER: the kernel refuses a smaller read length).
        let m = unsafe { libc::read(r, buf.as_mut_ptr().add(got).cast(), BUFFER - got) };
        if m <= 0 {
            break;
        }
        got += m as usize;
    }
    got as isize
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
pub fn serve(roots: CgroupRoots, dir: &Path) -> io::Result<BackgroundView> {
    let fd = mount(dir)?;
    let thread = std::thread::spawn(move || {
        ProcView::new(roots).serve(std::os::fd::AsFd::as_fd(&fd), 2, false, |_| {});
    });
    Ok(BackgroundView { dir: dir.to_owned(), thread: Some(thread) })
}
