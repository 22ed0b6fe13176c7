#!/usr/bin/env python3
"""Start latency of this checkout's podrun against an earlier commit's, in one run (A/B).

    bench/ab.py REV [RUNS]     as root; default 40 runs of each, alternating
    bench/ab.py OLD_BINARY [RUNS]   the same against a podrun built before

Builds REV's podrun (release) in a temporary git worktree and this checkout's, imports the
busybox fixture into a root of each, and times, alternating old and new:
  run       `podrun run --rm busybox true`
  join      `podrun run --rm --join SB busybox true` (SB made once per side)
  sandbox   `podrun sandbox create` (then removed, untimed)
Prints medians and the ratio new/old: below 1.0, this checkout is faster. For a change
that must not slow the start path (issue 20 asks for this against the commit before it).
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "target/podrun-fixtures/busybox/busybox-oci")


def sh(*args, **kw):
    return subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw).stdout


def timed(args):
    t = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def build(tree):
    sh("cargo", "build", "--release", "-q", "--bins", cwd=tree)
    return os.path.join(tree, "target/release/podrun")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rev, runs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 40
    if os.geteuid() != 0:
        sys.exit("bench/ab.py: run as root")
    if not os.path.isdir(FIXTURE):
        sh(sys.executable, os.path.join(ROOT, "rootfs-fixtures/build.py"), "busybox", os.path.join(ROOT, "target/podrun-fixtures"))
    work = tempfile.mkdtemp(prefix="podrun-ab-")
    old_tree = None if os.access(rev, os.X_OK) and os.path.isfile(rev) else os.path.join(work, "old")
    if old_tree:
        sh("git", "worktree", "add", "--detach", "-q", old_tree, rev, cwd=ROOT)
    sides = {}
    try:
        sides = {"old": build(old_tree) if old_tree else rev, "new": build(ROOT)}
        roots = {s: os.path.join(work, f"root-{s}") for s in sides}
        for s, exe in sides.items():
            sh(exe, "--root", roots[s], "image", "import", FIXTURE)
            sh(exe, "--root", roots[s], "sandbox", "create", "sb")
        cmds = {
            "run": lambda s: [sides[s], "--root", roots[s], "run", "--rm", "busybox", "true"],
            "join": lambda s: [sides[s], "--root", roots[s], "run", "--rm", "--join", "sb", "busybox", "true"],
            "sandbox": lambda s: [sides[s], "--root", roots[s], "sandbox", "create", "ab"],
        }
        times = {(k, s): [] for k in cmds for s in sides}
        for k, cmd in cmds.items():
            for s in sides:  # warm up
                subprocess.run(cmd(s), check=True, stdout=subprocess.DEVNULL)
                if k == "sandbox":
                    sh(sides[s], "--root", roots[s], "sandbox", "rm", "-f", "ab")
            for i in range(runs):
                for s in (("old", "new") if i % 2 == 0 else ("new", "old")):
                    times[(k, s)].append(timed(cmd(s)))
                    if k == "sandbox":
                        sh(sides[s], "--root", roots[s], "sandbox", "rm", "-f", "ab")
        print(f"{'':8} {'old ' + os.path.basename(rev)[:10]:>16} {'new':>10} {'new/old':>8}   ({runs} runs each, medians)")
        for k in cmds:
            o, n = (statistics.median(times[(k, s)]) * 1000 for s in ("old", "new"))
            print(f"{k:8} {o:13.2f} ms {n:7.2f} ms {n / o:8.2f}")
    finally:
        for s, exe in sides.items():
            root = os.path.join(work, f"root-{s}")
            subprocess.run([exe, "--root", root, "sandbox", "rm", "-f", "sb", "ab"], capture_output=True)
            subprocess.run([exe, "--root", root, "image", "rm", "busybox"], capture_output=True)
        if old_tree:
            subprocess.run(["git", "worktree", "remove", "--force", old_tree], cwd=ROOT, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
