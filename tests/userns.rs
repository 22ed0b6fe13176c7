//! User namespaces (issue 7): pods and lone containers whose root is an unprivileged host
//! uid from podrun's pool, on idmapped (never chowned) layers and volumes; and the
//! security suite's attacks again from inside such a container.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{need_root, TestRoot};

/// A root with busybox and a pool of its own: `uid_slots` and `gid_slots` ranges of 65536
/// (podrun lines of a subuid and subgid file in the test's directory).
struct Pool {
    t: TestRoot,
}

impl Pool {
    fn new(uid: u32, uid_slots: u32, gid: u32, gid_slots: u32) -> Pool {
        let t = TestRoot::with_busybox();
        std::fs::write(t.path().join("subuid"), format!("someone:100000:65536\npodrun:{uid}:{}\n", uid_slots * 65536))
            .unwrap();
        std::fs::write(t.path().join("subgid"), format!("podrun:{gid}:{}\n", gid_slots * 65536)).unwrap();
        Pool { t }
    }

    fn args(&self, args: &[&str]) -> Vec<String> {
        let mut v = vec![
            "--subuid".to_owned(),
            self.t.path().join("subuid").display().to_string(),
            "--subgid".to_owned(),
            self.t.path().join("subgid").display().to_string(),
        ];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    fn ok(&self, args: &[&str]) -> String {
        self.t.ok(self.args(args))
    }

    fn fails(&self, args: &[&str]) -> String {
        self.t.fails(self.args(args))
    }

    fn table(&self) -> String {
        std::fs::read_to_string(self.t.store().join("userns/table.json")).unwrap_or_default()
    }
}

/// A process's host uid and gid (from the host's /proc).
fn host_ids(pid: i32) -> (u32, u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| {
        let l = status.lines().find(|l| l.starts_with(k)).unwrap();
        l.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("Uid:"), field("Gid:"))
}

fn inspect(p: &Pool, name: &str) -> serde_json::Value {
    serde_json::from_str(&p.ok(&["sandbox", "inspect", "--format", "json", name])).unwrap()
}

/// The pid of a container's init, from `ps --format json`.
fn init_pid(t: &TestRoot, id: &str) -> i32 {
    let v: serde_json::Value = serde_json::from_str(&t.ok(["inspect", id])).unwrap();
    let state = v.get("state").unwrap_or(&v);
    state["init"]["pid"].as_i64().unwrap_or_else(|| panic!("no init pid in {v}")) as i32
}

#[test]
fn userns_pods_get_separate_ranges_from_the_pool_and_their_containers_share_one() {
    if !need_root("userns_pods_get_separate_ranges_from_the_pool_and_their_containers_share_one") {
        return;
    }
    // Three uid slots, two gid slots: the third auto pod finds no gids.
    let (u, g) = (3_000_000_000, 3_100_000_000);
    let p = Pool::new(u, 3, g, 2);
    let pids = p.t.known_pids();
    p.ok(&["sandbox", "create", "--userns=auto", "a"]);
    p.ok(&["sandbox", "create", "--userns", "auto", "b"]);
    let maps = |n: &str| {
        let v = inspect(&p, n);
        (v["userns"]["uid"][0]["host"].as_u64().unwrap(), v["userns"]["gid"][0]["host"].as_u64().unwrap())
    };
    assert_eq!(maps("a"), (u as u64, g as u64));
    assert_eq!(maps("b"), (u as u64 + 65536, g as u64 + 65536), "b's range follows a's, with no overlap");
    let table = p.ok(&["sandbox", "inspect", "a"]);
    assert!(table.contains(&format!("uid map 0:{u}:65536, gid map 0:{g}:65536")), "{table}");
    assert!(table.contains("shares ipc, net, uts, user"), "{table}");

    // Pause and the workload run as the pod's host ids; inside, they are root.
    let pause = inspect(&p, "a")["pause"]["pid"].as_i64().unwrap() as i32;
    assert_eq!(host_ids(pause), (u, g));
    p.ok(&["run", "-d", "--join", "a", "--name", "w1", "busybox", "sleep", "600"]);
    p.ok(&["run", "-d", "--join", "a", "--name", "w2", "busybox", "sleep", "600"]);
    p.ok(&["run", "-d", "--join", "b", "--name", "w3", "busybox", "sleep", "600"]);
    let (w1, w2, w3) = (init_pid(&p.t, "w1"), init_pid(&p.t, "w2"), init_pid(&p.t, "w3"));
    assert_eq!(host_ids(w1), (u, g), "the workload's host uid is the pod's");
    assert_eq!(host_ids(w3), (u + 65536, g + 65536));
    let userns = |pid: i32| std::fs::metadata(format!("/proc/{pid}/ns/user")).unwrap().ino();
    assert_eq!(userns(w1), userns(pause), "a container has its pod's user namespace");
    assert_eq!(userns(w2), userns(pause));
    assert_ne!(userns(w3), userns(pause), "two pods never share one");
    assert_ne!(userns(w1), userns(std::process::id() as i32));
    let out = p.ok(&["exec", "w1", "sh", "-c", "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; hostname"]);
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words, ["0", "0", "0", &u.to_string(), "65536", "0", &g.to_string(), "65536", "a"], "{out}");

