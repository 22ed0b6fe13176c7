//! The security suite: real attacks from inside default containers, each of which must
//! fail, with the failure asserted (the errno, the unchanged host), not just "it did not
//! crash". The same attacks from user-namespace containers are in userns.rs (and the
//! symlinked mount targets below).

mod common;

use common::{need_root, TestRoot};

/// A root with busybox and the python image (Debian's python3 with ctypes, for raw
/// system calls).
fn root() -> TestRoot {
    let t = TestRoot::with_busybox();
    t.import(&common::python_oci(), &[]);
    t
}

/// A python program that makes each system call in `calls` (name, number, arguments) and
/// prints "name ERRNO" (or "name ok") per line. A clone that succeeds ends its child at once.
fn syscall_script(calls: &[(&str, libc::c_long, &[i64])]) -> String {
    let mut s = String::from(
        "import ctypes, errno, os\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         libc.syscall.restype = ctypes.c_long\n\
         def call(name, nr, *args):\n\
         \x20   ctypes.set_errno(0)\n\
         \x20   r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])\n\
         \x20   if r == 0 and name == 'clone':\n\
         \x20       os._exit(0)\n\
         \x20   if r > 0 and name == 'clone':\n\
         \x20       os.waitpid(r, 0)\n\
         \x20   print(name, errno.errorcode.get(ctypes.get_errno(), 'ok') if r == -1 else 'ok', flush=True)\n",
    );
    for (name, nr, args) in calls {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        s.push_str(&format!("call({name:?}, {nr}, {})\n", args.join(", ")));
    }
    s
}

fn results(out: &str) -> std::collections::HashMap<String, String> {
    out.lines().filter_map(|l| l.split_once(' ')).map(|(a, b)| (a.to_owned(), b.to_owned())).collect()
}

/// Writes an OCI linux.seccomp profile into the test's directory; returns the
/// `--security-opt` value that names it.
fn profile(t: &TestRoot, name: &str, json: &str) -> String {
    let path = t.path().join(name);
    std::fs::write(&path, json).unwrap();
    format!("seccomp={}", path.display())
}

const CLONE_NEWUSER: i64 = 0x1000_0000;

#[test]
fn a_default_container_has_dockers_capabilities_no_new_privs_and_a_seccomp_filter() {
    if !need_root("a_default_container_has_dockers_capabilities_no_new_privs_and_a_seccomp_filter") {
        return;
    }
    let t = TestRoot::with_busybox();
    let status = |extra: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(extra);
        a.extend(["busybox", "grep", "-E", "^(CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):", "/proc/self/status"]);
        results(&t.ok(a).replace(":\t", " "))
    };
    let s = status(&[]);
    // Docker's 14: chown dac_override fowner fsetid kill setgid setuid setpcap
    // net_bind_service net_raw sys_chroot mknod audit_write setfcap.
    assert_eq!(s["CapEff"], "00000000a80425fb", "{s:?}");
    assert_eq!(s["CapBnd"], "00000000a80425fb");
    assert_eq!(s["CapAmb"], "0000000000000000");
    assert_eq!(s["NoNewPrivs"], "1");
    assert_eq!(s["Seccomp"], "2", "filter mode");
    // seccomp=unconfined lifts the profile; without the view's sysinfo rule no filter is left.
    assert_eq!(status(&["--security-opt", "seccomp=unconfined", "--procview", "off"])["Seccomp"], "0");
    // Bad options: a clear error, exit 125, nothing left.
    let err = t.fails(["run", "--rm", "--security-opt", "apparmor=x", "busybox", "true"]);
    assert!(err.contains("seccomp=unconfined"), "{err}");
    let err = t.fails(["run", "--rm", "--security-opt", "seccomp=/no/such/profile.json", "busybox", "true"]);
    assert!(err.contains("/no/such/profile.json"), "{err}");
    let bad = profile(
        &t,
        "bad.json",
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
    );
    let err = t.fails(["run", "--rm", "--security-opt", &bad, "busybox", "true"]);
    assert!(err.contains("argument index 9"), "{err}");
    t.assert_clean(&[]);
}

