//! The resource view (podrun-procfs): files served over FUSE and sysinfo(2) answered through
//! seccomp notifications, for processes in different cgroups: each sees its own cgroup's
//! limits, a process outside sees the host. Runs on both cgroup worlds.

mod common;

use common::need_root;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use podrun::cgroup::{self, Hierarchy, Limits};

fn mem_total_kb(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Removes the test's cgroup also when the test fails.
struct TestCgroup<'a> {
    h: &'a Hierarchy,
    top: String,
    path: String,
}

impl Drop for TestCgroup<'_> {
    fn drop(&mut self) {
        let _ = cgroup::remove(self.h, &self.top, &self.path);
    }
}

#[test]
fn a_reader_sees_its_own_cgroups_limits_and_an_outsider_the_host() {
    if !need_root("a_reader_sees_its_own_cgroups_limits_and_an_outsider_the_host") {
        return;
    }
    let h = Hierarchy::host().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let session = podrun_procfs::fuse::serve(h.clone(), dir.path()).expect("mount the view");
    let top = format!("/podrun-procview-test-{}", std::process::id());
    let cg = TestCgroup { h: &h, top: top.clone(), path: format!("{top}/c") };
    let limits = Limits { memory: Some(256 << 20), cpu_quota: Some((50_000, 100_000)), ..Limits::default() };
    cgroup::create(&h, &cg.top, &cg.path, &limits).unwrap();
    let entry = cgroup::Entry::open(&h, &cg.path).unwrap();

    // SAFETY: the child only joins the cgroup, reads three files and _exits.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let ok = entry.join(false).is_ok()
                && std::fs::read_to_string(dir.path().join("meminfo")).is_ok_and(|m| mem_total_kb(&m) == 262_144)
                && std::fs::read_to_string(dir.path().join("online")).is_ok_and(|o| o == "0\n")
                && std::fs::read_to_string(dir.path().join("cpuinfo"))
                    .is_ok_and(|c| c.matches("processor").count() == 1);
            // SAFETY: _exit in the forked child.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        ForkResult::Parent { child } => {
            assert_eq!(
                waitpid(child, None).unwrap(),
                WaitStatus::Exited(child, 0),
                "the limited reader saw other values"
            );
        }
    }
    // This process is not in that cgroup: it sees the host's memory.
    let host = mem_total_kb(&std::fs::read_to_string("/proc/meminfo").unwrap());
    assert_eq!(mem_total_kb(&std::fs::read_to_string(dir.path().join("meminfo")).unwrap()), host);
    let listing: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listing.len(), podrun_procfs::caller::ViewFile::ALL.len(), "{listing:?}");
    drop(session);
    drop(cg);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(dir.path().to_str().unwrap()), "the view is still mounted");
    assert!(h.dirs(&top).iter().all(|(_, d)| !d.exists()), "the test cgroup was left");
}

fn kb(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
}

fn host_mem_total() -> u64 {
    kb(&std::fs::read_to_string("/proc/meminfo").unwrap(), "MemTotal")
}

/// The running processes of this root's view whose command line starts with `argv0`
/// (`podrun-view` for servers, `podrun-keeper` for keepers), with their comm.
fn view_processes(t: &common::TestRoot, argv0: &str) -> Vec<(i32, String)> {
    let root = t.store();
    common::processes_with(argv0)
        .into_iter()
        .filter(|p| {
            let argv = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let argv: Vec<&[u8]> = argv.split(|&b| b == 0).collect();
            argv.first() == Some(&argv0.as_bytes()) && argv.contains(&root.as_os_str().as_encoded_bytes())
        })
        .map(|p| (p, std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default().trim().to_owned()))
        .collect()
}

/// The view's server: the newest one running (a replaced server may linger a moment
/// before it is reaped).
fn view_server(t: &common::TestRoot) -> Option<i32> {
    view_processes(t, "podrun-view").into_iter().map(|(p, _)| p).max()
}

/// The view's standby keeper, if one runs.
fn view_standby(t: &common::TestRoot) -> Option<i32> {
    view_processes(t, "podrun-keeper").into_iter().find(|(_, c)| c == "podrun:[backup]").map(|(p, _)| p)
}

fn view_gone(t: &common::TestRoot) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = t.store();
    assert!(
        !mounts.lines().any(|l| l.contains("podrun-procview") && l.contains(root.to_str().unwrap())),
        "the view is still mounted"
    );
    assert!(!root.join("procview.active").exists(), "the view's lock is still there");
    // The keeper's and the server's command lines: `podrun-keeper podrun-view --root ROOT ...`
    // and `podrun-view --root ROOT ...`.
    let ours = |p: &i32| {
        let argv = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let argv: Vec<&[u8]> = argv.split(|&b| b == 0).collect();
        argv.contains(&root.as_os_str().as_encoded_bytes())
            && matches!(argv.first(), Some(&b"podrun-view" | &b"podrun-keeper"))
    };
    common::eventually(2, "a keeper or server of this root is still running", || {
        !common::processes_with("podrun-view").iter().any(ours)
    });
}

#[test]
fn a_limited_container_sees_its_limits_in_proc_and_sys() {
    if !need_root("a_limited_container_sees_its_limits_in_proc_and_sys") {
        return;
    }
    let t = common::TestRoot::with_busybox();
    let script = "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; grep ^cpu /proc/stat; echo ==; \
                  cat /proc/meminfo; echo ==; grep -c ^processor /proc/cpuinfo; cat /sys/devices/system/cpu/online; \
                  cat /proc/uptime; nproc; echo ==; top -bn1 | head -1; echo ==; \
                  head -c 60m /dev/zero >/dev/shm/x; grep MemAvailable /proc/meminfo; echo ==; \
                  rm /dev/shm/x; sleep 0.05; free -m; x=$(head -c 100m /dev/zero | tr \"\\0\" a); free -m; uptime";
    let out = t.ok(["run", "--rm", "--memory", "256m", "--cpus", "0.5", "busybox", "sh", "-c", script]);
    let stat: Vec<&str> = out.split("==\n").next().unwrap().lines().collect();
    let out = out.split_once("==\n").unwrap().1.to_owned();
    // /proc/stat: one CPU, and the busy loop's time is in it (user + system ticks).
    assert_eq!(stat.len(), 2, "{stat:?}");
    // Named by the kernel's number: the one CPU the container is given (podrun spreads
    // containers over the CPUs), which cpu/online lists below.
    let cpu = stat[1].split_whitespace().next().unwrap().trim_start_matches("cpu").to_owned();
    assert!(cpu.parse::<u32>().is_ok(), "{stat:?}");
    let f: Vec<u64> = stat[0].split_whitespace().skip(1).map(|v| v.parse().unwrap()).collect();
    assert!(f[0] + f[2] > 0, "no CPU time counted: {stat:?}");
    assert!(f[3] < 60 * 100, "idle {} ticks: more than a minute of one CPU", f[3]);
    let parts: Vec<&str> = out.split("==\n").collect();
    assert_eq!(parts.len(), 5, "{out}");
    assert_eq!(kb(parts[0], "MemTotal"), 262_144, "{}", parts[0]);
    let mut lines = parts[1].lines();
    assert_eq!(lines.next(), Some("1"), "processors");
    assert_eq!(lines.next(), Some(cpu.as_str()), "cpu/online: the CPU /proc/stat names");
    let up: f64 = lines.next().and_then(|l| l.split_whitespace().next()?.parse().ok()).unwrap();
    assert!(up < 60.0, "uptime {up} s is the host's, not the container's");
    assert_eq!(lines.next(), Some("1"), "nproc: CPU affinity cut to the view's count");
    // top: "Mem: 1416K used, 260728K free, ...": used + free is the limit.
    let mem = parts[2].trim();
    let n = |s: &str| s.trim().trim_end_matches(|c: char| !c.is_ascii_digit()).parse::<u64>().unwrap();
    let used = n(mem.split("K used").next().unwrap().trim_start_matches("Mem:"));
    let free = n(mem.split(", ").nth(1).unwrap().split("K free").next().unwrap());
    assert!((used + free).abs_diff(262_144) < 1024, "top shows {mem}");
    // 60 MiB in the container's /dev/shm (a tmpfs, charged to its cgroup): used.
    assert!(kb(parts[3], "MemAvailable") < 200 * 1024, "{out}");
    // (The sleep after rm: the view reuses a cgroup's numbers for 10 ms, so one `free` could
    // otherwise take sysinfo's from before the rm and meminfo's from after.)
    // busybox free and uptime ask sysinfo(2), which the view answers: "Mem: 256 ...", a
    // 100 MiB string in the shell as used, and the container's uptime and (small) load.
    let lines: Vec<&str> = parts[4].lines().collect();
    assert_eq!(lines.len(), 7, "{}", parts[4]);
    let mem = |line: &str| -> Vec<u64> { line.split_whitespace().skip(1).map(|v| v.parse().unwrap()).collect() };
    let (before, after) = (mem(lines[1]), mem(lines[4]));
    assert_eq!((before[0], after[0]), (256, 256), "free -m total: {}", parts[4]);
    assert!(before[1] < 20 && after[1] >= 100 && after[1] < 256, "free -m used: {}", parts[4]);
    let uptime = lines[6];
    assert!(uptime.contains(" up 0 min,"), "{uptime}");
    let load: f64 = uptime.rsplit("load average: ").next().unwrap().split(',').next().unwrap().parse().unwrap();
    assert!(load < 1.0, "{uptime}");
    view_gone(&t);
}

