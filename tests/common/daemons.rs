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

#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

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
// containerd

/// A private containerd: own root, state, socket and config under a temp dir; `ctr` runs in
/// the namespace `podrun-test-XXXXXXXX`, so its containers' cgroups are
/// `/sys/fs/cgroup/[<ctrl>/]podrun-test-XXXXXXXX/<id>` (ctr's default cgroupsPath is
/// `/<namespace>/<id>`).
pub struct Containerd {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    runtime: PathBuf,
    namespace: String,
    daemon: Child,
}

impl Containerd {
    /// Starts containerd with the runc v2 shim running `runtime`, and waits until it answers.
    pub fn start(runtime: &Path) -> Containerd {
        let runtime = runtime.canonicalize().unwrap_or_else(|e| panic!("runtime {}: {e}", runtime.display()));
        let (dir, path, namespace) = unique_dir();
        let bin = runtime_bin(&path, &runtime);
        for sub in ["cni/bin", "cni/conf", "fifo", "runc", "images", "tmp"] {
            std::fs::create_dir_all(path.join(sub)).unwrap();
        }
        std::fs::write(path.join("config.toml"), containerd_config(&path, &runtime)).unwrap();
        let log = std::fs::File::create(path.join("containerd.log")).unwrap();
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(path.join("config.toml"))
            .env("PATH", path_with(&bin))
            .env("TMPDIR", path.join("tmp"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting containerd (is the containerd package installed?)");
        // Built before waiting, so a failed start is cleaned up by Drop.
        let c = Containerd { dir: Some(dir), path, runtime, namespace, daemon };
        c.wait_ready();
        c
    }

    pub fn dir(&self) -> &Path {
        &self.path
    }

    pub fn socket(&self) -> PathBuf {
        self.path.join("containerd.sock")
    }

    /// The ctr namespace, also the name of this daemon's cgroups.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn pid(&self) -> i32 {
        self.daemon.id() as i32
    }

    /// containerd's log (stdout and stderr, level info).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path.join("containerd.log")).unwrap_or_default()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if !super::running(self.pid()) {
                panic!("containerd exited at start; its log ends:\n{}", last_lines(&self.log(), 40));
            }
            let out = self.ctr_base().args(["--connect-timeout", "1s", "version"]).output().expect("running ctr");
            if out.status.success() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "containerd did not answer on {} in 60 s ({})\nits log ends:\n{}",
                    self.socket().display(),
                    describe("ctr version", &out),
                    last_lines(&self.log(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ctr_base(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(self.socket()).arg("--namespace").arg(&self.namespace);
        for v in ["CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE", "CONTAINERD_SNAPSHOTTER"] {
            c.env_remove(v);
        }
        c
    }

    /// `ctr --address SOCK --namespace NS ARGS...`. For `run` it adds `--runc-binary RUNTIME
    /// --runc-root DIR/runc --fifo-dir DIR/fifo` (unless the caller gave `--runc-binary`), for
    /// `tasks start|exec` `--fifo-dir DIR/fifo`, so the runtime's state and ctr's FIFOs stay
    /// in the temp dir. Other commands that make tasks (`containers create` + `tasks start`)
    /// get the runtime through PATH (`bin/runc`) and keep its state in runc's default
    /// `/run/containerd/runc/NS`, which Drop removes.
    pub fn ctr<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = self.with_defaults(os_args(args));
        self.ctr_base().args(args).stdin(Stdio::null()).output().expect("running ctr")
    }

    /// `ctr(args)`, which must succeed; returns stdout.
    pub fn ctr_ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = os_args(args);
        let out = self.ctr(&args);
        assert!(
            out.status.success(),
            "{}\ncontainerd's log ends:\n{}",
            describe(&format!("ctr {args:?}"), &out),
            last_lines(&self.log(), 30)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn with_defaults(&self, mut args: Vec<OsString>) -> Vec<OsString> {
        let s: Vec<&str> = args.iter().map(|a| a.to_str().unwrap_or("")).collect();
        let given = |flag: &str| s.iter().any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        let fifo: Vec<OsString> =
            if given("--fifo-dir") { vec![] } else { vec!["--fifo-dir".into(), self.path.join("fifo").into()] };
        match s.as_slice() {
            ["run", ..] => {
                let mut extra = fifo;
                if !given("--runc-binary") {
                    extra.extend(["--runc-binary".into(), self.runtime.clone().into()]);
                    extra.extend(["--runc-root".into(), self.path.join("runc").into()]);
                }
                args.splice(1..1, extra);
            }
            ["t" | "task" | "tasks", "start" | "exec", ..] => {
                args.splice(2..2, fifo);
            }
            _ => {}
        }
        args
    }

    /// Imports an OCI image layout directory (a fixture such as `busybox_oci()`) as `name`
    /// (e.g. `docker.io/library/busybox:latest`). `ctr images import` reads a tar of an image
    /// layout, names images by their index's `io.containerd.image.name` annotation, and
    /// unpacks them into the overlayfs snapshotter; so this writes DIR/images/<n>.tar with
    /// the layout's blobs and an index.json whose manifests carry `name`.
    pub fn import_oci(&self, layout: &Path, name: &str) {
        let n = std::fs::read_dir(self.path.join("images")).unwrap().count();
        let archive = self.path.join("images").join(format!("{n}.tar"));
        write_oci_archive(layout, name, &archive);
        self.ctr_ok([OsStr::new("images"), OsStr::new("import"), archive.as_os_str()]);
    }

    /// What this daemon should not have while no container exists: mounts under its dir,
    /// processes naming it but the daemon (shims, ...), cgroups below its namespace's (runc
    /// creates `/<ns>` with `mkdir -p` and removes only `/<ns>/<id>`, so `/<ns>` is excused
    /// until Drop), and runtime state of containers (`--root` entries, shim sockets).
    pub fn leftovers(&self) -> Leftovers {
        let mut l = leftovers(&self.path, &self.namespace);
        let daemon = self.pid();
        l.processes.retain(|(pid, _)| *pid != daemon);
        l.cgroups.retain(|c| c.file_name().is_some_and(|f| f != OsStr::new(&self.namespace)));
        l.state = self.runtime_state(false);
        l
    }

    /// Fails the test unless `leftovers()` becomes empty within 10 s.
    pub fn assert_clean(&self) {
        assert_empty_within(10, "containerd", || self.leftovers());
    }

    /// Entries of the runtime's state roots, and shim sockets of containers this daemon
    /// still knows; with `roots`, the namespace's roots themselves too (for after Drop).
    fn runtime_state(&self, roots: bool) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for root in self.state_roots() {
            v.extend(dir_entries(&root));
            if roots && root.starts_with("/run") && root.exists() {
                v.push(root);
            }
        }
        v.extend(self.shim_sockets(&self.known_ids()).into_iter().filter(|s| s.exists()));
        v
    }

    fn state_roots(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = dir_entries(&self.path.join("runc"));
        v.push(Path::new("/run/containerd/runc").join(&self.namespace));
        v
    }

    /// (namespace, container id) of every task bundle in the daemon's state dir.
    fn known_ids(&self) -> Vec<(String, String)> {
        let mut ids = Vec::new();
        let tasks = self.path.join("state/io.containerd.runtime.v2.task");
        for ns in dir_entries(&tasks) {
            let nsname = ns.file_name().unwrap().to_string_lossy().into_owned();
            ids.extend(
                dir_entries(&ns)
                    .into_iter()
                    .map(|b| (nsname.clone(), b.file_name().unwrap().to_string_lossy().into_owned())),
            );
        }
        ids
    }

    /// The runc v2 shim listens on `/run/containerd/s/<sha256(address/ns/id)>` whatever the
    /// daemon's state dir (containerd 1.6 runtime/v2/shim/util_unix.go, SocketAddress).
    fn shim_sockets(&self, ids: &[(String, String)]) -> Vec<PathBuf> {
        use sha2::Digest;
        ids.iter()
            .map(|(ns, id)| {
                let key = format!("{}/{ns}/{id}", self.socket().display());
                let hex: String = sha2::Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
                Path::new("/run/containerd/s").join(hex)
            })
            .collect()
    }

    /// Every namespace's tasks killed and deleted, then its containers (and their snapshots).
    fn remove_containers(&self) {
        let quick = |args: &[&str], ns: &str| {
            Command::new("ctr")
                .arg("--address")
                .arg(self.socket())
                .args(["--timeout", "30s", "--namespace", ns])
                .args(args)
                .stdin(Stdio::null())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        for ns in quick(&["namespaces", "ls", "-q"], "default").lines() {
            for id in quick(&["tasks", "ls", "-q"], ns).lines() {
                quick(&["tasks", "resume", id], ns);
                quick(&["tasks", "kill", "--all", "--signal", "SIGKILL", id], ns);
                quick(&["tasks", "delete", "--force", id], ns);
            }
            for id in quick(&["containers", "ls", "-q"], ns).lines() {
                quick(&["containers", "delete", id], ns);
            }
        }
    }

    fn stop_daemon(&mut self) {
        if self.daemon.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = kill(Pid::from_raw(self.pid()), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.daemon.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }

    /// Shims this daemon started (their command line names its socket) and anything else
    /// naming the temp dir, by pid; their sockets under /run/containerd/s with them.
    fn end_shims(&self) {
        let mut sockets = Vec::new();
        for (pid, cmd) in processes_naming(&self.path) {
            let words: Vec<&str> = cmd.split(' ').collect();
            let after = |flag: &str| {
                words.iter().position(|w| *w == flag).and_then(|i| words.get(i + 1)).map(|s| s.to_string())
            };
            if let (Some(ns), Some(id)) = (after("-namespace"), after("-id")) {
                sockets.extend(self.shim_sockets(&[(ns, id)]));
            }
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        wait_gone(&self.path);
        sockets.extend(self.shim_sockets(&self.known_ids()));
        for s in sockets {
            let _ = std::fs::remove_file(s);
        }
    }
}

impl Drop for Containerd {
    /// Tasks and containers through containerd, then the daemon (SIGTERM, SIGKILL after
    /// 10 s), its shims, the processes in its cgroups, the runtime's state in /run, mounts
    /// under the temp dir, the cgroups; then asserts nothing is left and removes the dir.
    fn drop(&mut self) {
        if self.daemon.try_wait().ok().flatten().is_none() {
            self.remove_containers();
        }
        self.stop_daemon();
        self.end_shims();
        remove_cgroups(&self.namespace);
        let _ = std::fs::remove_dir_all(Path::new("/run/containerd/runc").join(&self.namespace));
        unmount_under(&self.path);
        let mut left = leftovers(&self.path, &self.namespace);
        left.state = self.runtime_state(true).into_iter().filter(|p| !p.starts_with(&self.path)).collect();
        finish(self.dir.take(), &self.path, "containerd", left, &self.log());
    }
}

/// containerd's config: version 2, everything under `dir`; the CRI plugin stays enabled,
/// with `restrict_oom_score_adj` (no CAP_SYS_RESOURCE here), CNI dirs in `dir`, and the runc
/// runtime's options naming `runtime`. Those options reach only CRI's containers: ctr sends
/// its own (`--runc-binary`), which is why `ctr()` adds it and why PATH has `bin/runc`.
fn containerd_config(dir: &Path, runtime: &Path) -> String {
    let d = dir.display();
    let r = runtime.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
temp = "{d}/tmp"
# Snapshotters that cannot work here; the v1 runtime stays, the tasks service needs it.
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = ""
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{r}"
        Root = "{d}/runc"
        SystemdCgroup = false
"#
    )
}

/// A tar of the image layout `layout` whose index names every manifest `name`.
fn write_oci_archive(layout: &Path, name: &str, archive: &Path) {
    let text =
        std::fs::read(layout.join("index.json")).unwrap_or_else(|e| panic!("{}/index.json: {e}", layout.display()));
    let mut index: serde_json::Value = serde_json::from_slice(&text).expect("index.json");
    let tag = name.rsplit_once(':').filter(|(_, t)| !t.contains('/')).map_or("latest", |(_, t)| t);
    for m in index["manifests"].as_array_mut().expect("index.json has manifests") {
        m["annotations"]["io.containerd.image.name"] = name.into();
        m["annotations"]["org.opencontainers.image.ref.name"] = tag.into();
    }
    let index = serde_json::to_vec(&index).unwrap();
    let mut b = tar::Builder::new(std::fs::File::create(archive).unwrap());
    b.append_path_with_name(layout.join("oci-layout"), "oci-layout").unwrap();
    b.append_dir_all("blobs", layout.join("blobs")).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(index.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "index.json", index.as_slice()).unwrap();
    b.finish().unwrap();
}

// ---------------------------------------------------------------------------------------------
// podman

/// podman with a throw-away store: every command gets `--root --runroot --storage-driver
/// overlay --cgroup-manager cgroupfs --events-backend file --runtime --tmpdir
/// --network-config-dir --volumepath` under the temp dir, and CONTAINERS_CONF,
/// CONTAINERS_STORAGE_CONF, CONTAINERS_REGISTRIES_CONF naming files there. Containers get
/// `--cgroup-parent /podrun-test-XXXXXXXX` and no network (`netns = "none"`) by default.
pub struct Podman {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    runtime: PathBuf,
    cgroup_parent: String,
}

impl Podman {
    pub fn new(runtime: &Path) -> Podman {
        let runtime = runtime.canonicalize().unwrap_or_else(|e| panic!("runtime {}: {e}", runtime.display()));
        let (dir, path, cgroup_parent) = unique_dir();
        for sub in ["root", "runroot", "libpod", "volumes", "net", "hooks", "tmp", "home/.config"] {
            std::fs::create_dir_all(path.join(sub)).unwrap();
        }
        let p = |f: &str| path.join(f);
        std::fs::write(p("containers.conf"), containers_conf(&path)).unwrap();
        std::fs::write(
            p("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
                p("runroot").display(),
                p("root").display()
            ),
        )
        .unwrap();
        std::fs::write(p("registries.conf"), "unqualified-search-registries = []\n").unwrap();
        std::fs::write(p("policy.json"), r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
        std::fs::write(p("mounts.conf"), "").unwrap();
        Podman { dir: Some(dir), path, runtime, cgroup_parent }
    }

    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// The cgroup parent's name (without the leading slash).
    pub fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }

    /// The runtime's state root for podman's containers: podman 4.3 passes no `--root`, so
    /// it is the runtime's default, `/run/<name>` by runc's convention (/run/runc,
    /// /run/podrun, /run/crun).
    pub fn runtime_root(&self) -> PathBuf {
        Path::new("/run").join(self.runtime.file_name().unwrap())
    }

    fn command(&self) -> Command {
        let p = |f: &str| self.path.join(f);
        let mut c = Command::new("podman");
        c.arg("--root").arg(p("root"));
        c.arg("--runroot").arg(p("runroot"));
        c.args(["--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]);
        c.arg("--runtime").arg(&self.runtime);
        c.arg("--tmpdir").arg(p("libpod"));
        c.arg("--network-config-dir").arg(p("net"));
        c.arg("--volumepath").arg(p("volumes"));
        c.env("CONTAINERS_CONF", p("containers.conf"));
        c.env("CONTAINERS_STORAGE_CONF", p("storage.conf"));
        c.env("CONTAINERS_REGISTRIES_CONF", p("registries.conf"));
        c.env("HOME", p("home"));
        c.env("XDG_CONFIG_HOME", p("home/.config"));
        c.env("TMPDIR", p("tmp"));
        for v in ["XDG_RUNTIME_DIR", "CONTAINER_HOST", "CONTAINER_CONNECTION", "REGISTRY_AUTH_FILE", "STORAGE_DRIVER"] {
            c.env_remove(v);
        }
        c.stdin(Stdio::null());
        c
    }

    /// `podman GLOBALS ARGS...`; `run`, `create`, `container run|create` and `pod create`
    /// get `--cgroup-parent /podrun-test-XXXXXXXX` unless ARGS name one, and `pod create`
    /// gets `--share-parent=false` unless ARGS say otherwise: with cgroupfs on pure cgroup v2,
    /// no container can start under the pod cgroup podman 4.3 makes (runc: "error reopening
    /// /dev/null inside container: open /dev/null: operation not permitted", crun: "mknod
    /// `/dev/null`: Operation not permitted"; the infra container first), so a pod's
    /// containers sit directly under the parent, on both cgroup worlds alike.
    /// Commands that copy images (pull, load, import, build, commit, save, push, and `pod
    /// create`, which builds podman's pause image on first use) run in a private mount
    /// namespace that keeps the host's /var/lib and /etc/containers out of reach.
    pub fn podman<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = self.with_cgroup_parent(os_args(args));
        let mut c = if copies_images(&args) { self.command_private() } else { self.command() };
        c.args(args).output().expect("running podman")
    }

    /// `podman(args)`, which must succeed; returns stdout.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = os_args(args);
        let out = self.podman(&args);
        assert!(out.status.success(), "{}", describe(&format!("podman {args:?}"), &out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn with_cgroup_parent(&self, mut args: Vec<OsString>) -> Vec<OsString> {
        let s: Vec<&str> = args.iter().map(|a| a.to_str().unwrap_or("")).collect();
        let given = |flag: &str| s.iter().any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        let at = match s.as_slice() {
            ["run" | "create", ..] => 1,
            ["container" | "pod", "run" | "create", ..] => 2,
            _ => return args,
        };
        let mut extra: Vec<OsString> = Vec::new();
        if !given("--cgroup-parent") {
            extra.extend(["--cgroup-parent".into(), format!("/{}", self.cgroup_parent).into()]);
        }
        if s[0] == "pod" && !given("--share-parent") {
            extra.push("--share-parent=false".into());
        }
        args.splice(at..at, extra);
        args
    }

    /// Loads an OCI image layout directory as `name` (`busybox` becomes
    /// `localhost/busybox:latest`, which short names resolve to first): `podman pull
    /// oci:DIR` (in the private mount namespace, see `podman()`), then `podman tag`.
    /// Returns the image id.
    pub fn load_oci(&self, layout: &Path, name: &str) -> String {
        let mut src = OsString::from("oci:");
        src.push(layout);
        let out = self.ok([OsStr::new("pull"), OsStr::new("--quiet"), &src]);
        let id = out.lines().last().unwrap_or("").trim().to_owned();
        self.ok(["tag", id.as_str(), name]);
        id
    }

    /// `podman GLOBALS ARGS...` in a mount namespace of its own with tmpfs over /var/lib,
    /// /var/tmp and /etc/containers (holding only this store's policy.json): as root,
    /// containers/image writes its blob-info cache to /var/lib/containers/cache whatever
    /// `--root` says, the pause image's build stages layers in /var/tmp whatever TMPDIR and
    /// `image_copy_tmp_dir` say, and both read the host's policy.json and
    /// registries.conf.d. Only for commands that mount nothing that must outlive them.
    fn command_private(&self) -> Command {
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "--", "sh", "-ec"]);
        c.arg(
            "mount -t tmpfs -o mode=0755 podrun-test /var/lib; \
             mount -t tmpfs -o mode=1777 podrun-test /var/tmp; \
             mount -t tmpfs -o mode=0755 podrun-test /etc/containers; \
             cp \"$PODRUN_TEST_POLICY\" /etc/containers/policy.json; exec \"$@\"",
        );
        c.arg("sh");
        let podman = self.command();
        c.arg(podman.get_program()).args(podman.get_args());
        c.envs(podman.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))));
        c.env("PODRUN_TEST_POLICY", self.path.join("policy.json"));
        c.stdin(Stdio::null());
        c
    }

    /// What should not exist while no container does: mounts under the temp dir, processes
    /// naming it (conmon, `podman container cleanup`) or in its cgroups, containers' cgroups
    /// (`libpod-<id>`, which the runtime's `delete` removes) and any cgroup holding a
    /// process, and the runtime's state (in `runtime_root()`) of containers whose bundle is
    /// in the temp dir. Podman's own are excused until Drop: its overlay driver's home
    /// (`root/overlay`, bind-mounted on itself by containers/storage and unmounted only by a
    /// podman command that ends while no layer is mounted, so after a race with conmon's
    /// `podman container cleanup` it can stay), and empty cgroups: the parent, `conmon`
    /// (shared by every conmon under the parent), and a removed pod's `<pod id>` (with
    /// `--share-parent=true`, podman 4.3 leaves it on name=systemd and the hybrid v2
    /// hierarchy, where runc made it for the pod's containers).
    pub fn leftovers(&self) -> Leftovers {
        let mut l = leftovers(&self.path, &self.cgroup_parent);
        let home = self.path.join("root/overlay");
        l.mounts.retain(|m| *m != home);
        l.cgroups.retain(|c| {
            let name = c.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("libpod-") || !cgroup_pids(c).is_empty()
        });
        l.state = self.runtime_state();
        l
    }

    /// Fails the test unless `leftovers()` becomes empty within 10 s (podman's exit command,
    /// `podman container cleanup`, runs after `podman run` has returned).
    pub fn assert_clean(&self) {
        assert_empty_within(10, "podman", || self.leftovers());
    }

    /// Entries of the runtime's root whose state.json names the temp dir (runc's and
    /// podrun's hold the bundle path, which is in podman's store). Only state.json is read:
    /// a created container's exec.fifo would block a reader.
    fn runtime_state(&self) -> Vec<PathBuf> {
        let marker = self.path.as_os_str().as_bytes();
        dir_entries(&self.runtime_root())
            .into_iter()
            .filter(|e| std::fs::read(e.join("state.json")).is_ok_and(|t| t.windows(marker.len()).any(|w| w == marker)))
            .collect()
    }

    fn remove_all(&self) {
        let _ = self.command().args(["pod", "rm", "--all", "--force", "--time", "0"]).output();
        let _ = self.command().args(["rm", "--all", "--force", "--time", "0"]).output();
    }
}

impl Drop for Podman {
    /// Pods and containers through podman (`rm -af -t0`), then conmon and anything else
    /// naming the store, the processes in its cgroups and the cgroups, the runtime's state
    /// of its containers (`RUNTIME delete --force`), mounts under the store; then asserts
    /// nothing is left and removes the dir.
    fn drop(&mut self) {
        self.remove_all();
        for (pid, _) in processes_naming(&self.path) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        wait_gone(&self.path);
        remove_cgroups(&self.cgroup_parent);
        for state in self.runtime_state() {
            let id = state.file_name().unwrap();
            let _ = Command::new(&self.runtime).arg("delete").arg("--force").arg(id).output();
            let _ = std::fs::remove_dir_all(&state);
        }
        unmount_under(&self.path);
        let mut left = leftovers(&self.path, &self.cgroup_parent);
        left.state = self.runtime_state();
        finish(self.dir.take(), &self.path, "podman", left, "");
    }
}

/// Whether podman ARGS copy an image, and so write containers/image's blob-info cache.
fn copies_images(args: &[OsString]) -> bool {
    let s: Vec<&str> = args.iter().take(2).map(|a| a.to_str().unwrap_or("")).collect();
    let copy = ["pull", "load", "import", "build", "commit", "save", "push"];
    match s.as_slice() {
        [cmd, ..] if copy.contains(cmd) => true,
        ["image" | "container", cmd] => copy.contains(cmd),
        ["pod", "create"] => true,
        _ => false,
    }
}

/// containers.conf for a private podman: no network by default, file locks and events in
/// the temp dir, no host hooks or mounts, and ulimits this process can grant (podman 4.3
/// asks for nofile and nproc 1048576/4194304 by default, which runc cannot set without
/// CAP_SYS_RESOURCE; podman lowers its own RLIMIT_NPROC to 32768 at start).
fn containers_conf(dir: &Path) -> String {
    let d = dir.display();
    let nofile = hard_limit(libc::RLIMIT_NOFILE);
    let nproc = hard_limit(libc::RLIMIT_NPROC).min(32768);
    format!(
        r#"[containers]
netns = "none"
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]
default_mounts_file = "{d}/mounts.conf"
[engine]
# podman passes --log (runc's JSON error lines) only to runtimes named here.
runtime_supports_json = ["crun", "runc", "kata", "runsc", "krun", "podrun"]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/events.log"
lock_type = "file"
tmp_dir = "{d}/libpod"
volume_path = "{d}/volumes"
hooks_dir = ["{d}/hooks"]
image_copy_tmp_dir = "{d}/tmp"
[network]
network_backend = "cni"
network_config_dir = "{d}/net"
cni_plugin_dirs = ["/usr/lib/cni"]
"#
    )
}

fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes only into `r`, a valid rlimit.
    let rc = unsafe { libc::getrlimit(resource, &mut r) };
    assert_eq!(rc, 0, "getrlimit");
    r.rlim_max
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
