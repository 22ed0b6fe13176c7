//! Helpers shared by the black-box tests: fixtures, a private podrun root per test, and
//! running the binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
pub mod daemons;

/// The fixtures built by rootfs-fixtures/build.py (busybox from Debian's package, hostile
/// layers, python and debian from Debian's packages), built once per test binary into
/// target/ by `build.py all`.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = manifest.join("target").join("podrun-fixtures");
        let st = Command::new("python3")
            .arg(manifest.join("rootfs-fixtures/build.py"))
            .arg("all")
            .arg(&out)
            .status()
            .expect("running python3 rootfs-fixtures/build.py");
        assert!(st.success(), "rootfs-fixtures/build.py failed: {st}");
        out
    })
}

pub fn busybox_oci() -> PathBuf {
    fixtures().join("busybox/busybox-oci")
}

/// busybox plus Debian's python3.11-minimal, from its packages.
pub fn python_oci() -> PathBuf {
    fixtures().join("python/python-oci")
}

/// python_oci plus real Debian programs that look at resources, from their packages:
/// procps (free, top, ps, vmstat, uptime, w, pgrep), GNU coreutils (nproc, df: /usr/bin's
/// and /bin's are GNU's, not busybox's), util-linux's lscpu, and the libraries they link.
pub fn debian_oci() -> PathBuf {
    fixtures().join("debian/debian-oci")
}

pub fn hostile(name: &str) -> PathBuf {
    fixtures().join("hostile").join(name)
}

/// Whether the test can run: it needs root. Without root it fails when
/// PODRUN_TEST_REQUIRE_ALL is set (as in CI) and is reported as skipped otherwise: a skip is
/// never a pass.
pub fn need_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("PODRUN_TEST_REQUIRE_ALL").is_some() {
        panic!("{test}: needs root, and PODRUN_TEST_REQUIRE_ALL is set");
    }
    eprintln!("SKIPPED {test}: needs root (run the suite as root; CI sets PODRUN_TEST_REQUIRE_ALL=1)");
    false
}

/// A podrun root of its own, removed (with anything mounted under it) when dropped, also
/// when the test fails.
pub struct TestRoot {
    pub dir: tempfile::TempDir,
}

