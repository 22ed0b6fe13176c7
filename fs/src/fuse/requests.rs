//! What each request is answered (`ProcView::handle`): the opcodes of a flat read-only
//! directory of generated files, decoded and encoded by proto.rs. A text that cannot be made
//! is answered with its errno (`refuse`); the page cache's bookkeeping is fuse.rs's.

use std::os::fd::RawFd;
use std::time::Instant;

use super::proto::{self, Header, FOPEN_DIRECT_IO, FOPEN_KEEP_CACHE, FUSE_UNIQUE_RESEND, ROOT};
use super::{attr_valid, node_file, node_of, reply, Held, ProcView, OPENS_KEPT, STORE_WAIT};
use crate::caller::{render_for, ViewFile};
use crate::error::{ToErrno, ViewError};

impl ProcView {
    /// Answers one request (`req` is the whole message, header first).
    pub(super) fn handle(&self, fd: RawFd, req: &[u8]) {
        use proto::*;
        let (head, body) = proto::split(req);
        let (unique, node) = (head.unique, head.node);
        let served = match head.opcode {
            FUSE_INIT => {
                let (major, minor) = init_version(body);
                match major < 7 {
                    true => reply(fd, unique, libc::EPROTO, &[]),
                    false => reply(fd, unique, 0, &init_out(minor)),
                }
                Ok(())
            }
            FUSE_LOOKUP => self.lookup(fd, head, body),
            FUSE_GETATTR => self.getattr(fd, head, body),
            FUSE_OPEN => self.open(fd, head, body),
            FUSE_READ => self.read(fd, head, body),
            FUSE_RELEASE => {
                if let Some(held) = self.handles().1.remove(&release_fh(body)) {
                    self.close(node, held.cached());
                }
                reply(fd, unique, 0, &[]);
                Ok(())
            }
            FUSE_OPENDIR => {
                match node == ROOT {
                    true => reply(fd, unique, 0, &[0u8; 16]),
                    false => reply(fd, unique, libc::ENOTDIR, &[]),
                }
                Ok(())
            }
            FUSE_READDIR => {
                let (_, offset, size) = read_in(body);
                let files = ViewFile::ALL.iter().enumerate().map(|(i, f)| (node_of(i, head.pid), f.name()));
                let entries = [(ROOT, "."), (ROOT, "..")].into_iter().chain(files);
                reply(fd, unique, 0, &dirents(entries, offset, size));
                Ok(())
            }
            FUSE_STATFS => {
                reply(fd, unique, 0, &statfs_out());
                Ok(())
            }
            FUSE_RELEASEDIR | FUSE_ACCESS => {
                reply(fd, unique, 0, &[]);
                Ok(())
            }
            // Nothing to flush: ENOSYS tells the kernel to stop sending FLUSH on every
            // close (one round trip less per read of a file).
            FUSE_FLUSH => {
                reply(fd, unique, libc::ENOSYS, &[]);
                Ok(())
            }
            // The kernel dropped the inode, and its page cache with it. No reply is expected.
            FUSE_FORGET => {
                self.nodes().remove(&node);
                Ok(())
            }
            FUSE_BATCH_FORGET => {
                let mut nodes = self.nodes();
                for n in batch_forget(body) {
                    nodes.remove(&n);
                }
                Ok(())
            }
            // No reply is expected to these.
            FUSE_INTERRUPT | FUSE_DESTROY => Ok(()),
            _ => {
                reply(fd, unique, libc::ENOSYS, &[]);
                Ok(())
            }
        };
        if let Err(e) = served {
            self.refuse(fd, unique, &e);
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
    pub(super) fn render(&self, pid: u32, file: ViewFile) -> Result<Vec<u8>, ViewError> {
        render_for(&self.hierarchy, &self.loads, pid, file).map(String::into_bytes)
    }

    fn lookup(&self, fd: RawFd, head: Header, body: &[u8]) -> Result<(), ViewError> {
        let name = proto::lookup_name(body);
        match ViewFile::ALL.iter().position(|f| f.name().as_bytes() == name) {
            // No rendering here (a container start looks up every file): the size of the
            // copy last opened, 0 before the first open.
            Some(i) if head.node == ROOT => {
                let n = node_of(i, head.pid);
                let size = self.known_size(fd, n, head.pid)?;
                reply(fd, head.unique, 0, &proto::entry_out(n, size, attr_valid(n)))
            }
            _ => reply(fd, head.unique, libc::ENOENT, &[]),
        }
        Ok(())
    }

    fn getattr(&self, fd: RawFd, head: Header, body: &[u8]) -> Result<(), ViewError> {
        let node = head.node;
        let size = match node_file(node) {
            // Asked for an open file that reads through the cache (or one opened under an
            // earlier server), or for an inode such a file is open on (a stat names no
            // file; Python's read() stats first): a read, seek or stat of a descriptor
            // whose attributes are old, maybe procps or Python reading again. The asker's
            // text goes into the cache first, so that it reads a fresh one, if no other
            // reader reads through it.
            Some(file) if self.may_read_again(node, body) => {
                let fresh = self.render(head.pid, file)?;
                self.refresh(fd, node, &fresh);
                self.size_of(node)
            }
            Some(_) => self.known_size(fd, node, head.pid)?,
            None if node == ROOT => 0,
            None => {
                reply(fd, head.unique, libc::ENOENT, &[]);
                return Ok(());
            }
        };
        reply(fd, head.unique, 0, &proto::attr_out(node, size, attr_valid(node)));
        Ok(())
    }

    fn open(&self, fd: RawFd, head: Header, body: &[u8]) -> Result<(), ViewError> {
        let (unique, node) = (head.unique, head.node);
        let Some(file) = node_file(node) else {
            reply(fd, unique, libc::EISDIR, &[]);
            return Ok(());
        };
        if proto::open_flags(body) & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32 {
            reply(fd, unique, libc::EACCES, &[]);
            return Ok(());
        }
        let request = unique & !FUSE_UNIQUE_RESEND;
        if let Some((_, out)) = self.opened().iter().find(|(u, _)| *u == request) {
            reply(fd, unique, 0, out);
            return Ok(());
        }
        let content = self.render(head.pid, file)?;
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
        let out = proto::open_out(fh, if cached { FOPEN_KEEP_CACHE } else { FOPEN_DIRECT_IO });
        {
            let mut opened = self.opened();
            if opened.len() == OPENS_KEPT {
                opened.pop_front();
            }
            opened.push_back((request, out.clone()));
        }
        reply(fd, unique, 0, &out);
        Ok(())
    }

    fn read(&self, fd: RawFd, head: Header, body: &[u8]) -> Result<(), ViewError> {
        let (unique, node) = (head.unique, head.node);
        let (fh, offset, size) = proto::read_in(body);
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
                let fresh = self.render(head.pid, file)?;
                let d = slice(&fresh);
                if let Some(Held::Copy(copy, started)) = self.handles().1.get_mut(&fh) {
                    (*copy, *started) = (fresh, true);
                }
                d
            }
            (None, None) => {
                reply(fd, unique, libc::EBADF, &[]);
                return Ok(());
            }
        };
        reply(fd, unique, 0, &data);
        Ok(())
    }

