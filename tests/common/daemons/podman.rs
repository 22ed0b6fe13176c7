//! podman with a throw-away store for the black-box tests (see `daemons` for its temp dir's
//! layout): every command pointed at the temp dir, image-copying commands in a private mount
//! namespace, its leak check, and Drop, which removes everything it made.
//!
//! It must never touch what it did not make: processes are ended by pid, only the cgroup
//! parent's cgroups are removed, and only runtime state naming the temp dir is deleted.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{
    assert_empty_within, cgroup_pids, describe, dir_entries, finish, leftovers, os_args, processes_naming,
    remove_cgroups, unique_dir, unmount_under, wait_gone, Leftovers,
};

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
        // conmon writes a file named `oom` into its working directory when the container
        // was OOM-killed (podman 4.3 gives it no --persist-dir): the temp dir's, not ours.
        c.current_dir(&self.path);
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
