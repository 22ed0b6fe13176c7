#!/usr/bin/env python3
"""Read latency of the resource view: podrun against LXCFS (its peer), in one run.

    bench/procview.py [READS]     as root; default 20000 reads of each file

A podrun container with --memory 256m --cpus 1 gives the view (<root>/procview) and a
cgroup; LXCFS (Debian's lxcfs, unpacked from `apt-get download lxcfs` into the work
directory and run in the foreground on a directory of its own, so nothing is installed or
started on the host) serves the same files. This process moves itself into the container's
cgroup, binds each file into a private mount namespace as a container sees it, and times
open + read + close of each file, the medians side by side (ratio podrun/lxcfs: below 1.0 podrun is faster), with the
kernel's own /proc as the floor. Then 8 concurrent readers of meminfo: reads per second and
the CPU time each server used, and each server's memory (PSS).
Everything is removed at the end: the container, LXCFS and its mount, the work directory.
"""

import ctypes
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

READS = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PODRUN = os.path.join(ROOT, "target/release/podrun")
FIXTURES = os.path.join(ROOT, "target/podrun-fixtures")
FILES = os.environ.get("PODRUN_BENCH_FILES", "meminfo cpuinfo stat uptime loadavg swaps").split()


def sh(*args, **kw):
    return subprocess.run(args, check=True, stdout=subprocess.PIPE, text=True, **kw).stdout


def read_once(path):
    fd = os.open(path, os.O_RDONLY)
    while os.read(fd, 65536):
        pass
    os.close(fd)


def median_us(path, n):
    times = []
    for _ in range(n):
        t = time.perf_counter_ns()
        read_once(path)
        times.append(time.perf_counter_ns() - t)
    return statistics.median(times) / 1000


def cpu_ticks(pids):
    total = 0
    for p in pids:
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except OSError:
            pass
    return total


def pss_kb(pids):
    total = 0
    for p in pids:
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def concurrent(path, readers, n):
    t = time.perf_counter()
    kids = []
    for _ in range(readers):
        pid = os.fork()
        if pid == 0:
            for _ in range(n):
                read_once(path)
            os._exit(0)
        kids.append(pid)
    for k in kids:
        os.waitpid(k, 0)
    return readers * n / (time.perf_counter() - t)


def measure(view, mnt, keeper, lx_pid):
    view_pids = [keeper] + open(f"/proc/{keeper}/task/{keeper}/children").read().split()
    lx_pids = [lx_pid]
    first = lambda p: open(p).readline().strip()
    print(f"view check: podrun {first(view + '/meminfo')!r}  lxcfs {first(mnt + '/meminfo')!r}")
    print(f"median of {READS} open+read+close, microseconds; kernel {os.uname().release}")
    for name in FILES:
        ours = median_us(os.path.join(view, name), READS)
        theirs = median_us(os.path.join(mnt, name), READS)
        native = median_us(os.path.join("/proc", name), READS)
        print(f"{name:8} podrun {ours:7.1f}   lxcfs {theirs:7.1f}   ratio {ours / theirs:4.2f}   (/proc {native:5.1f})")
    n = READS // 8
    for label, path, pids in (("podrun", view + "/meminfo", view_pids), ("lxcfs", mnt + "/meminfo", lx_pids)):
        before = cpu_ticks(pids)
        rate = concurrent(path, 8, n)
        used = (cpu_ticks(pids) - before) / os.sysconf("SC_CLK_TCK")
        print(f"8 readers {label:6} {rate:8.0f} reads/s   server CPU {used:5.2f} s for {8 * n} reads")
    view_pids = [keeper] + open(f"/proc/{keeper}/task/{keeper}/children").read().split()
    ours, theirs = pss_kb(view_pids), pss_kb(lx_pids)
    print(f"memory (PSS): podrun keeper+backup+server {ours} kB   lxcfs {theirs} kB   ratio {ours / max(theirs, 1):4.2f}")


def main():
    if os.geteuid() != 0:
        sys.exit("bench/procview.py: run as root")
    sh("cargo", "build", "--release", "-q", cwd=ROOT)
    sh("python3", os.path.join(ROOT, "rootfs-fixtures/build.py"), "busybox", FIXTURES)
    work = tempfile.mkdtemp(prefix="podrun-procview-bench.", dir="/var/tmp")
    store, mnt, lx = os.path.join(work, "store"), os.path.join(work, "lxcfs-mnt"), None
    podrun = lambda *a: sh(PODRUN, "--root", store, *a)
    try:
        sh("apt-get", "download", "-q", "lxcfs", cwd=work, stderr=subprocess.DEVNULL)
        deb = glob.glob(os.path.join(work, "lxcfs_*.deb"))[0]
        sh("dpkg", "-x", deb, os.path.join(work, "lxcfs"))
        libdir = glob.glob(os.path.join(work, "lxcfs/usr/lib/*/lxcfs"))[0]
        os.makedirs(mnt)
        lx = subprocess.Popen(
            [os.path.join(work, "lxcfs/usr/bin/lxcfs"), "-f", "-l", "-p", os.path.join(work, "lxcfs.pid"), mnt],
            env=dict(os.environ, LD_LIBRARY_PATH=libdir),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        podrun("image", "import", "-q", os.path.join(FIXTURES, "busybox/busybox-rootfs.tar.gz"), "--name", "busybox")
        podrun("run", "-d", "--name", "bench", "--memory", "256m", "--cpus", "1", "busybox", "sleep", "3600")
        for _ in range(100):
            if os.path.exists(os.path.join(mnt, "proc/meminfo")):
                break
            time.sleep(0.05)
        state = json.loads(podrun("inspect", "bench"))
        view = os.path.join(store, "procview")
        # The view's active keeper, from its lock file (`PID PGID`); its children are its
        # backup and the server.
        keeper = int(open(os.path.join(store, "procview.active")).read().split()[0])
        sys.stdout.flush()
        # The measuring is done by a child in the container's cgroup (in every hierarchy
        # that has it), so both views compute that container's; it ends there.
        child = os.fork()
        if child == 0:
            code = 1
            try:
                cgroup = state["cgroup"].lstrip("/")
                for procs in glob.glob(f"/sys/fs/cgroup/*/{cgroup}/cgroup.procs") + glob.glob(
                    f"/sys/fs/cgroup/{cgroup}/cgroup.procs"
                ):
                    with open(procs, "w") as f:
                        f.write("0")
                # As a container reads them: each file bind-mounted (no lookup per open),
                # in a private mount namespace of this child.
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
                    raise OSError(ctypes.get_errno(), "unshare")
                sh("mount", "--make-rprivate", "/")
                binds = os.path.join(work, "binds")
                for side, src in (("podrun", view), ("lxcfs", os.path.join(mnt, "proc"))):
                    os.makedirs(os.path.join(binds, side))
                    for name in FILES:
                        dst = os.path.join(binds, side, name)
                        open(dst, "w").close()
                        sh("mount", "--bind", os.path.join(src, name), dst)
                measure(os.path.join(binds, "podrun"), os.path.join(binds, "lxcfs"), keeper, lx.pid)
                code = 0
            finally:
                sys.stdout.flush()
                os._exit(code)
        os.waitpid(child, 0)
    finally:
        subprocess.run([PODRUN, "--root", store, "rm", "-f", "bench"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if lx:
            lx.terminate()
            lx.wait()
        subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
