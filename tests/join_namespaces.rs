//! Containers joined to one sandbox: what they share (net, ipc with /dev/shm, uts; pid only
//! with --share-pid) and what they do not (mounts, pids), checked from inside them, and the
//! namespace matrix checked against /proc/PID/ns.

mod common;

use common::{need_root, TestRoot};

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Waits until `cmd` run by `podrun exec` in container `c` succeeds.
fn wait_exec(t: &TestRoot, c: &str, cmd: &str) {
    common::eventually(10, &format!("{cmd} never succeeded in {c}"), || {
        t.podrun(["exec", c, "sh", "-c", cmd]).status.success()
    });
}

#[test]
fn containers_in_a_sandbox_share_net_ipc_uts_but_not_mounts_or_pids() {
    if !need_root("containers_in_a_sandbox_share_net_ipc_uts_but_not_mounts_or_pids") {
        return;
    }
    let t = TestRoot::with_busybox();
    assert_eq!(t.ok(["sandbox", "create", "pod", "--hostname", "pod.example"]).trim(), "pod");
    // A: writes to /dev/shm and /tmp, answers one TCP connection on 127.0.0.1:8080.
    t.ok([
        "run",
        "-d",
        "--join",
        "pod",
        "--name",
        "a",
        "busybox",
        "sh",
        "-c",
        "echo from-a > /dev/shm/shared; echo private > /tmp/mine; nc -l -p 8080 -e echo pong; sleep 3600",
    ]);
    wait_exec(&t, "a", "netstat -ltn | grep -q :8080");
    let b = t.podrun([
        "run",
        "--rm",
        "--join",
        "pod",
        "--name",
        "b",
        "busybox",
        "sh",
        "-c",
        "echo ping | nc 127.0.0.1 8080; cat /dev/shm/shared; hostname; cat /etc/hostname; \
         test -e /tmp/mine && echo SEES-A-TMP; echo $(ps -o comm | grep -c sleep)",
    ]);
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let lines: Vec<String> = out(&b).lines().map(str::to_owned).collect();
    assert_eq!(
        lines,
        ["pong", "from-a", "pod.example", "pod.example", "0"],
        "B's view: net, ipc, uts shared; mounts and pids not"
    );
    // A survives B's exit.
    let ps = t.ok(["ps", "--format", "json"]);
    let ps: serde_json::Value = serde_json::from_str(&ps).unwrap();
    assert_eq!(ps[0]["id"], "a");
    assert_eq!(ps[0]["status"], "running");
    // exec sees A's files and processes.
    let e = t.ok(["exec", "a", "sh", "-c", "cat /tmp/mine; ps -o comm | grep -c sleep"]);
    assert_eq!(e, "private\n1\n");

    let pids = t.known_pids();
    assert_eq!(t.ok(["sandbox", "rm", "-f", "pod"]).trim(), "pod");
    t.assert_clean(&pids);
}

#[test]
fn share_pid_makes_pause_pid_1_and_it_reaps_orphans() {
    if !need_root("share_pid_makes_pause_pid_1_and_it_reaps_orphans") {
        return;
    }
    let t = TestRoot::with_busybox();
    t.ok(["sandbox", "create", "--share-pid", "sp"]);
    t.ok(["run", "-d", "--join", "sp", "--name", "a", "busybox", "sleep", "3600"]);
    // The inner shell exits at once, orphaning `sleep 0.3`: it is re-parented to PID 1,
    // pause, which must reap it when it ends.
    let b = t.ok([
        "run", "--rm", "--join", "sp", "busybox", "sh", "-c",
        "cat /proc/1/comm; ps -o comm | grep -c 'sleep 3600\\|^sleep$'; sh -c 'sleep 0.3 & exit'; sleep 1; echo $(ps -o stat | grep -c Z)",
    ]);
    let lines: Vec<&str> = b.lines().collect();
    assert_eq!(lines[0], "podrun-pause", "PID 1 is pause");
    assert_eq!(lines[1], "1", "B sees A's sleep");
    assert_eq!(lines[2], "0", "no zombie left: {b}");
    let pids = t.known_pids();
    t.ok(["sandbox", "rm", "-f", "sp"]);
    t.assert_clean(&pids);
}

#[test]
fn namespace_matrix_agrees_with_proc_ns_links() {
    if !need_root("namespace_matrix_agrees_with_proc_ns_links") {
        return;
    }
    let t = TestRoot::with_busybox();
    t.ok(["sandbox", "create", "m"]);
    t.ok(["run", "-d", "--join", "m", "--name", "c1", "busybox", "sleep", "3600"]);
    let v: serde_json::Value = serde_json::from_str(&t.ok(["sandbox", "inspect", "m", "--format", "json"])).unwrap();
    let rows = v["namespaces"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "pause and c1: {v}");
    for row in rows {
        let pid = row["pid"].as_i64().unwrap();
        for (kind, cell) in row["namespaces"].as_object().unwrap() {
            let link = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
            let inode =
                link.to_string_lossy().rsplit('[').next().unwrap().trim_end_matches(']').parse::<u64>().unwrap();
            assert_eq!(cell["inode"].as_u64(), Some(inode), "{} {kind}", row["process"]);
        }
    }
    let (pause, c1) = (&rows[0]["namespaces"], &rows[1]["namespaces"]);
    for k in ["net", "ipc", "uts"] {
        assert_eq!(c1[k]["shared"], "pod", "{k}");
        assert_eq!(c1[k]["inode"], pause[k]["inode"], "{k}");
    }
    for k in ["mnt", "pid", "cgroup"] {
        assert_eq!(c1[k]["shared"], "own", "{k}");
    }
    assert_eq!(c1["user"]["shared"], "host");
    // The table for people says the same.
    let table = t.ok(["sandbox", "inspect", "m"]);
    assert!(table.contains("PROCESS") && table.contains("pause") && table.contains("c1"), "{table}");
    assert!(table.contains(&format!("pod {}", c1["net"]["inode"])), "{table}");
    let pids = t.known_pids();
    t.ok(["sandbox", "rm", "-f", "m"]);
    t.assert_clean(&pids);
}
