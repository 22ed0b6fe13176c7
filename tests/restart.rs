//! Restart policies (`run --restart`, `--restart-backoff`): containers started again with a
//! growing back-off, from the same rootfs, in the same sandbox; honest states in `ps`
//! (back-off, restarts, last exit, unsupervised); `kill` and `rm` stop them for good; a
//! killed monitor leaves its container running and `start` supervises it again.
//! Back-offs are small here; the gaps' order is asserted, never exact times.

mod common;

use common::{need_root, TestRoot};

/// `ps -a --format json`, the container named `name`.
fn ps(t: &TestRoot, name: &str) -> serde_json::Value {
    let all: Vec<serde_json::Value> = serde_json::from_str(&t.ok(["ps", "-a", "--format", "json"])).unwrap();
    all.into_iter().find(|c| c["id"] == name).unwrap_or_else(|| panic!("{name} is not in ps -a"))
}

/// A pid from `podrun inspect NAME`: "init" (the container's) or "monitor".
fn pid_of(t: &TestRoot, name: &str, which: &str) -> i32 {
    let i: serde_json::Value = serde_json::from_str(&t.ok(["inspect", name])).unwrap();
    i[which]["pid"].as_i64().unwrap_or_else(|| panic!("{name} has no {which}: {i}")) as i32
}

/// SIGKILL to a pid, and wait until it is gone.
fn kill9(pid: i32) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    common::eventually(5, &format!("{pid} survived kill -9"), || !common::running(pid));
}

/// The host's uptime stamps a container appended to `file`, as numbers (seconds).
fn stamps(file: &std::path::Path) -> Vec<f64> {
    std::fs::read_to_string(file).unwrap_or_default().lines().map(|l| l.trim().parse().unwrap()).collect()
}

/// Every run appends its start and end to /v/starts and /v/ends (host uptime: the view
/// is off); counts itself in its own rootfs (/count, kept across restarts); prints its net
/// namespace, hostname and cgroup; does `body`; exits with `code`.
fn script(body: &str, code: i32) -> String {
    format!(
        "cut -d' ' -f1 /proc/uptime >> /v/starts; n=$(($(cat /count 2>/dev/null || echo 0) + 1)); echo $n > /count; \
         echo run $n $(readlink /proc/self/ns/net) $(hostname) $(cat /proc/self/cgroup | tr '\\n' ' '); {body}; \
         cut -d' ' -f1 /proc/uptime >> /v/ends; exit {code}"
    )
}

fn volume(t: &TestRoot) -> (std::path::PathBuf, String) {
    let v = t.path().join("v");
    std::fs::create_dir_all(&v).unwrap();
    let arg = format!("{}:/v", v.display());
    (v, arg)
}

