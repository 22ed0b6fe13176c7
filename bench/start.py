#!/usr/bin/env python3
"""Start latency: podrun against crun (and pause RSS against catatonit), in one run.

    bench/start.py [RUNS]      as root; default 30 runs of each, alternating

Scenarios (medians, and the ratio podrun/crun: below 1.0 means podrun is faster), each
container with the same limits on both sides (LIMITS), the same device allow-list and
podrun's default seccomp profile (crun compiles it with libseccomp):
  run       `podrun run --rm busybox true`   vs `crun run` of the same busybox bundle
  join      `podrun run --rm --join SB busybox true` vs `crun exec` into a running container
  sandbox   `podrun sandbox create` until ready vs `crun create` + `crun start` of a pause
            container (catatonit -P)
  userns    `run --join` into a --userns=auto sandbox against one without, and `sandbox
            create` with and without --userns=auto (podrun against itself: the budget is
            1.2x, as layers are idmapped, not chowned)
  rss       pause's resident size vs catatonit -P's
  memory    what podrun's processes cost a machine (PSS of pause, the monitors, the view's
            keeper and server) with 1 and with 10 sandboxes of one detached container each:
            the fixed part (the view, one per root) and the part each sandbox adds; with the
            view's server serving, and again once it has ended for want of work (the view
            runs with PODRUN_VIEW_IDLE=5 here, so that takes seconds, not a minute); and with
            one sandbox whose container reads every view file five times a second (12
            samples). No peer runs a process per container here (crun's containers have
            none); the budget is 1 MiB per sandbox.

crun 1.8 refuses hybrid cgroup hosts, so on one the whole benchmark re-runs itself in a
private mount namespace in which the empty cgroup2 mount is hidden (unmounted there only; the
host's mounts are untouched), so that neither runtime pays for a wrapper per command. crun's
containers get an absolute cgroupsPath under /podrun-bench/, removed at the end; podrun's go
under its own /podrun-<hash>. crun is also measured with --cgroup-manager=disabled.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 30
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PODRUN = os.path.join(ROOT, "target/release/podrun")
FIXTURES = os.path.join(ROOT, "target/podrun-fixtures")
HYBRID = os.path.ismount("/sys/fs/cgroup/unified")
# Both runtimes get these limits: 256 MiB (512 MiB with swap), one CPU, 1000 processes.
LIMITS = ["--memory", "256m", "--cpus", "1", "--pids-limit", "1000"]
CGROUPS = "hybrid, cgroup2 mount hidden" if os.environ.get("PODRUN_BENCH_PRIVATE") else ("hybrid" if HYBRID else "v2")


def sh(*args, **kw):
    return subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw).stdout


def timed(args, **kw):
    t = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t


def crun_cmd(*args, cgroups=True):
    return ["crun"] + ([] if cgroups else ["--cgroup-manager=disabled"]) + list(args)


def bundle(work, name, args, rootfs_tar, seccomp):
    b = os.path.join(work, name)
    os.makedirs(os.path.join(b, "rootfs"))
    sh("tar", "-xzf", rootfs_tar, "-C", os.path.join(b, "rootfs"))
    sh("crun", "spec", "-b", b)
    with open(os.path.join(b, "config.json")) as f:
        c = json.load(f)
    c["process"]["args"] = args
    c["process"]["terminal"] = False
    c["root"]["readonly"] = False
    c["linux"]["namespaces"].append({"type": "cgroup"})
    c["linux"]["cgroupsPath"] = f"/podrun-bench/{name}"
    # The same limits podrun is given (LIMITS).
    c["linux"]["resources"] = {
        "memory": {"limit": 256 << 20, "swap": 512 << 20},
        "cpu": {"quota": 100000, "period": 100000},
        "pids": {"limit": 1000},
        # Deny every device but crun's defaults (null, zero, ..., pts), as podrun does.
        "devices": [{"allow": False, "access": "rwm"}],
    }
    # podrun's default seccomp profile (Docker's refusals), as Docker would pass one.
    c["linux"]["seccomp"] = seccomp
    with open(os.path.join(b, "config.json"), "w") as f:
        json.dump(c, f)
    return b


def med(xs):
    return statistics.median(xs) * 1000


def report(name, p, c, cd=None):
    line = f"{name:<8} podrun {med(p):7.2f} ms   crun {med(c):7.2f} ms   ratio {med(p) / med(c):.2f}"
    if cd:
        line += f"   (crun without cgroups {med(cd):.2f} ms, ratio {med(p) / med(cd):.2f})"
    print(line, flush=True)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def podrun_pss(store, env, sandboxes):
    """PSS (kB) of every podrun process serving `sandboxes` (each with container c-<name>)."""
    pids = []
    for sb in sandboxes:
        pids.append(json.loads(sh(PODRUN, "sandbox", "inspect", sb, "--format", "json", env=env))["pause"]["pid"])
        init = json.loads(sh(PODRUN, "inspect", f"c-{sb}", env=env))["init"]["pid"]
        with open(f"/proc/{init}/stat") as f:
            pids.append(int(f.read().rsplit(")", 1)[1].split()[1]))  # its monitor
    keeper = view_keeper(store)
    pids += [keeper] + view_children(keeper)
    return sum(pss_kb(p) for p in pids)


def view_keeper(store):
    """The view's active keeper, from its lock file (`PID PGID`)."""
    return int(open(os.path.join(store, "procview.active")).read().split()[0])


