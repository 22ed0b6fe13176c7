//! podrun as runc: the OCI command line (create, start, state, kill, delete, run, list,
//! features) on bundles made from the busybox fixture, as containerd's shim and conmon call
//! it; runc's words in errors; `--log` in runc's JSON; bad input refused with nothing left.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{eventually, need_root, running};

/// An OCI state root and a cgroup parent of the test's own, with bundles in a temp dir;
/// whatever is left (containers, cgroups, mounts) goes when it is dropped.
struct Oci {
    dir: tempfile::TempDir,
    /// The cgroup parent every bundle's cgroupsPath is under.
    parent: String,
}

impl Oci {
    fn new() -> Oci {
        let dir = tempfile::Builder::new().prefix("podrun-oci-").tempdir().unwrap();
        let parent = format!("/podrun-oci-test-{}", dir.path().file_name().unwrap().to_string_lossy());
        Oci { dir, parent }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `podrun --root ROOT ARGS...` (runc's command line), stdio captured.
    fn podrun(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_podrun"))
            .arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.podrun(args);
        assert!(out.status.success(), "podrun {args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Fails as runc does (status 1); returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.podrun(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "podrun {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `create` with the container's stdout and stderr in `out` (a file: the init keeps
    /// them open after create returns, as it does a shim's pipes).
    fn create(&self, bundle: &Path, id: &str, out: &Path) -> i32 {
        let pid_file = self.dir.path().join(format!("{id}.pid"));
        let log = std::fs::File::create(out).unwrap();
        let st = Command::new(env!("CARGO_BIN_EXE_podrun"))
            .arg("--root")
            .arg(self.root())
            .args(["create", "--bundle"])
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .status()
            .unwrap();
        assert!(st.success(), "create {id}: {st}: {}", std::fs::read_to_string(out).unwrap_or_default());
        std::fs::read_to_string(pid_file).unwrap().parse().unwrap()
    }

    /// A bundle whose process is `sh -c SCRIPT`, in the test's cgroup parent; `edit`
    /// changes its config.json first.
    fn bundle(&self, name: &str, script: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
        let b = self.dir.path().join(name);
        let rootfs = b.join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let tar = common::fixtures().join("busybox/busybox-rootfs.tar.gz");
        let st = Command::new("tar").arg("-xzf").arg(&tar).arg("-C").arg(&rootfs).status().unwrap();
        assert!(st.success());
        let mut spec = config(script, &format!("{}/{name}", self.parent));
        edit(&mut spec);
        std::fs::write(b.join("config.json"), serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
        b
    }

    fn state(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }

    /// The cgroup directories of `path` that exist.
    fn cgroups(&self, path: &str) -> Vec<PathBuf> {
        let h = podrun::cgroup::Hierarchy::host().unwrap();
        h.dirs(path).into_iter().map(|(_, d)| d).filter(|d| d.exists()).collect()
    }

    /// Nothing of container `name` left: no state, no cgroup, no mount under the bundles.
    fn assert_gone(&self, name: &str) {
        assert!(!self.root().join(name).exists(), "state of {name} left");
        assert!(self.cgroups(&format!("{}/{name}", self.parent)).is_empty(), "cgroup of {name} left");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(self.dir.path().to_str().unwrap()), "mounts left");
    }
}

impl Drop for Oci {
    fn drop(&mut self) {
        for e in std::fs::read_dir(self.root()).into_iter().flatten().flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let _ = self.podrun(&["delete", "--force", &id]);
        }
        // The parent cgroup create made (runc leaves it too); then the test's mounts.
        for d in self.cgroups(&self.parent) {
            for sub in std::fs::read_dir(&d).into_iter().flatten().flatten().filter(|e| e.path().is_dir()) {
                let _ = std::fs::remove_dir(sub.path());
            }
            let _ = std::fs::remove_dir(&d);
        }
        let _ = podrun::mount::overlay::unmount_all_under(self.dir.path());
    }
}

/// What `runc spec` writes, with the process `sh -c SCRIPT` and no terminal.
fn config(script: &str, cgroup: &str) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh", "-c", script],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            },
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "oci",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}
        ],
        "linux": {
            "cgroupsPath": cgroup,
            "resources": {"devices": [{"allow": false, "access": "rwm"}], "memory": {"limit": 67108864}, "pids": {"limit": 32}},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/kcore", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys"]
        }
    })
}