#[test]
fn the_default_seccomp_profile_refuses_what_dockers_refuses() {
    if !need_root("the_default_seccomp_profile_refuses_what_dockers_refuses") {
        return;
    }
    let t = root();
    let eperm: &[(&str, libc::c_long, &[i64])] = &[
        ("keyctl", libc::SYS_keyctl, &[0, -2, 0]),
        ("add_key", libc::SYS_add_key, &[0, 0, 0, 0, 0]),
        ("request_key", libc::SYS_request_key, &[0, 0, 0, 0]),
        ("bpf", libc::SYS_bpf, &[0, 0, 0]),
        ("perf_event_open", libc::SYS_perf_event_open, &[0, 0, -1, -1, 0]),
        ("kexec_load", libc::SYS_kexec_load, &[0, 0, 0, 0]),
        ("kexec_file_load", libc::SYS_kexec_file_load, &[-1, -1, 0, 0, 0]),
        ("open_by_handle_at", libc::SYS_open_by_handle_at, &[-1, 0, 0]),
        ("name_to_handle_at", libc::SYS_name_to_handle_at, &[-100, 0, 0, 0, 0]),
        ("init_module", libc::SYS_init_module, &[0, 0, 0]),
        ("finit_module", libc::SYS_finit_module, &[-1, 0, 0]),
        ("delete_module", libc::SYS_delete_module, &[0, 0]),
        ("mount", libc::SYS_mount, &[0, 0, 0, 0, 0]),
        ("umount2", libc::SYS_umount2, &[0, 0]),
        ("pivot_root", libc::SYS_pivot_root, &[0, 0]),
        ("unshare", libc::SYS_unshare, &[CLONE_NEWUSER]),
        ("setns", libc::SYS_setns, &[-1, 0]),
        ("clone", libc::SYS_clone, &[CLONE_NEWUSER | libc::SIGCHLD as i64, 0, 0, 0, 0]),
        ("clock_settime", libc::SYS_clock_settime, &[0, 0]),
        ("settimeofday", libc::SYS_settimeofday, &[0, 0]),
        ("swapon", libc::SYS_swapon, &[0, 0]),
        ("reboot", libc::SYS_reboot, &[0, 0, 0, 0]),
        ("userfaultfd", libc::SYS_userfaultfd, &[0]),
        ("personality", libc::SYS_personality, &[0x0040_0000]),
    ];
    let mut calls = eperm.to_vec();
    calls.push(("clone3", libc::SYS_clone3, &[0, 0]));
    calls.push(("socket", libc::SYS_socket, &[40, 1, 0]));
    calls.push(("getpid", libc::SYS_getpid, &[]));
    let script = syscall_script(&calls);
    let r = results(&t.ok(["run", "--rm", "python", "python3", "-c", &script]));
    for (name, _, _) in eperm {
        assert_eq!(r.get(*name).map(String::as_str), Some("EPERM"), "{name}: {r:?}");
    }
    assert_eq!(r["clone3"], "ENOSYS", "clone3: glibc falls back to clone, whose flags the filter sees");
    assert_eq!(r["socket"], "EAFNOSUPPORT", "AF_VSOCK");
    assert_eq!(r["getpid"], "ok");
    // Ordinary work is not refused: threads (clone), fork, and a fork without namespaces.
    let ok = t.ok([
        "run",
        "--rm",
        "python",
        "python3",
        "-c",
        "import threading, os, subprocess; t = threading.Thread(target=print, args=('thread',)); t.start(); t.join(); \
         print(subprocess.run(['echo', 'child'], capture_output=True, text=True).stdout.strip())",
    ]);
    assert_eq!(ok, "thread\nchild\n");
    // unconfined: the same calls reach the kernel (new namespaces and clone3 work).
    let lifted = syscall_script(&[
        // clone first: once in a new user namespace without a uid_map, a nested one is refused.
        ("clone", libc::SYS_clone, &[CLONE_NEWUSER | libc::SIGCHLD as i64, 0, 0, 0, 0]),
        ("unshare", libc::SYS_unshare, &[CLONE_NEWUSER]),
        ("clone3", libc::SYS_clone3, &[0, 0]),
        ("personality", libc::SYS_personality, &[0xffff_ffff]),
    ]);
    let r = results(&t.ok(["run", "--rm", "--security-opt", "seccomp=unconfined", "python", "python3", "-c", &lifted]));
    assert_eq!(r["unshare"], "ok", "{r:?}");
    assert_eq!(r["clone"], "ok", "{r:?}");
    assert_ne!(r["clone3"], "ENOSYS", "{r:?}");
    // A user's profile replaces the default one.
    let opt = profile(
        &t,
        "profile.json",
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    );
    let mine = syscall_script(&[("getpid", libc::SYS_getpid, &[]), ("unshare", libc::SYS_unshare, &[CLONE_NEWUSER])]);
    let r = results(&t.ok(["run", "--rm", "--security-opt", &opt, "python", "python3", "-c", &mine]));
    assert_eq!((r["getpid"].as_str(), r["unshare"].as_str()), ("EACCES", "ok"), "{r:?}");
    // A profile that wants its own notification listener cannot share the view's.
    let notify = profile(
        &t,
        "notify.json",
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock", "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_NOTIFY"}]}"#,
    );
    let err = t.fails(["run", "--rm", "--security-opt", &notify, "busybox", "true"]);
    assert!(err.contains("--procview=files"), "{err}");
    t.assert_clean(&[]);
}

