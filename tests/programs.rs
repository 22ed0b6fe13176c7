//! Real programs a user runs to see a machine's resources, from Debian's packages (procps:
//! free, top, ps, vmstat, uptime, w; GNU coreutils' nproc; util-linux's lscpu; Python), in a
//! 256 MiB / 0.5 CPU container: every figure is the container's, they agree with each
//! other, in `run`, in `exec` and in a pod sharing its pid namespace; with `--procview off`
//! they are the host's. Runs on both cgroup worlds.

mod common;

use common::{need_root, TestRoot};

/// Prints one `key value...` line per figure, each from the program a user would ask.
const LOOK: &str = r#"
free -k | awk '/^Mem:/{print "free", $2, $4}'
echo "nproc $(nproc)"
python3 -c 'import os; print("python", os.cpu_count(), os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") >> 20)'
top -bn1 | awk '/^MiB Mem/{print "top_mem", $4} /^%Cpu/{print "top_cpu_lines", NR}'
vmstat | tail -1 | awk '{print "vmstat", $4, $11, $12}'
lscpu | awk -F: '/^CPU\(s\)/{gsub(/ /, "", $2); print "lscpu", $2} /^NUMA node0 CPU/{gsub(/ /, "", $2); print "numa0", $2}'
uptime | sed -n 's/.* up \([^,]*\),.*/uptime \1/p' | tr -s ' ' | sed 's/ min/min/'
echo "ps_pid1_age $(ps -o etimes= -p 1 | tr -d ' ')"
echo "proc_uptime $(cut -d' ' -f1 /proc/uptime)"
"#;

/// The figures LOOK printed, by key.
fn figures(out: &str) -> std::collections::HashMap<String, Vec<String>> {
    out.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_owned(), it.map(str::to_owned).collect()))
        })
        .collect()
}

fn num(f: &std::collections::HashMap<String, Vec<String>>, key: &str, i: usize) -> f64 {
    f.get(key).and_then(|v| v.get(i)).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no {key}[{i}] in {f:?}"))
}

fn host_mem_kb() -> u64 {
    let m = std::fs::read_to_string("/proc/meminfo").unwrap();
    m.lines().find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse().ok()).unwrap()
}

/// What a 256 MiB, one-CPU (0.5 of one) container's programs must all say.
fn assert_limited(out: &str, what: &str) {
    let f = figures(out);
    assert_eq!(num(&f, "free", 0), 262_144.0, "{what}: procps free's total\n{out}");
    assert_eq!(num(&f, "nproc", 0), 1.0, "{what}: nproc\n{out}");
    assert_eq!((num(&f, "python", 0), num(&f, "python", 1)), (1.0, 256.0), "{what}: Python\n{out}");
    assert_eq!(num(&f, "top_mem", 0), 256.0, "{what}: top's MiB Mem total\n{out}");
    assert_eq!(num(&f, "lscpu", 0), 1.0, "{what}: lscpu's CPU(s)\n{out}");
    // Where the host has NUMA nodes, node 0 holds the container's CPUs, not the host's.
    if std::path::Path::new("/sys/devices/system/node/node0/cpumap").exists() {
        assert_eq!(num(&f, "numa0", 0), 0.0, "{what}: lscpu's NUMA node0 CPU(s)\n{out}");
    }
    // vmstat's free memory is free's (the same moment, give or take a MiB); interrupts and
    // context switches are no cgroup's, so 0, not the host's totals.
    assert!((num(&f, "vmstat", 0) - num(&f, "free", 1)).abs() < 1024.0, "{what}: vmstat free against free\n{out}");
    assert_eq!((num(&f, "vmstat", 1), num(&f, "vmstat", 2)), (0.0, 0.0), "{what}: vmstat in and cs\n{out}");
    // The clock is the container's: uptime says minutes since it started, and PID 1 is as
    // old as the container (ps ELAPSED from its start time against the uptime).
    assert_eq!(f.get("uptime").map(|v| v.join(" ")), Some("0min".to_owned()), "{what}: uptime\n{out}");
    let (age, up) = (num(&f, "ps_pid1_age", 0), num(&f, "proc_uptime", 0));
    assert!(up < 60.0 && (age - up).abs() <= 1.5, "{what}: ps says PID 1 is {age} s old, uptime {up} s\n{out}");
}

#[test]
fn procps_coreutils_lscpu_and_python_agree_with_the_limits_in_run_exec_and_a_pod() {
    if !need_root("procps_coreutils_lscpu_and_python_agree_with_the_limits_in_run_exec_and_a_pod") {
        return;
    }
    let t = TestRoot::new();
    t.import(&common::debian_oci(), &[]);
    let limits = ["--memory", "256m", "--cpus", "0.5"];
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend(extra);
        args.extend(["debian", "sh", "-c", LOOK]);
        t.ok(args)
    };
    assert_limited(&run(&limits), "run");
    // An exec'd process sees the same, its container's clock included.
    t.ok(["run", "-d", "--name", "c", "--memory", "256m", "--cpus", "0.5", "debian", "sleep", "600"]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let out = t.ok(["exec", "c", "sh", "-c", LOOK]);
    assert_limited(&out, "exec");
    assert!(num(&figures(&out), "proc_uptime", 0) >= 1.5, "exec: the container's uptime, not the exec's\n{out}");
    // A pod's limit, in a container of a pod that shares its pid namespace (PID 1 is
    // pause, as old as the pod).
    t.ok(["sandbox", "create", "--share-pid", "--memory", "256m", "--cpus", "0.5", "pod"]);
    assert_limited(&run(&["--join", "pod"]), "pod");
    // Without the view: the host's.
    let f = figures(&run(&["--procview", "off", "--memory", "256m", "--cpus", "0.5"]));
    let cpus = std::thread::available_parallelism().unwrap().get() as f64;
    assert_eq!(num(&f, "free", 0), host_mem_kb() as f64, "--procview off: the host's memory");
    assert_eq!(num(&f, "lscpu", 0), cpus, "--procview off: the host's CPUs");
    let pids = t.known_pids();
    t.ok(["rm", "-f", "c"]);
    t.ok(["sandbox", "rm", "-f", "pod"]);
    t.assert_clean(&pids);
}
