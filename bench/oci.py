#!/usr/bin/env python3
"""podrun as an OCI runtime against crun and runc, in one run.

    bench/oci.py [RUNS]      as root; default 40 runs of each, alternating

Scenarios (medians, and the ratios podrun/crun and podrun/runc: below 1.0 means podrun is
faster):
  run    `RUNTIME --root R run --bundle B ID` of busybox `true`: create, start, wait and
         delete in one call, the same bundle (config.json as `crun spec` writes it, with the
         same limits and device list) for all three
  steps  the same as four calls, as containerd's shim makes them: create (pid file), start,
         wait for the init to end (it is this process's child: a subreaper, as the shim),
         delete
  ctr    `ctr run --rm` of busybox `true` end to end through a private containerd 1.6 (its
         own root, state, socket and config in the work dir), `--runc-binary` each runtime

crun 1.8 refuses hybrid cgroup hosts, so on one the whole benchmark re-runs itself in a
private mount namespace in which the empty cgroup2 mount is hidden (as bench/start.py). Every
container's cgroup is under /podrun-bench-oci/, removed at the end; containerd's under its
namespace, removed with it.
"""

import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 40
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PODRUN = os.path.join(ROOT, "target/release/podrun")
FIXTURES = os.path.join(ROOT, "target/podrun-fixtures")
HYBRID = os.path.ismount("/sys/fs/cgroup/unified")
CGROUPS = "hybrid, cgroup2 mount hidden" if os.environ.get("PODRUN_BENCH_PRIVATE") else ("hybrid" if HYBRID else "v2")
RUNTIMES = {"podrun": PODRUN, "crun": shutil.which("crun"), "runc": shutil.which("runc")}
PARENT = "podrun-bench-oci"


def sh(*args, **kw):
    return subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw).stdout


def quiet(args, **kw):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def med(xs):
    return statistics.median(xs) * 1000


def bundle(work, rootfs_tar):
    b = os.path.join(work, "bundle")
    os.makedirs(os.path.join(b, "rootfs"))
    sh("tar", "-xzf", rootfs_tar, "-C", os.path.join(b, "rootfs"))
    sh("crun", "spec", "-b", b)
    with open(os.path.join(b, "config.json")) as f:
        c = json.load(f)
    c["process"]["args"] = ["true"]
    c["process"]["terminal"] = False
    c["linux"]["resources"] = {
        "memory": {"limit": 256 << 20, "swap": 512 << 20},
        "cpu": {"quota": 100000, "period": 100000},
        "pids": {"limit": 1000},
        "devices": [{"allow": False, "access": "rwm"}],
    }
    c["linux"]["cgroupsPath"] = f"/{PARENT}/c"
    with open(os.path.join(b, "config.json"), "w") as f:
        json.dump(c, f)
    return b


def set_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_CHILD_SUBREAPER = 36
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")


def steps(rt, root, b, cid, pidfile):
    """create, start, wait (as the init's subreaper), delete; seconds."""
    t = time.perf_counter()
    quiet([rt, "--root", root, "create", "--bundle", b, "--pid-file", pidfile, cid])
    with open(pidfile) as f:
        pid = int(f.read())
    quiet([rt, "--root", root, "start", cid])
    os.waitpid(pid, 0)
    quiet([rt, "--root", root, "delete", cid])
    return time.perf_counter() - t


def oci_archive(layout, name, out):
    """An OCI layout as a tar whose index names the image (what `ctr images import` wants)."""
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    for m in index["manifests"]:
        m.setdefault("annotations", {})["io.containerd.image.name"] = name
        m["annotations"]["org.opencontainers.image.ref.name"] = "latest"
    data = json.dumps(index).encode()
    with tarfile.open(out, "w") as t:
        t.add(os.path.join(layout, "oci-layout"), "oci-layout")
        t.add(os.path.join(layout, "blobs"), "blobs")
        info = tarfile.TarInfo("index.json")
        info.size = len(data)
        import io
        t.addfile(info, io.BytesIO(data))