    // The pool is spent (gids): a clear error, and nothing is left of the attempt.
    let before = p.table();
    let err = p.fails(&["sandbox", "create", "--userns=auto", "c"]);
    assert!(err.contains("no free id range") && err.contains("/etc/subuid"), "{err}");
    assert_eq!(p.table(), before);
    assert!(!p.t.store().join("sandboxes/c").exists());
    // An explicit map may not take a pod's ids; bad maps and modes are refused.
    let err = p.fails(&["sandbox", "create", "--uidmap", &format!("0:{}:10", u + 65536 + 5), "d"]);
    assert!(err.contains("in use by sandbox/b"), "{err}");
    for (bad, says) in [
        (&["--userns=private"][..], "use auto or host"),
        (&["--uidmap", "0:1"], "CONTAINER:HOST:SIZE"),
        (&["--uidmap", "1:400000:10"], "does not map container uid 0"),
        (&["--userns=auto", "--uidmap", "0:400000:10"], "cannot be combined"),
    ] {
        let mut a = vec!["sandbox", "create"];
        a.extend(bad);
        a.push("e");
        let err = p.fails(&a);
        assert!(err.contains(says), "{bad:?}: {err}");
    }
    let err = p.fails(&["run", "--rm", "--join", "a", "--userns=auto", "busybox", "true"]);
    assert!(err.contains("sandbox's user namespace"), "{err}");
    assert_eq!(p.table(), before, "refused requests record nothing");

    // Removal returns the range: the next pod gets a's.
    p.ok(&["sandbox", "rm", "-f", "a"]);
    p.ok(&["sandbox", "create", "--userns=auto", "c"]);
    assert_eq!(maps("c"), (u as u64, g as u64));
    // A lone container takes a slot of its own, and gives it back when it ends.
    p.ok(&["sandbox", "rm", "-f", "c"]);
    let out = p.ok(&["run", "--rm", "--userns=auto", "busybox", "sh", "-c", "cat /proc/self/uid_map; hostname"]);
    assert_eq!(out.split_whitespace().take(3).collect::<Vec<_>>(), ["0", &u.to_string(), "65536"], "{out}");
    let explicit =
        p.ok(&["run", "--rm", "--uidmap", "0:3200000000:1000", "--gidmap", "0:3300000000:1000", "busybox", "id"]);
    assert_eq!(explicit, "uid=0(root) gid=0(root)\n");
    // (a's containers went with it; b's go with b.)
    p.ok(&["sandbox", "rm", "-f", "b"]);
    assert_eq!(p.table().split_whitespace().collect::<String>(), "[]", "every range returned");
    p.t.assert_clean(&pids);
}

/// ctime of every file under `dir` (a chown would change it).
fn ctimes(dir: &std::path::Path) -> Vec<(std::path::PathBuf, i64, u32)> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.path().symlink_metadata().unwrap();
            v.push((e.path(), m.ctime_nsec() + m.ctime() * 1_000_000_000, m.uid()));
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    v.sort();
    v
}

