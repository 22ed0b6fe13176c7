//! Real clients of the runc command line for the black-box tests: a private containerd (driven
//! with `ctr`) and a podman with a throw-away store, each confined to a fresh temp dir and a
//! cgroup name of its own, and each removing everything it made when dropped, also when the
//! test failed. `Leftovers` is the leak check: mounts under the temp dir, processes naming it
//! or inside its cgroups, those cgroups, and runtime state the runtime should have removed.
//!
//! It must never touch what it did not make: processes are ended by pid (found by the temp
//! dir in their command line, or in cgroups named after this daemon), cgroups are removed
//! only under the unique name, and unmounting stops at the temp dir.
//!
//! Layout of a daemon's temp dir (`/tmp/podrun-daemon-XXXXXXXX`), whose suffix also names its
//! cgroups (`podrun-test-XXXXXXXX`, the containerd namespace or podman's cgroup parent):
//! ```text
//! containerd: config.toml containerd.sock containerd.log root/ state/ tmp/ fifo/ images/ cni/
//!             runc/<ns>/<id>   the runtime's --root for `ctr run` and for CRI
//!             bin/runc -> RUNTIME, first in the daemon's PATH: what a shim given no options
//!             runs (`ctr containers create` + `tasks start`)
//! podman:     containers.conf storage.conf registries.conf policy.json mounts.conf
//!             root/ runroot/ libpod/ (podman's --tmpdir) volumes/ net/ hooks/ tmp/ home/
//! ```
//!
//! This module holds what both daemons share: `Leftovers` and `leftovers()`, the temp dir
//! and cgroup name, and the kernel facts (mounts, processes, cgroups) they are checked and
//! cleaned with; `containerd.rs` and `podman.rs` hold the daemons.

#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

mod containerd;
mod podman;

// A test binary uses at most one daemon, so the other re-export is unused there, as the
// dead code the attribute above allows.
#[allow(unused_imports)]
pub use containerd::Containerd;
#[allow(unused_imports)]
pub use podman::Podman;

/// What a test or a daemon left behind. Empty means clean.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// Mount points under the temp dir, in /proc/self/mountinfo order.
    pub mounts: Vec<PathBuf>,
    /// Running processes (pid, command line) naming the temp dir or inside its cgroups.
    pub processes: Vec<(i32, String)>,
    /// Cgroup directories under the unique name, on every mounted hierarchy.
    pub cgroups: Vec<PathBuf>,
    /// Runtime state that should be gone: `--root` entries of deleted containers, shim sockets.
    pub state: Vec<PathBuf>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.mounts.is_empty() && self.processes.is_empty() && self.cgroups.is_empty() && self.state.is_empty()
    }
}

impl fmt::Display for Leftovers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for m in &self.mounts {
            writeln!(f, "  mount {}", m.display())?;
        }
        for (pid, cmd) in &self.processes {
            writeln!(f, "  process {pid}: {cmd}")?;
        }
        for c in &self.cgroups {
            writeln!(f, "  cgroup {}", c.display())?;
        }
        for s in &self.state {
            writeln!(f, "  state {}", s.display())?;
        }
        Ok(())
    }
}

/// Everything under `dir` and the cgroup `name`, with nothing excused: what Drop expects to
/// be empty after its cleanup. The daemons' `leftovers()` excuse what a live daemon keeps.
pub fn leftovers(dir: &Path, name: &str) -> Leftovers {
    let cgroups = cgroup_dirs(name);
    let mut processes: Vec<(i32, String)> = processes_naming(dir);
    for cg in &cgroups {
        for pid in cgroup_pids(cg) {
            if !processes.iter().any(|(p, _)| *p == pid) {
                processes.push((pid, cmdline(pid)));
            }
        }
    }
    Leftovers { mounts: mounts_under(dir), processes, cgroups, state: Vec::new() }
}

/// Polls `what()` until it is empty; panics with what is left after `secs` seconds.
fn assert_empty_within(secs: u64, who: &str, mut what: impl FnMut() -> Leftovers) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = what();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{who} left, after {secs} s:\n{left}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A temp dir named `podrun-daemon-XXXXXXXX` and the cgroup name `podrun-test-XXXXXXXX`
/// sharing its random part, so a cgroup can be traced to its daemon.
fn unique_dir() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::Builder::new().prefix("podrun-daemon-").rand_bytes(8).tempdir().expect("tempdir");
    let path = dir.path().canonicalize().expect("canonical temp dir");
    let suffix = path.file_name().unwrap().to_str().unwrap().trim_start_matches("podrun-daemon-").to_owned();
    (dir, path, format!("podrun-test-{suffix}"))
}