#[test]
fn mounts_hostname_time_modules_and_device_nodes_are_refused_and_the_host_is_unchanged() {
    if !need_root("mounts_hostname_time_modules_and_device_nodes_are_refused_and_the_host_is_unchanged") {
        return;
    }
    let t = TestRoot::with_busybox();
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let script = "h=$(hostname); mount -t tmpfs none /mnt 2>/dev/null; echo mount=$?; \
                  hostname evil 2>/dev/null; echo hostname=$?; \
                  echo evil > /proc/sys/kernel/hostname 2>/dev/null; echo sysctl=$?; \
                  date -s 2001-01-01 >/dev/null 2>&1; [ $(date +%Y) -gt 2001 ]; echo date=$?; \
                  insmod /dev/null 2>/dev/null; echo insmod=$?; \
                  echo b > /proc/sysrq-trigger 2>/dev/null; echo sysrq=$?; \
                  mknod /tmp/fuse c 10 229 && echo mknod=0; \
                  head -c1 /tmp/fuse 2>&1 | grep -c 'not permitted'; \
                  mknod /tmp/loop b 7 0 && head -c1 /tmp/loop 2>&1 | grep -c 'not permitted'; \
                  mknod /tmp/null c 1 3 && echo ok > /tmp/null && echo null=0; \
                  echo ok > /dev/null && echo devnull=0; [ \"$(hostname)\" = \"$h\" ]; echo same=$?";
    let out = t.ok(["run", "--rm", "busybox", "sh", "-c", script]);
    let want = "mount=1\nhostname=1\nsysctl=1\ndate=0\ninsmod=1\nsysrq=1\nmknod=0\n1\n1\nnull=0\ndevnull=0\nsame=0\n";
    // Each line is a failure (date's: the year did not change), except the last ones:
    // a node of an allowed device works, a node of any other device opens with EPERM.
    assert_eq!(out, want);
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), host_name, "the host's hostname");
    // --device lets one more in, with the permissions given, also in a pod (whose own
    // cgroup does not narrow its containers' lists).
    t.ok(["sandbox", "create", "pod"]);
    let out = t.ok([
        "run",
        "--rm",
        "--join",
        "pod",
        "--device",
        "/dev/fuse:/dev/f:r",
        "busybox",
        "sh",
        "-c",
        "(exec 3</dev/f) && echo read=0; (exec 3>/dev/f) 2>&1 | grep -c 'not permitted'",
    ]);
    assert_eq!(out, "read=0\n1\n");
    let err = t.fails(["run", "--rm", "--device", "/etc/hostname", "busybox", "true"]);
    assert!(err.contains("character or block device"), "{err}");
    t.ok(["sandbox", "rm", "-f", "pod"]);
    t.assert_clean(&[]);
}

