//! podrun under containerd 1.6: a private daemon (tests/common/daemons.rs) whose runc shim
//! runs podrun (`ctr run --runc-binary`), driven with `ctr` as a user would: exit statuses,
//! a terminal, detached tasks with exec, ps, pause and resume, metrics, kill and delete, an
//! OOM kill; nothing left afterwards.

mod common;

use common::daemons::Containerd;
use common::{eventually, need_root};

const BUSYBOX: &str = "docker.io/library/busybox:latest";

fn containerd() -> Containerd {
    let c = Containerd::start(std::path::Path::new(env!("CARGO_BIN_EXE_podrun")));
    c.import_oci(&common::busybox_oci(), BUSYBOX);
    c
}

/// The status `ctr task ls` gives task `id` (RUNNING, PAUSED, STOPPED, CREATED).
fn task_status(c: &Containerd, id: &str) -> String {
    let out = c.ctr_ok(["task", "ls"]);
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("")
        .to_owned()
}

/// `ctr ARGS...` on a pseudo-terminal (script(1)), as a user at a terminal runs it: ctr
/// asks for a console with -t.
fn ctr_on_a_tty(c: &Containerd, args: &str) -> String {
    let d = c.dir().display().to_string();
    let cmd = format!("ctr --address {} --namespace {} {args}", c.socket().display(), c.namespace())
        .replace("{fifo}", &format!("--fifo-dir {d}/fifo"))
        .replace("{runc}", &format!("--runc-binary {} --runc-root {d}/runc", env!("CARGO_BIN_EXE_podrun")));
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{cmd}: {}\n{}", out.status, String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

#[test]
fn ctr_run_prints_returns_the_exit_status_and_gives_a_terminal() {
    if !need_root("ctr_run_prints_returns_the_exit_status_and_gives_a_terminal") {
        return;
    }
    let c = containerd();
    let out = c.ctr_ok(["run", "--rm", BUSYBOX, "r1", "sh", "-c", "echo hello; cat /proc/1/cmdline; true"]);
    assert_eq!(out, "hello\nsh\0-c\0echo hello; cat /proc/1/cmdline; true\0", "PID 1 of its own pid namespace");
    let o = c.ctr(["run", "--rm", BUSYBOX, "r2", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    // podrun's resource view, asked for with an annotation: the task's memory limit.
    let out = c.ctr_ok([
        "run",
        "--rm",
        "--annotation",
        "run.podrun.procview=on",
        "--memory-limit",
        "67108864",
        BUSYBOX,
        "v1",
        "sh",
        "-c",
        "free | awk '/Mem:/{print $2}'; grep MemTotal /proc/meminfo | tr -s ' '",
    ]);
    assert_eq!(out, "65536\nMemTotal: 65536 kB\n");
    // -t: the pty's master went to the shim over the console socket.
    let out = ctr_on_a_tty(&c, &format!("run {{fifo}} {{runc}} --rm -t {BUSYBOX} t1 sh -c 'tty; echo done'"));
    // (script may echo a control character of its own first.)
    assert!(out.contains("/dev/pts/") && out.contains("done"), "{out:?}");
    c.assert_clean();
}

#[test]
fn a_detached_task_takes_exec_ps_pause_resume_metrics_kill_and_delete() {
    if !need_root("a_detached_task_takes_exec_ps_pause_resume_metrics_kill_and_delete") {
        return;
    }
    let c = containerd();
    c.ctr_ok(["run", "-d", BUSYBOX, "d1", "sleep", "600"]);
    assert_eq!(task_status(&c, "d1"), "RUNNING");
    let o = c.ctr(["task", "exec", "--exec-id", "e1", "d1", "sh", "-c", "echo in-the-task; exit 5"]);
    assert_eq!(o.status.code(), Some(5), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "in-the-task\n");
    let out = ctr_on_a_tty(&c, "task exec {fifo} -t --exec-id e2 d1 tty");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    // ps: the task's processes (the init is the first).
    let ps = c.ctr_ok(["task", "ps", "d1"]);
    let pid = c
        .ctr_ok(["task", "ls"])
        .lines()
        .find(|l| l.starts_with("d1"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(ps.lines().any(|l| l.split_whitespace().next() == Some(pid.as_str())), "{ps}");
    c.ctr_ok(["task", "pause", "d1"]);
    assert_eq!(task_status(&c, "d1"), "PAUSED");
    c.ctr_ok(["task", "resume", "d1"]);
    assert_eq!(task_status(&c, "d1"), "RUNNING");
    let metrics = c.ctr_ok(["task", "metrics", "d1"]);
    assert!(metrics.contains("memory"), "{metrics}");
    c.ctr_ok(["task", "kill", "-s", "SIGKILL", "d1"]);
    eventually(10, "d1 to stop", || task_status(&c, "d1") == "STOPPED");
    c.ctr_ok(["task", "delete", "d1"]);
    c.ctr_ok(["container", "delete", "d1"]);
    c.assert_clean();
}

#[test]
fn a_task_over_its_memory_limit_is_oom_killed_137() {
    if !need_root("a_task_over_its_memory_limit_is_oom_killed_137") {
        return;
    }
    let c = containerd();
    let o = c.ctr([
        "run",
        "--rm",
        "--memory-limit",
        "16777216",
        BUSYBOX,
        "o1",
        "sh",
        "-c",
        "x=$(head -c 64m /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(
        o.status.code(),
        Some(137),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    c.assert_clean();
}
