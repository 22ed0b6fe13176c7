//! The FUSE wire format the view speaks (include/uapi/linux/fuse.h): the requests it
//! serves decoded from the bytes a worker read, its replies and notifications encoded into
//! the bytes it writes. Pure: no descriptor and no state; what to answer is fuse.rs's.
//! All fields are in the host's byte order, as the kernel writes them.

pub const FUSE_LOOKUP: u32 = 1;
pub const FUSE_FORGET: u32 = 2;
pub const FUSE_GETATTR: u32 = 3;
pub const FUSE_OPEN: u32 = 14;
pub const FUSE_READ: u32 = 15;
pub const FUSE_STATFS: u32 = 17;
pub const FUSE_RELEASE: u32 = 18;
pub const FUSE_FLUSH: u32 = 25;
pub const FUSE_INIT: u32 = 26;
pub const FUSE_OPENDIR: u32 = 27;
pub const FUSE_READDIR: u32 = 28;
pub const FUSE_RELEASEDIR: u32 = 29;
pub const FUSE_ACCESS: u32 = 34;
pub const FUSE_INTERRUPT: u32 = 36;
pub const FUSE_DESTROY: u32 = 38;
pub const FUSE_BATCH_FORGET: u32 = 42;
pub const FUSE_NOTIFY_INVAL_INODE: i32 = 2;
pub const FUSE_NOTIFY_STORE: i32 = 4;
pub const FUSE_NOTIFY_RESEND: i32 = 7;
/// The bit the kernel sets in a request's unique when it resends it.
pub const FUSE_UNIQUE_RESEND: u64 = 1 << 63;
pub const FOPEN_DIRECT_IO: u32 = 1;
pub const FOPEN_KEEP_CACHE: u32 = 2;
/// fuse_getattr_in.getattr_flags: the request names an open file (fh).
const FUSE_GETATTR_FH: u32 = 1;
/// The node id of the mount's root directory (FUSE_ROOT_ID).
pub const ROOT: u64 = 1;
/// fuse_in_header: len, opcode, unique, nodeid, uid, gid, pid, total_extlen, padding.
pub const IN_HEADER: usize = 40;
/// fuse_out_header: len, error, unique.
const OUT_HEADER: usize = 16;
/// fuse_attr: ino, size, blocks, atime, mtime, ctime (u64 each), their nsecs, mode, nlink,
/// uid, gid, rdev, blksize, flags (u32 each).
const ATTR: usize = 88;
/// The largest write the kernel may send (set at INIT): none is accepted, but the kernel
/// wants room for one after the headers in the reading buffer (fuse.rs's BUFFER).
pub const MAX_WRITE: u32 = 4096;

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |s| u32::from_ne_bytes(s.try_into().unwrap_or_default()))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| u64::from_ne_bytes(s.try_into().unwrap_or_default()))
}

/// What the view reads of a request's fuse_in_header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub opcode: u32,
    pub unique: u64,
    pub node: u64,
    /// The requesting thread, in the pid namespace of the process that mounted the view.
    pub pid: u32,
}

/// A request's header and body (what follows the header). A field the request is too
/// short to hold reads as 0, here and in the bodies' decoders.
pub fn split(req: &[u8]) -> (Header, &[u8]) {
    let h = Header { opcode: u32_at(req, 4), unique: u64_at(req, 8), node: u64_at(req, 16), pid: u32_at(req, 32) };
    (h, &req[IN_HEADER.min(req.len())..])
}

/// fuse_init_in: the kernel's (major, minor) protocol version.
pub fn init_version(body: &[u8]) -> (u32, u32) {
    (u32_at(body, 0), u32_at(body, 4))
}

/// LOOKUP's body: the name, NUL-terminated.
pub fn lookup_name(body: &[u8]) -> &[u8] {
    body.split(|&b| b == 0).next().unwrap_or_default()
}

/// fuse_getattr_in: the open file (fh) the request names, if it names one (a stat of a
/// path names none; fstat, and a read's revalidation, do).
pub fn getattr_fh(body: &[u8]) -> Option<u64> {
    (u32_at(body, 0) & FUSE_GETATTR_FH != 0).then(|| u64_at(body, 8))
}

/// fuse_open_in: open(2)'s flags.
pub fn open_flags(body: &[u8]) -> u32 {
    u32_at(body, 0)
}