/// `bin/runc -> runtime` in `dir`; returns `bin`.
fn runtime_bin(dir: &Path, runtime: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(runtime, bin.join("runc")).unwrap();
    bin
}

fn path_with(bin: &Path) -> OsString {
    let mut p = bin.as_os_str().to_owned();
    p.push(":");
    p.push(std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()));
    p
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn os_args<I, S>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    args.into_iter().map(|a| a.as_ref().to_owned()).collect()
}

// ---------------------------------------------------------------------------------------------
// The kernel facts both daemons are checked and cleaned with.

/// Asserts `left` is empty (unless the test is already failing) and removes the temp dir,
/// unless something is still mounted in it: removing through a mount would delete what is
/// mounted there.
fn finish(dir: Option<tempfile::TempDir>, path: &Path, who: &str, left: Leftovers, log: &str) {
    let Some(dir) = dir else { return };
    if !left.mounts.is_empty() {
        let kept = dir.keep();
        eprintln!("{who}: kept {} because mounts are left in it", kept.display());
    } else {
        drop(dir);
    }
    if left.is_empty() {
        return;
    }
    let msg = format!("{who} ({}) left after its cleanup:\n{left}{}", path.display(), last_lines(log, 20));
    if std::thread::panicking() {
        eprintln!("{msg}");
    } else {
        panic!("{msg}");
    }
}

fn dir_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    v.sort();
    v
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim_end().to_owned())
        .unwrap_or_default()
}

/// Running processes, not this one, whose command line names a path inside `dir`.
fn processes_naming(dir: &Path) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let marker = format!("{}/", dir.display());
    super::processes_with(&marker).into_iter().filter(|&p| p != me).map(|p| (p, cmdline(p))).collect()
}

/// Waits up to 10 s for the processes naming `dir` to end.
fn wait_gone(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_naming(dir).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn unescape_mountinfo(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let Some(d) = octal {
            out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

/// (mount point, fstype) of every mount of this mount namespace, in mount order.
fn mounts() -> Vec<(PathBuf, String)> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            Some((unescape_mountinfo(left.split(' ').nth(4)?), right.split(' ').next()?.to_owned()))
        })
        .collect()
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    mounts().into_iter().map(|(p, _)| p).filter(|p| p.starts_with(dir)).collect()
}

/// Unmounts everything under `dir`, last mounted first, lazily when a plain unmount fails.
fn unmount_under(dir: &Path) {
    for _ in 0..3 {
        let points = mounts_under(dir);
        if points.is_empty() {
            return;
        }
        for p in points.iter().rev() {
            if nix::mount::umount(p).is_err() {
                let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

/// `<hierarchy>/<name>` and every directory below it, parents first, on every mounted
/// cgroup hierarchy (v1 controllers, name=systemd, and the v2 one, hybrid or pure).
fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (mnt, fstype) in mounts() {
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let mut stack = vec![mnt.join(name)];
        while let Some(d) = stack.pop() {
            if !d.is_dir() {
                continue;
            }
            let mut subs: Vec<PathBuf> = dir_entries(&d).into_iter().filter(|e| e.is_dir()).collect();
            subs.reverse();
            stack.extend(subs);
            out.push(d);
        }
    }
    out
}

fn cgroup_pids(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|&p| super::running(p))
        .collect()
}

/// Thaws, empties (SIGKILL to every process, by pid, or `cgroup.kill`) and removes the
/// cgroups under `name`, deepest first. Only ever touches `<hierarchy>/<name>`.
fn remove_cgroups(name: &str) {
    let dirs = cgroup_dirs(name);
    for d in &dirs {
        // A frozen process cannot act on SIGKILL; parents are thawed before children.
        let _ = std::fs::write(d.join("freezer.state"), "THAWED");
        let _ = std::fs::write(d.join("cgroup.freeze"), "0");
    }
    for d in &dirs {
        if std::fs::write(d.join("cgroup.kill"), "1").is_err() {
            for pid in cgroup_pids(d) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for d in dirs.iter().rev() {
        while std::fs::remove_dir(d).is_err_and(|e| e.kind() != std::io::ErrorKind::NotFound)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