#[test]
fn create_then_start_then_kill_then_delete_as_runc_does() {
    if !need_root("create_then_start_then_kill_then_delete_as_runc_does") {
        return;
    }
    let t = Oci::new();
    let script = "echo pid $$; hostname; cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null; \
                  touch / 2>&1 | grep -q Read-only && echo ro; echo ready; exec sleep 600";
    let b = t.bundle("c1", script, |_| {});
    let out = t.dir.path().join("c1.out");
    let pid = t.create(&b, "c1", &out);
    // Created: its init waits (it has not run the script), the pid file names it.
    let s = t.state("c1");
    assert_eq!((s["status"].as_str(), s["pid"].as_i64()), (Some("created"), Some(pid as i64)), "{s}");
    assert_eq!(s["bundle"].as_str(), Some(b.to_str().unwrap()));
    assert!(running(pid));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "", "the process ran before start");
    assert!(t.ok(&["list", "-q"]).lines().any(|l| l == "c1"));
    let listed: serde_json::Value = serde_json::from_str(&t.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(listed[0]["id"].as_str(), Some("c1"));
    // Its cgroup is the spec's, with the spec's limit.
    assert_eq!(t.cgroups(&format!("{}/c1", t.parent)).len() > 0, true);
    t.ok(&["start", "c1"]);
    eventually(10, "the script to run", || std::fs::read_to_string(&out).unwrap().contains("ready"));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.starts_with("pid 1\noci\n67108864\nro\n"),
        "PID 1 of its own pid namespace, its hostname, its limit, a read-only root:\n{text}"
    );
    assert_eq!(t.state("c1")["status"].as_str(), Some("running"));
    let err = t.fails(&["start", "c1"]);
    assert!(err.contains("already running"), "{err}");
    let err = t.fails(&["delete", "c1"]);
    assert!(err.contains("not stopped"), "{err}");
    t.ok(&["kill", "c1", "KILL"]);
    eventually(10, "the container to stop", || t.state("c1")["status"].as_str() == Some("stopped"));
    assert_eq!(t.state("c1")["pid"].as_i64(), Some(0));
    let err = t.fails(&["kill", "c1", "TERM"]);
    assert!(err.contains("container not running"), "{err}");
    t.ok(&["delete", "c1"]);
    t.assert_gone("c1");
    let err = t.fails(&["state", "c1"]);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn run_waits_and_returns_the_exit_status_and_delete_force_ends_a_running_one() {
    if !need_root("run_waits_and_returns_the_exit_status_and_delete_force_ends_a_running_one") {
        return;
    }
    let t = Oci::new();
    // (Ambient capabilities without inheritable ones, as `crun spec` and `runc spec` write
    // them: skipped, not an error, as those runtimes do.)
    let b = t.bundle("r1", "echo out; exit 3", |s| {
        s["process"]["capabilities"]["ambient"] = serde_json::json!(["CAP_KILL"]);
    });
    let out = t.podrun(&["run", "--bundle", b.to_str().unwrap(), "r1"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    t.assert_gone("r1");
    // A running container, deleted with --force: its processes, cgroup and state go.
    let b = t.bundle("r2", "sleep 600 & exec sleep 600", |_| {});
    // (Its stdio is the caller's, kept by the container: a file, not the test's pipe.)
    let log = std::fs::File::create(t.dir.path().join("r2.out")).unwrap();
    let st = Command::new(env!("CARGO_BIN_EXE_podrun"))
        .arg("--root")
        .arg(t.root())
        .args(["run", "--detach", "--bundle", b.to_str().unwrap(), "r2"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .unwrap();
    assert!(st.success());
    let pid = t.state("r2")["pid"].as_i64().unwrap() as i32;
    assert!(running(pid));
    t.ok(&["delete", "--force", "r2"]);
    eventually(5, "the init to end", || !running(pid));
    t.assert_gone("r2");
}

#[test]
fn a_namespace_with_a_path_is_joined() {
    if !need_root("a_namespace_with_a_path_is_joined") {
        return;
    }
    let t = Oci::new();
    // A network namespace held by a process of the test's.
    let mut holder = Command::new("unshare").args(["--net", "sleep", "600"]).spawn().unwrap();
    let ns = format!("/proc/{}/ns/net", holder.id());
    eventually(5, "unshare to make its namespace", || {
        std::fs::read_link(&ns).ok() != std::fs::read_link("/proc/self/ns/net").ok()
    });
    let want = std::fs::read_link(&ns).unwrap();
    let b = t.bundle("n1", "readlink /proc/self/ns/net", |s| {
        s["linux"]["namespaces"][1] = serde_json::json!({"type": "network", "path": ns});
    });
    let out = t.podrun(&["run", "--bundle", b.to_str().unwrap(), "n1"]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want.to_str().unwrap());
    t.assert_gone("n1");
}

#[test]
fn bad_bundles_ids_and_calls_are_refused_with_runcs_words_and_leave_nothing() {
    if !need_root("bad_bundles_ids_and_calls_are_refused_with_runcs_words_and_leave_nothing") {
        return;
    }
    let t = Oci::new();
    let good = t.bundle("good", "true", |_| {});
    let g = good.to_str().unwrap();
    let refused = |args: &[&str], words: &str| {
        let err = t.fails(args);
        assert!(err.contains(words), "{args:?}: expected {words:?} in: {err}");
    };
    // The bundle: no config.json, not JSON, no rootfs, what podrun does not do.
    let empty = t.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    refused(&["create", "--bundle", empty.to_str().unwrap(), "x1"], "config.json");
    std::fs::write(empty.join("config.json"), "{not json").unwrap();
    refused(&["create", "--bundle", empty.to_str().unwrap(), "x1"], "not an OCI runtime spec");
    let norootfs = t.bundle("norootfs", "true", |s| s["root"]["path"] = "missing".into());
    refused(&["create", "--bundle", norootfs.to_str().unwrap(), "x1"], "root.path");
    let systemd = t.bundle("systemd", "true", |s| s["linux"]["cgroupsPath"] = "system.slice:podrun:x1".into());
    refused(&["create", "--bundle", systemd.to_str().unwrap(), "x1"], "linux.cgroupsPath");
    let hooks = t.bundle("hooks", "true", |s| s["hooks"] = serde_json::json!({"prestart": [{"path": "/bin/true"}]}));
    refused(&["create", "--bundle", hooks.to_str().unwrap(), "x1"], "hooks");
    let userns = t.bundle("userns", "true", |s| {
        s["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "user"}))
    });
    refused(&["create", "--bundle", userns.to_str().unwrap(), "x1"], "linux.namespaces[6]");
    let badns = t.bundle("badns", "true", |s| {
        s["linux"]["namespaces"][1] = serde_json::json!({"type": "network", "path": "/proc/self/ns/ipc"})
    });
    refused(&["create", "--bundle", badns.to_str().unwrap(), "x1"], "not a namespace of type net");
    // Ids that are no directory name.
    refused(&["create", "--bundle", g, "../x"], "invalid container name");
    refused(&["create", "--bundle", g, "a/b"], "invalid container name");
    // Calls on containers that do not exist, a signal that does not.
    // (start and kill are podrun's own commands too: a runc flag, or an id in the OCI
    // root, makes them runc's, as containerd's and podman's calls always are.)
    refused(&["--log-format", "json", "start", "nope"], "does not exist");
    refused(&["delete", "nope"], "does not exist");
    refused(&["--log-format", "json", "kill", "nope", "9"], "does not exist");
    refused(&["--log-format", "json", "kill", "good", "SIGNOPE"], "invalid signal");
    assert!(std::fs::read_dir(t.root()).map_or(true, |d| d.count() == 0), "state left by refused creates");
    assert!(t.cgroups(&format!("{}/x1", t.parent)).is_empty(), "cgroup left by refused creates");
    // An id in use.
    let out = t.dir.path().join("good.out");
    t.create(&good, "good", &out);
    refused(&["create", "--bundle", g, "good"], "already exists");
    t.ok(&["delete", "good"]);
    t.assert_gone("good");
    // delete --force of what is not there is no error (containerd's cleanup relies on it).
    t.ok(&["delete", "--force", "good"]);
}

#[test]
fn errors_go_to_the_log_in_runcs_json_also_for_bad_arguments() {
    if !need_root("errors_go_to_the_log_in_runcs_json_also_for_bad_arguments") {
        return;
    }
    let t = Oci::new();
    let log = t.dir.path().join("log.json");
    let l = log.to_str().unwrap();
    t.fails(&["--log", l, "--log-format", "json", "start", "nope"]);
    // Arguments clap refuses (create without an id) are logged too.
    t.fails(&["--log", l, "--log-format", "json", "create", "--bundle", "/nonexistent"]);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    for v in &lines {
        assert_eq!(v["level"].as_str(), Some("error"), "{v}");
        assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z') && t.len() >= 20), "{v}");
    }
    assert!(lines[0]["msg"].as_str().unwrap().contains("container nope does not exist"), "{text}");
    assert!(
        lines[1]["msg"].as_str().unwrap().contains("<ID>") || lines[1]["msg"].as_str().unwrap().contains("required"),
        "{text}"
    );
    // features: what podrun does, as the runtime spec's JSON.
    let f: serde_json::Value = serde_json::from_str(&t.ok(&["features"])).unwrap();
    assert_eq!(f["linux"]["cgroup"]["systemd"].as_bool(), Some(false));
    assert!(f["linux"]["namespaces"].as_array().unwrap().iter().any(|n| n == "pid"));
}

impl Oci {
    /// `podrun --root ROOT ARGS...` with stdio on /dev/null (for what leaves a process
    /// holding them), its status.
    fn quiet(&self, args: &[&str]) -> std::process::ExitStatus {
        Command::new(env!("CARGO_BIN_EXE_podrun"))
            .arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    }

    /// A cgroup file of container `name` (v2: the one directory; v1: `controller`'s).
    fn cgroup_file(&self, name: &str, controller: &str, v1: &str, v2: &str) -> String {
        let h = podrun::cgroup::Hierarchy::host().unwrap();
        let path = format!("{}/{name}", self.parent);
        let file = match &h {
            podrun::cgroup::Hierarchy::V2 { mount } => mount.join(path.trim_start_matches('/')).join(v2),
            podrun::cgroup::Hierarchy::V1 { controllers, .. } => controllers
                .get(controller)
                .unwrap_or_else(|| panic!("no {controller} hierarchy"))
                .join(path.trim_start_matches('/'))
                .join(v1),
        };
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())).trim().to_owned()
    }
}

#[test]
fn exec_ps_pause_resume_and_update_act_on_a_running_container() {
    if !need_root("exec_ps_pause_resume_and_update_act_on_a_running_container") {
        return;
    }
    let t = Oci::new();
    let b = t.bundle("e1", "exec sleep 600", |_| {});
    let init = t.create(&b, "e1", &t.dir.path().join("e1.out"));
    t.ok(&["start", "e1"]);
    // exec, waited for: in the container's pid namespace (PID 1 is its init), its status.
    let out = t.podrun(&["exec", "e1", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; hostname; exit 4"]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "sleep 600 oci\n");
    // exec --detach with a process file, as the shim and conmon do: the pid file names a
    // process of the container's cgroup, which ps lists.
    let process = t.dir.path().join("process.json");
    let p = serde_json::json!({"args": ["sleep", "300"], "cwd": "/", "user": {"uid": 0, "gid": 0},
        "env": ["PATH=/bin:/usr/bin"], "terminal": false});
    std::fs::write(&process, p.to_string()).unwrap();
    let pid_file = t.dir.path().join("exec.pid");
    let st = t.quiet(&[
        "exec",
        "--process",
        process.to_str().unwrap(),
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "e1",
    ]);
    assert!(st.success(), "exec --detach: {st}");
    let exec_pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert!(running(exec_pid));
    let pids: Vec<i32> = serde_json::from_str(&t.ok(&["ps", "--format", "json", "e1"])).unwrap();
    assert!(pids.contains(&init) && pids.contains(&exec_pid), "ps: {pids:?}, init {init}, exec {exec_pid}");
    // pause and resume: the cgroup frozen, the state paused; then running again.
    t.ok(&["pause", "e1"]);
    assert_eq!(t.state("e1")["status"].as_str(), Some("paused"));
    assert!(t.fails(&["pause", "e1"]).contains("paused"));
    t.ok(&["resume", "e1"]);
    assert_eq!(t.state("e1")["status"].as_str(), Some("running"));
    assert!(t.fails(&["resume", "e1"]).contains("not paused"));
    // update: the memory limit by flag, the pids limit from the spec's JSON on stdin.
    t.ok(&["update", "--memory", "33554432", "e1"]);
    assert_eq!(t.cgroup_file("e1", "memory", "memory.limit_in_bytes", "memory.max"), "33554432");
    let mut child = Command::new(env!("CARGO_BIN_EXE_podrun"))
        .arg("--root")
        .arg(t.root())
        .args(["update", "--resources", "-", "e1"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), br#"{"pids": {"limit": 20}}"#).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    assert_eq!(t.cgroup_file("e1", "pids", "pids.max", "pids.max"), "20");
    // kill --all: every process of the container.
    t.ok(&["kill", "--all", "e1", "9"]);
    eventually(10, "every process to end", || !running(init) && !running(exec_pid));
    eventually(5, "stopped", || t.state("e1")["status"].as_str() == Some("stopped"));
    let err = t.fails(&["exec", "e1", "true"]);
    assert!(err.contains("container not running"), "{err}");
    t.ok(&["delete", "e1"]);
    t.assert_gone("e1");
}

#[test]
fn a_terminal_is_sent_over_the_console_socket() {
    if !need_root("a_terminal_is_sent_over_the_console_socket") {
        return;
    }
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let t = Oci::new();
    let b = t.bundle("tty1", "tty; echo on-the-tty", |s| s["process"]["terminal"] = true.into());
    let sock = t.dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let receiver = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = nix::sys::socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            nix::sys::socket::MsgFlags::empty(),
        )
        .unwrap();
        let fd = msg
            .cmsgs()
            .unwrap()
            .find_map(|c| match c {
                nix::sys::socket::ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })
            .expect("a descriptor");
        // SAFETY: received with SCM_RIGHTS: a new descriptor of ours.
        unsafe { OwnedFd::from_raw_fd(fd) }
    });
    let pid_file = t.dir.path().join("tty1.pid");
    t.ok(&[
        "create",
        "--bundle",
        b.to_str().unwrap(),
        "--console-socket",
        sock.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        "tty1",
    ]);
    let master = std::fs::File::from(receiver.join().unwrap());
    t.ok(&["start", "tty1"]);
    let mut text = String::new();
    let mut r = std::io::BufReader::new(master);
    while !text.contains("on-the-tty") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut r, &mut line).unwrap_or(0) == 0 {
            break;
        }
        text.push_str(&line);
    }
    assert!(text.starts_with("/dev/pts/"), "the process's stdio is the pty: {text:?}");
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    eventually(10, "the process to end", || !running(pid));
    t.ok(&["delete", "tty1"]);
    t.assert_gone("tty1");
    // A terminal without a socket to send it to is refused, and leaves nothing.
    let err = t.fails(&["create", "--bundle", b.to_str().unwrap(), "tty2"]);
    assert!(err.contains("console socket"), "{err}");
    t.assert_gone("tty2");
}

#[test]
fn a_create_killed_at_any_point_leaves_nothing_delete_force_does_not_remove() {
    if !need_root("a_create_killed_at_any_point_leaves_nothing_delete_force_does_not_remove") {
        return;
    }
    let t = Oci::new();
    let b = t.bundle("k1", "exec sleep 600", |_| {});
    for round in 0..12u64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_podrun"))
            .arg("--root")
            .arg(t.root())
            .args(["create", "--bundle", b.to_str().unwrap(), "k1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // From before it reads the bundle to after its init waits (create takes ~5-20 ms).
        std::thread::sleep(std::time::Duration::from_micros(round * 2500));
        let _ = child.kill();
        let _ = child.wait();
        let st = t.quiet(&["delete", "--force", "k1"]);
        assert!(st.success(), "round {round}: delete --force: {st}");
        t.assert_gone("k1");
        // Neither podrun's stages nor the init (podrun's argv until it execs) are left.
        eventually(5, &format!("round {round}: processes of the killed create left"), || {
            common::processes_with(b.to_str().unwrap()).is_empty()
        });
    }
}

#[test]
fn the_process_gets_its_rlimits_oom_score_umask_sysctl_and_ambient_capabilities() {
    if !need_root("the_process_gets_its_rlimits_oom_score_umask_sysctl_and_ambient_capabilities") {
        return;
    }
    let t = Oci::new();
    let script = "ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj; umask; grep CapEff /proc/self/status; \
                  cat /proc/sys/net/ipv4/ip_unprivileged_port_start; id -u";
    let b = t.bundle("p1", script, |s| {
        let p = &mut s["process"];
        p["rlimits"] = serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}]);
        p["oomScoreAdj"] = 500.into();
        p["user"] = serde_json::json!({"uid": 1000, "gid": 1000, "umask": 23});
        let caps = serde_json::json!(["CAP_NET_BIND_SERVICE"]);
        p["capabilities"] = serde_json::json!({"bounding": caps, "effective": caps, "permitted": caps,
            "inheritable": caps, "ambient": caps});
        s["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_unprivileged_port_start": "0"});
    });
    let out = t.podrun(&["run", "--bundle", b.to_str().unwrap(), "p1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "512\n1024\n500\n0027\nCapEff:\t0000000000000400\n0\n1000\n");
    t.assert_gone("p1");
    // A limit the kernel refuses (beyond nr_open) fails the create by its JSON path.
    let b = t.bundle("p2", "true", |s| {
        s["process"]["rlimits"] = serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1073741824u64}])
    });
    let err = t.fails(&["create", "--bundle", b.to_str().unwrap(), "p2"]);
    assert!(err.contains("process.rlimits[0]"), "{err}");
    t.assert_gone("p2");
    // As do a sysctl that is no name, and what podrun does not do yet.
    let b = t.bundle("p3", "true", |s| s["linux"]["sysctl"] = serde_json::json!({"../../x": "1"}));
    assert!(t.fails(&["create", "--bundle", b.to_str().unwrap(), "p3"]).contains("linux.sysctl"));
    let b = t.bundle("p4", "true", |s| s["linux"]["rootfsPropagation"] = "shared".into());
    assert!(t.fails(&["create", "--bundle", b.to_str().unwrap(), "p4"]).contains("linux.rootfsPropagation"));
    t.assert_gone("p3");
    t.assert_gone("p4");
}