#[test]
fn layers_are_idmapped_never_chowned_and_volumes_are_idmapped_unless_noidmap() {
    if !need_root("layers_are_idmapped_never_chowned_and_volumes_are_idmapped_unless_noidmap") {
        return;
    }
    let (u, g) = (3_400_000_000, 3_500_000_000);
    let p = Pool::new(u, 2, g, 2);
    let layers = p.t.store().join("layers");
    let before = ctimes(&layers);
    assert!(before.iter().all(|(_, _, uid)| *uid == 0), "the layers are the host root's");
    p.ok(&["sandbox", "create", "--userns=auto", "pod"]);
    // The image's files are root's inside (idmapped), and the container may change them
    // (copied up into its own upper dir).
    let out = p.ok(&[
        "run",
        "-d",
        "--join",
        "pod",
        "--name",
        "c",
        "busybox",
        "sh",
        "-c",
        "stat -c '%u %g' /bin/busybox /etc/passwd; echo x >> /etc/passwd && echo changed; \
         touch /made && stat -c '%u' /made; sleep 600",
    ]);
    assert_eq!(out.trim(), "c");
    // All four lines (one wait for "changed" alone raced the last `stat`).
    common::eventually(10, "the container did not write", || p.t.ok(["logs", "c"]).lines().count() >= 4);
    assert_eq!(p.t.ok(["logs", "c"]), "0 0\n0 0\nchanged\n0\n");
    // A default container of the same image, beside it, on the same layers.
    let out = p.ok(&["run", "--rm", "busybox", "sh", "-c", "stat -c '%u' /etc/passwd; grep -c x$ /etc/passwd; true"]);
    assert_eq!(out, "0\n0\n", "the other container's change is its own");
    // On the host, what the container made is owned by the pod's ids; the layers are as
    // they were: not one file's owner or ctime changed.
    let upper = p.t.store().join("containers/c/upper");
    let m = std::fs::metadata(upper.join("made")).unwrap();
    assert_eq!((m.uid(), m.gid()), (u, g));
    assert_eq!(ctimes(&layers), before, "no layer file was chowned or touched");

    // Volumes: idmapped by default (host root's file is the container root's, and what it
    // makes is host root's); :noidmap shows host owners as they are (nobody), and a root-
    // owned file stays unwritable; :ro is read-only either way.
    let vol = p.t.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("root-file"), "host\n").unwrap();
    std::fs::write(vol.join("user-file"), "host\n").unwrap();
    std::os::unix::fs::chown(vol.join("user-file"), Some(1000), Some(1000)).unwrap();
    let v = vol.display().to_string();
    let script = "stat -c '%n %u' /v/root-file /v/user-file /n/root-file; \
                  echo c >> /v/root-file && echo idmapped=0; touch /v/new; \
                  { echo c >> /n/root-file; } 2>/dev/null; echo noidmap=$?; \
                  { echo c >> /r/root-file; } 2>/dev/null; echo ro=$?";
    let out = p.ok(&[
        "run",
        "--rm",
        "--join",
        "pod",
        "-v",
        &format!("{v}:/v"),
        "-v",
        &format!("{v}:/n:noidmap"),
        "-v",
        &format!("{v}:/r:ro"),
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(out, "/v/root-file 0\n/v/user-file 1000\n/n/root-file 65534\nidmapped=0\nnoidmap=1\nro=1\n");
    assert_eq!(std::fs::read_to_string(vol.join("root-file")).unwrap(), "host\nc\n", "only the idmapped write");
    let m = std::fs::metadata(vol.join("new")).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0), "a file the container's root makes in an idmapped volume is host root's");
    let pids = p.t.known_pids();
    p.ok(&["rm", "-f", "c"]);
    p.ok(&["sandbox", "rm", "-f", "pod"]);
    p.t.assert_clean(&pids);
}

