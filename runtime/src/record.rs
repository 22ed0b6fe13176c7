//! The records every state file is: JSON written atomically, read back, listed, and locked
//! (a flock on the record's directory); and the clock they are stamped with. Below the
//! data model (state.rs), so anything may keep records without depending on it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Locks `dir` itself (flock on the directory): no lock file to create or clean up, and a
/// directory that is being removed cannot be locked back into existence.
pub fn lock(dir: &Path) -> std::io::Result<Flock<File>> {
    let f = File::open(dir)?;
    Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| e.into())
}

/// Writes `value` as `dir/name` atomically: temp file, then rename, so a reader sees the old
/// or the new file, never half of one. No fsync: runtime state describes processes, which
/// do not survive a crash of the machine either, and status is recomputed from liveness;
/// an fsync would cost about a millisecond on every container start.
pub fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(value)?)?;
    fs::rename(&tmp, dir.join(name))
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> std::io::Result<T> {
    Ok(serde_json::from_slice(&fs::read(path)?)?)
}

/// Names in a state directory (sandboxes/ or containers/), sorted.
pub fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| rd.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    v.sort();
    v
}
