//! What can go wrong in making a view's file, and the one errno each failure is answered
//! with (`ToErrno`). Only failures live here: a file that is absent (a controller not
//! enabled on this host, the other cgroup world's names, what the root cgroup lacks) is a
//! fact of the host, which the snapshots take as "no limit" or 0, not an error. Nothing
//! here logs: the FUSE adapter does, at most once per cgroup per minute (`LogLimit`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A view's file that cannot be made from what the kernel gave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// The reader's cgroups (/proc/PID/cgroup) could not be read: it is gone, or it is not
    /// in the pid namespace of the view's mount (the kernel then says pid 0).
    #[error("cannot read the cgroups of process {pid}: {}", strerror(*errno))]
    Reader { pid: u32, errno: i32 },
    /// A kernel or cgroup file a text is made from exists and could not be read.
    #[error("cannot read {}{}: {}", path.display(), of_cgroup(cgroup), strerror(*errno))]
    Read {
        path: PathBuf,
        /// The reader's cgroup, where the file is one of its cgroups' (None: a host file).
        cgroup: Option<String>,
        errno: i32,
    },
}

/// The errno a failure is answered with.
pub trait ToErrno {
    fn to_errno(&self) -> i32;
}

impl ToErrno for ViewError {
    fn to_errno(&self) -> i32 {
        match self {
            // The text cannot be made: to the reader, as a disk that cannot be read. (The
            // server's own errno, EACCES say, is not the reader's: its open was allowed.)
            ViewError::Reader { .. } | ViewError::Read { .. } => libc::EIO,
        }
    }
}

impl ViewError {
    /// `e`, from reading `path` for a reader in `cgroup`.
    pub fn read(path: &Path, cgroup: Option<&str>, e: &std::io::Error) -> ViewError {
        ViewError::Read { path: path.to_owned(), cgroup: cgroup.map(str::to_owned), errno: errno_of(e) }
    }

    /// The cgroup the failure is of, for logging at most once per cgroup: None for the
    /// host's files and a reader whose cgroups are unknown.
    pub fn cgroup(&self) -> Option<&str> {
        match self {
            ViewError::Reader { .. } => None,
            ViewError::Read { cgroup, .. } => cgroup.as_deref(),
        }
    }
}

pub use podrun_cgroup::errno_of;

/// A cgroup file that exists and could not be read, as podrun-cgroup's snapshots say it.
impl From<podrun_cgroup::ReadError> for ViewError {
    fn from(e: podrun_cgroup::ReadError) -> ViewError {
        ViewError::Read { path: e.path, cgroup: e.cgroup, errno: e.errno }
    }
}

/// " of cgroup C" where the file is one of a reader's cgroups.
fn of_cgroup(cgroup: &Option<String>) -> String {
    cgroup.as_deref().map_or_else(String::new, |c| format!(" of cgroup {c}"))
}

fn strerror(errno: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(errno)
}

/// How often a cgroup's failures are logged: a reader in a loop (procps, a JVM) would
/// otherwise log one per read.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// When each cgroup's failure was last logged.
#[derive(Debug, Default)]
pub struct LogLimit(HashMap<Option<String>, Instant>);

impl LogLimit {
    /// Whether a failure of `cgroup` at `now` is logged: none of it was within LOG_EVERY.
    pub fn admits(&mut self, cgroup: Option<&str>, now: Instant) -> bool {
        if self.0.get(&cgroup.map(str::to_owned)).is_some_and(|&at| now.saturating_duration_since(at) < LOG_EVERY) {
            return false;
        }
        // What is older than LOG_EVERY is of no use (cgroups come and go with containers).
        self.0.retain(|_, at| now.saturating_duration_since(*at) < LOG_EVERY);
        self.0.insert(cgroup.map(str::to_owned), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_is_an_io_error_to_the_reader_and_says_its_facts() {
        let denied = std::io::Error::from_raw_os_error(libc::EACCES);
        let e = ViewError::read(Path::new("/sys/fs/cgroup/pod/c1/memory.stat"), Some("/pod/c1"), &denied);
        assert_eq!(e.to_errno(), libc::EIO);
        assert_eq!(e.cgroup(), Some("/pod/c1"));
        let text = e.to_string();
        assert!(text.contains("/sys/fs/cgroup/pod/c1/memory.stat") && text.contains("/pod/c1"), "{text}");
        assert!(text.contains("os error 13"), "{text}");
        let gone = ViewError::Reader { pid: 42, errno: libc::ENOENT };
        assert_eq!((gone.to_errno(), gone.cgroup()), (libc::EIO, None));
        assert!(gone.to_string().contains("process 42"));
        let host = ViewError::read(Path::new("/proc/meminfo"), None, &denied).to_string();
        assert!(host.starts_with("cannot read /proc/meminfo: "), "{host}");
        let garbled = std::io::Error::from(std::io::ErrorKind::InvalidData);
        assert_eq!(errno_of(&garbled), libc::EILSEQ, "text that is not UTF-8");
    }

    #[test]
    fn failures_are_logged_once_per_cgroup_per_minute() {
        let mut l = LogLimit::default();
        let t = Instant::now();
        assert!(l.admits(Some("/pod/c1"), t));
        assert!(!l.admits(Some("/pod/c1"), t + Duration::from_secs(59)));
        assert!(l.admits(Some("/pod/c2"), t + Duration::from_secs(1)), "another cgroup's");
        assert!(l.admits(None, t), "the host's files' failures, once for all");
        assert!(!l.admits(None, t + Duration::from_secs(30)));
        assert!(l.admits(Some("/pod/c1"), t + LOG_EVERY), "a minute later");
        assert!(l.admits(Some("/pod/c3"), t + 3 * LOG_EVERY));
        assert_eq!(l.0.len(), 1, "what is older than a minute is forgotten");
    }
}
