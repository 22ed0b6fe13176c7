//! How requests are taken: worker threads that read the connection (through a pipe, so a
//! request is taken whole or not at all), as many as readers need and no more, and the
//! thread in `serve` that samples the loads and gives memory back meanwhile. What a request
//! is answered is ProcView::handle's (fuse.rs).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::proto::IN_HEADER;
use super::{resend, ProcView, PAGE};

/// Requests are small (no writes are accepted). The kernel wants a buffer of at least 8 kB
/// (FUSE_MIN_READ_BUFFER) and room for a write of max_write (proto::MAX_WRITE, set at INIT)
/// after its headers.
const BUFFER: usize = 8 * 1024;

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

/// At most this many workers.
const THREADS_MAX: usize = 16;

impl ProcView {
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
