//! Resource limits, enforced for real on both cgroup worlds: this development machine's
//! hybrid v1 hierarchy, and pure cgroup v2 (CI runs the suite again in
//! ../shared/tools/in-cgroup2-vm). Each test checks that no cgroup is left behind.

mod common;

use common::{need_root, TestRoot};

/// The cgroup files a container sees at /sys/fs/cgroup for `file` in either world.
fn inside(v1_controller: &str, file_v1: &str, file_v2: &str) -> String {
    format!("cat /sys/fs/cgroup/{v1_controller}/{file_v1} 2>/dev/null || cat /sys/fs/cgroup/{file_v2}")
}

/// Every cgroup directory under this root's top cgroup, in every hierarchy.
fn cgroups_of(t: &TestRoot) -> Vec<String> {
    let top = podrun::state::Paths::new(t.store()).cgroup_top();
    let h = podrun::cgroup::Hierarchy::host().unwrap();
    h.dirs(&top).into_iter().filter(|(_, d)| d.exists()).map(|(_, d)| d.display().to_string()).collect()
}

/// No cgroup of this root is left (`run --rm` removes its cgroup just after it returns).
fn assert_no_cgroups(t: &TestRoot) {
    common::eventually(5, &format!("cgroups left: {:?}", cgroups_of(t)), || cgroups_of(t).is_empty());
}