#[test]
fn a_userns_pod_has_limits_the_resource_view_shm_exec_and_a_shared_pid_namespace() {
    if !need_root("a_userns_pod_has_limits_the_resource_view_shm_exec_and_a_shared_pid_namespace") {
        return;
    }
    let p = Pool::new(3_600_000_000, 2, 3_700_000_000, 2);
    p.ok(&["sandbox", "create", "--userns=auto", "--share-pid", "-m", "96m", "pod"]);
    p.ok(&[
        "run",
        "-d",
        "--join",
        "pod",
        "--name",
        "a",
        "--cpus",
        "1",
        "busybox",
        "sh",
        "-c",
        "echo hi > /dev/shm/x; sleep 600",
    ]);
    common::eventually(10, "a did not write /dev/shm", || p.ok(&["exec", "a", "cat", "/dev/shm/x"]) == "hi\n");
    let out = p.ok(&[
        "run",
        "--rm",
        "--join",
        "pod",
        "-m",
        "64m",
        "--cpus",
        "1",
        "busybox",
        "sh",
        "-c",
        "cat /dev/shm/x; stat -c '%u %a' /dev/shm; ps -o comm | sed -n 2p; free -m | awk '/Mem/ {print $2}'; nproc; \
         ls /sys/fs/cgroup >/dev/null && echo cgroupfs; echo ok > /dev/null && echo devnull",
    ]);
    assert_eq!(out, "hi\n0 1777\npodrun-pause\n64\n1\ncgroupfs\ndevnull\n", "shm shared, pause is PID 1, limits shown");
    // The pod's limit binds: a hog in it is OOM-killed (the kernel's cgroup, not the view).
    let o =
        p.t.podrun(p.args(&["run", "--rm", "--join", "pod", "busybox", "sh", "-c", "head -c 200m /dev/zero | tail"]));
    assert_eq!(o.status.code(), Some(137), "{}", String::from_utf8_lossy(&o.stderr));
    let pids = p.t.known_pids();
    p.ok(&["rm", "-f", "a"]);
    p.ok(&["sandbox", "rm", "-f", "pod"]);
    p.t.assert_clean(&pids);
}