/// fuse_read_in (READ and READDIR): fh, offset, size.
pub fn read_in(body: &[u8]) -> (u64, u64, usize) {
    (u64_at(body, 0), u64_at(body, 8), u32_at(body, 16) as usize)
}

/// fuse_release_in: the file handle released.
pub fn release_fh(body: &[u8]) -> u64 {
    u64_at(body, 0)
}

/// fuse_batch_forget_in (count, dummy) and its count fuse_forget_one (nodeid, nlookup):
/// the nodes forgotten, as many as the body holds.
pub fn batch_forget(body: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let count = (u32_at(body, 0) as usize).min(body.len().saturating_sub(8) / 16);
    (0..count).map(move |i| u64_at(body, 8 + 16 * i))
}

/// A reply (or, with unique 0 and a negative notification code as `error`, a
/// notification): fuse_out_header then `body`, one message for one write(2). `error` is
/// an errno, 0 for success.
pub fn message(unique: u64, error: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(OUT_HEADER + body.len());
    out.extend_from_slice(&((OUT_HEADER + body.len()) as u32).to_ne_bytes());
    out.extend_from_slice(&(-error).to_ne_bytes());
    out.extend_from_slice(&unique.to_ne_bytes());
    out.extend_from_slice(body);
    out
}

/// fuse_init_out for a kernel of protocol `minor` (7.x): no flags; max_background 16,
/// congestion_threshold 12, max_write MAX_WRITE, time_gran 1 ns; the rest 0.
pub fn init_out(minor: u32) -> [u8; 64] {
    // major, minor, max_readahead, flags, max_background, congestion_threshold, max_write,
    // time_gran, max_pages, map_alignment, flags2, ... (64 bytes).
    let mut out = [0u8; 64];
    for (i, v) in [7u32, minor.min(40), 0, 0].into_iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&v.to_ne_bytes());
    }
    out[16..18].copy_from_slice(&16u16.to_ne_bytes());
    out[18..20].copy_from_slice(&12u16.to_ne_bytes());
    out[20..24].copy_from_slice(&MAX_WRITE.to_ne_bytes());
    out[24..28].copy_from_slice(&1u32.to_ne_bytes());
    out
}

/// How long the kernel may keep a node's attributes (or its entry): seconds and nanoseconds.
pub type Valid = (u64, u32);

/// Appends fuse_attr of `node`: the root a directory (0555, 2 links), any other a regular
/// file (0444) of `size` bytes, owned by root, with times 0.
fn put_attr(out: &mut Vec<u8>, node: u64, size: u64) {
    let mode: u32 = if node == ROOT { libc::S_IFDIR | 0o555 } else { libc::S_IFREG | 0o444 };
    for v in [node, size, 0, 0, 0, 0] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    for v in [0u32, 0, 0, mode, if node == ROOT { 2 } else { 1 }, 0, 0, 0, 4096, 0] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
}

/// fuse_entry_out (LOOKUP): nodeid, generation, entry_valid (0: looked up again each
/// time, the inode depends on who asks), attr_valid, their nanoseconds, then fuse_attr.
pub fn entry_out(node: u64, size: u64, (valid, valid_ns): Valid) -> Vec<u8> {
    let mut e = Vec::with_capacity(40 + ATTR);
    for v in [node, 0, 0, valid] {
        e.extend_from_slice(&v.to_ne_bytes());
    }
    e.extend_from_slice(&0u32.to_ne_bytes());
    e.extend_from_slice(&valid_ns.to_ne_bytes());
    put_attr(&mut e, node, size);
    e
}

/// fuse_attr_out (GETATTR): attr_valid, its nanoseconds, dummy, then fuse_attr.
pub fn attr_out(node: u64, size: u64, (valid, valid_ns): Valid) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + ATTR);
    out.extend_from_slice(&valid.to_ne_bytes());
    out.extend_from_slice(&valid_ns.to_ne_bytes());
    out.extend_from_slice(&[0u8; 4]);
    put_attr(&mut out, node, size);
    out
}

/// fuse_open_out: fh, open_flags (FOPEN_*), padding.
pub fn open_out(fh: u64, open_flags: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&fh.to_ne_bytes());
    out.extend_from_slice(&open_flags.to_ne_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out
}