#[test]
fn host_files_stay_out_of_reach_through_proc_and_open_descriptors() {
    if !need_root("host_files_stay_out_of_reach_through_proc_and_open_descriptors") {
        return;
    }
    let t = root();
    let marker = t.path().join("host-secret");
    std::fs::write(&marker, "secret\n").unwrap();
    let m = marker.display().to_string();
    // A container of its own: /proc/1 is its own init; no path reaches the host's files.
    let script = format!(
        "cat /proc/1/root{m} 2>/dev/null; echo root=$?; cat /proc/self/root{m} 2>/dev/null; echo self=$?; \
         readlink /proc/self/cwd; readlink /proc/1/cwd; ls /proc/self/fd | tr '\\n' ' '; echo; \
         cat /proc/kcore 2>/dev/null | wc -c; cat /proc/keys | wc -c; cat /proc/timer_list | wc -c; ls /proc/acpi | wc -l"
    );
    let out = t.ok(["run", "--rm", "busybox", "sh", "-c", &script]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "root=1", "{out}");
    assert_eq!(lines[1], "self=1", "{out}");
    // No host directory is the cwd at exec (CVE-2024-21626) and no descriptor of podrun's
    // is left open: only stdin, stdout, stderr (and ls's own directory).
    assert_eq!(&lines[2..4], ["/", "/"], "{out}");
    assert_eq!(lines[4].split_whitespace().collect::<Vec<_>>(), ["0", "1", "2", "3"], "{out}");
    // Masked: empty (kcore, where the kernel has it).
    assert_eq!(lines.get(5..9), Some(&["0", "0", "0", "0"][..]), "{out}");
    // In a --share-pid sandbox /proc/1 is pause: its root, memory and descriptors are closed
    // to the containers (it is not dumpable, and ptrace is refused).
    t.ok(["sandbox", "create", "--share-pid", "pod"]);
    let script = format!(
        "ls /proc/1/root/ >/dev/null 2>&1; echo root=$?; cat /proc/1/root{m} 2>/dev/null; echo secret=$?; \
         echo fd=$(for f in /proc/1/fd/*; do readlink $f 2>/dev/null; done | wc -l); readlink /proc/1/exe >/dev/null; echo exe=$?; \
         cat /proc/1/environ >/dev/null 2>&1; echo environ=$?"
    );
    let out = t.ok(["run", "--rm", "--join", "pod", "busybox", "sh", "-c", &script]);
    // (Its descriptors' numbers can be listed, as root owns the directory; where they lead
    // cannot be read.)
    assert_eq!(out, "root=1\nsecret=1\nfd=0\nexe=1\nenviron=1\n");
    let trace = syscall_script(&[("ptrace", libc::SYS_ptrace, &[16 /* PTRACE_ATTACH */, 1, 0, 0])]);
    let r = results(&t.ok(["run", "--rm", "--join", "pod", "python", "python3", "-c", &trace]));
    assert_eq!(r["ptrace"], "EPERM", "ptrace of pause");
    t.ok(["sandbox", "rm", "-f", "pod"]);
    t.assert_clean(&[]);
}