#[test]
fn pods_containers_see_their_own_the_pods_or_the_hosts_limits_and_off_shows_the_host() {
    if !need_root("pods_containers_see_their_own_the_pods_or_the_hosts_limits_and_off_shows_the_host") {
        return;
    }
    let t = common::TestRoot::with_busybox();
    t.ok(["sandbox", "create", "--share-pid", "--memory", "512m", "pod"]);
    let total = |extra: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["busybox", "cat", "/proc/meminfo"]);
        kb(&t.ok(args), "MemTotal")
    };
    // Two containers of one pod, one pid namespace, different limits: each its own.
    t.ok(["run", "-d", "--name", "a", "--join", "pod", "--memory", "128m", "busybox", "sleep", "600"]);
    t.ok(["run", "-d", "--name", "b", "--join", "pod", "--memory", "64m", "busybox", "sleep", "600"]);
    assert_eq!(kb(&t.ok(["exec", "a", "cat", "/proc/meminfo"]), "MemTotal"), 128 * 1024);
    assert_eq!(kb(&t.ok(["exec", "b", "cat", "/proc/meminfo"]), "MemTotal"), 64 * 1024);
    // An exec'd process gets sysinfo(2) answered too (free's unit: KiB).
    assert_eq!(t.ok(["exec", "b", "sh", "-c", "free | awk '/Mem:/{print $2}'"]), format!("{}\n", 64 * 1024));
    assert_eq!(total(&["--join", "pod"]), 512 * 1024, "no limit of its own: the pod's");
    assert_eq!(total(&[]), host_mem_total(), "no limits at all: the host's");
    assert_eq!(total(&["--memory", "64m", "--procview", "off"]), host_mem_total(), "--procview off");
    // files: the files without the affinity and without sysinfo(2) (free shows the host's;
    // the default seccomp profile, which has no notify rule, still applies).
    let host_cpus = std::thread::available_parallelism().unwrap().get().to_string();
    let files = t.ok([
        "run",
        "--rm",
        "--procview",
        "files",
        "--cpus",
        "0.5",
        "--memory",
        "64m",
        "busybox",
        "sh",
        "-c",
        "nproc; cat /sys/devices/system/cpu/online; free | awk '/Mem:/{print $2}'",
    ]);
    assert_eq!(files, format!("{host_cpus}\n0\n{}\n", host_mem_total()));
    // podrun exec gets the container's affinity.
    t.ok(["run", "-d", "--name", "one", "--cpus", "1", "busybox", "sleep", "600"]);
    assert_eq!(t.ok(["exec", "one", "nproc"]), "1\n");
    t.ok(["rm", "-f", "one"]);
    t.ok(["sandbox", "create", "--procview", "off", "--memory", "64m", "plain"]);
    assert_eq!(total(&["--join", "plain"]), host_mem_total(), "the sandbox's default");
    assert_eq!(total(&["--join", "plain", "--procview", "on"]), 64 * 1024, "overridden per container");
    let pids = t.known_pids();
    t.ok(["sandbox", "rm", "-f", "pod", "plain"]);
    t.assert_clean(&pids);
    view_gone(&t);
}