/// READDIR's reply: from the `offset`-th of `entries` (node, name) on, as many fuse_dirent
/// as fit in `size` bytes: ino, off (of the next entry), namelen, type, the name, padded
/// to 8 bytes. The root is a directory, every other node a regular file.
pub fn dirents<'a>(entries: impl Iterator<Item = (u64, &'a str)>, offset: u64, size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (ino, name)) in entries.enumerate().skip(offset as usize) {
        let len = (24 + name.len()).next_multiple_of(8);
        if out.len() + len > size {
            break;
        }
        let kind = if ino == ROOT { libc::DT_DIR } else { libc::DT_REG };
        out.extend_from_slice(&ino.to_ne_bytes());
        out.extend_from_slice(&(i as u64 + 1).to_ne_bytes());
        out.extend_from_slice(&(name.len() as u32).to_ne_bytes());
        out.extend_from_slice(&u32::from(kind).to_ne_bytes());
        out.extend_from_slice(name.as_bytes());
        out.resize(out.len().next_multiple_of(8), 0);
    }
    out
}

/// fuse_statfs_out: no blocks or files; bsize 4096, namelen 255.
pub fn statfs_out() -> [u8; 80] {
    let mut out = [0u8; 80];
    out[40..44].copy_from_slice(&4096u32.to_ne_bytes());
    out[44..48].copy_from_slice(&255u32.to_ne_bytes());
    out
}

/// FUSE_NOTIFY_INVAL_INODE's fuse_notify_inval_inode_out: ino, off (0: pages from the
/// start), len (0: to the end).
pub fn inval_inode(node: u64) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&node.to_ne_bytes());
    out
}