#[test]
fn the_binary_podrun_runs_in_a_container_cannot_be_overwritten() {
    if !need_root("the_binary_podrun_runs_in_a_container_cannot_be_overwritten") {
        return;
    }
    // CVE-2019-5736: a container whose command is /proc/self/exe gets, at exec, whatever
    // binary podrun's last stage runs; runc's was runc itself, which the container could
    // then reopen for writing. podrun's last stage runs a sealed in-memory copy of pause.
    let t = TestRoot::with_busybox();
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_podrun"));
    let before = std::fs::read(exe).unwrap();
    t.ok(["run", "-d", "--name", "self", "busybox", "/proc/self/exe"]);
    let pids = t.known_pids();
    let out = t.ok([
        "exec",
        "self",
        "sh",
        "-c",
        "{ echo x > /proc/1/exe; } 2>/dev/null; echo write=$?; readlink /proc/1/exe >/dev/null 2>&1; echo link=$?; \
         (exec 3</proc/1/exe) 2>/dev/null; echo open=$?",
    ]);
    assert_eq!(out, "write=1\nlink=1\nopen=1\n", "pause is not dumpable: its exe cannot be reached");
    // `inspect` shows what the container may open, as the OCI spec says it.
    let v: serde_json::Value = serde_json::from_str(&t.ok(["inspect", "self"])).unwrap();
    let devices = &v.get("spec").unwrap_or(&v)["linux"]["resources"]["devices"];
    assert_eq!(devices[0], serde_json::json!({"allow": false, "access": "rwm"}), "deny all first: {devices}");
    assert!(devices
        .as_array()
        .unwrap()
        .contains(&serde_json::json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"})));
    // An exec'd process is held like the container's first: same profile, same devices.
    let out = t.ok([
        "exec",
        "self",
        "sh",
        "-c",
        "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; unshare -U true 2>/dev/null; echo unshare=$?; \
         mknod /tmp/f c 10 229; (exec 3</tmp/f) 2>/dev/null; echo open=$?",
    ]);
    assert_eq!(out, "CapEff:\t00000000a80425fb\nNoNewPrivs:\t1\nSeccomp:\t2\nunshare=1\nopen=1\n");
    // A container looking at each new process while execs come and go never reaches an
    // executable outside it: at most the sealed copy of pause that runs podrun's last
    // stage, which cannot be written.
    let watch = common::WATCH_EXES;
    t.ok(["run", "-d", "--name", "watch", "busybox", "sh", "-c", watch]);
    for _ in 0..20 {
        t.ok(["exec", "watch", "true"]);
    }
    t.ok(["exec", "watch", common::STOP_WATCHING[0], common::STOP_WATCHING[1]]);
    common::eventually(10, "watcher never finished", || t.ok(["logs", "watch"]).contains("done"));
    let logs = t.ok(["logs", "watch"]);
    assert!(!logs.contains("LEAK"), "{logs}");
    assert_eq!(std::fs::read(exe).unwrap(), before, "podrun's binary is unchanged");
    t.ok(["rm", "-f", "self", "watch"]);
    t.assert_clean(&pids);
}

#[test]
fn mount_targets_that_are_symlinks_out_of_the_rootfs_are_refused_and_nothing_lands_on_the_host() {
    if !need_root("mount_targets_that_are_symlinks_out_of_the_rootfs_are_refused_and_nothing_lands_on_the_host") {
        return;
    }
    let t = TestRoot::with_busybox();
    // An image like busybox, but whose /proc, /sys or /dev/shm points at the host's /, /tmp
    // or /etc, and with a /data/link to /etc for a -v target: a runtime that followed them
    // would mount proc, sysfs or a tmpfs over the host's directories.
    let rootfs = common::fixtures().join("busybox/busybox-rootfs.tar.gz");
    let image = |name: &str, links: &[(&str, &str)]| {
        let dir = t.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        let st = std::process::Command::new("tar").arg("xzf").arg(&rootfs).arg("-C").arg(&dir).status().unwrap();
        assert!(st.success());
        std::fs::create_dir_all(dir.join("data")).unwrap();
        for (link, to) in links {
            let at = dir.join(link);
            let _ = std::fs::remove_dir_all(&at);
            std::fs::create_dir_all(at.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(to, &at).unwrap();
        }
        let tarball = t.path().join(format!("{name}.tar.gz"));
        let st =
            std::process::Command::new("tar").arg("czf").arg(&tarball).arg("-C").arg(&dir).arg(".").status().unwrap();
        assert!(st.success());
        t.import(&tarball, &["--name", name]);
    };
    // The mounts on the links' targets (other tests run beside this one, so not all mounts).
    let mounts = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| ["/", "/tmp", "/etc"].contains(&l.split(' ').nth(4).unwrap_or_default()))
            .count()
    };
    let before = mounts();
    for (name, link, to) in [("p", "proc", "/"), ("s", "sys", "/tmp"), ("d", "dev", "/etc")] {
        image(name, &[(link, to)]);
        let err = t.fails(["run", "--rm", name, "true"]);
        assert!(err.contains("is a symlink"), "{name}: {err}");
        // The same in a user namespace, where the mounts are made by its root.
        let err = t.fails(["run", "--rm", "--userns=auto", name, "true"]);
        assert!(err.contains("is a symlink"), "{name} (userns): {err}");
    }
    // The image's /dev/shm is hidden by the container's own /dev (a tmpfs), where /dev/shm
    // is a fresh directory: the link is never followed, and the container runs.
    image("m", &[("dev/shm", "/etc")]);
    let out = t.ok(["run", "--rm", "m", "sh", "-c", "stat -c %F /dev/shm; grep -c ' /dev/shm ' /proc/self/mountinfo"]);
    assert_eq!(out, "directory\n1\n");
    image("v", &[("data/link", "/etc")]);
    let src = t.path().join("vol");
    std::fs::create_dir(&src).unwrap();
    for target in ["/data/link", "/data/link/below"] {
        let err = t.fails(["run", "--rm", "-v", &format!("{}:{target}", src.display()), "v", "true"]);
        assert!(err.contains("/data/link is a symlink"), "{target}: {err}");
        let err = t.fails(["run", "--rm", "--userns=auto", "-v", &format!("{}:{target}", src.display()), "v", "true"]);
        assert!(err.contains("/data/link is a symlink"), "{target} (userns): {err}");
    }
    assert_eq!(mounts(), before, "nothing was mounted on /, /tmp or /etc");
    let table = std::fs::read_to_string(t.store().join("userns/table.json")).unwrap();
    assert_eq!(table.trim(), "[]", "the failed user-namespace starts gave their ranges back");
    assert!(std::fs::read_dir("/etc").unwrap().count() > 5, "the host's /etc is still itself");
    t.assert_clean(&[]);
}