def view_children(keeper):
    """The keeper's children: its backup and the server, when one runs."""
    return [int(c) for c in open(f"/proc/{keeper}/task/{keeper}/children").read().split()]


IDLE_S = 5
STEADY = ("while :; do cat /proc/meminfo /proc/stat /proc/cpuinfo /proc/uptime /proc/loadavg "
          "/proc/diskstats /proc/swaps >/dev/null; free >/dev/null; sleep 0.2; done")
STEADY_SAMPLES = 12


def view_server_running(store):
    comm = lambda p: open(f"/proc/{p}/comm").read().strip()
    return any(comm(c) == "podrun:[view]" for c in view_children(view_keeper(store)))


def wait_view_idle(store):
    deadline = time.time() + IDLE_S + 30
    while view_server_running(store):
        if time.time() > deadline:
            sys.exit("the view's server did not end when idle")
        time.sleep(0.2)


def cleanup_cgroups():
    for ctrl in os.listdir("/sys/fs/cgroup"):
        base = os.path.join("/sys/fs/cgroup", ctrl, "podrun-bench")
        if ctrl == "unified" and os.environ.get("PODRUN_BENCH_PRIVATE"):
            continue  # our private tmpfs: it goes with the mount namespace
        if os.path.isdir(base):
            for d in sorted((os.path.join(r, x) for r, ds, _ in os.walk(base) for x in ds), key=len, reverse=True):
                os.rmdir(d)
            os.rmdir(base)


