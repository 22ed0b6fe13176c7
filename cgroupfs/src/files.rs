//! Reading kernel files (procfs, sysfs, cgroupfs): whole, in few system calls, and telling
//! a file that is absent (a fact of the host) from one that exists and cannot be read (a
//! failure, `ReadError`). Nothing here parses.

use std::path::{Path, PathBuf};

/// A kernel file as text, in as few system calls as it takes: open, reads into a 4 kB
/// buffer (twice as large each time reads fill it) until a read returns nothing, close.
/// Such files say st_size 0, so std's read_to_string stats the file and then reads it in
/// growing pieces (32, 32, 64, ... bytes: 8 calls for /proc/<pid>/cgroup), which a view
/// serving every open from a reader's files pays on each. A short read is not the end: a
/// file of records (/proc/cpuinfo, one per CPU; /proc/diskstats; cgroup.procs) gives at
/// most a page of whole records per read, so cpuinfo of a host with more than three CPUs
/// comes in several.
pub fn read_kernel_file(path: impl AsRef<Path>) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    // On the heap: a buffer on the stack keeps its pages resident in every thread that
    // ever read a file.
    let (mut buf, mut len) = (vec![0u8; 4096], 0);
    loop {
        match f.read(&mut buf[len..])? {
            0 => break,
            n => len += n,
        }
        if len == buf.len() {
            buf.resize(2 * len, 0);
        }
    }
    buf.truncate(len);
    // What is kept (a cached file) is only as large as the text.
    buf.shrink_to_fit();
    String::from_utf8(buf).map_err(|_| std::io::ErrorKind::InvalidData.into())
}

/// A kernel or cgroup file that exists and could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {}: {}", path.display(), std::io::Error::from_raw_os_error(*errno))]
pub struct ReadError {
    pub path: PathBuf,
    /// The cgroup of the reader the file was read for, where it is one of its cgroups'
    /// (None: a host file).
    pub cgroup: Option<String>,
    pub errno: i32,
}

/// `e`'s errno. read_kernel_file's only error that is not the kernel's is text that is
/// not UTF-8: EILSEQ.
pub fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EILSEQ)
}

/// A kernel file that may be absent, as text: None if it is (ENOENT: a controller not
/// enabled on this host, a file of the other cgroup world, one the root cgroup lacks), an
/// error (of a reader in `cgroup`) if it exists and cannot be read.
pub fn read_if_present(path: &Path, cgroup: Option<&str>) -> Result<Option<String>, ReadError> {
    match read_kernel_file(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ReadError { path: path.to_owned(), cgroup: cgroup.map(str::to_owned), errno: errno_of(&e) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn kernel_files_are_read_whole_in_one_piece_or_more() {
        let d = tempfile::tempdir().unwrap();
        let big = "x".repeat(40_000);
        fs::write(d.path().join("big"), &big).unwrap();
        assert_eq!(read_kernel_file(d.path().join("big")).unwrap(), big, "a full buffer reads on");
        let cg = read_kernel_file("/proc/self/cgroup").unwrap();
        assert_eq!(cg, fs::read_to_string("/proc/self/cgroup").unwrap());
        // A file of records gives a page of them per read: kallsyms is megabytes of lines.
        let syms = read_kernel_file("/proc/kallsyms").unwrap();
        assert!(syms.len() > 64 * 1024, "{} bytes of /proc/kallsyms", syms.len());
        assert_eq!(syms.lines().count(), fs::read_to_string("/proc/kallsyms").unwrap().lines().count());
        assert!(read_kernel_file(d.path().join("none")).is_err());
    }

    #[test]
    fn an_absent_file_is_none_and_an_unreadable_one_an_error_with_its_facts() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read_if_present(&d.path().join("none"), Some("/pod")), Ok(None));
        let e = read_if_present(d.path(), Some("/pod")).unwrap_err();
        assert_eq!(e, ReadError { path: d.path().to_owned(), cgroup: Some("/pod".into()), errno: libc::EISDIR });
        assert_eq!(errno_of(&std::io::ErrorKind::InvalidData.into()), libc::EILSEQ, "text that is not UTF-8");
    }
}
