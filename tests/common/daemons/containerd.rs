//! The private containerd of the black-box tests (see `daemons` for its temp dir's layout):
//! starting it and waiting until it answers, `ctr` with the temp dir's defaults, importing
//! an OCI image layout, its leak check, and Drop, which removes everything it made.
//!
//! It must never touch what it did not make: shims and other processes are ended by pid,
//! and only the namespace's cgroups and `/run/containerd` entries are removed.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{
    assert_empty_within, describe, dir_entries, finish, last_lines, leftovers, os_args, path_with, processes_naming,
    remove_cgroups, runtime_bin, unique_dir, unmount_under, wait_gone, Leftovers,
};

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
            if !super::super::running(self.pid()) {
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