#[test]
fn memory_hog_is_oom_killed_with_137_and_limits_show_inside() {
    if !need_root("memory_hog_is_oom_killed_with_137_and_limits_show_inside") {
        return;
    }
    let t = TestRoot::with_busybox();
    let o = t.podrun([
        "run",
        "--rm",
        "--memory",
        "32m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 100m /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(o.status.code(), Some(137), "{}", String::from_utf8_lossy(&o.stdout));
    let cmd = format!(
        "{}; {}",
        inside("memory", "memory.limit_in_bytes", "memory.max"),
        inside("pids", "pids.max", "pids.max")
    );
    let out = t.ok(["run", "--rm", "--memory", "32m", "--pids-limit", "50", "busybox", "sh", "-c", &cmd]);
    assert_eq!(out, "33554432\n50\n");
    // The container's cgroup is the root of its cgroup namespace.
    assert!(t.ok(["run", "--rm", "busybox", "cat", "/proc/self/cgroup"]).lines().all(|l| l.ends_with(":/")));
    assert_no_cgroups(&t);
}

#[test]
fn fork_loop_stops_at_the_pids_limit() {
    if !need_root("fork_loop_stops_at_the_pids_limit") {
        return;
    }
    let t = TestRoot::with_busybox();
    let o = t.podrun(["run", "--rm", "--pids-limit", "10", "busybox", "sh", "-c", "while true; do sleep 30 & done"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("can't fork"), "the loop was not stopped: {err}");
    assert_ne!(o.status.code(), Some(0));
    assert_no_cgroups(&t);
}

#[test]
fn a_pod_limit_binds_a_container_without_its_own() {
    if !need_root("a_pod_limit_binds_a_container_without_its_own") {
        return;
    }
    let t = TestRoot::with_busybox();
    t.ok(["sandbox", "create", "--memory", "32m", "pod"]);
    t.ok(["run", "-d", "--join", "pod", "--name", "quiet", "busybox", "sleep", "3600"]);
    let o = t.podrun([
        "run",
        "--rm",
        "--join",
        "pod",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 100m /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(o.status.code(), Some(137));
    // The sandbox survives, and so does its other container.
    let ps: serde_json::Value = serde_json::from_str(&t.ok(["ps", "--format", "json"])).unwrap();
    assert_eq!(ps[0]["id"], "quiet");
    assert_eq!(t.ok(["run", "--rm", "--join", "pod", "busybox", "echo", "alive"]), "alive\n");
    let pids = t.known_pids();
    t.ok(["sandbox", "rm", "-f", "pod"]);
    t.assert_clean(&pids);
    assert_no_cgroups(&t);
}

#[test]
fn bad_limits_are_refused_before_anything_is_made() {
    if !need_root("bad_limits_are_refused_before_anything_is_made") {
        return;
    }
    let t = TestRoot::with_busybox();
    for (flag, value, says) in [
        ("--memory", "lots", "invalid size"),
        ("--cpus", "0", "invalid --cpus"),
        ("--cpu-shares", "1", "invalid --cpu-shares"),
        ("--pids-limit", "many", "invalid --pids-limit"),
    ] {
        let err = t.fails(["run", "--rm", flag, value, "busybox", "true"]);
        assert!(err.contains(says), "{flag} {value}: {err}");
    }
    let err = t.fails(["run", "--rm", "--memory", "64m", "--memory-swap", "32m", "busybox", "true"]);
    assert!(err.contains("--memory-swap must be at least --memory"), "{err}");
    t.assert_clean(&[]);
    assert_no_cgroups(&t);
}

fn cpu_usage_usec(t: &TestRoot, name: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&t.ok(["stats", "--no-stream", "--format", "json", name])).unwrap();
    v[0]["cpu_usage_usec"].as_u64().unwrap()
}

#[test]
fn cpus_throttle_a_busy_loop() {
    if !need_root("cpus_throttle_a_busy_loop") {
        return;
    }
    let t = TestRoot::with_busybox();
    t.ok(["run", "-d", "--name", "busy", "--cpus", "0.2", "busybox", "sh", "-c", "while :; do :; done"]);
    let (u0, t0) = (cpu_usage_usec(&t, "busy"), std::time::Instant::now());
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (u1, t1) = (cpu_usage_usec(&t, "busy"), std::time::Instant::now());
    let cpus = (u1 - u0) as f64 / (t1 - t0).as_micros() as f64;
    assert!((0.1..=0.3).contains(&cpus), "a busy loop under --cpus 0.2 used {cpus:.3} CPUs");
    let v: serde_json::Value =
        serde_json::from_str(&t.ok(["stats", "--no-stream", "--format", "json", "busy"])).unwrap();
    assert!(v[0]["throttled_periods"].as_u64().unwrap() > 0, "no throttling counted: {v}");
    let pids = t.known_pids();
    t.ok(["rm", "-f", "busy"]);
    t.assert_clean(&pids);
}

#[test]
fn oom_killed_is_reported_and_the_sandbox_survives() {
    if !need_root("oom_killed_is_reported_and_the_sandbox_survives") {
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
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 100m /dev/zero | tr '\\0' a)",
    ]);
    common::eventually(10, "no exit recorded", || {
        let ps: serde_json::Value = serde_json::from_str(&t.ok(["ps", "-a", "--format", "json"])).unwrap();
        ps[0]["exit_code"] == 137
    });
    let ps: serde_json::Value = serde_json::from_str(&t.ok(["ps", "-a", "--format", "json"])).unwrap();
    assert_eq!(ps[0]["status"], "oomkilled(137)");
    assert_eq!(ps[0]["oom_killed"], true);
    assert!(t.ok(["ps", "-a"]).contains("OOMKilled (137)"));
    let inspect: serde_json::Value = serde_json::from_str(&t.ok(["inspect", "hog"])).unwrap();
    assert_eq!(inspect["exit"]["oom_killed"], true);
    let ls: serde_json::Value = serde_json::from_str(&t.ok(["sandbox", "ls", "--format", "json"])).unwrap();
    assert_eq!(ls[0]["status"], "ready", "the sandbox survives its container's OOM");
    let pids = t.known_pids();
    t.ok(["sandbox", "rm", "-f", "pod"]);
    t.assert_clean(&pids);
}

#[test]
fn rm_f_kills_every_process_of_the_container_even_in_a_shared_pid_namespace() {
    if !need_root("rm_f_kills_every_process_of_the_container_even_in_a_shared_pid_namespace") {
        return;
    }
    let t = TestRoot::with_busybox();
    t.ok(["sandbox", "create", "--share-pid", "sp"]);
    // Its init is not PID 1 here, so killing it alone would orphan its children to pause:
    // the cgroup is what finds them all.
    t.ok([
        "run",
        "-d",
        "--join",
        "sp",
        "--name",
        "forky",
        "--pids-limit",
        "40",
        "busybox",
        "sh",
        "-c",
        "while true; do sleep 86398 & sleep 0.01; done",
    ]);
    let count = || common::processes_with("86398").len();
    common::eventually(10, "no children were started", || count() > 5);
    t.ok(["rm", "-f", "forky"]);
    common::eventually(5, "processes of the container outlived rm -f", || count() == 0);
    let pids = t.known_pids();
    t.ok(["sandbox", "rm", "-f", "sp"]);
    t.assert_clean(&pids);
}

#[test]
fn rm_f_ends_a_fork_loop_that_never_pauses() {
    if !need_root("rm_f_ends_a_fork_loop_that_never_pauses") {
        return;
    }
    let t = TestRoot::with_busybox();
    // busybox sh ends at its first failed fork ("can't fork"), and with it every process
    // of the container: a loop that forks as fast as it can reaches a limit of 200 in a
    // few tens of milliseconds, before a loaded machine's test saw one of its sleeps (and
    // then there was nothing left for rm -f to end). This one forks about 150 times a
    // second and lives for seconds under its limit.
    t.ok([
        "run",
        "-d",
        "--name",
        "bomb",
        "--pids-limit",
        "1000",
        "busybox",
        "sh",
        "-c",
        "while true; do sleep 86397 & usleep 5000; done",
    ]);
    let count = || common::processes_with("86397").len();
    common::eventually(20, "the loop did not fork", || count() > 5);
    // The loop's forks are `sh` until they exec sleep, which takes a while on a slow
    // (user-mode) kernel, or beside the loop spinning on failed forks while other tests
    // (and CI's first build of the test images) load the machine: once in a CI run none
    // had after 20 s. Wait for one that has.
    let started = std::time::Instant::now();
    let sleeper = loop {
        let procs = common::processes_with("86397");
        let comm = |p: &i32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        if let Some(p) = procs.iter().find(|p| comm(p).trim() == "sleep") {
            break *p;
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            // What the loop's processes are doing: state and where they wait in the kernel.
            let what: Vec<String> = procs
                .iter()
                .take(10)
                .map(|p| {
                    let f = |n: &str| std::fs::read_to_string(format!("/proc/{p}/{n}")).unwrap_or_default();
                    let stat = f("stat");
                    let state = stat.rsplit_once(')').and_then(|(_, r)| r.trim_start().chars().next());
                    format!("{p} {} {state:?} wchan={} {}", comm(p).trim(), f("wchan"), f("stack").replace('\n', " | "))
                })
                .collect();
            let _ = t.podrun(["rm", "-f", "bomb"]);
            panic!("no sleep of the loop ran in 60 s; {} processes:\n{}", procs.len(), what.join("\n"));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let groups = std::fs::read_to_string(format!("/proc/{sleeper}/cgroup")).unwrap_or_default();
    if !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        // v1: in a freezer cgroup of its own, which rm freezes before it kills.
        assert!(
            groups.lines().any(|l| l.contains(":freezer:/") && l.contains("bomb")),
            "not in its own freezer cgroup:\n{groups}"
        );
    }
    let pids = t.known_pids();
    t.ok(["rm", "-f", "bomb"]);
    // The loop's own processes, not podrun's monitor (whose command line has the script
    // too): it records the exit a moment later and ends; assert_clean waits for it.
    let left: Vec<String> = common::processes_with("86397")
        .iter()
        .filter(|p| !std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.starts_with("podrun:")))
        .map(|p| {
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            format!("{p} {:?} {}", String::from_utf8_lossy(&cmd), status.lines().take(3).collect::<Vec<_>>().join(" "))
        })
        .collect();
    assert!(left.is_empty(), "processes of the loop outlived rm -f: {left:?}");
    common::eventually(5, "podrun's monitor of the loop did not end", || count() == 0);
    t.assert_clean(&pids);
}

#[test]
fn cgroup_parent_moves_podrun_under_an_existing_cgroup_and_never_removes_it() {
    if !need_root("cgroup_parent_moves_podrun_under_an_existing_cgroup_and_never_removes_it") {
        return;
    }
    let t = TestRoot::with_busybox();
    let h = podrun::cgroup::Hierarchy::host().unwrap();
    // The test's own parent cgroup, as an orchestrator would have made it.
    let parent = format!("/podrun-test-parent-{}", std::process::id());
    struct Parent(Vec<std::path::PathBuf>);
    impl Drop for Parent {
        fn drop(&mut self) {
            for d in &self.0 {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
    let dirs: Vec<_> = h.dirs(&parent).into_iter().map(|(_, d)| d).collect();
    let _guard = Parent(dirs.clone());
    let missing = t.fails(["--cgroup-parent", &parent, "run", "--rm", "busybox", "true"]);
    assert!(missing.contains("does not exist"), "{missing}");
    for d in &dirs {
        std::fs::create_dir(d).unwrap();
        // A v1 cpuset takes no task until its cpus and mems are set (podrun copies its
        // own cpusets' from the parent).
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(v) = std::fs::read_to_string(d.parent().unwrap().join(f)) {
                std::fs::write(d.join(f), v.trim()).unwrap();
            }
        }
    }
    let out = t.ok(["--cgroup-parent", &parent, "run", "--rm", "busybox", "cat", "/proc/self/cgroup"]);
    assert!(out.lines().all(|l| l.ends_with(":/")), "{out}");
    t.ok(["--cgroup-parent", &parent, "sandbox", "create", "--memory", "64m", "pod"]);
    t.ok(["run", "-d", "--join", "pod", "--name", "c", "busybox", "sleep", "3600"]);
    let st: serde_json::Value = serde_json::from_str(&t.ok(["inspect", "c"])).unwrap();
    assert_eq!(st["cgroup"], format!("{parent}/podrun/pod/c"), "joined containers follow their pod");
    let pids = t.known_pids();
    t.ok(["sandbox", "rm", "-f", "pod"]);
    t.assert_clean(&pids);
    common::eventually(5, "podrun's cgroups under the parent were left", || {
        h.dirs(&format!("{parent}/podrun")).iter().all(|(_, d)| !d.exists())
    });
    assert!(dirs.iter().all(|d| d.is_dir()), "podrun removed a cgroup it did not create");
    assert!(t.fails(["--cgroup-parent", "/a/../b", "ps"]).contains("absolute cgroup path"));
}

#[test]
fn device_read_bps_throttles_reads_on_v2_and_is_refused_on_v1() {
    if !need_root("device_read_bps_throttles_reads_on_v2_and_is_refused_on_v1") {
        return;
    }
    let t = TestRoot::with_busybox();
    match podrun::cgroup::Hierarchy::host().unwrap() {
        podrun::cgroup::Hierarchy::V1 { .. } => {
            // Any block device will do to reach the check: the root file system's disk.
            let dev = std::fs::read_dir("/sys/block")
                .unwrap()
                .flatten()
                .map(|e| format!("/dev/{}", e.file_name().to_string_lossy()))
                .find(|d| std::path::Path::new(d).exists())
                .expect("a block device");
            let err = t.fails(["run", "--rm", "--device-read-bps", &format!("{dev}:1m"), "busybox", "true"]);
            assert!(err.contains("io limits need cgroup v2"), "{err}");
        }
        podrun::cgroup::Hierarchy::V2 { .. } => {
            // The guest of ../shared/tools/in-cgroup2-vm has an empty scratch disk for this.
            let dev = std::env::var("IN_CGROUP2_VM_DISK").expect("a scratch block device (IN_CGROUP2_VM_DISK)");
            let rate = format!("{dev}:1m");
            // Given with --device: bound in and let through the device allow-list.
            let disk = format!("{dev}:/disk:r");
            let start = std::time::Instant::now();
            let out = t.ok([
                "run",
                "--rm",
                "--device-read-bps",
                &rate,
                "--device",
                &disk,
                "busybox",
                "sh",
                "-c",
                "cat /sys/fs/cgroup/io.max; dd if=/disk of=/dev/null bs=64k count=48 2>/dev/null",
            ]);
            let took = start.elapsed();
            assert!(out.contains("rbps=1048576"), "{out}");
            // --io-weight works where the kernel has a weight (iocost or BFQ), and says so
            // clearly where it has none.
            let w = t.podrun([
                "run",
                "--rm",
                "--io-weight",
                "300",
                "busybox",
                "sh",
                "-c",
                "cat /sys/fs/cgroup/io.weight /sys/fs/cgroup/io.bfq.weight 2>/dev/null; true",
            ]);
            let (wout, werr) = (String::from_utf8_lossy(&w.stdout), String::from_utf8_lossy(&w.stderr));
            assert!(wout.contains("300") || werr.contains("offer no io.weight"), "{wout} {werr}");
            // 3 MiB at 1 MiB/s, less the kernel's initial allowance: well over a second.
            assert!(took >= std::time::Duration::from_millis(1500), "3 MiB read in {took:?}: not throttled");
        }
    }
    t.assert_clean(&[]);
}

#[test]
fn a_sandbox_and_a_lone_container_of_one_name_get_separate_cgroups() {
    if !need_root("a_sandbox_and_a_lone_container_of_one_name_get_separate_cgroups") {
        return;
    }
    let t = TestRoot::with_busybox();
    t.ok(["sandbox", "create", "--memory", "64m", "web"]);
    t.ok(["run", "-d", "--name", "web", "--memory", "32m", "busybox", "sleep", "3600"]);
    let cmd = inside("memory", "memory.limit_in_bytes", "memory.max");
    assert_eq!(t.ok(["exec", "web", "sh", "-c", &cmd]), "33554432\n", "the lone container has its own cgroup");
    t.ok(["run", "-d", "--join", "web", "--name", "inpod", "busybox", "sleep", "3600"]);
    let st: serde_json::Value = serde_json::from_str(&t.ok(["inspect", "web"])).unwrap();
    let pod: serde_json::Value = serde_json::from_str(&t.ok(["inspect", "inpod"])).unwrap();
    assert!(st["cgroup"].as_str().unwrap().ends_with("/container@web"), "{}", st["cgroup"]);
    assert!(pod["cgroup"].as_str().unwrap().ends_with("/web/inpod"), "{}", pod["cgroup"]);
    // pause's cgroup name is taken inside a sandbox.
    let err = t.fails(["run", "--rm", "--join", "web", "--name", "pause", "busybox", "true"]);
    assert!(err.contains("the name of the sandbox's own pause"), "{err}");
    let pids = t.known_pids();
    t.ok(["rm", "-f", "web"]);
    t.ok(["sandbox", "rm", "-f", "web"]);
    t.assert_clean(&pids);
}

#[test]
fn cpuset_cpus_pins_a_container_and_a_pods_cpuset_binds_its_containers() {
    if !need_root("cpuset_cpus_pins_a_container_and_a_pods_cpuset_binds_its_containers") {
        return;
    }
    let t = TestRoot::with_busybox();
    let allowed = "grep Cpus_allowed_list /proc/self/status | cut -f2";
    // A v2 host may not offer the cpuset controller at all (the uml guest does not): then
    // the flag must be refused clearly, and nothing made.
    if !common::has_cpuset() {
        let err = t.fails(["run", "--rm", "--cpuset-cpus", "0", "busybox", "true"]);
        assert!(err.contains("offer no cpuset.cpus (its controller is not available here)"), "{err}");
        t.assert_clean(&[]);
        return;
    }
    assert_eq!(t.ok(["run", "--rm", "--cpuset-cpus", "0", "busybox", "sh", "-c", allowed]), "0\n");
    t.ok(["sandbox", "create", "--cpuset-cpus", "0", "pinned"]);
    assert_eq!(
        t.ok(["run", "--rm", "--join", "pinned", "busybox", "sh", "-c", allowed]),
        "0\n",
        "the pod's cpuset binds"
    );
    let pids = t.known_pids();
    t.ok(["sandbox", "rm", "-f", "pinned"]);
    t.assert_clean(&pids);
}

#[test]
fn stats_shows_the_limit_that_binds_a_container_in_a_limited_pod() {
    if !need_root("stats_shows_the_limit_that_binds_a_container_in_a_limited_pod") {
        return;
    }
    let t = TestRoot::with_busybox();
    t.ok(["sandbox", "create", "--memory", "256m", "pod"]);
    t.ok(["run", "-d", "--join", "pod", "--name", "free", "busybox", "sleep", "600"]);
    t.ok(["run", "-d", "--join", "pod", "--name", "own", "--memory", "64m", "busybox", "sleep", "600"]);
    let limit = |name: &str| {
        let v: serde_json::Value =
            serde_json::from_str(&t.ok(["stats", "--no-stream", "--format", "json", name])).unwrap();
        v[0]["memory_limit"].as_u64()
    };
    // Without a limit of its own, the pod's binds it (issue 19: it said unlimited); with a
    // smaller one of its own, that one; the table says the same (in docker's units: 256
    // MiB are 268.435 MB).
    assert_eq!(limit("free"), Some(256 << 20));
    assert_eq!(limit("own"), Some(64 << 20));
    let table = t.ok(["stats", "--no-stream", "free"]);
    assert!(table.contains("/ 268.435 MB") && !table.contains("unlimited"), "{table}");
    let pids = t.known_pids();
    t.ok(["sandbox", "rm", "-f", "pod"]);
    t.assert_clean(&pids);
}
