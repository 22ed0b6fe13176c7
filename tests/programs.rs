//! Real programs a user runs to see a machine's resources, from Debian's packages (procps:
//! free, top, ps, vmstat, uptime, w; GNU coreutils' nproc; util-linux's lscpu and taskset;
//! Python; the host's JDK 17, bound in), in a 256 MiB / 0.5 CPU container: every figure is
//! the container's, they agree with each other, in `run`, in `exec` and in a pod sharing its
//! pid namespace; with `--procview off` they are the host's. Runs on both cgroup worlds.

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
echo "online $(cat /sys/devices/system/cpu/online)"
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
    // Where the host has NUMA nodes, node 0 holds the container's CPU, not the host's.
    if std::path::Path::new("/sys/devices/system/node/node0/cpumap").exists() {
        assert_eq!(f.get("numa0"), f.get("online"), "{what}: lscpu's NUMA node0 CPU(s)\n{out}");
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

/// Where the view says the container's CPUs are, what the kernel lets it use, and whether a
/// program pinning itself to the CPUs the view lists (taskset, as thread pools do) can.
const CPUS: &str = r#"
echo "online $(cat /sys/devices/system/cpu/online)"
echo "node0 $(cat /sys/devices/system/node/node0/cpulist 2>/dev/null || cat /sys/devices/system/cpu/online)"
echo "allowed $(grep Cpus_allowed_list /proc/self/status | cut -f2)"
echo "cpuinfo $(grep ^processor /proc/cpuinfo | cut -d: -f2 | tr -d ' ' | tr '\n' ' ')"
echo "stat $(grep -o '^cpu[0-9][0-9]*' /proc/stat | tr '\n' ' ')"
taskset -c "$(cat /sys/devices/system/cpu/online)" true && echo "taskset ok"
"#;

/// The CPUs a cpulist names ("0-2,5").
fn cpulist(s: &str) -> Vec<u32> {
    s.trim()
        .split(',')
        .filter(|p| !p.is_empty())
        .flat_map(|p| match p.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect::<Vec<u32>>(),
            None => vec![p.parse().unwrap()],
        })
        .collect()
}

#[test]
fn the_views_cpus_are_the_kernels_numbers_and_a_program_can_pin_itself_to_them() {
    if !need_root("the_views_cpus_are_the_kernels_numbers_and_a_program_can_pin_itself_to_them") {
        return;
    }
    let t = TestRoot::new();
    t.import(&common::debian_oci(), &[]);
    let look = |flags: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend(flags);
        args.extend(["debian", "sh", "-c", CPUS]);
        let out = t.ok(args);
        let f = figures(&out);
        let list = |key: &str| f.get(key).map(|v| v.join(" ")).unwrap_or_else(|| panic!("no {key}: {out}"));
        let online = cpulist(&list("online"));
        assert_eq!(cpulist(&list("node0")), online, "{flags:?}: node0's CPUs are the online ones\n{out}");
        let allowed = cpulist(&list("allowed"));
        assert!(online.iter().all(|c| allowed.contains(c)), "{flags:?}: every CPU listed may be used\n{out}");
        let numbers = |key: &str| list(key).split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let names = |prefix: &str| online.iter().map(|c| format!("{prefix}{c}")).collect::<Vec<_>>();
        assert_eq!(numbers("cpuinfo"), names(""), "{flags:?}: cpuinfo's processors\n{out}");
        assert_eq!(numbers("stat"), names("cpu"), "{flags:?}: /proc/stat's CPUs\n{out}");
        assert!(out.contains("taskset ok"), "{flags:?}: taskset -c of the CPUs listed\n{out}");
        online
    };
    // Half a CPU: one CPU, one the container may run on.
    assert_eq!(look(&["--cpus", "0.5"]).len(), 1);
    // Pinned to the host's last CPU (CPU 1 of 2 here): the view says CPU 1, as the kernel
    // does, not CPU 0, which the container may not use (taskset -c 0 would fail).
    if common::has_cpuset() {
        let host = cpulist(&std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap());
        let last = host.last().unwrap().to_string();
        assert_eq!(look(&["--cpuset-cpus", &last]), [host[host.len() - 1]]);
    } else {
        let err = t.fails(["run", "--rm", "--cpuset-cpus", "0", "debian", "true"]);
        assert!(err.contains("offer no cpuset.cpus"), "{err}");
    }
    t.assert_clean(&[]);
}