#[test]
fn attacks_from_a_userns_container_fail_and_its_capabilities_stay_inside() {
    if !need_root("attacks_from_a_userns_container_fail_and_its_capabilities_stay_inside") {
        return;
    }
    let p = Pool::new(3_800_000_000, 2, 3_900_000_000, 2);
    p.ok(&["sandbox", "create", "--userns=auto", "--share-pid", "pod"]);
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let secret = p.t.path().join("host-secret");
    std::fs::write(&secret, "secret\n").unwrap();
    let s = secret.display().to_string();
    // The same profile, capabilities and no_new_privs as a default container.
    let out = p.ok(&[
        "run",
        "--rm",
        "--join",
        "pod",
        "busybox",
        "grep",
        "-E",
        "^(CapEff|NoNewPrivs|Seccomp):",
        "/proc/self/status",
    ]);
    assert_eq!(out, "CapEff:\t00000000a80425fb\nNoNewPrivs:\t1\nSeccomp:\t2\n");
    let script = format!(
        "mount -t tmpfs none /mnt 2>/dev/null; echo mount=$?; hostname evil 2>/dev/null; echo hostname=$?; \
         echo evil > /proc/sys/kernel/hostname 2>/dev/null; echo sysctl=$?; insmod /dev/null 2>/dev/null; echo insmod=$?; \
         echo b > /proc/sysrq-trigger 2>/dev/null; echo sysrq=$?; mknod /tmp/fuse c 10 229 2>/dev/null; echo mknod=$?; \
         unshare -U true 2>/dev/null; echo unshare=$?; \
         cat /proc/1/root{s} 2>/dev/null; echo pause-root=$?; readlink /proc/1/exe >/dev/null 2>&1; echo pause-exe=$?; \
         cat /proc/self/root{s} 2>/dev/null; echo self-root=$?; \
         date -s 2001-01-01 >/dev/null 2>&1; [ $(date +%Y) -gt 2001 ]; echo date=$?; \
         readlink /proc/self/cwd; ls /proc/self/fd | tr '\\n' ' '; echo; \
         cat /proc/kcore 2>/dev/null | wc -c; cat /proc/keys | wc -c; cat /proc/timer_list | wc -c"
    );
    let out = p.ok(&["run", "--rm", "--join", "pod", "busybox", "sh", "-c", &script]);
    assert_eq!(
        out,
        "mount=1\nhostname=1\nsysctl=1\ninsmod=1\nsysrq=1\nmknod=1\nunshare=1\npause-root=1\npause-exe=1\nself-root=1\n\
         date=0\n/\n0 1 2 3 \n0\n0\n0\n",
        "each refused; cwd / and only stdio open at exec (CVE-2024-21626); masked files empty"
    );
    // ptrace of pause (PID 1 of the shared pid namespace): EPERM, as without a user
    // namespace, although the container's root is "root" in the namespace pause is in.
    p.t.import(&common::python_oci(), &[]);
    let trace = "import ctypes; libc = ctypes.CDLL(None, use_errno=True); \
                 r = libc.ptrace(16, 1, 0, 0); print(r, ctypes.get_errno())";
    let out = p.ok(&["run", "--rm", "--join", "pod", "python", "python3", "-c", trace]);
    assert_eq!(out, format!("-1 {}\n", libc::EPERM), "ptrace(PTRACE_ATTACH, pause)");
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), host_name);
    // Without seccomp, a new user namespace inside gives "root" again, but only over what
    // that namespace owns: a host root file bound in (not idmapped) stays unwritable, and
    // the pod's own hostname is out of its reach.
    let vol = p.t.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("f"), "host\n").unwrap();
    let out = p.ok(&[
        "run",
        "--rm",
        "--join",
        "pod",
        "--security-opt",
        "seccomp=unconfined",
        "-v",
        &format!("{}:/n:noidmap", vol.display()),
        "busybox",
        "sh",
        "-c",
        "unshare -U -r sh -c 'id -u; { echo x >> /n/f; } 2>/dev/null; echo write=$?; \
         hostname evil 2>/dev/null; echo hostname=$?; cat /proc/1/root/etc/hostname >/dev/null 2>&1; echo pause=$?'",
    ]);
    assert_eq!(out, "0\nwrite=1\nhostname=1\npause=1\n");
    assert_eq!(std::fs::read_to_string(vol.join("f")).unwrap(), "host\n");
    // CVE-2019-5736 in a user namespace: the container's /proc/self/exe is the sealed pause,
    // and podrun's binary is out of reach.
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_podrun"));
    let before = std::fs::read(exe).unwrap();
    p.ok(&["run", "-d", "--join", "pod", "--name", "self", "busybox", "/proc/self/exe"]);
    let out = p.ok(&[
        "exec",
        "self",
        "sh",
        "-c",
        "for p in /proc/[0-9]*; do { echo x >> $p/exe; } 2>/dev/null && echo LEAK $p; done; echo done",
    ]);
    assert_eq!(out, "done\n");
    // A watcher in the pod looking at every new process while execs come and go (where
    // runc's binary once showed): it never reaches an executable outside the container
    // but the sealed pause copy, which it cannot write.
    let watch = common::WATCH_EXES;
    p.ok(&["run", "-d", "--join", "pod", "--name", "watch", "busybox", "sh", "-c", watch]);
    for _ in 0..10 {
        p.ok(&["exec", "self", "true"]);
        p.ok(&["run", "--rm", "--join", "pod", "busybox", "true"]);
    }
    p.ok(&["exec", "watch", common::STOP_WATCHING[0], common::STOP_WATCHING[1]]);
    common::eventually(10, "the watcher never finished", || p.t.ok(["logs", "watch"]).contains("done"));
    let logs = p.t.ok(["logs", "watch"]);
    assert!(!logs.contains("LEAK"), "{logs}");
    assert_eq!(std::fs::read(exe).unwrap(), before);
    let pids = p.t.known_pids();
    p.ok(&["rm", "-f", "self", "watch"]);
    p.ok(&["sandbox", "rm", "-f", "pod"]);
    p.t.assert_clean(&pids);
}