impl TestRoot {
    pub fn new() -> TestRoot {
        TestRoot { dir: tempfile::Builder::new().prefix("podrun-test-").tempdir().expect("tempdir") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Runs `podrun --root <store> ARGS...`.
    pub fn podrun<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.podrun_env(&[], args)
    }

    /// Runs `podrun --root <store> ARGS...` with `env` added to its environment.
    pub fn podrun_env<I, S>(&self, env: &[(&str, &str)], args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Command::new(env!("CARGO_BIN_EXE_podrun"))
            .arg("--root")
            .arg(self.store())
            .args(args)
            .env_remove("PODRUN_ROOT")
            .envs(env.iter().copied())
            .output()
            .expect("running podrun")
    }

    /// Runs podrun and asserts it succeeded; returns stdout.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let out = self.podrun(args);
        assert!(
            out.status.success(),
            "podrun failed: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs podrun and asserts it failed with podrun's own exit code 125; returns stderr.
    pub fn fails<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let out = self.podrun(args);
        assert_eq!(
            out.status.code(),
            Some(125),
            "expected exit 125, got {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn import_args(path: &Path, extra: &[&str]) -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = vec!["image".into(), "import".into(), path.into()];
        a.extend(extra.iter().map(Into::into));
        a
    }

    /// `podrun image import PATH EXTRA...`, which must succeed; returns stdout.
    pub fn import(&self, path: &Path, extra: &[&str]) -> String {
        self.ok(Self::import_args(path, extra))
    }

    /// `podrun image import PATH EXTRA...`, which must fail with 125; returns stderr.
    pub fn import_fails(&self, path: &Path, extra: &[&str]) -> String {
        self.fails(Self::import_args(path, extra))
    }

    /// `podrun image import PATH EXTRA...`, whatever it does.
    pub fn try_import(&self, path: &Path, extra: &[&str]) -> Output {
        self.podrun(Self::import_args(path, extra))
    }

    /// Entries of a store subdirectory (layers, tmp, containers, images).
    pub fn entries(&self, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.store().join(sub))
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl TestRoot {
    /// A root with the busybox image imported.
    pub fn with_busybox() -> TestRoot {
        let t = TestRoot::new();
        t.import(&busybox_oci(), &[]);
        t
    }

    /// Pids of every pause, container init and monitor this root's state names.
    pub fn known_pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for sub in ["sandboxes", "containers"] {
            for name in self.entries(sub) {
                let Ok(text) = std::fs::read_to_string(self.store().join(sub).join(&name).join("state.json")) else {
                    continue;
                };
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                for key in ["pause", "init", "monitor"] {
                    if let Some(pid) = v[key]["pid"].as_i64() {
                        pids.push(pid as i32);
                    }
                }
            }
        }
        pids
    }

    /// The harness's leak check: no sandbox or container state, no mount under the root, none
    /// of the processes seen earlier still running, and no cgroup of this root.
    pub fn assert_clean(&self, pids: &[i32]) {
        assert!(self.entries("sandboxes").is_empty(), "sandboxes left: {:?}", self.entries("sandboxes"));
        assert!(self.entries("containers").is_empty(), "containers left: {:?}", self.entries("containers"));
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = self.path().to_str().unwrap();
        assert!(!mounts.contains(root), "mounts left under {root}");
        for &pid in pids {
            eventually(5, &format!("process {pid} is still running"), || !running(pid));
        }
        // `run --rm` removes its cgroup just after it returns.
        let top = podrun::state::Paths::new(self.store()).cgroup_top();
        let h = podrun::cgroup::Hierarchy::host().expect("a cgroup hierarchy");
        let left = || h.dirs(&top).into_iter().filter(|(_, d)| d.exists()).map(|(_, d)| d).collect::<Vec<_>>();
        // What is in them, for the failure message: child cgroups and processes.
        let inside = || {
            left()
                .iter()
                .map(|d| {
                    let subs: Vec<String> = std::fs::read_dir(d)
                        .map(|rd| {
                            rd.flatten()
                                .filter(|e| e.path().is_dir())
                                .map(|e| e.file_name().to_string_lossy().into_owned())
                                .collect()
                        })
                        .unwrap_or_default();
                    let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default().replace('\n', " ");
                    format!("{}: children {subs:?}, procs [{procs}]", d.display())
                })
                .collect::<Vec<_>>()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !left().is_empty() {
            assert!(std::time::Instant::now() < deadline, "cgroups left: {:?}", inside());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Polls `cond` every 20 ms until it holds; fails the test with `what` after `secs` seconds.
pub fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A script for a container that, until /tmp/stop exists (`STOP_WATCHING`; at most 60 s),
/// looks at the executable of every process it can see (where runc's own binary once
/// showed, CVE-2019-5736): "LEAK" for any outside the image but the sealed pause copy, and
/// "LEAK wrote" if that copy took a write. Ends with "done" a second after the stop, so
/// the exec that made /tmp/stop has ended before the watcher, the pid namespace's PID 1,
/// takes every process left in it down. (It ran for a fixed 3 s once: on a slow machine
/// it ended while execs into it ran, and they were killed: exit 137.)
pub const WATCH_EXES: &str = "end=$(($(date +%s) + 60)); while [ ! -e /tmp/stop ] && [ $(date +%s) -lt $end ]; do \
     for p in /proc/[0-9]*; do l=$(readlink $p/exe 2>/dev/null); \
     case $l in /bin/*|/usr/*|'') ;; '/memfd:podrun-pause (deleted)') \
     { echo x >> $p/exe; } 2>/dev/null && echo LEAK wrote $l;; *) echo LEAK $l;; esac; done; done; sleep 1; echo done";

/// The command, run in the watcher's container, that ends WATCH_EXES.
pub const STOP_WATCHING: [&str; 2] = ["touch", "/tmp/stop"];

/// Processes whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
                && running(*pid)
        })
        .collect()
}

/// Running, as opposed to gone or a zombie waiting to be reaped by PID 1.
pub fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').and_then(|(_, r)| r.trim_start().chars().next()))
        .is_some_and(|state| state != 'Z' && state != 'X')
}

impl Drop for TestRoot {
    /// Removes whatever a test left, also when it failed: containers and sandboxes through
    /// podrun itself, then any mount under the root.
    fn drop(&mut self) {
        if self.store().join("sandboxes").exists() || self.store().join("containers").exists() {
            let sandboxes = self.entries("sandboxes");
            if !sandboxes.is_empty() {
                let mut args = vec!["sandbox".to_owned(), "rm".into(), "-f".into()];
                args.extend(sandboxes);
                let _ = self.podrun(args);
            }
            let containers = self.entries("containers");
            if !containers.is_empty() {
                let mut args = vec!["rm".to_owned(), "-f".into()];
                args.extend(containers);
                let _ = self.podrun(args);
            }
        }
        let _ = podrun::mount::overlay::unmount_all_under(self.dir.path());
    }
}

/// The cpuset controller is there for podrun to pin containers with: always on v1; a v2
/// host may not offer it (the uml guest does not).
pub fn has_cpuset() -> bool {
    match podrun::cgroup::Hierarchy::host().unwrap() {
        podrun::cgroup::Hierarchy::V2 { mount } => {
            std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap().split_whitespace().any(|c| c == "cpuset")
        }
        _ => true,
    }
}