#[test]
fn on_failure_restarts_with_growing_gaps_in_the_same_pod_then_stays_exited() {
    if !need_root("on_failure_restarts_with_growing_gaps_in_the_same_pod_then_stays_exited") {
        return;
    }
    let t = TestRoot::with_busybox();
    let (v, vol) = volume(&t);
    t.ok(["sandbox", "create", "pod"]);
    t.ok([
        "run",
        "-d",
        "--join",
        "pod",
        "--name",
        "crash",
        "--procview",
        "off",
        "-v",
        &vol,
        "--restart",
        "on-failure:3",
        "--restart-backoff",
        "500ms:10s",
        "busybox",
        "sh",
        "-c",
        &script("true", 3),
    ]);
    // While it waits: back-off, with the time of the next try.
    common::eventually(10, "never in back-off", || ps(&t, "crash")["status"] == "back-off");
    let c = ps(&t, "crash");
    assert!(c["next_try_ms"].as_u64().is_some(), "{c}");
    assert_eq!(c["last_exit"]["code"], 3);
    assert!(t.ok(["ps"]).contains("Back-off (next try in"), "back-off is listed without -a");
    // `logs -f` follows through the back-offs, and ends with the last run.
    let followed = t.ok(["logs", "-f", "crash"]);
    assert_eq!(followed.lines().count(), 7, "{followed}");
    common::eventually(20, "never ended after 3 restarts", || {
        let c = ps(&t, "crash");
        c["status"] == "exited(3)" && c["restarts"] == 3
    });
    let starts = stamps(&v.join("starts"));
    assert_eq!(starts.len(), 4, "started 4 times in all: {starts:?}");
    let ends = stamps(&v.join("ends"));
    let gaps: Vec<f64> = (1..4).map(|i| starts[i] - ends[i - 1]).collect();
    assert!(gaps[0] >= 0.45 && gaps[0] < gaps[1] && gaps[1] < gaps[2], "the gaps grow: {gaps:?}");
    // It stays exited: longer than the next back-off would have been (4 s), nothing.
    std::thread::sleep(std::time::Duration::from_millis(4500));
    assert_eq!(stamps(&v.join("starts")).len(), 4);
    let c = ps(&t, "crash");
    assert_eq!(
        (c["status"].as_str(), c["restarts"].as_u64(), c["next_try_ms"].as_u64()),
        (Some("exited(3)"), Some(3), None)
    );
    assert_eq!(c["restart_policy"], "on-failure:3");
    assert_eq!(c["restart_backoff"], "500ms:10s");
    let table = t.ok(["ps", "-a"]);
    assert!(table.contains("RESTARTS") && table.contains("LAST EXIT") && table.contains("Exited (3)"), "{table}");
    // The log: every run's output, a marker before each restart, in order. Each run was
    // in the pod's namespaces and the same cgroup, and found the count the last left in
    // its rootfs.
    let log = t.ok(["logs", "crash"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 7, "{log}");
    let runs: Vec<Vec<&str>> = lines.iter().step_by(2).map(|l| l.split(' ').collect()).collect();
    for (i, r) in runs.iter().enumerate() {
        assert_eq!((r[0], r[1]), ("run", (i + 1).to_string().as_str()), "{log}");
        assert_eq!(r[2..], runs[0][2..], "run {} in other namespaces or cgroup than the first: {log}", i + 1);
    }
    assert_eq!(runs[0][3], "pod", "the pod's hostname");
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(runs[0][2], host_net.to_str().unwrap());
    for (i, l) in lines.iter().skip(1).step_by(2).enumerate() {
        assert_eq!(*l, format!("--- podrun: restart {} (on-failure:3) after exited(3) ---", i + 1));
    }
    let pids = t.known_pids();
    t.ok(["sandbox", "rm", "-f", "pod"]);
    t.assert_clean(&pids);
}

#[test]
fn always_restarts_a_clean_exit_never_restarts_nothing_and_bad_flags_change_nothing() {
    if !need_root("always_restarts_a_clean_exit_never_restarts_nothing_and_bad_flags_change_nothing") {
        return;
    }
    let t = TestRoot::with_busybox();
    for (args, want) in [
        (vec!["--restart", "always"], "--restart needs -d"),
        (vec!["-d", "--rm", "--restart", "always"], "--restart cannot be combined with --rm"),
        (vec!["-d", "--restart", "sometimes"], "invalid restart policy"),
        (vec!["-d", "--restart", "on-failure:x"], "invalid restart policy"),
        (vec!["-d", "--restart", "always", "--restart-backoff", "2s:1s"], "CAP must be at least INITIAL"),
        (vec!["-d", "--restart", "always", "--restart-backoff", "10"], "units ms, s, m or h"),
        (vec!["-d", "--restart-backoff", "1s"], "--restart-backoff needs --restart"),
    ] {
        let mut a = vec!["run", "--name", "bad"];
        a.extend(args);
        a.extend(["busybox", "true"]);
        let o = t.podrun(&a);
        assert_ne!(o.status.code(), Some(0), "{a:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{a:?}: {err}");
        assert!(t.entries("containers").is_empty(), "{a:?} left a container");
    }
    t.ok([
        "run",
        "-d",
        "--name",
        "loop",
        "--restart",
        "always",
        "--restart-backoff",
        "100ms:200ms",
        "busybox",
        "sh",
        "-c",
        "echo ran",
    ]);
    t.ok(["run", "-d", "--name", "once", "--restart", "never", "busybox", "sh", "-c", "echo ran; exit 1"]);
    common::eventually(20, "always never restarted 3 times", || ps(&t, "loop")["restarts"].as_u64() >= Some(3));
    let c = ps(&t, "once");
    assert_eq!((c["status"].as_str(), c["restarts"].as_u64()), (Some("exited(1)"), Some(0)));
    assert_eq!(t.ok(["logs", "once"]), "ran\n");
    assert!(t.ok(["logs", "loop"]).contains("--- podrun: restart 3 (always) after exited(0) ---"));
    let pids = t.known_pids();
    t.ok(["rm", "-f", "loop", "once"]);
    t.assert_clean(&pids);
}

#[test]
fn an_oom_killed_container_restarts_under_on_failure() {
    if !need_root("an_oom_killed_container_restarts_under_on_failure") {
        return;
    }
    let t = TestRoot::with_busybox();
    t.ok(["sandbox", "create", "pod"]);
    t.ok([
        "run",
        "-d",
        "--join",
        "pod",
        "--name",
        "hog",
        "--memory",
        "32m",
        "--restart",
        "on-failure:1",
        "--restart-backoff",
        "100ms",
        "busybox",
        "sh",
        "-c",
        "echo start; x=$(head -c 100m /dev/zero | tr '\\0' a)",
    ]);
    common::eventually(30, "the hog never ended twice", || {
        ps(&t, "hog")["restarts"] == 1 && ps(&t, "hog")["status"] == "oomkilled(137)"
    });
    let c = ps(&t, "hog");
    assert_eq!(c["oom_killed"], true);
    assert_eq!(c["last_exit"]["oom_killed"], true);
    assert_eq!(t.ok(["logs", "hog"]), "start\n--- podrun: restart 1 (on-failure:1) after oomkilled(137) ---\nstart\n");
    assert!(t.ok(["ps", "-a"]).contains("OOMKilled (137)"));
    // A run that is not OOM-killed is not reported as one (the kernel's count is cumulative).
    t.ok([
        "run",
        "-d",
        "--join",
        "pod",
        "--name",
        "fine",
        "--memory",
        "32m",
        "--restart",
        "on-failure:1",
        "--restart-backoff",
        "100ms",
        "busybox",
        "sh",
        "-c",
        "if [ -e /hogged ]; then exit 5; fi; touch /hogged; x=$(head -c 100m /dev/zero | tr '\\0' a)",
    ]);
    common::eventually(30, "never ended twice", || {
        ps(&t, "fine")["restarts"] == 1 && ps(&t, "fine")["status"] == "exited(5)"
    });
    assert_eq!(ps(&t, "fine")["oom_killed"], false);
    let pids = t.known_pids();
    t.ok(["sandbox", "rm", "-f", "pod"]);
    t.assert_clean(&pids);
}

#[test]
fn kill_or_rm_in_back_off_stops_for_good_and_sandbox_rm_needs_force() {
    if !need_root("kill_or_rm_in_back_off_stops_for_good_and_sandbox_rm_needs_force") {
        return;
    }
    let t = TestRoot::with_busybox();
    let (v, vol) = volume(&t);
    t.ok(["sandbox", "create", "pod"]);
    for name in ["k", "r"] {
        t.ok([
            "run",
            "-d",
            "--join",
            "pod",
            "--name",
            name,
            "--procview",
            "off",
            "-v",
            &vol,
            "--restart",
            "always",
            "--restart-backoff",
            "1500ms",
            "busybox",
            "sh",
            "-c",
            "echo $(hostname) >> /v/runs; exit 1",
        ]);
    }
    common::eventually(10, "never both in back-off", || {
        ps(&t, "k")["status"] == "back-off" && ps(&t, "r")["status"] == "back-off"
    });
    let monitors: Vec<i32> = ["k", "r"].iter().map(|n| pid_of(&t, n, "monitor")).collect();
    // A pod with a container in back-off is busy; rm of that container needs -f too.
    let err = t.fails(["sandbox", "rm", "pod"]);
    assert!(err.contains("has running containers") && err.contains('k') && err.contains('r'), "{err}");
    let err = t.fails(["rm", "r"]);
    assert!(err.contains("is in back-off"), "{err}");
    t.ok(["kill", "k"]);
    t.ok(["rm", "-f", "r"]);
    for m in &monitors {
        common::eventually(5, &format!("monitor {m} still runs"), || !common::running(*m));
    }
    let c = ps(&t, "k");
    assert_eq!(
        (c["status"].as_str(), c["restarts"].as_u64(), c["next_try_ms"].as_u64()),
        (Some("exited(1)"), Some(0), None)
    );
    // Well past the back-off: neither came back.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(std::fs::read_to_string(v.join("runs")).unwrap().lines().count(), 2);
    assert_eq!(ps(&t, "k")["restarts"], 0);
    assert!(t.entries("containers") == ["k"], "{:?}", t.entries("containers"));
    assert!(t.fails(["kill", "k"]).contains("is not running"));
    // `kill` of a running container stops it for good as well; `start` starts it again.
    t.ok(["start", "k"]);
    common::eventually(10, "start never ran it", || {
        std::fs::read_to_string(v.join("runs")).unwrap().lines().count() == 3
    });
    common::eventually(10, "never in back-off again", || ps(&t, "k")["status"] == "back-off");
    // In a back-off, `sandbox rm -f` stops and removes it with the pod.
    let pids = t.known_pids();
    t.ok(["sandbox", "rm", "-f", "pod"]);
    t.assert_clean(&pids);
    std::thread::sleep(std::time::Duration::from_millis(2000));
    assert_eq!(std::fs::read_to_string(v.join("runs")).unwrap().lines().count(), 3);
}

#[test]
fn a_run_longer_than_the_reset_period_starts_the_back_off_again() {
    if !need_root("a_run_longer_than_the_reset_period_starts_the_back_off_again") {
        return;
    }
    let t = TestRoot::with_busybox();
    let (v, vol) = volume(&t);
    // Back-off 0.5, 1, 2 s, capped at 2 s, reset after 4 s of running. The third run lasts
    // 4.5 s: the next delay is 0.5 s again, not 2 s.
    t.ok([
        "run",
        "-d",
        "--name",
        "slow",
        "--procview",
        "off",
        "-v",
        &vol,
        "--restart",
        "on-failure:3",
        "--restart-backoff",
        "500ms:2s",
        "busybox",
        "sh",
        "-c",
        &script("if [ $n = 3 ]; then sleep 4.5; fi", 1),
    ]);
    common::eventually(30, "never ended after 3 restarts", || {
        ps(&t, "slow")["status"] == "exited(1)" && ps(&t, "slow")["restarts"] == 3
    });
    let (starts, ends) = (stamps(&v.join("starts")), stamps(&v.join("ends")));
    assert_eq!((starts.len(), ends.len()), (4, 4), "{starts:?} {ends:?}");
    let gaps: Vec<f64> = (1..4).map(|i| starts[i] - ends[i - 1]).collect();
    assert!(ends[2] - starts[2] >= 4.4, "the third run was long: {starts:?} {ends:?}");
    assert!(gaps[0] < gaps[1], "the back-off grew first: {gaps:?}");
    assert!(gaps[2] < gaps[1], "after the long run it started again from the initial delay: {gaps:?}");
    let pids = t.known_pids();
    t.ok(["rm", "slow"]);
    t.assert_clean(&pids);
}

#[test]
fn a_killed_monitor_leaves_its_container_running_and_start_supervises_again() {
    if !need_root("a_killed_monitor_leaves_its_container_running_and_start_supervises_again") {
        return;
    }
    let t = TestRoot::with_busybox();
    t.ok(["sandbox", "create", "pod"]);
    t.ok([
        "run",
        "-d",
        "--join",
        "pod",
        "--name",
        "web",
        "--restart",
        "always",
        "--restart-backoff",
        "100ms",
        "busybox",
        "sleep",
        "3600",
    ]);
    // A second container, in a back-off (long enough for a slow machine) when its monitor
    // is killed.
    t.ok([
        "run",
        "-d",
        "--join",
        "pod",
        "--name",
        "idle",
        "--restart",
        "always",
        "--restart-backoff",
        "8s",
        "busybox",
        "sh",
        "-c",
        "exit 1",
    ]);
    common::eventually(10, "idle never in back-off", || ps(&t, "idle")["status"] == "back-off");
    kill9(pid_of(&t, "idle", "monitor"));
    let idle_due = std::time::Instant::now() + std::time::Duration::from_millis(8500);
    let c = ps(&t, "idle");
    assert_eq!((c["status"].as_str(), c["supervised"].as_bool()), (Some("exited(1)"), Some(false)), "{c}");
    assert!(t.ok(["ps", "-a"]).contains("not restarted: unsupervised"));
    assert!(!t.ok(["ps", "-q"]).contains("idle"), "not listed as running");
    let init = pid_of(&t, "web", "init");
    assert_eq!(ps(&t, "web")["supervised"], true);
    kill9(pid_of(&t, "web", "monitor"));
    // The container runs on, and ps says that nobody watches it.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(common::running(init), "the container died with its monitor");
    let c = ps(&t, "web");
    assert_eq!((c["status"].as_str(), c["supervised"].as_bool()), (Some("running"), Some(false)));
    assert!(t.ok(["ps"]).contains("Up (unsupervised)"));
    assert_eq!(t.ok(["exec", "web", "echo", "alive"]), "alive\n");
    // `start` supervises it again without stopping it: a new monitor, the same process.
    t.ok(["start", "web"]);
    assert!(t.fails(["start", "web"]).contains("already running"));
    let c = ps(&t, "web");
    assert_eq!((c["status"].as_str(), c["supervised"].as_bool()), (Some("running"), Some(true)));
    assert_eq!(pid_of(&t, "web", "init"), init);
    assert!(t.ok(["logs", "web"]).contains("--- podrun: supervised again by a new monitor ---"));
    // Its end is seen with its status (through a pidfd, as the new monitor is not its
    // parent), and the policy applies again.
    kill9(init);
    common::eventually(40, "never restarted after it was adopted", || {
        ps(&t, "web")["restarts"] == 1 && ps(&t, "web")["status"] == "running"
    });
    assert_eq!(ps(&t, "web")["last_exit"]["code"], 137);
    // With its monitor killed again, an end nobody sees: an unknown exit, and no restart.
    kill9(pid_of(&t, "web", "monitor"));
    t.ok(["kill", "web"]);
    common::eventually(5, "never ended", || ps(&t, "web")["status"] == "exited(unknown)");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let c = ps(&t, "web");
    assert_eq!((c["status"].as_str(), c["restarts"].as_u64()), (Some("exited(unknown)"), Some(1)));
    assert!(t.ok(["ps", "-a"]).contains("Exited (unknown: unsupervised)"));
    // `start` starts a stopped container again, supervised.
    assert!(t.fails(["start", "nosuch"]).contains("no such container"));
    t.ok(["start", "web"]);
    let c = ps(&t, "web");
    assert_eq!((c["status"].as_str(), c["supervised"].as_bool()), (Some("running"), Some(true)));
    assert_ne!(pid_of(&t, "web", "init"), init);
    // Past its back-off, nobody started idle again.
    std::thread::sleep(idle_due.saturating_duration_since(std::time::Instant::now()));
    assert_eq!(ps(&t, "idle")["restarts"], 0);
    let pids = t.known_pids();
    t.ok(["sandbox", "rm", "-f", "pod"]);
    t.assert_clean(&pids);
}

#[test]
fn restarts_keep_the_user_namespace_maps_and_end_a_shared_pid_pods_orphans() {
    if !need_root("restarts_keep_the_user_namespace_maps_and_end_a_shared_pid_pods_orphans") {
        return;
    }
    let t = TestRoot::with_busybox();
    // A lone container with a user namespace of its own: each run gets the same maps, root
    // inside, and its writes from the run before (the rootfs is idmapped, never chowned).
    t.ok([
        "run",
        "-d",
        "--name",
        "u",
        "--userns=auto",
        "--restart",
        "on-failure:2",
        "--restart-backoff",
        "100ms",
        "busybox",
        "sh",
        "-c",
        "echo $(id -u) $(cat /proc/self/uid_map) $(echo x >> /f; wc -l < /f); exit 2",
    ]);
    // A --share-pid pod: a run leaves a child behind (reparented to pause); the next run
    // starts only after it is gone, so at the end one is left, the last run's.
    t.ok(["sandbox", "create", "--share-pid", "shared"]);
    t.ok([
        "run",
        "-d",
        "--join",
        "shared",
        "--name",
        "orphans",
        "--restart",
        "on-failure:2",
        "--restart-backoff",
        "100ms",
        "busybox",
        "sh",
        "-c",
        "sleep 7777 & until [ \"$(cat /proc/$!/comm)\" = sleep ]; do :; done; echo $(pidof sleep | wc -w); exit 1",
    ]);
    for name in ["u", "orphans"] {
        common::eventually(20, &format!("{name} never ended twice"), || {
            ps(&t, name)["restarts"] == 2 && ps(&t, name)["status"] != "running" && ps(&t, name)["status"] != "back-off"
        });
    }
    let log = t.ok(["logs", "u"]);
    let runs: Vec<String> = log.lines().filter(|l| !l.starts_with("---")).map(str::to_owned).collect();
    assert_eq!(runs.len(), 3, "{log}");
    let maps: Vec<&str> = runs[0].split_whitespace().skip(1).take(3).collect();
    assert!(maps[0] == "0" && maps[1] != "0" && maps[2] == "65536", "{runs:?}");
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r, &format!("0 {} {}", maps.join(" "), i + 1), "run {}", i + 1);
    }
    let log = t.ok(["logs", "orphans"]);
    let counts: Vec<&str> = log.lines().filter(|l| !l.starts_with("---")).collect();
    assert_eq!(counts, ["1", "1", "1"], "each run saw only its own sleep: {log}");
    assert_eq!(common::processes_with("7777").len(), 1, "the last run's orphan, and no other");
    let pids = t.known_pids();
    t.ok(["rm", "u"]);
    t.ok(["sandbox", "rm", "-f", "shared"]);
    t.assert_clean(&pids);
    assert_eq!(std::fs::read_to_string(t.store().join("userns/table.json")).unwrap_or_default().trim(), "[]");
}