    /// Whether a GETATTR (`body`) may come before a read of `node` through its cache: it
    /// names an open file that reads so (or one this server did not open: an earlier
    /// server's may), or it names none and such a file is open.
    fn may_read_again(&self, node: u64, body: &[u8]) -> bool {
        match proto::getattr_fh(body) {
            Some(fh) => self.handles().1.get(&fh).is_none_or(Held::cached),
            None => self.nodes().get(&node).is_some_and(|n| n.open > 0),
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
}

#[cfg(test)]
mod tests {
    //! Requests as the kernel writes them (proto's fixtures) handed to `handle`, whose
    //! replies are read back from a pipe in the place of /dev/fuse. Only requests that
    //! render nothing, or whose reader has no cgroups to read: pid 0, as the kernel says for
    //! a process outside the view's pid namespace (so no host file is read).
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use super::*;
    use crate::fuse::proto::tests::{at32, at64, body, request, F::*};
    use crate::fuse::Node;

    /// A view answering into a pipe: the view, and the pipe's read and write ends.
    fn wired() -> (ProcView, OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two new descriptors into `fds`, owned below.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) }, 0);
        // SAFETY: both were just made and are owned by nothing else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        (ProcView::new(podrun_cgroup::Hierarchy::default()), r, w)
    }

    /// The reply to `req`: (errno, unique, body); None if none was written.
    fn ask(view: &ProcView, (r, w): (&OwnedFd, &OwnedFd), req: &[u8]) -> Option<(i32, u64, Vec<u8>)> {
        view.handle(w.as_raw_fd(), req);
        let mut buf = vec![0u8; 16 * 1024];
        // SAFETY: reads into `buf`, which is as long as said.
        let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return None;
        }
        let m = &buf[..n as usize];
        assert_eq!(at32(m, 0) as usize, m.len(), "fuse_out_header.len is the message's length");
        Some((-(at32(m, 4) as i32), at64(m, 8), m[16..].to_vec()))
    }

    /// The node of the view's first file (meminfo) for a reader whose cgroups are unknown.
    fn meminfo_node() -> u64 {
        node_of(0, 0)
    }

    #[test]
    fn init_is_answered_with_protocol_7_and_an_older_kernel_is_refused() {
        let (view, r, w) = wired();
        let init = |major| request(proto::FUSE_INIT, 1, 0, 0, &body(&[U32(major), U32(31), U32(0), U32(0)]));
        let (errno, unique, out) = ask(&view, (&r, &w), &init(7)).unwrap();
        assert_eq!((errno, unique, out.len()), (0, 1, 64));
        assert_eq!((at32(&out, 0), at32(&out, 4)), (7, 31));
        assert_eq!(ask(&view, (&r, &w), &init(6)).unwrap().0, libc::EPROTO);
    }

    #[test]
    fn lookup_finds_the_views_files_in_the_root_only() {
        let (view, r, w) = wired();
        let (errno, unique, e) = ask(&view, (&r, &w), &request(proto::FUSE_LOOKUP, 2, ROOT, 0, b"meminfo\0")).unwrap();
        assert_eq!((errno, unique, e.len()), (0, 2, 128));
        assert_eq!(at64(&e, 0), meminfo_node());
        assert_eq!(at64(&e, 0) & 0xff, 2, "the first file, after the root");
        assert_eq!(at64(&e, 48), 0, "its size: none opened yet");
        for (node, name) in [(ROOT, &b"nothing\0"[..]), (meminfo_node(), b"meminfo\0")] {
            let reply = ask(&view, (&r, &w), &request(proto::FUSE_LOOKUP, 3, node, 0, name)).unwrap();
            assert_eq!((reply.0, reply.2.len()), (libc::ENOENT, 0));
        }
    }

    #[test]
    fn getattr_says_the_root_is_a_directory_and_a_file_its_cached_size() {
        let (view, r, w) = wired();
        let getattr = |node| request(proto::FUSE_GETATTR, 4, node, 0, &body(&[U32(0), U32(0), U64(0)]));
        let (errno, _, a) = ask(&view, (&r, &w), &getattr(ROOT)).unwrap();
        assert_eq!((errno, a.len(), at64(&a, 0)), (0, 104, 3600));
        assert_eq!(at32(&a, 16 + 60), libc::S_IFDIR | 0o555);
        let (errno, _, a) = ask(&view, (&r, &w), &getattr(meminfo_node())).unwrap();
        assert_eq!((errno, at64(&a, 0), at32(&a, 8)), (0, 0, 10_000_000), "a file's attributes live 10 ms");
        assert_eq!((at64(&a, 16 + 8), at32(&a, 16 + 60)), (0, libc::S_IFREG | 0o444));
        assert_eq!(ask(&view, (&r, &w), &getattr(ROOT + 0xfe)).unwrap().0, libc::ENOENT, "no such file");
    }

    #[test]
    fn a_getattr_before_a_read_again_of_a_reader_without_cgroups_is_an_io_error() {
        let (view, r, w) = wired();
        let node = meminfo_node();
        view.nodes().insert(node, Node { text: Some(b"MemTotal: 1 kB\n".to_vec()), open: 1, ..Node::default() });
        let getattr = request(proto::FUSE_GETATTR, 5, node, 0, &body(&[U32(0), U32(0), U64(0)]));
        assert_eq!(ask(&view, (&r, &w), &getattr).unwrap().0, libc::EIO);
        assert_eq!(view.nodes()[&node].text.as_deref(), Some(&b"MemTotal: 1 kB\n"[..]), "the cache is left as it is");
    }

    #[test]
    fn open_refuses_directories_and_writes_and_a_text_it_cannot_make() {
        let (view, r, w) = wired();
        let open = |node, flags: i32| request(proto::FUSE_OPEN, 6, node, 0, &body(&[U32(flags as u32), U32(0)]));
        assert_eq!(ask(&view, (&r, &w), &open(ROOT, libc::O_RDONLY)).unwrap().0, libc::EISDIR);
        assert_eq!(ask(&view, (&r, &w), &open(meminfo_node(), libc::O_WRONLY)).unwrap().0, libc::EACCES);
        // pid 0 has no /proc/0/cgroup: no text, and nothing kept of the open.
        let (errno, unique, out) = ask(&view, (&r, &w), &open(meminfo_node(), libc::O_RDONLY)).unwrap();
        assert_eq!((errno, unique, out.len()), (libc::EIO, 6, 0));
        assert!(view.handles().1.is_empty() && view.nodes().is_empty() && view.opened().is_empty());
    }

    #[test]
    fn an_open_read_again_after_a_resend_gets_the_first_ones_handle() {
        let (view, r, w) = wired();
        view.opened().push_back((7, proto::open_out(0xabc, FOPEN_KEEP_CACHE)));
        let req = request(proto::FUSE_OPEN, 7 | FUSE_UNIQUE_RESEND, meminfo_node(), 0, &body(&[U32(0), U32(0)]));
        let (errno, unique, out) = ask(&view, (&r, &w), &req).unwrap();
        assert_eq!((errno, unique), (0, 7 | FUSE_UNIQUE_RESEND), "answered as the kernel resent it");
        assert_eq!((at64(&out, 0), at32(&out, 8)), (0xabc, FOPEN_KEEP_CACHE));
    }

    #[test]
    fn reads_get_the_cached_text_or_their_copy_and_a_read_again_a_fresh_one() {
        let (view, r, w) = wired();
        let node = meminfo_node();
        view.nodes().insert(node, Node { text: Some(b"cached text\n".to_vec()), open: 1, ..Node::default() });
        view.handles().1.insert(1, Held::Cached);
        view.handles().1.insert(2, Held::Copy(b"own copy\n".to_vec(), false));
        let read = |fh, offset, size| {
            request(
                proto::FUSE_READ,
                8,
                node,
                0,
                &body(&[U64(fh), U64(offset), U32(size), U32(0), U64(0), U32(0), U32(0)]),
            )
        };
        assert_eq!(ask(&view, (&r, &w), &read(1, 7, 100)).unwrap(), (0, 8, b"text\n".to_vec()));
        assert_eq!(ask(&view, (&r, &w), &read(2, 0, 3)).unwrap(), (0, 8, b"own".to_vec()));
        assert_eq!(ask(&view, (&r, &w), &read(2, 4, 100)).unwrap(), (0, 8, b"copy\n".to_vec()));
        assert_eq!(ask(&view, (&r, &w), &read(2, 100, 100)).unwrap(), (0, 8, vec![]), "past the end: nothing");
        // From the start again (procps after lseek): a fresh text, which pid 0 cannot have.
        assert_eq!(ask(&view, (&r, &w), &read(2, 0, 100)).unwrap().0, libc::EIO);
        assert!(matches!(&view.handles().1[&2], Held::Copy(c, true) if c == b"own copy\n"), "the copy is kept");
        // A handle of an earlier server reads the text the cache is known to hold.
        assert_eq!(ask(&view, (&r, &w), &read(99, 0, 6)).unwrap(), (0, 8, b"cached".to_vec()));
        let root = request(proto::FUSE_READ, 9, ROOT, 0, &body(&[U64(99), U64(0), U32(10)]));
        assert_eq!(ask(&view, (&r, &w), &root).unwrap().0, libc::EBADF);
    }

    #[test]
    fn release_ends_a_handle_and_its_count_on_the_node() {
        let (view, r, w) = wired();
        let node = meminfo_node();
        view.nodes().insert(node, Node { open: 1, direct: 1, ..Node::default() });
        view.handles().1.insert(1, Held::Cached);
        view.handles().1.insert(2, Held::Copy(vec![], false));
        let release = |fh| request(proto::FUSE_RELEASE, 10, node, 0, &body(&[U64(fh), U32(0), U32(0), U64(0)]));
        assert_eq!(ask(&view, (&r, &w), &release(1)).unwrap(), (0, 10, vec![]));
        let counts = |n: &Node| (n.open, n.direct);
        assert_eq!(counts(&view.nodes()[&node]), (0, 1));
        assert_eq!(ask(&view, (&r, &w), &release(2)).unwrap(), (0, 10, vec![]));
        assert_eq!(view.nodes()[&node].direct, 0);
        assert!(view.handles().1.is_empty());
        assert_eq!(ask(&view, (&r, &w), &release(3)).unwrap(), (0, 10, vec![]), "an earlier server's handle");
    }

    #[test]
    fn the_directory_lists_every_file_and_the_rest_is_answered_or_refused() {
        let (view, r, w) = wired();
        let ask = |op, node, b: &[u8]| ask(&view, (&r, &w), &request(op, 11, node, 0, b));
        assert_eq!(ask(proto::FUSE_OPENDIR, ROOT, &body(&[U32(0), U32(0)])).unwrap(), (0, 11, vec![0; 16]));
        assert_eq!(ask(proto::FUSE_OPENDIR, meminfo_node(), &[]).unwrap().0, libc::ENOTDIR);
        let (errno, _, list) = ask(proto::FUSE_READDIR, ROOT, &body(&[U64(0), U64(0), U32(4096)])).unwrap();
        assert_eq!(errno, 0);
        let mut names = Vec::new();
        let mut at = 0;
        while at < list.len() {
            let len = at32(&list, at + 16) as usize;
            names.push(String::from_utf8(list[at + 24..at + 24 + len].to_vec()).unwrap());
            at += (24 + len).next_multiple_of(8);
        }
        let files: Vec<&str> = ViewFile::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names, [&[".", ".."][..], &files].concat());
        assert_eq!(ask(proto::FUSE_STATFS, ROOT, &[]).unwrap().2.len(), 80);
        assert_eq!(ask(proto::FUSE_FLUSH, meminfo_node(), &[]).unwrap().0, libc::ENOSYS, "no FLUSH on each close");
        assert_eq!(ask(proto::FUSE_ACCESS, ROOT, &[]).unwrap(), (0, 11, vec![]));
        assert_eq!(ask(proto::FUSE_RELEASEDIR, ROOT, &[]).unwrap(), (0, 11, vec![]));
        assert_eq!(ask(4096, ROOT, &[]).unwrap().0, libc::ENOSYS, "an opcode the view does not serve");
    }

    #[test]
    fn forgets_drop_the_nodes_and_are_not_answered() {
        let (view, r, w) = wired();
        for n in [0x102, 0x203, 0x304] {
            view.nodes().insert(n, Node::default());
        }
        assert_eq!(ask(&view, (&r, &w), &request(proto::FUSE_FORGET, 0, 0x102, 0, &body(&[U64(1)]))), None);
        let batch = body(&[U32(2), U32(0), U64(0x203), U64(1), U64(0x304), U64(1)]);
        assert_eq!(ask(&view, (&r, &w), &request(proto::FUSE_BATCH_FORGET, 0, 0, 0, &batch)), None);
        assert!(view.nodes().is_empty());
        assert_eq!(ask(&view, (&r, &w), &request(proto::FUSE_INTERRUPT, 0, 0, 0, &body(&[U64(11)]))), None);
    }
}