class Containerd:
    def __init__(self, work):
        self.d = os.path.join(work, "containerd")
        os.makedirs(os.path.join(self.d, "tmp"))
        self.ns = "podrun-bench-" + os.path.basename(work).split(".")[-1]
        with open(os.path.join(self.d, "config.toml"), "w") as f:
            f.write(f'''version = 2
root = "{self.d}/root"
state = "{self.d}/state"
temp = "{self.d}/tmp"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.grpc.v1.cri"]
[grpc]
  address = "{self.d}/containerd.sock"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.d}/opt"
''')
        self.log = open(os.path.join(self.d, "containerd.log"), "w")
        self.proc = subprocess.Popen(["containerd", "--config", os.path.join(self.d, "config.toml")],
                                     stdout=self.log, stderr=self.log, env=dict(os.environ, TMPDIR=os.path.join(self.d, "tmp")))
        deadline = time.time() + 20
        while subprocess.run(self.ctr("version"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
            if time.time() > deadline or self.proc.poll() is not None:
                sys.exit("containerd did not start: see " + os.path.join(self.d, "containerd.log"))
            time.sleep(0.1)

    def ctr(self, *args):
        return ["ctr", "--address", os.path.join(self.d, "containerd.sock"), "--namespace", self.ns] + list(args)

    def run(self, rt, cid):
        t = time.perf_counter()
        quiet(self.ctr("run", "--rm", "--runc-binary", rt, "--runc-root", os.path.join(self.d, "runc"),
                       "--fifo-dir", os.path.join(self.d, "fifo"), "docker.io/library/busybox:latest", cid, "true"))
        return time.perf_counter() - t

    def stop(self):
        subprocess.run(self.ctr("images", "rm", "docker.io/library/busybox:latest"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # Its snapshots' mounts, if any are left.
        with open("/proc/self/mountinfo") as f:
            mounts = [l.split()[4] for l in f if self.d in l.split()[4]]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], stderr=subprocess.DEVNULL)
        for ctrl in os.listdir("/sys/fs/cgroup"):
            p = os.path.join("/sys/fs/cgroup", ctrl, self.ns)
            if ctrl == "unified" and os.environ.get("PODRUN_BENCH_PRIVATE"):
                continue  # our private tmpfs: it goes with the mount namespace
            if os.path.isdir(p):
                os.rmdir(p)


def cleanup_cgroups():
    for ctrl in os.listdir("/sys/fs/cgroup"):
        base = os.path.join("/sys/fs/cgroup", ctrl, PARENT)
        if ctrl == "unified" and os.environ.get("PODRUN_BENCH_PRIVATE"):
            continue
        if os.path.isdir(base):
            for d in sorted((os.path.join(r, x) for r, ds, _ in os.walk(base) for x in ds), key=len, reverse=True):
                os.rmdir(d)
            os.rmdir(base)


def main():
    missing = [n for n, p in RUNTIMES.items() if not p] + [t for t in ("containerd", "ctr") if not shutil.which(t)]
    if missing:
        sys.exit(f"bench/oci.py needs {', '.join(missing)} (Debian: apt-get install crun runc containerd)")
    sh("cargo", "build", "--release", "-q", cwd=ROOT)
    sh("python3", os.path.join(ROOT, "rootfs-fixtures/build.py"), "busybox", FIXTURES)
    work = tempfile.mkdtemp(prefix="podrun-bench-oci.", dir=os.environ.get("PODRUN_BENCH_DIR", "/var/tmp"))
    set_subreaper()
    c = None
    try:
        b = bundle(work, os.path.join(FIXTURES, "busybox/busybox-rootfs.tar.gz"))
        roots = {n: os.path.join(work, "state-" + n) for n in RUNTIMES}
        times = {k: {n: [] for n in RUNTIMES} for k in ("run", "steps", "ctr")}
        for i in range(RUNS):
            for n, rt in RUNTIMES.items():
                t = time.perf_counter()
                quiet([rt, "--root", roots[n], "run", "--bundle", b, f"r{i}"])
                times["run"][n].append(time.perf_counter() - t)
                times["steps"][n].append(steps(rt, roots[n], b, f"s{i}", os.path.join(work, "pid")))
        c = Containerd(work)
        archive = os.path.join(work, "busybox.tar")
        oci_archive(os.path.join(FIXTURES, "busybox/busybox-oci"), "docker.io/library/busybox:latest", archive)
        quiet(c.ctr("images", "import", archive))
        for i in range(RUNS):
            for n, rt in RUNTIMES.items():
                times["ctr"][n].append(c.run(rt, f"{n}{i}"))
        print(f"bench/oci.py: {RUNS} runs of each, alternating; cgroups {CGROUPS}; medians")
        for k, v in times.items():
            p = med(v["podrun"])
            print(f"{k:<6} podrun {p:7.2f} ms   crun {med(v['crun']):7.2f} ms   runc {med(v['runc']):7.2f} ms   "
                  f"podrun/crun {p / med(v['crun']):.2f}   podrun/runc {p / med(v['runc']):.2f}")
    finally:
        # Each step on its own: one that fails must not leave the rest (the work dir) behind.
        if c:
            try:
                c.stop()
            except Exception as e:
                print(f"bench/oci.py: stopping containerd: {e}", file=sys.stderr)
        for n, rt in RUNTIMES.items():
            root = os.path.join(work, "state-" + n)
            for cid in (os.listdir(root) if os.path.isdir(root) else []):
                subprocess.run([rt, "--root", root, "delete", "--force", cid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            cleanup_cgroups()
        except OSError as e:
            print(f"bench/oci.py: removing /{PARENT}: {e}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench/oci.py runs as root")
    if HYBRID and not os.environ.get("PODRUN_BENCH_PRIVATE"):
        os.environ["PODRUN_BENCH_PRIVATE"] = "1"
        os.execvp("unshare", ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                              'umount -l /sys/fs/cgroup/unified && mount -t tmpfs -o size=1m podrun-bench /sys/fs/cgroup/unified'
                              ' && exec "$@"', "bench", sys.executable] + sys.argv)
    main()