def main():
    missing = [t for t in ("crun", "catatonit") if not shutil.which(t)]
    if missing:
        sys.exit(f"bench/start.py needs {' and '.join(missing)} (Debian: apt-get install crun catatonit)")
    sh("cargo", "build", "--release", "-q", cwd=ROOT)
    sh("python3", os.path.join(ROOT, "rootfs-fixtures/build.py"), "busybox", FIXTURES)
    # On disk, like a real store (PODRUN_BENCH_DIR to choose; it must take an overlay upper dir).
    work = tempfile.mkdtemp(prefix="podrun-bench.", dir=os.environ.get("PODRUN_BENCH_DIR", "/var/tmp"))
    store = os.path.join(work, "store")
    # The view's server ends after IDLE_S seconds with nothing to do (default 60): the
    # memory part measures it serving and ended, and waits less for the second.
    env = dict(os.environ, PODRUN_ROOT=store, PODRUN_VIEW_IDLE=str(IDLE_S))
    rootfs_tar = os.path.join(FIXTURES, "busybox/busybox-rootfs.tar.gz")
    try:
        sh(PODRUN, "image", "import", os.path.join(FIXTURES, "busybox/busybox-oci"), env=env)
        shutil.copy("/usr/bin/catatonit", work)
        # The profile podrun's containers get, from the spec of one (without the view's
        # sysinfo rule, which needs podrun's agent).
        sh(PODRUN, "run", "-d", "--name", "profile", "--procview", "files", "busybox", "true", env=env)
        with open(os.path.join(store, "containers/profile/config.json")) as f:
            seccomp = json.load(f)["linux"]["seccomp"]
        sh(PODRUN, "rm", "-f", "profile", env=env)
        b_true = bundle(work, "true", ["true"], rootfs_tar, seccomp)
        b_sleep = bundle(work, "sleep", ["sleep", "3600"], rootfs_tar, seccomp)
        b_pause = bundle(work, "pause", ["/catatonit", "-P"], rootfs_tar, seccomp)
        shutil.copy("/usr/bin/catatonit", os.path.join(b_pause, "rootfs/catatonit"))
        print(f"median of {RUNS} runs each; kernel {os.uname().release}; cgroups {CGROUPS}", flush=True)

        # 1. run --rm true vs crun run
        p, c, cd = [], [], []
        for i in range(RUNS):
            p.append(timed([PODRUN, "run", "--rm"] + LIMITS + ["busybox", "true"], env=env))
            c.append(timed(crun_cmd("run", "-b", b_true, f"t{i}")))
            cd.append(timed(crun_cmd("run", "-b", b_true, f"u{i}", cgroups=False)))
        report("run", p, c, cd)

        # 2. run --join vs crun exec
        sh(PODRUN, "sandbox", "create", "bench", env=env)
        subprocess.run(crun_cmd("run", "-d", "-b", b_sleep, "target"), check=True, stdout=subprocess.DEVNULL)
        p, c = [], []
        for i in range(RUNS):
            p.append(timed([PODRUN, "run", "--rm"] + LIMITS + ["--join", "bench", "busybox", "true"], env=env))
            c.append(timed(crun_cmd("exec", "target", "true")))
        report("join", p, c)
        subprocess.run(crun_cmd("delete", "-f", "target"), check=True)

        # 2b. user namespaces: join and sandbox create with --userns=auto against without
        # (the budget: 1.2x; idmapped layers, so no per-file work at either)
        sh(PODRUN, "sandbox", "create", "--userns=auto", "benchu", env=env)
        p, u = [], []
        for i in range(RUNS):
            p.append(timed([PODRUN, "run", "--rm"] + LIMITS + ["--join", "bench", "busybox", "true"], env=env))
            u.append(timed([PODRUN, "run", "--rm"] + LIMITS + ["--join", "benchu", "busybox", "true"], env=env))
        print(f"userns   join {med(u):.2f} ms vs without {med(p):.2f} ms: ratio {med(u) / med(p):.2f} (budget 1.20)", flush=True)
        p, u = [], []
        for i in range(RUNS):
            p.append(timed([PODRUN, "sandbox", "create", f"n{i}"], env=env))
            u.append(timed([PODRUN, "sandbox", "create", "--userns=auto", f"u{i}"], env=env))
            sh(PODRUN, "sandbox", "rm", "-f", f"n{i}", f"u{i}", env=env)
        print(f"userns   sandbox create {med(u):.2f} ms vs without {med(p):.2f} ms: ratio {med(u) / med(p):.2f}", flush=True)

        # 3. sandbox create vs crun create + start of a pause container
        p, c = [], []
        for i in range(RUNS):
            p.append(timed([PODRUN, "sandbox", "create", f"s{i}"], env=env))
            t = time.perf_counter()
            subprocess.run(crun_cmd("create", "-b", b_pause, f"p{i}"), check=True)
            subprocess.run(crun_cmd("start", f"p{i}"), check=True)
            c.append(time.perf_counter() - t)
            if i == 0:
                st = json.loads(sh(*crun_cmd("state", f"p{i}")))
                cat_rss = rss_kb(st["pid"])
                pause_rss = rss_kb(json.loads(sh(PODRUN, "sandbox", "inspect", "s0", "--format", "json", env=env))["pause"]["pid"])
            sh(PODRUN, "sandbox", "rm", "-f", f"s{i}", env=env)
            subprocess.run(crun_cmd("delete", "-f", f"p{i}"), check=True)
        report("sandbox", p, c)
        print(f"rss      pause {pause_rss} kB   catatonit {cat_rss} kB   ratio {pause_rss / cat_rss:.2f}")

        # 4. memory: podrun's processes with 1 and with 10 sandboxes
        pods = [f"m{i}" for i in range(10)]
        totals = {}
        for i, sb in enumerate(pods):
            sh(PODRUN, "sandbox", "create", sb, env=env)
            sh(PODRUN, "run", "-d", "--name", f"c-{sb}", "--join", sb, "busybox", "sleep", "3600", env=env)
            if i + 1 in (1, len(pods)):
                # Both past the start of a server (a second after it starts, it unmaps the
                # code start-up mapped), so that the two figures compare.
                time.sleep(3)
                totals[i + 1] = podrun_pss(store, env, pods[: i + 1])
        added = (totals[10] - totals[1]) / 9
        fixed = totals[1] - added
        print(f"memory   PSS of podrun's processes, the view serving: 1 sandbox {totals[1]} kB, "
              f"10 sandboxes {totals[10]} kB: {added:.0f} kB per sandbox + {fixed:.0f} kB per root (the view); "
              f"{totals[10] / 10:.0f} kB per sandbox at 10 (budget 1024)")
        # The same once the view's server has ended for want of work (the keeper stays).
        wait_view_idle(store)
        idle10 = podrun_pss(store, env, pods)
        for sb in pods[1:]:
            sh(PODRUN, "sandbox", "rm", "-f", sb, env=env)
        wait_view_idle(store)
        idle1 = podrun_pss(store, env, pods[:1])
        added = (idle10 - idle1) / 9
        print(f"memory   the same, its server ended after {IDLE_S} s idle: 1 sandbox {idle1} kB, "
              f"10 sandboxes {idle10} kB: {added:.0f} kB per sandbox + {idle1 - added:.0f} kB per root")
        # One sandbox whose container reads every file of the view and calls sysinfo (free)
        # five times a second: the view's server busiest for one sandbox.
        sh(PODRUN, "sandbox", "rm", "-f", pods[0], env=env)
        sh(PODRUN, "sandbox", "create", "steady", env=env)
        sh(PODRUN, "run", "-d", "--name", "c-steady", "--join", "steady", "busybox", "sh", "-c", STEADY, env=env)
        time.sleep(5)
        samples = []
        for _ in range(STEADY_SAMPLES):
            samples.append(podrun_pss(store, env, ["steady"]))
            time.sleep(5)
        print(f"memory   1 sandbox, its container reading every view file 5 times a second: "
              f"median {statistics.median(samples):.0f} kB, {min(samples)}-{max(samples)} kB over {STEADY_SAMPLES} samples "
              f"5 s apart (budget 1024)")
    finally:
        for i in range(10):
            subprocess.run([PODRUN, "sandbox", "rm", "-f", f"m{i}"], env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        for name in ("target",):
            subprocess.run(crun_cmd("delete", "-f", name), stderr=subprocess.DEVNULL)
        subprocess.run([PODRUN, "sandbox", "rm", "-f", "bench", "benchu", "steady"], env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        cleanup_cgroups()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if HYBRID and not os.environ.get("PODRUN_BENCH_PRIVATE"):
        os.environ["PODRUN_BENCH_PRIVATE"] = "1"
        os.execvp("unshare", ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                              # An empty private tmpfs in its place takes what crun's legacy
                              # mode writes under every /sys/fs/cgroup/* directory.
                              'umount -l /sys/fs/cgroup/unified && mount -t tmpfs -o size=1m podrun-bench /sys/fs/cgroup/unified'
                              ' && exec "$@"', "bench", sys.executable] + sys.argv)
    main()
