//! podrun under podman 4.3 (`podman --runtime PATH/podrun`, with conmon), in a private
//! store (tests/common/daemons.rs): run and its exit status, detached containers with exec,
//! logs, stop and rm, `ps` states, pause, a terminal, and a pod whose containers share the
//! pod's network; nothing left afterwards.

mod common;

use common::daemons::Podman;
use common::need_root;

fn podman() -> Podman {
    let p = Podman::new(std::path::Path::new(env!("CARGO_BIN_EXE_podrun")));
    p.load_oci(&common::busybox_oci(), "busybox");
    p
}

/// `podman ps -a`'s status of container `name` (Up, Exited (N), Paused, Created).
fn status(p: &Podman, name: &str) -> String {
    p.ok(["ps", "-a", "--filter", &format!("name=^{name}$"), "--format", "{{.Status}}"]).trim().to_owned()
}

#[test]
fn podman_run_returns_the_exit_status_and_gives_a_terminal() {
    if !need_root("podman_run_returns_the_exit_status_and_gives_a_terminal") {
        return;
    }
    let p = podman();
    assert_eq!(
        p.ok(["run", "--rm", "busybox", "sh", "-c", "echo hi; cat /proc/1/cmdline; true"]),
        "hi\nsh\0-c\0echo hi; cat /proc/1/cmdline; true\0"
    );
    let o = p.podman(["run", "--rm", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    // A command that does not exist: podman's 127, from podrun's error.
    let o = p.podman(["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(o.status.code(), Some(127), "{}", String::from_utf8_lossy(&o.stderr));
    let tty = p.ok(["run", "--rm", "-t", "busybox", "tty"]);
    assert!(tty.contains("/dev/pts/0"), "{tty:?}");
    let o = p.podman(["run", "--rm", "--memory", "32m", "busybox", "tail", "/dev/zero"]);
    assert_eq!(o.status.code(), Some(137), "{}", String::from_utf8_lossy(&o.stderr));
    // podrun's resource view, asked for with an annotation: free, meminfo and nproc say
    // the container's limits.
    let out = p.ok([
        "run",
        "--rm",
        "--annotation",
        "run.podrun.procview=on",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "busybox",
        "sh",
        "-c",
        "free | awk '/Mem:/{print $2}'; grep MemTotal /proc/meminfo | tr -s ' '; nproc",
    ]);
    assert_eq!(out, "65536\nMemTotal: 65536 kB\n1\n");
    p.assert_clean();
}

#[test]
fn a_detached_container_takes_exec_logs_pause_stop_and_rm() {
    if !need_root("a_detached_container_takes_exec_logs_pause_stop_and_rm") {
        return;
    }
    let p = podman();
    p.ok([
        "run",
        "-d",
        "--name",
        "d1",
        "busybox",
        "sh",
        "-c",
        "echo logged; trap 'exit 0' TERM; while :; do sleep 0.1; done",
    ]);
    assert!(status(&p, "d1").starts_with("Up"), "{}", status(&p, "d1"));
    assert_eq!(p.ok(["exec", "d1", "sh", "-c", "echo in-d1; cat /proc/1/cmdline | head -c 2"]), "in-d1\nsh");
    let o = p.podman(["exec", "d1", "sh", "-c", "exit 6"]);
    assert_eq!(o.status.code(), Some(6));
    assert!(p.ok(["exec", "-t", "d1", "tty"]).contains("/dev/pts/"));
    assert!(p.ok(["logs", "d1"]).contains("logged"));
    p.ok(["pause", "d1"]);
    assert_eq!(status(&p, "d1"), "Paused");
    p.ok(["unpause", "d1"]);
    assert!(status(&p, "d1").starts_with("Up"));
    // stop: SIGTERM, which the script takes to exit 0.
    p.ok(["stop", "-t", "10", "d1"]);
    assert!(status(&p, "d1").starts_with("Exited (0)"), "{}", status(&p, "d1"));
    p.ok(["rm", "d1"]);
    p.assert_clean();
}

#[test]
fn a_pods_containers_share_its_network() {
    if !need_root("a_pods_containers_share_its_network") {
        return;
    }
    let p = podman();
    p.ok(["pod", "create", "--name", "pod1"]);
    p.ok(["run", "-d", "--pod", "pod1", "--name", "server", "busybox", "sh", "-c", "echo pong | nc -l -p 8080"]);
    let got = p.ok(["run", "--rm", "--pod", "pod1", "busybox", "sh", "-c", "sleep 1; nc 127.0.0.1 8080 </dev/null"]);
    assert_eq!(got.trim(), "pong");
    p.ok(["pod", "rm", "-f", "-t", "0", "pod1"]);
    p.assert_clean();
}