/// Debian's JDK 17 on this machine (.ci/run installs openjdk-17-jdk-headless): its home and
/// the configuration its lib/ links into /etc. Without it the test fails when
/// PODRUN_TEST_REQUIRE_ALL is set, and is reported as skipped otherwise.
fn need_jdk(test: &str) -> Option<(&'static str, &'static str)> {
    const HOME: &str = "/usr/lib/jvm/java-17-openjdk-amd64";
    const ETC: &str = "/etc/java-17-openjdk";
    if std::path::Path::new(HOME).join("bin/javac").exists() && std::path::Path::new(ETC).is_dir() {
        return Some((HOME, ETC));
    }
    if std::env::var_os("PODRUN_TEST_REQUIRE_ALL").is_some() {
        panic!("{test}: needs Debian's openjdk-17-jdk-headless (.ci/run installs it)");
    }
    eprintln!("SKIPPED {test}: needs Debian's openjdk-17-jdk-headless");
    None
}

/// What a Java program sizes itself by (java.lang.Runtime), and what the JVM says of its
/// container (-XshowSettings:system).
const PROBE: &str = r#"
public class Probe {
    public static void main(String[] a) {
        Runtime r = Runtime.getRuntime();
        System.out.println("cpus " + r.availableProcessors());
        System.out.println("heap_mb " + (r.maxMemory() >> 20));
        var os = (com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory.getOperatingSystemMXBean();
        System.out.println("total_mb " + (os.getTotalMemorySize() >> 20));
    }
}
"#;

#[test]
fn a_jvm_sizes_its_heap_and_threads_by_the_containers_limits() {
    if !need_root("a_jvm_sizes_its_heap_and_threads_by_the_containers_limits") {
        return;
    }
    let Some((home, etc)) = need_jdk("a_jvm_sizes_its_heap_and_threads_by_the_containers_limits") else { return };
    let t = TestRoot::new();
    t.import(&common::debian_oci(), &[]);
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("Probe.java"), PROBE).unwrap();
    let (jdk, conf, probe) =
        (format!("{home}:{home}:ro"), format!("{etc}:{etc}:ro"), format!("{}:/probe:ro", src.path().display()));
    let java = format!("{home}/bin/java");
    let run = |view: &str| {
        let base = ["run", "--rm", "--procview", view, "--memory", "256m", "--cpus", "0.5", "-v", &jdk, "-v", &conf];
        let mut args = base.to_vec();
        // (-XshowSettings prints on stderr.)
        let script = r#""$0" -XshowSettings:system /probe/Probe.java 2>&1; free -k | awk '/^Mem:/{print "free", $2}'"#;
        args.extend(["-v", &probe, "debian", "sh", "-c", script, &java]);
        let out = t.ok(args);
        (figures(&out), out)
    };
    let (on, out) = run("on");
    assert_eq!(num(&on, "cpus", 0), 1.0, "availableProcessors\n{out}");
    assert!(out.contains("Effective CPU Count: 1"), "{out}");
    // The heap from 256 MiB (HotSpot takes half of so little), not from the host's GiBs;
    // the machine's memory is the container's.
    let heap = num(&on, "heap_mb", 0);
    assert!((64.0..=128.0).contains(&heap), "maxMemory {heap} MiB\n{out}");
    assert_eq!(num(&on, "total_mb", 0), 256.0, "OperatingSystemMXBean's total memory\n{out}");
    // The JVM reports its limit (HotSpot ignores a limit not below the machine's memory, so
    // the view tells a JVM of one page more), while free, in the same container, says the
    // limit exactly.
    assert!(out.contains("Memory Limit: 256.00M"), "{out}");
    assert_eq!(num(&on, "free", 0), 262_144.0, "free beside the JVM\n{out}");
    // Without the view the JVM reads the cgroup itself and reports its limit; whether it
    // sizes its heap by it depends on whether it takes itself to be in a container (on a
    // cgroup v2 guest, JDK 17.0.15 takes 25% of the machine's memory: 970 MiB).
    let (off, out_off) = run("off");
    assert_eq!(num(&off, "cpus", 0), 1.0, "--procview off\n{out_off}");
    assert!(out_off.contains("Memory Limit: 256.00M"), "{out_off}");
    t.assert_clean(&[]);
}