#[test]
fn a_running_containers_monitor_waits_as_a_small_program_and_comes_back_as_podrun() {
    if !need_root("a_running_containers_monitor_waits_as_a_small_program_and_comes_back_as_podrun") {
        return;
    }
    let t = TestRoot::with_busybox();
    t.ok(["run", "-d", "--name", "plain", "busybox", "sh", "-c", "sleep 1; exit 4"]);
    let args = ["--restart", "on-failure:1", "--restart-backoff", "100ms"];
    t.ok(["run", "-d", "--name", "again"].into_iter().chain(args).chain(["busybox", "sh", "-c", "sleep 1; exit 3"]));
    // While a container runs, its monitor is podrun-wait (the embedded pause binary, run
    // from a sealed memfd; podrun's resident pages are gone), under the monitor's name,
    // still recorded as the container's monitor, holding only stdio and podrun's binary.
    for name in ["plain", "again"] {
        let m = pid_of(&t, name, "monitor");
        let exe = std::fs::read_link(format!("/proc/{m}/exe")).unwrap();
        assert!(exe.to_string_lossy().starts_with("/memfd:podrun-pause"), "{name}'s monitor runs {exe:?}");
        // comm holds 15 bytes.
        assert_eq!(std::fs::read_to_string(format!("/proc/{m}/comm")).unwrap(), "podrun:[monitor\n");
        let fds: Vec<_> = std::fs::read_dir(format!("/proc/{m}/fd")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(fds.len(), 4, "{name}'s monitor holds {fds:?}");
        assert!(t.ok(["ps"]).lines().any(|l| l.starts_with(name) && l.contains(" Up ") && !l.contains("unsupervised")));
    }
    // It runs podrun again at the exit, which records it; under a policy, podrun starts
    // the container again after the back-off, waits as the small program again, and
    // records the second exit.
    let restarted = pid_of(&t, "again", "monitor");
    common::eventually(20, "plain's exit was never recorded", || ps(&t, "plain")["status"] == "exited(4)");
    common::eventually(20, "again was not restarted once and then left exited", || {
        let c = ps(&t, "again");
        c["status"] == "exited(3)" && c["restarts"] == 1
    });
    assert_eq!(t.ok(["logs", "again"]), "--- podrun: restart 1 (on-failure:1) after exited(3) ---\n");
    common::eventually(5, "a monitor stayed", || !common::running(restarted));
    let pids = t.known_pids();
    t.ok(["rm", "plain", "again"]);
    t.assert_clean(&pids);
}