#[test]
fn the_resource_view_is_an_annotation_away() {
    if !need_root("the_resource_view_is_an_annotation_away") {
        return;
    }
    let t = Oci::new();
    let script = "free | awk '/Mem:/{print $2}'; grep MemTotal /proc/meminfo | tr -s ' '; nproc; \
                  cat /sys/devices/system/cpu/online; cut -d. -f1 /proc/uptime";
    let b = t.bundle("v1", script, |s| {
        s["annotations"] = serde_json::json!({"run.podrun.procview": "on"});
        s["linux"]["resources"]["cpu"] = serde_json::json!({"quota": 50000, "period": 100000});
    });
    let out = t.podrun(&["run", "--bundle", b.to_str().unwrap(), "v1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    // The spec's 64 MiB limit and half a CPU: sysinfo (busybox free), meminfo, nproc, the
    // CPU list, and a clock that started with the container.
    assert_eq!(&lines[..3], ["65536", "MemTotal: 65536 kB", "1"], "{text}");
    assert!(lines[3].split(',').count() == 1 && !lines[3].contains('-'), "one CPU online: {text}");
    assert!(lines[4].parse::<u64>().unwrap() < 5, "uptime from the container's start: {text}");
    t.assert_gone("v1");
    // An exec'd process gets what the init got: its sysinfo answered by the view too.
    let b = t.bundle("v6", "exec sleep 600", |s| s["annotations"] = serde_json::json!({"run.podrun.procview": "on"}));
    t.create(&b, "v6", &t.dir.path().join("v6.out"));
    t.ok(&["start", "v6"]);
    assert_eq!(t.ok(&["exec", "v6", "sh", "-c", "free | awk '/Mem:/{print $2}'"]), "65536\n");
    t.ok(&["delete", "--force", "v6"]);
    t.assert_gone("v6");
    // The view of the root stops with its last container.
    let view = podrun::state::Paths::new(t.root().join(".podrun"));
    eventually(5, "the view to stop", || podrun::procview::keeper(&view).is_none());
    // podrun's configuration gives the view to a spec that does not ask; an annotation's
    // "off" still turns it off; a configuration that is wrong says where.
    let config = t.dir.path().join("config.json");
    std::fs::write(&config, r#"{"oci": {"procview": "on"}}"#).unwrap();
    let with_config = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_podrun"))
            .env("PODRUN_CONFIG", &config)
            .arg("--root")
            .arg(t.root())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let plain = t.bundle("v3", "free | awk '/Mem:/{print $2}'", |_| {});
    let out = with_config(&["run", "--bundle", plain.to_str().unwrap(), "v3"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "65536\n", "{}", String::from_utf8_lossy(&out.stderr));
    let off = t.bundle("v4", "free | awk '/Mem:/{print $2}'", |s| {
        s["annotations"] = serde_json::json!({"run.podrun.procview": "off"})
    });
    let out = with_config(&["run", "--bundle", off.to_str().unwrap(), "v4"]);
    assert_ne!(String::from_utf8_lossy(&out.stdout), "65536\n", "off: the host's memory");
    std::fs::write(&config, r#"{"oci": {"procview": "always"}}"#).unwrap();
    let out = with_config(&["create", "--bundle", plain.to_str().unwrap(), "v5"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("oci.procview"), "{}", String::from_utf8_lossy(&out.stderr));
    for id in ["v3", "v4", "v5"] {
        t.assert_gone(id);
    }
    eventually(5, "the view to stop", || podrun::procview::keeper(&view).is_none());
    // A value that is none of on, files, off is refused by its path.
    let b = t.bundle("v2", "true", |s| s["annotations"] = serde_json::json!({"run.podrun.procview": "yes"}));
    let err = t.fails(&["create", "--bundle", b.to_str().unwrap(), "v2"]);
    assert!(err.contains("annotations[\"run.podrun.procview\"]"), "{err}");
    t.assert_gone("v2");
}

#[test]
fn preserve_fds_passes_the_callers_descriptors_on() {
    if !need_root("preserve_fds_passes_the_callers_descriptors_on") {
        return;
    }
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let t = Oci::new();
    let b = t.bundle("f1", "echo through-fd3 >&3; ls /proc/self/fd | sort -n | tr '\\n' ' '", |_| {});
    let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
    let raw = w.as_raw_fd();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_podrun"));
    cmd.arg("--root").arg(t.root()).args(["run", "--preserve-fds", "1", "--bundle", b.to_str().unwrap(), "f1"]);
    // SAFETY: between fork and exec: dup2 only, as the caller (a shim) hands a socket on.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    drop(w);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut got = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut got).unwrap();
    assert_eq!(got, "through-fd3\n");
    // Nothing else of podrun's reaches the process: 0, 1, 2, the one passed, and ls's own.
    let fds = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(fds.split_whitespace().take(4).collect::<Vec<_>>(), ["0", "1", "2", "3"], "{fds}");
    assert!(fds.split_whitespace().count() <= 5, "{fds}");
    t.assert_gone("f1");
}

#[test]
fn linux_devices_are_made_and_allowed_by_the_cgroup_only_when_the_spec_says() {
    if !need_root("linux_devices_are_made_and_allowed_by_the_cgroup_only_when_the_spec_says") {
        return;
    }
    let t = Oci::new();
    // /dev/fuse (10:229) is none of the standard devices: made with the spec's mode, and
    // opened only where linux.resources.devices allows it.
    let script = "stat -c '%a %t:%T' /dev/myfuse; dd if=/dev/myfuse of=/dev/null bs=1 count=0 2>&1 && echo opened";
    let node = serde_json::json!([{"path": "/dev/myfuse", "type": "c", "major": 10, "minor": 229, "fileMode": 416, "uid": 0, "gid": 0}]);
    let allowed = t.bundle("d1", script, |s| {
        s["linux"]["devices"] = node.clone();
        s["linux"]["resources"]["devices"] = serde_json::json!([{"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"}]);
    });
    let out = t.podrun(&["run", "--bundle", allowed.to_str().unwrap(), "d1"]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("640 a:e5\n") && text.contains("opened"), "{text}");
    let denied = t.bundle("d2", script, |s| s["linux"]["devices"] = node.clone());
    let out = t.podrun(&["run", "--bundle", denied.to_str().unwrap(), "d2"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("640 a:e5\n") && !text.contains("opened") && text.contains("not permitted"), "{text}");
    // A node outside /dev, and a rule podrun does not take, are refused by their paths.
    let b = t.bundle("d3", "true", |s| {
        s["linux"]["devices"] = serde_json::json!([{"path": "/etc/x", "type": "c", "major": 1, "minor": 3}])
    });
    assert!(t.fails(&["create", "--bundle", b.to_str().unwrap(), "d3"]).contains("linux.devices[0].path"));
    let b = t.bundle("d4", "true", |s| {
        s["linux"]["resources"]["devices"] =
            serde_json::json!([{"allow": false, "type": "c", "major": 1, "minor": 3, "access": "rwm"}])
    });
    assert!(t.fails(&["create", "--bundle", b.to_str().unwrap(), "d4"]).contains("linux.resources.devices[0]"));
    for id in ["d1", "d2", "d3", "d4"] {
        t.assert_gone(id);
    }
}