/// FUSE_NOTIFY_STORE's fuse_notify_store_out (nodeid, offset 0, size, padding), then
/// `text`: the text into the node's page cache from its start.
pub fn store(node: u64, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + text.len());
    out.extend_from_slice(&node.to_ne_bytes());
    out.extend_from_slice(&0u64.to_ne_bytes());
    out.extend_from_slice(&(text.len() as u32).to_ne_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(text);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    //! Requests built as the kernel lays them out (fuse_in_header, then the opcode's
    //! struct), replies checked field by field at fuse.h's offsets.
    use super::*;
    use F::{U32, U64};

    /// A request: fuse_in_header (len, opcode, unique, nodeid, uid, gid, pid,
    /// total_extlen, padding), then `body`.
    pub(crate) fn request(opcode: u32, unique: u64, node: u64, pid: u32, body: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&((IN_HEADER + body.len()) as u32).to_ne_bytes());
        r.extend_from_slice(&opcode.to_ne_bytes());
        r.extend_from_slice(&unique.to_ne_bytes());
        r.extend_from_slice(&node.to_ne_bytes());
        // uid, gid, pid; total_extlen and padding (u16 each).
        for v in [1000u32, 1000, pid, 0] {
            r.extend_from_slice(&v.to_ne_bytes());
        }
        r.extend_from_slice(body);
        r
    }

    /// A field of a request's body, in its width.
    #[derive(Clone, Copy)]
    pub(crate) enum F {
        U32(u32),
        U64(u64),
    }

    /// A body of `fields`, in the host's byte order.
    pub(crate) fn body(fields: &[F]) -> Vec<u8> {
        let mut b = Vec::new();
        for f in fields {
            match *f {
                F::U32(v) => b.extend_from_slice(&v.to_ne_bytes()),
                F::U64(v) => b.extend_from_slice(&v.to_ne_bytes()),
            }
        }
        b
    }

    pub(crate) fn at32(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    pub(crate) fn at64(b: &[u8], at: usize) -> u64 {
        u64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn the_header_gives_opcode_unique_node_and_pid_and_the_body_follows() {
        let r = request(FUSE_LOOKUP, 0x8000_0000_0000_0007, ROOT, 4242, b"meminfo\0");
        let (h, body) = split(&r);
        assert_eq!(h, Header { opcode: FUSE_LOOKUP, unique: 0x8000_0000_0000_0007, node: ROOT, pid: 4242 });
        assert_eq!(body, b"meminfo\0");
        assert_eq!(lookup_name(body), b"meminfo");
        assert_eq!(h.unique & !FUSE_UNIQUE_RESEND, 7, "a resent request's unique without the resend bit");
    }

    #[test]
    fn a_request_too_short_for_its_fields_reads_them_as_zero() {
        let (h, body) = split(&[26, 0, 0, 0, 26, 0]);
        assert_eq!((h.opcode, h.unique, h.node, h.pid), (0, 0, 0, 0));
        assert!(body.is_empty());
        assert_eq!(init_version(&[]), (0, 0));
        assert_eq!(read_in(&[1, 0, 0]), (0, 0, 0));
        assert_eq!(lookup_name(b""), b"");
        assert_eq!(batch_forget(&[5, 0, 0, 0]).count(), 0, "a count larger than the body holds");
    }

    #[test]
    fn init_answers_protocol_7_up_to_minor_40_with_no_flags() {
        // fuse_init_in: major, minor, max_readahead, flags, flags2, unused.
        let r = request(FUSE_INIT, 1, 0, 0, &body(&[U32(7), U32(41), U32(131072), U32(0x3fff_ffff), U32(0), U32(0)]));
        let (h, body) = split(&r);
        assert_eq!((h.opcode, init_version(body)), (FUSE_INIT, (7, 41)));
        let out = init_out(41);
        assert_eq!((at32(&out, 0), at32(&out, 4)), (7, 40), "the kernel's minor, at most 40");
        assert_eq!((at32(&out, 8), at32(&out, 12)), (0, 0), "max_readahead, flags");
        assert_eq!(u16::from_ne_bytes([out[16], out[17]]), 16, "max_background");
        assert_eq!(u16::from_ne_bytes([out[18], out[19]]), 12, "congestion_threshold");
        assert_eq!((at32(&out, 20), at32(&out, 24)), (4096, 1), "max_write, time_gran");
        assert!(out[28..].iter().all(|&b| b == 0), "max_pages, flags2 and the rest");
        assert_eq!(at32(&init_out(31), 4), 31);
    }

    #[test]
    fn a_reply_is_the_out_header_then_the_body_and_an_error_is_negative() {
        let m = message(0x55, 0, &[1, 2, 3]);
        assert_eq!((at32(&m, 0), at32(&m, 4) as i32, at64(&m, 8)), (19, 0, 0x55));
        assert_eq!(&m[16..], [1, 2, 3]);
        let m = message(9, libc::ENOENT, &[]);
        assert_eq!((at32(&m, 0), at32(&m, 4) as i32, at64(&m, 8)), (16, -libc::ENOENT, 9));
        // A notification: unique 0, the code in the error field.
        let m = message(0, -FUSE_NOTIFY_RESEND, &[]);
        assert_eq!((at32(&m, 4) as i32, at64(&m, 8)), (FUSE_NOTIFY_RESEND, 0));
    }

    #[test]
    fn lookup_entries_and_getattr_attributes_are_laid_out_as_fuse_h_says() {
        let e = entry_out(0x12_3402, 4096, (0, 10_000_000));
        assert_eq!(e.len(), 128);
        // nodeid, generation, entry_valid, attr_valid, entry_valid_nsec, attr_valid_nsec.
        assert_eq!((at64(&e, 0), at64(&e, 8), at64(&e, 16), at64(&e, 24)), (0x12_3402, 0, 0, 0));
        assert_eq!((at32(&e, 32), at32(&e, 36)), (0, 10_000_000));
        let attr = &e[40..];
        assert_eq!((at64(attr, 0), at64(attr, 8)), (0x12_3402, 4096), "ino, size");
        assert_eq!(at32(attr, 60), libc::S_IFREG | 0o444, "mode");
        assert_eq!((at32(attr, 64), at32(attr, 80)), (1, 4096), "nlink, blksize");
        let a = attr_out(ROOT, 0, (3600, 0));
        assert_eq!(a.len(), 104);
        assert_eq!((at64(&a, 0), at32(&a, 8), at32(&a, 12)), (3600, 0, 0), "attr_valid, nsec, dummy");
        assert_eq!((at64(&a, 16), at32(&a, 16 + 60), at32(&a, 16 + 64)), (ROOT, libc::S_IFDIR | 0o555, 2));
    }

    #[test]
    fn getattr_names_an_open_file_only_with_the_fh_flag() {
        let with = body(&[U32(1), U32(0), U64(77)]);
        let without = body(&[U32(0), U32(0), U64(77)]);
        assert_eq!(getattr_fh(split(&request(FUSE_GETATTR, 2, 5, 1, &with)).1), Some(77));
        assert_eq!(getattr_fh(&without), None);
        assert_eq!(getattr_fh(&[]), None, "a kernel before 7.9 sends no body");
    }

    #[test]
    fn open_read_and_release_bodies_give_flags_handle_offset_and_size() {
        // fuse_open_in: flags, open_flags.
        let r = request(FUSE_OPEN, 3, 0x99_02, 1, &body(&[U32(libc::O_RDONLY as u32 | 0o100000), U32(0)]));
        assert_eq!(open_flags(split(&r).1) & libc::O_ACCMODE as u32, libc::O_RDONLY as u32);
        let out = open_out(0xabc, FOPEN_KEEP_CACHE);
        assert_eq!((out.len(), at64(&out, 0), at32(&out, 8), at32(&out, 12)), (16, 0xabc, FOPEN_KEEP_CACHE, 0));
        // fuse_read_in: fh, offset, size, read_flags, lock_owner, flags, padding.
        let read = body(&[U64(0xabc), U64(8192), U32(4096), U32(0), U64(0), U32(0), U32(0)]);
        let r = request(FUSE_READ, 4, 0x99_02, 1, &read);
        assert_eq!(read_in(split(&r).1), (0xabc, 8192, 4096));
        // fuse_release_in: fh, flags, release_flags, lock_owner.
        let rel = body(&[U64(0xabc), U32(0), U32(0), U64(0)]);
        assert_eq!(release_fh(split(&request(FUSE_RELEASE, 5, 0x99_02, 0, &rel)).1), 0xabc);
    }

    #[test]
    fn readdir_lists_from_the_offset_what_fits_padded_to_eight_bytes() {
        let entries = || [(ROOT, "."), (ROOT, ".."), (0x10_02, "meminfo"), (0x10_03, "cpuinfo")].into_iter();
        let all = dirents(entries(), 0, 4096);
        // ".": 24 + 1 padded to 32; "..": 32; "meminfo": 24 + 7 = 31, padded to 32.
        assert_eq!(all.len(), 4 * 32);
        assert_eq!((at64(&all, 0), at64(&all, 8), at32(&all, 16), at32(&all, 20)), (ROOT, 1, 1, libc::DT_DIR.into()));
        assert_eq!(&all[24..25], b".");
        let m = &all[64..];
        assert_eq!((at64(m, 0), at64(m, 8), at32(m, 16), at32(m, 20)), (0x10_02, 3, 7, libc::DT_REG.into()));
        assert_eq!(&m[24..32], b"meminfo\0");
        assert_eq!(dirents(entries(), 3, 4096), all[96..], "from the fourth on, its off says 4");
        assert_eq!(dirents(entries(), 0, 70).len(), 64, "only whole entries, as many as fit");
        assert!(dirents(entries(), 4, 4096).is_empty(), "past the end: nothing, the end of the listing");
    }

    #[test]
    fn statfs_says_block_size_and_name_length() {
        let s = statfs_out();
        assert!(s[..40].iter().all(|&b| b == 0), "no blocks, no files");
        assert_eq!((at32(&s, 40), at32(&s, 44)), (4096, 255));
    }

    #[test]
    fn batch_forget_gives_each_forgotten_node() {
        // fuse_batch_forget_in: count, dummy; then fuse_forget_one: nodeid, nlookup.
        let b = body(&[U32(2), U32(0), U64(0x10_02), U64(1), U64(0x20_05), U64(3)]);
        let r = request(FUSE_BATCH_FORGET, 0, 0, 0, &b);
        assert_eq!(batch_forget(split(&r).1).collect::<Vec<_>>(), [0x10_02, 0x20_05]);
        let cut = &b[..b.len() - 4];
        assert_eq!(batch_forget(cut).collect::<Vec<_>>(), [0x10_02], "a cut last entry is not read");
    }

    #[test]
    fn notifications_drop_an_inode_and_store_text_from_offset_zero() {
        let i = inval_inode(0x10_02);
        assert_eq!((at64(&i, 0), at64(&i, 8), at64(&i, 16)), (0x10_02, 0, 0), "ino, from 0, to the end");
        let s = store(0x10_02, b"MemTotal: 1 kB\n");
        assert_eq!((at64(&s, 0), at64(&s, 8), at32(&s, 16), at32(&s, 20)), (0x10_02, 0, 15, 0));
        assert_eq!(&s[24..], b"MemTotal: 1 kB\n");
    }
}
