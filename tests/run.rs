//! `podrun run` and the container lifecycle (ps, logs, kill, rm, exec), its exit codes and
//! defaults, and every bad input: a one-line error, a non-zero exit, nothing left behind.

mod common;

use common::{need_root, TestRoot};
use std::io::Write;
use std::process::{Command, Stdio};

fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn wait_running(t: &TestRoot, name: &str) {
    common::eventually(10, &format!("{name} never ran"), || t.ok(["ps", "-q"]).lines().any(|l| l == name));
}

#[test]
fn run_exit_status_is_the_workloads_and_126_127_for_exec_failures() {
    if !need_root("run_exit_status_is_the_workloads_and_126_127_for_exec_failures") {
        return;
    }
    let t = TestRoot::with_busybox();
    assert_eq!(code(&t.podrun(["run", "--rm", "busybox", "true"])), 0);
    assert_eq!(code(&t.podrun(["run", "--rm", "busybox", "sh", "-c", "exit 7"])), 7);
    // Killed by a signal: 128 + N. (The workload is PID 1 of its pid namespace, so it is
    // killed from outside, as `docker kill` would.)
    let fg = Command::new(env!("CARGO_BIN_EXE_podrun"))
        .args(["--root".as_ref(), t.store().as_os_str()])
        .args(["run", "--rm", "--name", "fg", "busybox", "sleep", "3600"])
        .spawn()
        .unwrap();
    wait_running(&t, "fg");
    t.ok(["kill", "fg", "KILL"]);
    assert_eq!(fg.wait_with_output().unwrap().status.code(), Some(128 + 9));
    // Signals sent to podrun reach the workload.
    let mut fg = Command::new(env!("CARGO_BIN_EXE_podrun"))
        .args(["--root".as_ref(), t.store().as_os_str()])
        .args([
            "run",
            "--rm",
            "--name",
            "trap",
            "busybox",
            "sh",
            "-c",
            "trap 'exit 42' TERM; while true; do sleep 0.05; done",
        ])
        .spawn()
        .unwrap();
    wait_running(&t, "trap");
    std::thread::sleep(std::time::Duration::from_millis(200));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(fg.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(fg.wait().unwrap().code(), Some(42));
    let o = t.podrun(["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(code(&o), 127);
    assert_eq!(stderr(&o).trim(), "podrun: error: exec: \"no-such-command\": executable file not found in $PATH");
    let o = t.podrun(["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(code(&o), 126, "{}", stderr(&o));
    // The image's Cmd (sh) runs when no command is given; stdin is /dev/null, so it ends.
    assert_eq!(code(&t.podrun(["run", "--rm", "busybox"])), 0);
    let pids = t.known_pids();
    t.assert_clean(&pids);
}

#[test]
fn run_honours_env_workdir_user_stdin_and_volumes() {
    if !need_root("run_honours_env_workdir_user_stdin_and_volumes") {
        return;
    }
    let t = TestRoot::with_busybox();
    let out = t.ok([
        "run",
        "--rm",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp/work",
        "--user",
        "nobody",
        "--name",
        "who",
        "busybox",
        "sh",
        "-c",
        "echo $FOO; pwd; id -u; id -g; echo $HOSTNAME; hostname",
    ]);
    assert_eq!(out, "bar\n/tmp/work\n65534\n65534\nwho\nwho\n");

    // -i passes stdin; without it the workload reads /dev/null.
    let mut child = Command::new(env!("CARGO_BIN_EXE_podrun"))
        .args(["--root".as_ref(), t.store().as_os_str()])
        .args(["run", "--rm", "-i", "busybox", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"through stdin\n").unwrap();
    assert_eq!(child.wait_with_output().unwrap().stdout, b"through stdin\n");
    assert_eq!(t.ok(["run", "--rm", "busybox", "cat"]), "");

    // -v: read and write a host directory; :ro refuses writes.
    let host = t.path().join("vol");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("in"), "from host\n").unwrap();
    let v = format!("{}:/data", host.display());
    assert_eq!(
        t.ok(["run", "--rm", "-v", &v, "busybox", "sh", "-c", "cat /data/in; echo from-ctr > /data/out"]),
        "from host\n"
    );
    assert_eq!(std::fs::read_to_string(host.join("out")).unwrap(), "from-ctr\n");
    let ro = format!("{}:/data:ro", host.display());
    let o = t.podrun(["run", "--rm", "-v", &ro, "busybox", "sh", "-c", "echo x > /data/new"]);
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("Read-only file system"), "{}", stderr(&o));
    assert!(!host.join("new").exists());
    let pids = t.known_pids();
    t.assert_clean(&pids);
}

#[test]
fn container_defaults_are_a_careful_runtimes() {
    if !need_root("container_defaults_are_a_careful_runtimes") {
        return;
    }
    let t = TestRoot::with_busybox();
    let out = t.ok([
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; wc -c < /proc/keys; \
         echo 1 > /proc/sys/kernel/panic 2>/dev/null || echo proc-sys-ro; \
         echo b > /proc/sysrq-trigger 2>/dev/null || echo sysrq-ro; ls /sys/firmware | wc -l; \
         touch /sys/x 2>/dev/null || echo sys-ro; ls /dev | tr '\\n' ' '",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    // runc's and Docker's 14 default capabilities.
    assert_eq!(lines[0], "CapEff:\t00000000a80425fb", "{out}");
    assert_eq!(lines[1], "CapBnd:\t00000000a80425fb");
    assert_eq!(lines[2], "NoNewPrivs:\t1");
    assert_eq!(lines[3].trim(), "0", "/proc/keys is masked");
    assert_eq!(&lines[4..8], ["proc-sys-ro", "sysrq-ro", "0", "sys-ro"]);
    assert_eq!(lines[8].trim(), "fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero");
    t.assert_clean(&[]);
}

#[test]
fn detached_containers_log_and_are_killed_and_removed() {
    if !need_root("detached_containers_log_and_are_killed_and_removed") {
        return;
    }
    let t = TestRoot::with_busybox();
    assert_eq!(
        t.ok(["run", "-d", "--name", "bg", "busybox", "sh", "-c", "echo started; echo to-stderr >&2; exec sleep 3600"])
            .trim(),
        "bg"
    );
    common::eventually(10, "no log output", || t.ok(["logs", "bg"]).contains("to-stderr"));
    assert_eq!(t.ok(["logs", "bg"]), "started\nto-stderr\n");
    assert_eq!(t.ok(["ps", "-q"]).trim(), "bg");
    let pids = t.known_pids();
    // rm of a running container needs -f.
    let err = t.fails(["rm", "bg"]);
    assert!(err.contains("container bg is running; stop it first, or use -f"), "{err}");
    t.ok(["kill", "bg"]);
    common::eventually(10, "bg never showed exited(137)", || {
        let v: serde_json::Value = serde_json::from_str(&t.ok(["ps", "-a", "--format", "json"])).unwrap();
        v[0]["status"] == "exited(137)"
    });
    assert_eq!(t.ok(["ps", "-q"]), "", "ps without -a lists running containers only");
    let err = t.fails(["exec", "bg", "true"]);
    assert!(err.contains("container bg is not running"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&t.ok(["inspect", "bg"])).unwrap();
    assert_eq!(v["exit"]["code"], 137);
    assert_eq!(v["spec"]["process"]["args"][0], "sh");
    t.ok(["rm", "bg"]);
    // logs -f follows until the container ends.
    t.ok(["run", "-d", "--name", "f", "busybox", "sh", "-c", "echo one; sleep 0.5; echo two"]);
    assert_eq!(t.ok(["logs", "-f", "f"]), "one\ntwo\n");
    let pids = [pids, t.known_pids()].concat();
    t.ok(["rm", "f"]);
    t.assert_clean(&pids);
}

#[test]
fn killing_podrun_leaves_what_rm_f_removes() {
    if !need_root("killing_podrun_leaves_what_rm_f_removes") {
        return;
    }
    let t = TestRoot::with_busybox();
    let mut cli = Command::new(env!("CARGO_BIN_EXE_podrun"))
        .args(["--root".as_ref(), t.store().as_os_str()])
        .args(["run", "--name", "orphan", "busybox", "sleep", "3600"])
        .spawn()
        .unwrap();
    wait_running(&t, "orphan");
    cli.kill().unwrap(); // SIGKILL to the podrun we started, by pid
    cli.wait().unwrap();
    // The workload outlives it, and podrun reports it truthfully.
    assert_eq!(t.ok(["ps", "-q"]).trim(), "orphan");
    let pids = t.known_pids();
    t.ok(["rm", "-f", "orphan"]);
    t.assert_clean(&pids);
}

#[test]
fn bad_input_gets_one_clear_line_and_leaves_nothing() {
    if !need_root("bad_input_gets_one_clear_line_and_leaves_nothing") {
        return;
    }
    let t = TestRoot::with_busybox();
    let one_line = |args: &[&str], says: &str| {
        let err = t.fails(args);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    };
    one_line(&["run", "no-such-image", "true"], "no such image: no-such-image");
    one_line(&["run", "--join", "nope", "busybox", "true"], "no such sandbox: nope");
    for bad in ["a/b", "..", "", &"x".repeat(65), "-x"] {
        one_line(&["run", &format!("--name={bad}"), "busybox", "true"], "invalid container name");
        if !bad.starts_with('-') {
            one_line(&["sandbox", "create", bad], "invalid sandbox name");
        }
    }
    one_line(&["run", "-v", "/does/not/exist:/x", "busybox", "true"], "volume source /does/not/exist does not exist");
    one_line(&["run", "-v", "relative:/x", "busybox", "true"], "invalid volume");
    one_line(&["run", "-e", "NOVALUE", "busybox", "true"], "invalid environment variable");
    one_line(
        &["run", "--user", "nosuchuser", "busybox", "true"],
        "user \"nosuchuser\" is not in the image's /etc/passwd",
    );
    one_line(&["exec", "nothing", "true"], "no such container: nothing");
    one_line(&["kill", "nothing"], "no such container: nothing");
    one_line(&["sandbox", "rm", "nothing"], "no such sandbox: nothing");
    assert!(t.entries("containers").is_empty() && t.entries("sandboxes").is_empty());

    // Duplicates.
    t.ok(["sandbox", "create", "dup"]);
    one_line(&["sandbox", "create", "dup"], "sandbox dup already exists");
    t.ok(["run", "-d", "--join", "dup", "--name", "c", "busybox", "sleep", "3600"]);
    one_line(&["run", "--name", "c", "busybox", "true"], "the container name c is already in use");
    one_line(&["sandbox", "rm", "dup"], "sandbox dup has running containers (c)");

    // A dead sandbox: its pause killed behind podrun's back.
    let pause: serde_json::Value = serde_json::from_str(&t.ok(["sandbox", "ls", "--format", "json"])).unwrap();
    let pid = pause[0]["pause"]["pid"].as_i64().unwrap() as i32;
    let pids = t.known_pids();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    common::eventually(5, "pause survived SIGKILL", || !common::running(pid));
    one_line(&["run", "--join", "dup", "busybox", "true"], "sandbox dup is not running");
    let ls: serde_json::Value = serde_json::from_str(&t.ok(["sandbox", "ls", "--format", "json"])).unwrap();
    assert_eq!(ls[0]["status"], "notready");
    t.ok(["sandbox", "rm", "-f", "dup"]);
    t.assert_clean(&pids);

    // Not root: a clear refusal (setpriv from util-linux drops to nobody).
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_podrun"),
            "--root",
            "/nonexistent",
            "run",
            "busybox",
            "true",
        ])
        .output()
        .expect("setpriv");
    assert_eq!(code(&o), 125);
    assert!(stderr(&o).contains("podrun needs root"), "{}", stderr(&o));
}

#[test]
fn tty_gives_the_workload_a_terminal_of_its_own() {
    if !need_root("tty_gives_the_workload_a_terminal_of_its_own") {
        return;
    }
    let t = TestRoot::with_busybox();
    let podrun = format!("{} --root {}", env!("CARGO_BIN_EXE_podrun"), t.store().display());
    // script(1) gives podrun a terminal (100x30); podrun gives the container a pty of its own
    // (the container's devpts), sized like podrun's, and passes keystrokes and exit status.
    let run = |cmd: &str, input: &[u8]| {
        let mut c = Command::new("script")
            .args(["-qec", cmd, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("script(1) from util-linux");
        c.stdin.take().unwrap().write_all(input).unwrap();
        c.wait_with_output().unwrap()
    };
    let o = run(&format!("stty cols 100 rows 30; {podrun} run -it --rm --name tty busybox sh -c 'tty; stty size; ls /dev/pts; test -c /dev/console && echo console; exit 5'"), b"");
    // script(1) types a NUL when its own stdin ends; the container's terminal echoes it as ^@.
    let out = String::from_utf8_lossy(&o.stdout).replace('\r', "").replace("^@", "");
    assert_eq!(o.status.code(), Some(5), "{out}");
    assert_eq!(out, "/dev/pts/0\n30 100\n0     ptmx\nconsole\n", "ls on a terminal prints columns");
    let o = run(&format!("{podrun} run -it --rm busybox sh"), b"echo typed-$((6*7))\nexit 3\n");
    let out = String::from_utf8_lossy(&o.stdout).replace('\r', "");
    assert!(out.contains("typed-42"), "{out}");
    assert_eq!(o.status.code(), Some(3));
    // exec -t into a running container gets a pty from the same devpts.
    t.ok(["run", "-d", "--name", "bg", "busybox", "sleep", "3600"]);
    let o = run(&format!("{podrun} exec -it bg sh -c 'tty; ps -o comm | grep -c sleep; echo $TERM'"), b"");
    assert_eq!(String::from_utf8_lossy(&o.stdout).replace('\r', "").replace("^@", ""), "/dev/pts/0\n1\nxterm\n");
    // As docker: TERM=xterm with a terminal (Debian's top exits without it), none without.
    let o = run(&format!("{podrun} run -it --rm busybox sh -c 'echo $TERM'"), b"");
    assert_eq!(String::from_utf8_lossy(&o.stdout).replace('\r', "").replace("^@", ""), "xterm\n");
    assert_eq!(t.ok(["exec", "bg", "sh", "-c", "echo ${TERM-unset}"]), "unset\n");
    let pids = t.known_pids();
    t.ok(["rm", "-f", "bg"]);
    t.assert_clean(&pids);
}

#[test]
fn podrun_killed_at_any_moment_of_a_start_leaves_what_rm_f_removes() {
    if !need_root("podrun_killed_at_any_moment_of_a_start_leaves_what_rm_f_removes") {
        return;
    }
    let t = TestRoot::with_busybox();
    // A marker no other process has: every workload of this test runs `sleep 86399`.
    let marker = "86399";
    for i in 0..24u64 {
        let mut cli = Command::new(env!("CARGO_BIN_EXE_podrun"))
            .args(["--root".as_ref(), t.store().as_os_str()])
            .args(["run", "--name", &format!("k{i}"), "busybox", "sleep", marker])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // From before the fork to after the exec, in steps of 1 ms.
        std::thread::sleep(std::time::Duration::from_millis(i));
        cli.kill().unwrap();
        cli.wait().unwrap();
    }
    // Every workload that runs is named by some state, so rm -f finds it.
    let leftovers = t.entries("containers");
    eprintln!(
        "{} of 24 starts left a container, {} workloads running",
        leftovers.len(),
        common::processes_with(marker).len()
    );
    if !leftovers.is_empty() {
        let mut args = vec!["rm".to_owned(), "-f".into()];
        args.extend(leftovers);
        t.ok(args);
    }
    common::eventually(5, "workloads left running after rm -f", || common::processes_with(marker).is_empty());
    t.assert_clean(&[]);
    // A start killed inside its cgroup creation, after the top and before its own: the
    // container's directory is all rm -f finds, and the empty top goes too.
    let top = podrun::state::Paths::new(t.store()).cgroup_top();
    let h = podrun::cgroup::Hierarchy::host().unwrap();
    for (_, d) in h.dirs(&top) {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::create_dir_all(t.store().join("containers/half")).unwrap();
    t.ok(["rm", "-f", "half"]);
    t.assert_clean(&[]);
}

#[test]
fn podrun_killed_during_sandbox_create_leaves_what_sandbox_rm_f_removes() {
    if !need_root("podrun_killed_during_sandbox_create_leaves_what_sandbox_rm_f_removes") {
        return;
    }
    let t = TestRoot::with_busybox();
    let top = podrun::state::Paths::new(t.store()).cgroup_top();
    // Processes in this root's cgroups: pause is in <top>/<sandbox>/pause.
    let ours = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()))
            .filter(|&pid| {
                common::running(pid)
                    && std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.contains(&top))
            })
            .count()
    };
    for i in 0..16u64 {
        let mut cli = Command::new(env!("CARGO_BIN_EXE_podrun"))
            .args(["--root".as_ref(), t.store().as_os_str()])
            .args(["sandbox", "create", &format!("s{i}")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(500 * i));
        cli.kill().unwrap();
        let out = cli.wait_with_output().unwrap();
        if !out.stderr.is_empty() {
            eprintln!("s{i}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let left = t.entries("sandboxes");
    eprintln!("{} of 16 creates left a sandbox ({left:?}), {} processes in its cgroups", left.len(), ours());
    if !left.is_empty() {
        let mut args = vec!["sandbox".to_owned(), "rm".into(), "-f".into()];
        args.extend(left);
        t.ok(args);
    }
    common::eventually(5, "pause processes left after sandbox rm -f", || ours() == 0);
    t.assert_clean(&[]);
}