/// A busybox reader of every kind of read a program makes of the view's files, for ever:
/// `cat` (sendfile, up to the inode's size), `head -1` (read(2)), `free` (sysinfo(2) and
/// /proc/meminfo). It prints only what is wrong: "BAD" and what it read, when a text is
/// empty, short (fewer lines than the first read of it), or not the container's
/// (MemTotal other than WANT kB); and "n N" after every 5 rounds (a round takes about
/// 0.1 s on the host, up to 1 s in the single-CPU v2 guest).
const BUSYBOX_READER: &str = r#"want=$1; n=0; lines() { echo "$(cat "$1")" | wc -l; }
mi=$(lines /proc/meminfo); ci=$(lines /proc/cpuinfo); st=$(lines /proc/stat)
while true; do
  m=$(cat /proc/meminfo 2>&1); case "$m" in "MemTotal: "*" $want kB"*) ;; *) echo "BAD cat meminfo [$m]";; esac
  [ "$(echo "$m" | wc -l)" = "$mi" ] || echo "BAD short meminfo [$m]"
  h=$(head -1 /proc/meminfo 2>&1); case "$h" in "MemTotal: "*" $want kB") ;; *) echo "BAD head meminfo [$h]";; esac
  for f in cpuinfo:$ci stat:$st; do c=$(cat /proc/${f%:*} 2>&1); [ "$(echo "$c" | wc -l)" = "${f#*:}" ] || echo "BAD ${f%:*} [$c]"; done
  l=$(cat /proc/loadavg); case "$l" in [0-9]*.[0-9][0-9]\ *\ */*\ [0-9]*) ;; *) echo "BAD loadavg [$l]";; esac
  u=$(cat /proc/uptime); case "$u" in [0-9]*.[0-9][0-9]\ [0-9]*.[0-9][0-9]) ;; *) echo "BAD uptime [$u]";; esac
  f=$(free | awk '/Mem:/{print $2}'); [ "$f" = "$want" ] || echo "BAD free [$f]"
  n=$((n+1)); [ $((n % 5)) = 0 ] && echo "n $n"
done"#;

/// The same in Python, which stats a file before it reads it (the size the kernel is told
/// matters) and calls sysinfo(2) through ctypes; it also reports a read that took over a
/// second ("BAD slow").
const PYTHON_READER: &str = r#"
import ctypes, sys, time
want = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
info = ctypes.create_string_buffer(112)
def read(f):
    with open(f) as h:
        return h.read()
first = {f: read(f).count("\n") for f in ("/proc/meminfo", "/proc/cpuinfo", "/proc/stat", "/proc/loadavg", "/proc/uptime", "/proc/swaps")}
n = 0
while True:
    for f, lines in first.items():
        t = time.monotonic()
        try:
            text = read(f)
        except OSError as e:
            print("BAD", f, e, flush=True)
            continue
        took = time.monotonic() - t
        if text.count("\n") != lines or not text.endswith("\n"):
            print("BAD", f, repr(text), flush=True)
        elif f == "/proc/meminfo" and text.split()[:2] != ["MemTotal:", str(want)]:
            print("BAD", f, repr(text), flush=True)
        if took > 1:
            print("BAD slow", f, took, flush=True)
    t = time.monotonic()
    r = libc.sysinfo(info)
    took = time.monotonic() - t
    total = int.from_bytes(info[32:40], "little") * int.from_bytes(info[104:108], "little")
    if r != 0 or total != want * 1024 or took > 1:
        print("BAD sysinfo", r, ctypes.get_errno(), total, took, flush=True)
    n += 1
    if n % 20 == 0:
        print("n", n, flush=True)
"#;

/// A pseudo-random number below `n` (xorshift; the seed is printed, so a failure can be
/// replayed in a debugger: the sequence of kills is what matters).
fn next_random(state: &mut u64, n: u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state % n
}

/// Where the processes of the containers `names` wait (comm, wchan and kernel stack), for a
/// failure's message.
fn stuck(names: &[String]) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else { continue };
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let Some(name) = names.iter().find(|n| cg.contains(&format!("container@{n}"))) else { continue };
        let read = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap_or_default();
        out += &format!("{name} {pid} {} {}\n{}\n", read("comm").trim(), read("wchan"), read("stack"));
    }
    out
}

/// The last "n N" a reader printed: how many rounds it has done.
fn rounds(log: &str) -> u64 {
    log.lines().rev().find_map(|l| l.strip_prefix("n ")?.parse().ok()).unwrap_or(0)
}

/// Which of the view's processes a round of the chaos test kills, by the round: the
/// server, the keeper, and both (issue 19). PODRUN_TEST_KILL_BACKUP=1 adds rounds that kill
/// the backup too, alone and with either: each kill of two may then take the two left
/// while the third is being replaced (a fork and an exec, which a loaded machine stretches
/// past 50 ms), which ends the view; so not by default.
fn victims() -> Vec<&'static [&'static str]> {
    let mut v: Vec<&'static [&'static str]> = vec![&["server"], &["keeper"], &["keeper", "server"]];
    if std::env::var_os("PODRUN_TEST_KILL_BACKUP").is_some() {
        v.extend([&["standby"][..], &["keeper", "standby"][..], &["standby", "server"][..]]);
    }
    v
}

#[test]
fn readers_never_see_an_empty_short_or_host_text_while_the_views_processes_are_killed() {
    if !need_root("readers_never_see_an_empty_short_or_host_text_while_the_views_processes_are_killed") {
        return;
    }
    let t = common::TestRoot::with_busybox();
    t.import(&common::python_oci(), &[]);
    // 8 readers in 3 containers, and a Python reader in a fourth.
    let mut names = Vec::new();
    for (i, mem) in ["64m", "96m", "128m"].iter().enumerate() {
        let name = format!("r{i}");
        let want = mem.trim_end_matches('m').parse::<u64>().unwrap() * 1024;
        let readers = if i == 0 { 2 } else { 3 };
        let script = format!("r() {{ {BUSYBOX_READER}\n}}; ") + &"r $0 & ".repeat(readers) + "wait";
        t.ok(["run", "-d", "--name", &name, "--memory", mem, "busybox", "sh", "-c", &script, &want.to_string()]);
        names.push(name);
    }
    t.ok(["run", "-d", "--name", "py", "--memory", "256m", "python", "python3", "-c", PYTHON_READER, "262144"]);
    names.push("py".into());
    let progress = || names.iter().map(|n| rounds(&t.ok(["logs", n]))).collect::<Vec<_>>();
    // What each reader printed last, and where the containers' processes wait.
    let report = || {
        let tails: Vec<String> = names
            .iter()
            .map(|n| format!("{n}: {:?}", t.ok(["logs", n]).lines().rev().take(3).collect::<Vec<_>>()))
            .collect();
        format!("{:?}\n{tails:#?}\n{}", progress(), stuck(&names))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !progress().iter().all(|&r| r > 0) {
        assert!(std::time::Instant::now() < deadline, "the readers did not start reading: {}", report());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("kill intervals seeded with {seed}");
    // The server, the keeper, and both at once, 24 times at random 50-500 ms intervals;
    // new containers and execs work throughout.
    let kinds = victims();
    for round in 0..24 {
        std::thread::sleep(std::time::Duration::from_millis(50 + next_random(&mut seed, 450)));
        let victims: Vec<i32> = kinds[round % kinds.len()]
            .iter()
            .filter_map(|v| match *v {
                "server" => view_server(&t),
                "keeper" => Some(view_keeper(&t)),
                _ => view_standby(&t),
            })
            .collect();
        eprintln!(
            "round {round}: {:?} of keepers {:?} servers {:?}",
            kinds[round % kinds.len()],
            view_processes(&t, "podrun-keeper"),
            view_processes(&t, "podrun-view")
        );
        for v in victims {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(v), nix::sys::signal::Signal::SIGKILL);
        }
        if round % 4 == 3 {
            let out = t.ok(["run", "--rm", "--memory", "32m", "busybox", "free"]);
            assert!(out.contains(" 32768 "), "a new container, round {round}: {out}");
            let out = t.ok(["exec", "r0", "head", "-1", "/proc/meminfo"]);
            assert!(out.contains(" 65536 kB"), "an exec, round {round}: {out}");
        }
    }
    // One of each is left serving.
    common::eventually(2, "not one keeper, one standby and one server", || {
        let keepers = view_processes(&t, "podrun-keeper");
        keepers.len() == 2 && keepers.iter().any(|(_, c)| c == "podrun:[backup]") && view_server(&t).is_some()
    });
    // Every reader goes on reading after the last kill.
    let before = progress();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !progress().iter().zip(&before).all(|(now, then)| now > then) {
        if std::time::Instant::now() > deadline {
            panic!("a reader stopped reading after the kills: {before:?} then {}", report());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let host = format!(" {} kB", host_mem_total());
    for name in &names {
        let log = t.ok(["logs", name]);
        let bad: Vec<&str> = log.lines().filter(|l| l.starts_with("BAD") || l.contains(&host)).collect();
        assert!(bad.is_empty(), "{name}: {bad:#?}");
    }
    let pids = t.known_pids();
    for name in &names {
        t.ok(["rm", "-f", name]);
    }
    t.assert_clean(&pids);
    view_gone(&t);
}

/// The keeper and the server killed together, again and again, each keeper the moment it
/// holds the lock (before it has started anything): the standby, which is never killed
/// here, forks each next keeper and stays the same process, and the view goes on. (A
/// standby that became the keeper itself, as the last CI failure showed, was then the
/// only holder left: killed with the server, it ended the view for good.)
#[test]
fn the_keeper_and_the_server_killed_as_each_keeper_starts_never_end_the_view() {
    if !need_root("the_keeper_and_the_server_killed_as_each_keeper_starts_never_end_the_view") {
        return;
    }
    let t = common::TestRoot::with_busybox();
    t.ok(["run", "-d", "--name", "c", "--memory", "64m", "busybox", "sleep", "600"]);
    assert!(t.ok(["exec", "c", "head", "-1", "/proc/meminfo"]).contains(" 65536 kB"));
    let standby = view_standby(&t).expect("a standby keeper");
    let mut keeper = view_keeper(&t);
    for round in 0..10 {
        for pid in [Some(keeper), view_server(&t)].into_iter().flatten() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let killed = keeper;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            keeper = view_keeper(&t);
            if keeper != killed && std::path::Path::new(&format!("/proc/{keeper}")).exists() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: no keeper after {killed}; keepers {:?} servers {:?}, standby was {standby}",
                view_processes(&t, "podrun-keeper"),
                view_processes(&t, "podrun-view")
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    assert_eq!(view_standby(&t), Some(standby), "the standby is the one there was");
    assert!(t.ok(["exec", "c", "head", "-1", "/proc/meminfo"]).contains(" 65536 kB"));
    // Nothing else of the view is left: a server child whose keeper was killed before it
    // said GO ends (it once waited for ever, holding the keeper's lock).
    common::eventually(2, "the keeper and its standby are not alone", || {
        view_processes(&t, "podrun-keeper").len() == 2
    });
    let pids = t.known_pids();
    t.ok(["rm", "-f", "c"]);
    t.assert_clean(&pids);
    view_gone(&t);
}

#[test]
fn debian_python_sizes_itself_by_the_containers_limits() {
    if !need_root("debian_python_sizes_itself_by_the_containers_limits") {
        return;
    }
    let t = common::TestRoot::new();
    t.import(&common::python_oci(), &[]);
    // What programs size thread pools and heaps by: glibc's sysconf reads
    // /sys/devices/system/cpu/online for the CPU count and asks sysinfo(2) for the memory.
    let script = "import os; print(os.cpu_count(), len(os.sched_getaffinity(0)), \
                  os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') >> 20)";
    let run = |view: &str| {
        t.ok(["run", "--rm", "--procview", view, "--memory", "256m", "--cpus", "1", "python", "python3", "-c", script])
    };
    assert_eq!(run("on"), "1 1 256\n");
    // procps (top, free, vmstat) keeps a file open and reads it again after lseek(0): each
    // such read is a fresh look, not the copy made at open.
    let reread = "import time; f = open('/proc/uptime'); a = float(f.read().split()[0]); time.sleep(1.2); \
                  f.seek(0); b = float(f.read().split()[0]); print(round(b - a))";
    assert_eq!(t.ok(["run", "--rm", "python", "python3", "-c", reread]), "1\n");
    let cpus = std::thread::available_parallelism().unwrap().get();
    // SAFETY: sysconf has no preconditions.
    let host_mb = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) * libc::sysconf(libc::_SC_PAGESIZE) } >> 20;
    assert_eq!(run("off"), format!("{cpus} {cpus} {host_mb}\n"), "without the view: the host's");
    t.assert_clean(&[]);
    view_gone(&t);
}

#[test]
fn a_container_that_cannot_reach_the_sysinfo_agent_fails_clearly_and_leaves_nothing() {
    if !need_root("a_container_that_cannot_reach_the_sysinfo_agent_fails_clearly_and_leaves_nothing") {
        return;
    }
    let t = common::TestRoot::with_busybox();
    t.ok(["run", "-d", "--name", "keep", "busybox", "sleep", "600"]);
    let pids = t.known_pids();
    std::fs::remove_file(t.store().join("procview.sock")).unwrap();
    let err = t.fails(["run", "--rm", "--name", "lost", "busybox", "true"]);
    assert!(err.contains("cannot reach the seccomp agent") && err.contains("--procview=files"), "{err}");
    assert_eq!(t.entries("containers"), vec!["keep".to_string()], "nothing of the failed container is left");
    // Without the sysinfo filter the view's files still work.
    let out =
        t.ok(["run", "--rm", "--procview", "files", "--memory", "64m", "busybox", "grep", "MemTotal", "/proc/meminfo"]);
    assert_eq!(kb(&out, "MemTotal"), 64 * 1024);
    t.ok(["rm", "-f", "keep"]);
    t.assert_clean(&pids);
    view_gone(&t);
}

/// /proc/uptime's first field, /proc/stat's btime, and PID 1's start time (seconds after
/// boot) as the container `name` sees them, from a process exec'd into it.
fn clock_of(t: &common::TestRoot, name: &str) -> (f64, u64, f64) {
    let out = t.ok(["exec", name, "sh", "-c", "cat /proc/uptime; grep btime /proc/stat; cat /proc/1/stat"]);
    let lines: Vec<&str> = out.lines().collect();
    let up: f64 = lines[0].split_whitespace().next().unwrap().parse().unwrap();
    let btime: u64 = lines[1].strip_prefix("btime ").unwrap().parse().unwrap();
    // After the command's ')': state is field 3; starttime is field 22.
    let start: u64 = lines[2].rsplit_once(')').unwrap().1.split_whitespace().nth(19).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (up, btime, start as f64 / hz)
}

fn wall_clock() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

#[test]
fn uptime_btime_and_process_start_times_count_from_the_containers_start_in_run_and_exec() {
    if !need_root("uptime_btime_and_process_start_times_count_from_the_containers_start_in_run_and_exec") {
        return;
    }
    let t = common::TestRoot::with_busybox();
    let host_up = || -> f64 {
        std::fs::read_to_string("/proc/uptime").unwrap().split_whitespace().next().unwrap().parse().unwrap()
    };
    let started = wall_clock();
    t.ok(["run", "-d", "--name", "c", "--memory", "64m", "busybox", "sleep", "600"]);
    t.ok(["sandbox", "create", "--share-pid", "pod"]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    t.ok(["run", "-d", "--join", "pod", "--name", "late", "busybox", "sleep", "600"]);
    std::thread::sleep(std::time::Duration::from_millis(1000));
    // An exec'd process sees the container's uptime, not the time since the exec; its PID
    // 1 started at the container's boot; btime plus a process's start is when it started
    // by the wall clock (what ps START shows), and uptime less it is its age (ps ELAPSED).
    let (up, btime, start) = clock_of(&t, "c");
    assert!((2.4..10.0).contains(&up), "uptime {up}: the container's, not the exec's or the host's");
    assert!((0.0..0.5).contains(&start), "PID 1 started {start} s after the container's boot");
    let wall = btime as f64 + start;
    assert!((wall - started).abs() < 2.0, "PID 1 started at {wall} by btime, at {started} by the host");
    // A pod sharing its pid namespace has one clock, from the sandbox's start: a container
    // that came later sees pause (PID 1) start at boot, and itself a second later.
    let (up, _, start) = clock_of(&t, "late");
    assert!((2.4..10.0).contains(&up) && (0.0..0.5).contains(&start), "the pod's clock: up {up}, pause at {start}");
    let me = t.ok(["exec", "late", "sh", "-c", "cat /proc/$(pidof sleep)/stat"]);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let sleep_start = me.rsplit_once(')').unwrap().1.split_whitespace().nth(19).unwrap().parse::<f64>().unwrap() / hz;
    assert!((1.0..up).contains(&sleep_start), "the late container's init started {sleep_start} s after the pod's boot");
    // Without the view, the host's clock.
    let out = t.ok(["run", "--rm", "--procview", "off", "busybox", "cat", "/proc/uptime"]);
    let off: f64 = out.split_whitespace().next().unwrap().parse().unwrap();
    assert!((off - host_up()).abs() < 5.0, "--procview off: the host's uptime, not {off}");
    let pids = t.known_pids();
    t.ok(["rm", "-f", "c"]);
    t.ok(["sandbox", "rm", "-f", "pod"]);
    t.assert_clean(&pids);
    view_gone(&t);
}

#[test]
fn loadavg_is_the_containers_own() {
    if !need_root("loadavg_is_the_containers_own") {
        return;
    }
    let t = common::TestRoot::with_busybox();
    // An idle container beside a busy one: its load stays 0; the busy one's 1-minute load
    // rises after two 5-second samples of two runnable loops (kernel formula: ≈ 0.31), and
    // survives the view server being killed.
    t.ok(["run", "-d", "--name", "idle", "busybox", "sh", "-c", "cat /proc/loadavg >/dev/null; sleep 600"]);
    let script = "cat /proc/loadavg >/dev/null; (while :; do :; done) & (while :; do :; done) & \
                  sleep 11; cat /proc/loadavg; sleep 600";
    t.ok(["run", "-d", "--name", "busy", "busybox", "sh", "-c", script]);
    common::eventually(20, "the busy container never printed its load", || !t.ok(["logs", "busy"]).is_empty());
    let busy = t.ok(["logs", "busy"]);
    let f: Vec<&str> = busy.split_whitespace().collect();
    let one: f64 = f[0].parse().unwrap();
    assert!((0.15..1.0).contains(&one), "1-minute load {one} of two loops over ~10 s: {busy}");
    let tasks: Vec<usize> = f[3].split('/').map(|n| n.parse().unwrap()).collect();
    assert!(tasks[0] >= 1 && tasks[1] <= 6, "running/total of the container's own tasks: {busy}");
    // The server dies: the next one goes on from the averages the keeper kept, not from 0.
    let server = view_server(&t).expect("a view server");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server), nix::sys::signal::Signal::SIGKILL).unwrap();
    let again = t.ok(["exec", "busy", "cat", "/proc/loadavg"]);
    let after: f64 = again.split_whitespace().next().unwrap().parse().unwrap();
    assert!(after >= one * 0.8, "after a server restart the load went from {one} to {after}: {again}");
    t.ok(["rm", "-f", "busy"]);
    let idle = t.ok(["exec", "idle", "cat", "/proc/loadavg"]);
    assert!(idle.starts_with("0.00 0.00 0.00 "), "the idle container's load: {idle}");
    // Its task counts are of now, and the reader counts as running, as the kernel counts
    // it (the sampled count said 0 running of an idle container while cat read it): cat
    // and the sleep, and at most the exec's own stage caught on its way out. /proc/stat
    // agrees, and has no host-wide counters of interrupts and switches (vmstat's in and
    // cs: zeros, not the host's).
    let both = t.ok(["exec", "idle", "cat", "/proc/loadavg", "/proc/stat"]);
    let field = |key: &str| -> usize {
        both.lines().find_map(|l| l.strip_prefix(key)?.parse().ok()).unwrap_or_else(|| panic!("{key}: {both}"))
    };
    let (running, total) = both.split_whitespace().nth(3).and_then(|f| f.split_once('/')).unwrap();
    let (running, total): (usize, usize) = (running.parse().unwrap(), total.parse().unwrap());
    assert!(running >= 1 && (2..=3).contains(&total), "the reader runs, of the container's tasks: {both}");
    assert!(field("procs_running ") >= 1 && (2..=3).contains(&field("processes ")), "{both}");
    assert!(field("intr ") == 0 && field("ctxt ") == 0, "{both}");
    let softirq = both.lines().find_map(|l| l.strip_prefix("softirq ")).unwrap();
    assert!(softirq.split(' ').all(|n| n == "0"), "{both}");
    let pids = t.known_pids();
    t.ok(["rm", "-f", "idle"]);
    t.assert_clean(&pids);
    view_gone(&t);
}

#[test]
fn vmstat_is_the_containers_memory_and_faults_and_zero_for_what_no_cgroup_counts() {
    if !need_root("vmstat_is_the_containers_memory_and_faults_and_zero_for_what_no_cgroup_counts") {
        return;
    }
    let t = common::TestRoot::with_busybox();
    // 20 MiB of anonymous memory held by the shell, then one look at both files.
    let script = "x=$(head -c 20m /dev/zero | tr '\\0' a); cat /proc/vmstat; echo ---; cat /proc/meminfo; echo ${#x}";
    let out = t.ok(["run", "--rm", "--memory", "64m", "busybox", "sh", "-c", script]);
    let (vmstat, meminfo) = out.split_once("---\n").unwrap();
    let host = std::fs::read_to_string("/proc/vmstat").unwrap();
    let value = |text: &str, key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
    };
    assert_eq!(vmstat.lines().count(), host.lines().count(), "the host's keys, in its order");
    // Free memory as free and top see it; the shell's 20 MiB string is anonymous memory.
    let free_kb = value(vmstat, "nr_free_pages") * 4;
    assert!(free_kb.abs_diff(kb(meminfo, "MemFree")) < 2048, "nr_free_pages against MemFree:\n{out}");
    let anon_mb = value(vmstat, "nr_anon_pages") * 4 / 1024;
    assert!((20..64).contains(&anon_mb), "{anon_mb} MiB anonymous: the container's, not the host's");
    // Faults are the cgroup's: some, and far fewer than the host's.
    let faults = value(vmstat, "pgfault");
    assert!(faults > 0 && faults < value(&host, "pgfault") / 2, "pgfault {faults}");
    for key in ["numa_hit", "compact_stall", "pgalloc_normal"] {
        if host.lines().any(|l| l.starts_with(&format!("{key} "))) {
            assert_eq!(value(vmstat, key), 0, "{key}: no cgroup counts it");
        }
    }
    // Without the view: the host's.
    let off = t.ok(["run", "--rm", "--procview", "off", "busybox", "grep", "^pgfault ", "/proc/vmstat"]);
    assert!(value(&off, "pgfault") >= value(&host, "pgfault"), "--procview off: the host's: {off}");
    t.assert_clean(&[]);
    view_gone(&t);
}

/// The descriptor numbers in process `pid` that are seccomp listeners.
fn listeners_of(pid: i32) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("seccomp notify")))
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

#[test]
fn a_sysinfo_call_received_by_a_server_killed_before_it_noted_it_is_answered_by_the_next() {
    if !need_root("a_sysinfo_call_received_by_a_server_killed_before_it_noted_it_is_answered_by_the_next") {
        return;
    }
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let t = common::TestRoot::new();
    t.import(&common::python_oci(), &[]);
    // The container's init calls sysinfo once, when /sig/go appears: once the server is
    // stopped, and this test takes the call. (A fixed 3 s once: on a loaded guest the server
    // was stopped too late, after the call had been answered.)
    let script = "import ctypes, os, time\nwhile not os.path.exists('/sig/go'): time.sleep(0.02)\n\
                  b = ctypes.create_string_buffer(112); \
                  assert ctypes.CDLL(None).sysinfo(b) == 0; \
                  print(int.from_bytes(b[32:40], 'little') * int.from_bytes(b[104:108], 'little') >> 20, flush=True); \
                  time.sleep(600)";
    let sig = tempfile::tempdir().unwrap();
    let volume = format!("{}:/sig", sig.path().display());
    t.ok(["run", "-d", "--name", "c", "--memory", "64m", "-v", &volume, "python", "python3", "-c", script]);
    let server = view_server(&t).expect("a view server");
    common::eventually(2, "the server never took the container's listener", || listeners_of(server).len() == 1);
    // The server stops; this test takes the call off the listener as the server's RECV
    // would (the call is then the receiver's to answer, and no one else's), and the server
    // is killed: as if it died inside its RECV, before it noted the call anywhere.
    kill(Pid::from_raw(server), Signal::SIGSTOP).unwrap();
    // SAFETY: pidfd_open and pidfd_getfd return new descriptors this test owns, or -1.
    let listener = unsafe {
        let pidfd = OwnedFd::from_raw_fd(libc::syscall(libc::SYS_pidfd_open, server, 0) as i32);
        let fd = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), listeners_of(server)[0], 0) as i32;
        assert!(fd >= 0, "pidfd_getfd: {}", std::io::Error::last_os_error());
        OwnedFd::from_raw_fd(fd)
    };
    std::fs::write(sig.path().join("go"), "").unwrap();
    let mut pfd = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: poll of one live pollfd.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 10_000) }, 1, "the container's sysinfo never came");
    // SAFETY: all-zero is what NOTIF_RECV requires; the kernel fills it.
    let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: NOTIF_RECV into `n`, on a listener this test holds.
    assert_eq!(unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut n) }, 0);
    assert_eq!(n.data.nr, libc::SYS_sysinfo as i32);
    kill(Pid::from_raw(server), Signal::SIGKILL).unwrap();
    drop(listener);
    // The next server finds the caller waiting and has its call made again: the caller gets
    // its container's numbers.
    common::eventually(10, "the call the killed server had received was never answered", || {
        !t.ok(["logs", "c"]).is_empty()
    });
    assert_eq!(t.ok(["logs", "c"]), "64\n");
    let pids = t.known_pids();
    t.ok(["rm", "-f", "c"]);
    t.assert_clean(&pids);
    view_gone(&t);
}

/// A loop device over a file of the test's, detached also when the test fails.
struct LoopDevice(String);

impl LoopDevice {
    fn over(file: &std::path::Path) -> LoopDevice {
        std::fs::write(file, vec![0u8; 4 << 20]).unwrap();
        let out = std::process::Command::new("losetup").args(["-f", "--show"]).arg(file).output().unwrap();
        assert!(out.status.success(), "losetup: {}", String::from_utf8_lossy(&out.stderr));
        LoopDevice(String::from_utf8(out.stdout).unwrap().trim().to_owned())
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// The `total=` of a pressure file's first line.
fn pressure_total(text: &str) -> u64 {
    text.lines().next().and_then(|l| l.rsplit_once("total=")).and_then(|(_, t)| t.trim().parse().ok()).unwrap()
}

#[test]
fn diskstats_and_pressure_are_the_cgroups() {
    if !need_root("diskstats_and_pressure_are_the_cgroups") {
        return;
    }
    let t = common::TestRoot::with_busybox();
    let h = Hierarchy::host().unwrap();
    // The view's model of the host is the runtime's.
    let roots = h.clone();
    let v2 = matches!(h, Hierarchy::V2 { .. });
    // Exactly the files this host serves are mounted: diskstats from io.stat or blkio,
    // pressure from the cgroup2 cgroup (a hybrid host's controller-less one).
    let served = podrun_procfs::caller::ViewFile::ALL.iter().filter(|f| f.served(&roots)).count();
    let mounted = t.ok(["run", "--rm", "busybox", "grep", "-c", "fuse.podrun-procview", "/proc/self/mountinfo"]);
    assert_eq!(mounted.trim(), served.to_string());
    assert!(podrun_procfs::caller::ViewFile::Diskstats.served(&roots), "v2 or v1 blkio: every host here has one");
    // A block device to read 1 MiB of: the scratch disk of ../shared/tools/in-cgroup2-vm's
    // guest, or a loop device of the test's own.
    let (dev, _loop) = match std::env::var("IN_CGROUP2_VM_DISK") {
        Ok(d) if v2 => (d, None),
        _ => {
            let l = LoopDevice::over(&t.path().join("disk.img"));
            (l.0.clone(), Some(l))
        }
    };
    let name = dev.trim_start_matches("/dev/").to_owned();
    t.ok(["sandbox", "create", "iopod"]);
    if !v2 {
        // v1 counts a cgroup's I/O only on devices with throttling active (blk-throttle):
        // a rule of "no limit" for this device in the pod's blkio cgroup (podrun's own)
        // makes the kernel count.
        let rdev = nix::sys::stat::stat(dev.as_str()).unwrap().st_rdev;
        let rule = format!("{}:{} 0", nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
        let pod: serde_json::Value =
            serde_json::from_str(&t.ok(["sandbox", "inspect", "iopod", "--format", "json"])).unwrap();
        let dir = roots.dir_of("blkio", pod["cgroup"].as_str().unwrap()).unwrap();
        std::fs::write(dir.join("blkio.throttle.read_bps_device"), rule).unwrap();
    }
    let disk = format!("{dev}:/disk:r");
    let script = "cat /proc/diskstats; echo ==; dd if=/disk of=/dev/null bs=64k count=16 iflag=direct 2>/dev/null; \
                  cat /proc/diskstats; echo ==; cat /proc/pressure/io /proc/pressure/cpu 2>/dev/null; true";
    let out = t.ok(["run", "--rm", "--join", "iopod", "--device", &disk, "busybox", "sh", "-c", script]);
    let parts: Vec<&str> = out.split("==\n").collect();
    assert_eq!(parts[0], "", "a new container has done no I/O: {out}");
    let line: Vec<&str> = parts[1].split_whitespace().collect();
    assert_eq!(line.get(2), Some(&name.as_str()), "only the device it read: {out}");
    let sectors: u64 = line[5].parse().unwrap();
    assert!(sectors >= 2048, "1 MiB read is at least 2048 sectors: {out}");
    // The cgroup's pressure where the kernel has PSI; where it has none, no file either.
    if podrun_procfs::caller::ViewFile::PressureIo.served(&roots) {
        assert!(parts[2].starts_with("some avg10="), "{out}");
        // A new cgroup's stall time (µs), not the host's since boot (which the host's file
        // read a moment later would be close to).
        let cpu = parts[2].split('\n').skip_while(|l| !l.starts_with("full")).skip(1).collect::<Vec<_>>().join("\n");
        let host = std::fs::read_to_string("/proc/pressure/cpu").unwrap();
        assert!(pressure_total(&cpu) * 10 < pressure_total(&host), "the cgroup's cpu pressure: {out}\nhost: {host}");
    } else {
        assert_eq!(parts[2], "", "{out}");
    }
    t.ok(["sandbox", "rm", "-f", "iopod"]);
    t.assert_clean(&[]);
    view_gone(&t);
}

/// strace holding a process's system call: attached to every thread of `pid` (and those it
/// starts), it delays each `syscall` by 10 s at entry. Ended (by its pid) also when the test
/// fails.
struct Stall {
    tracer: std::process::Child,
    log: std::path::PathBuf,
}

impl Stall {
    fn start(pid: i32, syscall: &str, log: std::path::PathBuf) -> Stall {
        let tracer = std::process::Command::new("strace")
            .args(["-f", "-qq", "-o"])
            .arg(&log)
            .args(["-e", &format!("trace={syscall}"), "-e", &format!("inject={syscall}:delay_enter=10s")])
            .args(["-p", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("strace is needed for this test (apt-get install strace)");
        // Attached once every thread has a tracer.
        common::eventually(5, "strace did not attach", || {
            std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten().all(|t| {
                std::fs::read_to_string(t.path().join("status"))
                    .unwrap_or_default()
                    .lines()
                    .any(|l| l.starts_with("TracerPid:") && l.trim_end() != "TracerPid:\t0")
            })
        });
        Stall { tracer, log }
    }

    /// Whether a stalled call has begun (strace logs it at entry).
    fn holding(&self, syscall: &str) -> bool {
        std::fs::read_to_string(&self.log).unwrap_or_default().contains(&format!("{syscall}("))
    }
}

impl Drop for Stall {
    fn drop(&mut self) {
        let _ = self.tracer.kill();
        let _ = self.tracer.wait();
    }
}

#[test]
fn calls_in_flight_when_the_view_server_dies_are_answered_by_the_next() {
    if !need_root("calls_in_flight_when_the_view_server_dies_are_answered_by_the_next") {
        return;
    }
    let t = common::TestRoot::with_busybox();
    t.ok(["run", "-d", "--name", "w", "--memory", "48m", "busybox", "sleep", "3600"]);
    let server = || view_server(&t).expect("a view server");
    // The server is killed in the middle of each: a sysinfo(2) answer (it has taken the
    // call and is writing the numbers into the caller), and a FUSE open (it has rendered
    // the file and is writing the reply). The next server answers both: the call noted in
    // the keeper's shared slot, the open resent by the kernel (FUSE_NOTIFY_RESEND).
    let cases = [
        ("process_vm_writev", vec!["free"], "49152"),
        ("write", vec!["head", "-1", "/proc/meminfo"], "MemTotal:          49152 kB"),
    ];
    for (syscall, cmd, want) in cases {
        let old = server();
        let stall = Stall::start(old, syscall, t.path().join(format!("strace-{syscall}.log")));
        let reader = std::process::Command::new(env!("CARGO_BIN_EXE_podrun"))
            .arg("--root")
            .arg(t.store())
            .args(["exec", "w"])
            .args(&cmd)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        common::eventually(10, &format!("the server never began {syscall}"), || stall.holding(syscall));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(old), nix::sys::signal::Signal::SIGKILL).unwrap();
        let killed = std::time::Instant::now();
        let mut reader = reader;
        // A call nobody answers would wait for ever: 5 s, then it is ended and the test fails.
        while reader.try_wait().unwrap().is_none() && killed.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let waited = killed.elapsed();
        if waited >= std::time::Duration::from_secs(5) {
            // The call hangs in the container, holding the output pipes: end the container.
            let _ = reader.kill();
            t.ok(["rm", "-f", "w"]);
            panic!("{cmd:?} still waits 5 s after the server was killed");
        }
        let out = reader.wait_with_output().unwrap();
        drop(stall);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd:?}: {}\n{stdout}{}", out.status, String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(want), "{cmd:?} printed the container's numbers: {stdout}");
        assert!(waited < std::time::Duration::from_secs(2), "{cmd:?} waited {waited:?} after the kill");
        assert_ne!(server(), old, "a new server serves");
    }
    let pids = t.known_pids();
    t.ok(["rm", "-f", "w"]);
    t.assert_clean(&pids);
    view_gone(&t);
}

#[test]
fn a_podrun_without_its_view_binary_says_so_and_leaves_nothing() {
    if !need_root("a_podrun_without_its_view_binary_says_so_and_leaves_nothing") {
        return;
    }
    let t = common::TestRoot::with_busybox();
    // podrun alone in a directory, without podrun-view beside it.
    let bin = t.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_podrun"), bin.join("podrun")).unwrap();
    let lone = |args: &[&str]| {
        std::process::Command::new(bin.join("podrun")).arg("--root").arg(t.store()).args(args).output().unwrap()
    };
    let out = lone(&["run", "--rm", "--name", "v", "busybox", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains(&bin.join("podrun-view").display().to_string()) && err.contains("--procview=off"), "{err}");
    assert!(t.entries("containers").is_empty(), "no container is left: {:?}", t.entries("containers"));
    // The way out it names works.
    let out = lone(&["run", "--rm", "--procview=off", "busybox", "true"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    t.assert_clean(&[]);
    view_gone(&t);
}

#[test]
fn readers_that_seek_from_the_end_get_the_files_tail() {
    if !need_root("readers_that_seek_from_the_end_get_the_files_tail") {
        return;
    }
    let t = common::TestRoot::with_busybox();
    // tail -c seeks to the file's size minus N: the size must be the content's (it was a
    // 64 KiB upper bound, and a first reader's tail printed nothing). cat reads by
    // sendfile, through the page cache, which stops at that size.
    let script = "ls -l /proc/meminfo | awk '{print $5}'; \
                  tail -c 40 /proc/meminfo > /tmp/b; cat /proc/meminfo > /tmp/m; tail -c 40 /tmp/m > /tmp/a; \
                  cmp /tmp/a /tmp/b && echo same; wc -c < /tmp/b; tail -c 100 /proc/uptime; \
                  tail -n 1 /proc/cpuinfo /dev/null | head -3 | wc -l; ls -l /proc/meminfo | awk '{print $5}'; wc -c < /tmp/m";
    let out = t.ok(["run", "--rm", "--memory", "64m", "busybox", "sh", "-c", script]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "before any open a file says 0, as /proc does: {out}");
    assert_eq!(lines[1], "same", "tail -c gives the end of the file: {out}");
    assert_eq!(lines[2].trim(), "40", "{out}");
    let up: Vec<f64> = lines[3].split_whitespace().map(|v| v.parse().unwrap()).collect();
    assert_eq!(up.len(), 2, "the whole of /proc/uptime: {out}");
    assert_eq!(lines[5], lines[6].trim(), "stat's size is the length cat read: {out}");
    t.assert_clean(&[]);
    view_gone(&t);
}

#[test]
fn reads_through_the_page_cache_follow_a_text_that_grows_and_shrinks() {
    if !need_root("reads_through_the_page_cache_follow_a_text_that_grows_and_shrinks") {
        return;
    }
    let t = common::TestRoot::new();
    t.import(&common::python_oci(), &[]);
    // An open that renders the text its inode's page cache holds reads it from there; a
    // new one is stored over it. /proc/loadavg's task count (sampled every 5 s, as the
    // kernel's) grows by 30 and shrinks back, its text by a character each way. Every
    // read, by a fresh open or again through a descriptor kept open, must be whole and
    // current: a text shorter than the cached one must not end in the old one's tail.
    let script = r#"
import os, re, signal, time
pat = re.compile(r'\d+\.\d\d \d+\.\d\d \d+\.\d\d \d+/(\d+) \d+\n\Z')
held = open('/proc/loadavg')
def total(text):
    m = pat.match(text)
    assert m, repr(text)
    return int(m.group(1))
def fresh():
    # As cat reads: no stat, one large read and one at the end.
    fd = os.open('/proc/loadavg', os.O_RDONLY)
    text = os.read(fd, 65536).decode()
    assert os.read(fd, 65536) == b'', text
    os.close(fd)
    return total(text)
def again():
    # As procps reads again: after a delay. Within 250 ms of the cached text, a longer
    # one is held back (a reader may be at the end of the cached one: fuse.rs,
    # REFRESH_AFTER).
    time.sleep(0.3)
    held.seek(0)
    return total(held.read())
def until(ok, kept):
    end = time.time() + 15
    while time.time() < end:
        n = fresh()
        if ok(n):
            return n
        if kept:
            again()
        time.sleep(0.01)
    raise SystemExit('the task count never came')
base = (fresh(), again())
kids = []
for _ in range(30):
    pid = os.fork()
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    kids.append(pid)
grown = (until(lambda n: n >= base[0] + 30, True), again(), fresh())
# Shrinking with no descriptor kept open (an open then stores the shorter text), and then
# with one (a read again through it does).
held.close()
for k in kids[:15]:
    os.kill(k, signal.SIGKILL)
    os.waitpid(k, 0)
fewer = until(lambda n: n == base[0] + 15, False)
held = open('/proc/loadavg')
again()
for k in kids[15:]:
    os.kill(k, signal.SIGKILL)
    os.waitpid(k, 0)
shrunk = (until(lambda n: n == base[0], True), again(), fresh())
print(*base, *grown, fewer, *shrunk)
"#;
    let out = t.ok(["run", "--rm", "python", "python3", "-c", script]);
    let n: Vec<u64> = out.split_whitespace().map(|v| v.parse().unwrap()).collect();
    assert_eq!(n.len(), 9, "{out}");
    assert!(n[0] <= 3 && n[1] == n[0], "the container's own tasks: {out}");
    assert!(n[2..5].iter().all(|&g| g >= n[0] + 30), "30 more tasks, seen by opens and a kept descriptor: {out}");
    assert!(n[6..9].iter().all(|&s| s == n[0]), "and gone again: {out}");
    t.assert_clean(&[]);
    view_gone(&t);
}

/// The active keeper's pid, from the view's lock file (`PID PGID`).
fn view_keeper(t: &common::TestRoot) -> i32 {
    let text = std::fs::read_to_string(t.store().join("procview.active")).unwrap();
    text.split_whitespace().next().and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("the lock file: {text:?}"))
}

/// What each of a process's descriptors is (readlink of /proc/PID/fd/N), by number.
fn fds_of(pid: i32) -> std::collections::BTreeMap<i32, String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.parse().ok()?;
            Some((n, std::fs::read_link(e.path()).ok()?.to_string_lossy().into_owned()))
        })
        .collect()
}

/// Resident and mapped kB of the executable mapping of a file whose path contains `name`
/// in process `pid`.
fn code_kb(pid: i32, name: &str) -> (u64, u64) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut lines = smaps.lines();
    while let Some(line) = lines.next() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() >= 6 && w[1] == "r-xp" && w[5].contains(name) {
            let mut kb = |key: &str| {
                lines.by_ref().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            };
            let size = kb("Size:").unwrap_or(0);
            return (kb("Rss:").unwrap_or(0), size);
        }
    }
    (0, 0)
}

#[test]
fn the_keeper_is_small_holds_only_its_descriptors_and_refuses_what_is_not_a_listener() {
    if !need_root("the_keeper_is_small_holds_only_its_descriptors_and_refuses_what_is_not_a_listener") {
        return;
    }
    use std::os::fd::AsRawFd;
    let t = common::TestRoot::with_busybox();
    t.ok(["run", "-d", "--name", "w", "busybox", "sleep", "3600"]);
    let keeper = view_keeper(&t);
    // The no-std keeper, from podrun's embedded copy: no libc, no podrun-view code mapped.
    let exe = std::fs::read_link(format!("/proc/{keeper}/exe")).unwrap();
    assert!(exe.to_string_lossy().starts_with("/memfd:podrun-keeper"), "{exe:?}");
    assert_eq!(std::fs::read_to_string(format!("/proc/{keeper}/comm")).unwrap(), "podrun:[keeper]\n");
    let maps = std::fs::read_to_string(format!("/proc/{keeper}/maps")).unwrap();
    assert!(!maps.contains(".so") && !maps.contains("podrun-view"), "{maps}");
    // Its server runs podrun-view, exec'd (not forked from the keeper).
    let server = view_server(&t).expect("a view server");
    let server_exe = std::fs::read_link(format!("/proc/{server}/exe")).unwrap();
    assert_eq!(server_exe.file_name().unwrap(), "podrun-view");
    assert_eq!(std::fs::read_to_string(format!("/proc/{server}/comm")).unwrap(), "podrun:[view]\n");
    // And without libgcc_s (it never unwinds: podrun-view stands in for the unwinder).
    let server_maps = std::fs::read_to_string(format!("/proc/{server}/maps")).unwrap();
    assert!(!server_maps.contains("libgcc_s"), "{server_maps}");
    // It keeps mapped only the code it uses: a second after it starts, it unmaps its own
    // code, libc's and the loader's (all mapped by start-up), and serving maps back little
    // of the loader's.
    common::eventually(5, "the server keeps the loader's code mapped", || {
        let (rss, size) = code_kb(server, "/ld-linux");
        size > 0 && rss * 4 <= size
    });
    // Servers run without glibc's per-thread caches of freed blocks (the keeper passes its
    // environment on; glibc rewrites the server's own copy as it reads it).
    let env = std::fs::read(format!("/proc/{keeper}/environ")).unwrap();
    assert!(
        env.split(|&b| b == 0).any(|e| e.starts_with(b"GLIBC_TUNABLES=")
            && e.ends_with(b"glibc.malloc.tcache_count=0:glibc.pthread.stack_cache_size=0")),
        "{}",
        String::from_utf8_lossy(&env)
    );
    // The keeper's descriptors: stdio, the connection, the agent's socket, the shared
    // memory, the server's binary, the view's lock, the two places a successor's start
    // fills (on /dev/null), its own binary, the channels to its backup and its server, and the
    // container's listener (which the keeper takes from the container's connection within
    // its next 20 ms tick). Nothing of the podrun that started it.
    let listeners = |fds: &std::collections::BTreeMap<i32, String>| {
        fds.values().filter(|v| v.as_str() == "anon_inode:seccomp notify").count()
    };
    let mut seen = fds_of(keeper);
    let held = |fds: &std::collections::BTreeMap<i32, String>| listeners(fds) == 1 && fds.len() == 14;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !held(&seen) {
        assert!(std::time::Instant::now() < deadline, "the keeper holds {seen:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
        seen = fds_of(keeper);
    }
    let fds = fds_of(keeper);
    let fixed: Vec<&str> = (0..11).map(|n| fds.get(&n).map_or("-", |s| s.as_str())).collect();
    assert_eq!(fixed[..4], ["/dev/null", "/dev/null", "/dev/null", "/dev/fuse"], "{fds:?}");
    assert!(fixed[4].starts_with("socket:") && fixed[5].starts_with("/memfd:podrun-view"), "{fds:?}");
    assert!(fixed[6].ends_with("/podrun-view") && fixed[7].ends_with("/procview.active"), "{fds:?}");
    assert!(fixed[8] == "/dev/null" && fixed[9].starts_with("/memfd:podrun-keeper"), "{fds:?}");
    assert_eq!(fixed[10], "/dev/null", "{fds:?}");
    let sockets = fds.range(11..).filter(|(_, f)| f.starts_with("socket:")).count();
    assert_eq!(sockets, 2, "the channels to the backup and the server: {fds:?}");
    // Its standby holds the same: the connection, and the container's listener.
    let standby = view_standby(&t).expect("a standby keeper");
    common::eventually(2, "the standby does not hold the listener", || {
        let fds = fds_of(standby);
        listeners(&fds) == 1 && fds.get(&3).is_some_and(|f| f == "/dev/fuse")
    });
    // Something else handed to the agent (a pipe, as a process in a container could send):
    // not kept, and the keeper goes on.
    let (r, w) = nix::unistd::pipe().unwrap();
    let agent = std::os::unix::net::UnixStream::connect(t.store().join("procview.sock")).unwrap();
    let byte = [0u8; 1];
    let iov = [std::io::IoSlice::new(&byte)];
    let passed = [r.as_raw_fd(), w.as_raw_fd()];
    nix::sys::socket::sendmsg::<()>(
        agent.as_raw_fd(),
        &iov,
        &[nix::sys::socket::ControlMessage::ScmRights(&passed)],
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .unwrap();
    drop((r, agent));
    // The keeper closed both: the pipe's read end is gone once it has (a write then fails).
    common::eventually(2, "the keeper still holds the pipe", || {
        nix::unistd::write(&w, b"x").is_err_and(|e| e == nix::errno::Errno::EPIPE)
    });
    assert_eq!(fds_of(keeper), fds, "the keeper's descriptors changed");
    // A second container's listener is taken, and the first's dropped once it ends.
    t.ok(["run", "-d", "--name", "w2", "--memory", "48m", "busybox", "sleep", "3600"]);
    common::eventually(2, "the keeper does not hold the second listener", || listeners(&fds_of(keeper)) == 2);
    t.ok(["rm", "-f", "w"]);
    common::eventually(2, "the keeper still holds the first listener", || listeners(&fds_of(keeper)) == 1);
    // Its calls are answered through the listener the keeper holds.
    let free = t.ok(["exec", "w2", "free", "-m"]);
    assert_eq!(free.lines().nth(1).and_then(|l| l.split_whitespace().nth(1)), Some("48"), "{free}");
    let pids = t.known_pids();
    t.ok(["rm", "-f", "w2"]);
    t.assert_clean(&pids);
    view_gone(&t);
}

#[test]
fn an_idle_view_server_ends_and_the_next_request_or_call_starts_one() {
    if !need_root("an_idle_view_server_ends_and_the_next_request_or_call_starts_one") {
        return;
    }
    let t = common::TestRoot::new();
    t.import(&common::python_oci(), &[]);
    // The view starts with this container, and its servers end after 1 s with nothing to do.
    let out = t.podrun_env(
        &[("PODRUN_VIEW_IDLE", "1")],
        ["run", "-d", "--name", "p", "--memory", "48m", "python", "sleep", "3600"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let keeper = view_keeper(&t);
    let idle = |what: &str| {
        common::eventually(5, &format!("the server did not end after {what}"), || view_server(&t).is_none());
        assert!(common::running(keeper), "the keeper waits on");
    };
    idle("the start");
    // A file read starts a server, which answers it.
    let meminfo = t.ok(["exec", "p", "head", "-1", "/proc/meminfo"]);
    assert_eq!(meminfo.split_whitespace().nth(1), Some("49152"), "{meminfo}");
    idle("a read");
    // So does a sysinfo(2) call alone (glibc's sysconf asks it for the memory; no file of
    // the view is read).
    let mem = "import os; print(os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') >> 20)";
    // (Bounded: a call nobody answers would wait for ever.)
    assert_eq!(t.ok(["exec", "p", "timeout", "10", "python3", "-c", mem]), "48\n");
    let pids = t.known_pids();
    t.ok(["rm", "-f", "p"]);
    t.assert_clean(&pids);
    view_gone(&t);
}

#[test]
fn the_servers_workers_grow_with_readers_and_end_once_not_needed() {
    if !need_root("the_servers_workers_grow_with_readers_and_end_once_not_needed") {
        return;
    }
    let t = common::TestRoot::with_busybox();
    t.ok(["run", "-d", "--name", "w", "--memory", "64m", "busybox", "sleep", "3600"]);
    let server = view_server(&t).expect("a view server");
    let threads = || std::fs::read_dir(format!("/proc/{server}/task")).map_or(0, |d| d.count());
    // 8 readers of /proc/meminfo for 3 seconds; meanwhile the workers grow past the two
    // kept (the server's main and sysinfo threads are two more).
    let most = std::thread::scope(|s| {
        let burst = s.spawn(|| {
            t.ok([
                "exec",
                "w",
                "sh",
                "-c",
                "end=$(( $(date +%s) + 3 )); for i in 1 2 3 4 5 6 7 8; do \
                 (while [ $(date +%s) -lt $end ]; do cat /proc/meminfo >/dev/null; done) & done; wait",
            ])
        });
        let mut most = 0;
        while !burst.is_finished() {
            most = most.max(threads());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        most
    });
    assert!(most > 5, "8 readers, and the server had at most {most} threads");
    // Not needed for a second, they end as they answer a next request (a worker waiting
    // for one cannot): a reader now and then brings the pool back to the two kept and, at
    // times, a third.
    common::eventually(10, "the workers a burst started did not end", || {
        assert!(t.ok(["exec", "w", "cat", "/proc/meminfo"]).contains("MemTotal:          65536 kB"));
        std::thread::sleep(std::time::Duration::from_millis(200));
        threads() <= 5
    });
    let pids = t.known_pids();
    t.ok(["rm", "-f", "w"]);
    t.assert_clean(&pids);
    view_gone(&t);
}
