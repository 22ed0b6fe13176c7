#!/usr/bin/env python3
"""Builds podrun's test and demo images from Debian packages; downloads nothing else.

    build.py busybox OUT   OCI image layout of busybox at OUT/busybox-oci, and the same image
                           as an OCI archive, a docker-save archive and a rootfs tarball
    build.py hostile OUT   hostile layers and broken images at OUT/hostile (see HOSTILE)
    build.py all OUT       both, and python and debian (below)
    build.py python OUT    OCI image layout at OUT/python-oci: busybox plus Debian's
                           python3.11-minimal and the libraries it needs, unpacked from
                           their packages (a real program no one wrote for podrun),
                           with ctypes for raw system calls
    build.py debian OUT    OCI image layout at OUT/debian-oci: python's two layers and a
                           third of Debian's procps, coreutils, util-linux's lscpu and taskset, and the
                           libraries they link (see DEBIAN_ROOTS), over busybox's applets
    build.py synthetic OUT a larger OCI image for bench/import.sh: about 200 MB in 20,000
                           files over two layers (not part of `all`)

busybox comes from Debian's busybox-static package, fetched with `apt-get download` at the
pinned version and checked against the pinned sha256 (cached in $PODRUN_FIXTURE_CACHE,
default ~/.cache/podrun-fixtures). Output is deterministic: fixed times and owners, gzip
without a timestamp, so digests are the same on every machine. Each fixture set is
written to a temporary directory and renamed into place when complete.
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile

BUSYBOX_PACKAGE = "busybox-static"
BUSYBOX_VERSION = "1:1.35.0-4+deb12u1+b1"
BUSYBOX_SHA256 = "3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744"
MTIME = 1672531200  # 2023-01-01T00:00:00Z
CREATED = "2023-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STAMP = "fixtures-v6"  # bump when the output changes


def die(msg):
    sys.exit(f"build.py: {msg}")


def sha256(b):
    return hashlib.sha256(b).hexdigest()


# --- tar building -----------------------------------------------------------------------

def info(name, kind=tarfile.REGTYPE, mode=0o644, size=0, link="", uid=0, gid=0, dev=(0, 0), pax=None):
    t = tarfile.TarInfo(name)
    t.type, t.mode, t.size, t.linkname = kind, mode, size, link
    t.uid, t.gid, t.uname, t.gname, t.mtime = uid, gid, "", "", MTIME
    t.devmajor, t.devminor = dev
    if pax:
        t.pax_headers = pax
    return t


def make_tar(entries, fmt=tarfile.GNU_FORMAT):
    """entries: (TarInfo, bytes-or-None). Names are written exactly as given."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for t, data in entries:
            if data is not None:
                t.size = len(data)
                tf.addfile(t, io.BytesIO(data))
            else:
                tf.addfile(t)
    return buf.getvalue()


def gz(b):
    return gzip.compress(b, compresslevel=6, mtime=0)


def f(name, data, mode=0o644, **kw):
    return (info(name, mode=mode, **kw), data)


def d(name, mode=0o755):
    return (info(name, tarfile.DIRTYPE, mode=mode), None)


def sym(name, target):
    return (info(name, tarfile.SYMTYPE, mode=0o777, link=target), None)


def hard(name, target):
    return (info(name, tarfile.LNKTYPE, link=target), None)


# --- image layouts ----------------------------------------------------------------------

def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


def jbytes(v):
    return json.dumps(v, separators=(",", ":"), sort_keys=True).encode()


def image_config(diff_ids, cmd=("sh",)):
    return {
        "created": CREATED,
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [PATH_ENV], "Cmd": list(cmd)},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{x}" for x in diff_ids]},
        "history": [{"created": CREATED, "created_by": "podrun rootfs-fixtures/build.py"} for _ in diff_ids],
    }


def oci_image(blobs, layer_tars, config=None, arch="amd64", tamper=None):
    """Adds an image's layer, config and manifest blobs; returns the manifest's descriptor.
    tamper(what, value) may break the config ("config") or the blobs ("blobs")."""
    layers, diff_ids = [], []
    for t in layer_tars:
        g = gz(t)
        blobs[sha256(g)] = g
        diff_ids.append(sha256(t))
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": f"sha256:{sha256(g)}", "size": len(g)})
    cfg = config or image_config(diff_ids)
    cfg["architecture"] = arch
    if tamper:
        tamper("config", cfg)
    cb = jbytes(cfg)
    blobs[sha256(cb)] = cb
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": f"sha256:{sha256(cb)}", "size": len(cb)},
        "layers": layers,
    }
    mb = jbytes(manifest)
    blobs[sha256(mb)] = mb
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{sha256(mb)}", "size": len(mb)}


def named(desc, name, tag):
    return dict(desc, annotations={"io.containerd.image.name": f"docker.io/library/{name}:{tag}", "org.opencontainers.image.ref.name": tag})


def write_layout(out, blobs, manifests):
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
    for h, b in blobs.items():
        write(os.path.join(out, "blobs", "sha256", h), b)
    write(os.path.join(out, "oci-layout"), jbytes({"imageLayoutVersion": "1.0.0"}))
    write(os.path.join(out, "index.json"), jbytes(index))


def oci_layout(out, layer_tars, name, tag="latest", tamper=None):
    """Writes an OCI image layout of one image with gzip layers."""
    blobs = {}
    desc = oci_image(blobs, layer_tars, tamper=tamper)
    if tamper:
        tamper("blobs", blobs)
    write_layout(out, blobs, [named(desc, name, tag)])


def multi_layouts(tmp):
    """Two tags of one repository in one layout, and a multi-platform image (a nested index
    with arm64 and amd64 manifests), each marked by the file /which."""
    blobs = {}
    one = oci_image(blobs, [make_tar([f("which", b"1.0")])])
    two = oci_image(blobs, [make_tar([f("which", b"2.0")])])
    write_layout(os.path.join(tmp, "two-tags"), blobs, [named(one, "two", "1.0"), named(two, "two", "2.0")])

    blobs = {}
    arm = oci_image(blobs, [make_tar([f("which", b"arm64")])], arch="arm64")
    amd = oci_image(blobs, [make_tar([f("which", b"amd64")])], arch="amd64")
    inner = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            dict(arm, platform={"architecture": "arm64", "os": "linux"}),
            dict(amd, platform={"architecture": "amd64", "os": "linux"}),
        ],
    }
    ib = jbytes(inner)
    blobs[sha256(ib)] = ib
    top = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": f"sha256:{sha256(ib)}", "size": len(ib)}
    write_layout(os.path.join(tmp, "multi-arch"), blobs, [named(top, "multi", "latest")])


def tar_dir(src, dest):
    """The directory as a deterministic tar archive (for oci-archive style inputs)."""
    entries = []
    for root, dirs, files in os.walk(src):
        dirs.sort()
        rel = os.path.relpath(root, src)
        if rel != ".":
            entries.append(d(rel))
        for name in sorted(files):
            p = os.path.join(root, name)
            with open(p, "rb") as fh:
                entries.append(f(os.path.normpath(os.path.join(rel, name)), fh.read()))
    write(dest, make_tar(entries))


def docker_save(dest, layer_tars, name, tag="latest"):
    """A `docker save` archive (the classic layout: <id>/layer.tar, <config>.json)."""
    diff_ids = [sha256(t) for t in layer_tars]
    cb = jbytes(image_config(diff_ids))
    entries, paths = [], []
    for i, t in enumerate(layer_tars):
        lid = sha256(f"{i}:{diff_ids[i]}".encode())
        entries += [d(lid), f(f"{lid}/VERSION", b"1.0"), f(f"{lid}/layer.tar", t)]
        paths.append(f"{lid}/layer.tar")
    entries.append(f(f"{sha256(cb)}.json", cb))
    entries.append(f("manifest.json", jbytes([{"Config": f"{sha256(cb)}.json", "RepoTags": [f"{name}:{tag}"], "Layers": paths}])))
    entries.append(f("repositories", jbytes({name: {tag: paths[-1].split("/")[0]}})))
    write(dest, make_tar(entries))


# --- busybox ----------------------------------------------------------------------------

def busybox_deb():
    cache = os.environ.get("PODRUN_FIXTURE_CACHE") or os.path.expanduser("~/.cache/podrun-fixtures")
    os.makedirs(cache, exist_ok=True)
    deb = os.path.join(cache, f"{BUSYBOX_PACKAGE}_{BUSYBOX_VERSION.replace(':', '%3a')}_amd64.deb")
    if not os.path.exists(deb):
        r = subprocess.run(["apt-get", "download", f"{BUSYBOX_PACKAGE}={BUSYBOX_VERSION}"], cwd=cache, capture_output=True, text=True)
        if r.returncode != 0:
            die(f"apt-get download {BUSYBOX_PACKAGE}={BUSYBOX_VERSION} failed (run `apt-get update` first?):\n{r.stderr}")
    with open(deb, "rb") as fh:
        got = sha256(fh.read())
    if got != BUSYBOX_SHA256:
        os.unlink(deb)
        die(f"{deb}: sha256 {got} is not the pinned {BUSYBOX_SHA256}")
    return deb


def busybox_layer(tmp):
    deb = busybox_deb()
    fs = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(fs)) as tf:
        binary = tf.extractfile("./bin/busybox").read()
    exe = os.path.join(tmp, "busybox")
    write(exe, binary)
    os.chmod(exe, 0o755)
    applets = subprocess.run([exe, "--list-full"], capture_output=True, text=True, check=True).stdout.split()
    dirs = ["bin", "dev", "etc", "home", "proc", "root", "sbin", "sys", "usr", "usr/bin", "usr/sbin", "var", "var/run"]
    entries = [d(x, 0o700 if x == "root" else 0o755) for x in dirs]
    entries += [d("tmp", 0o1777), f("bin/busybox", binary, 0o755)]
    entries += [sym(a, "/bin/busybox") for a in sorted(set(applets)) if a != "bin/busybox"]
    entries += [
        f("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
        f("etc/group", b"root:x:0:\nnobody:x:65534:\n"),
        # Empty, as images built by docker carry them: runtimes bind-mount over them.
        f("etc/hostname", b""), f("etc/hosts", b""), f("etc/resolv.conf", b""),
    ]
    return make_tar(entries)


# Debian's minimal Python and what it links: the candidate versions of the machine's apt
# sources (not pinned: Debian replaces them with security updates; the image's contents
# are not compared by digest).
PYTHON_PACKAGES = ["python3.11-minimal", "libpython3.11-minimal", "libc6", "libgcc-s1", "zlib1g", "libexpat1", "libffi8"]
# From the full standard library only ctypes (and its libffi8, above): the security tests
# make raw system calls with it.
PYTHON_PARTS = {"libpython3.11-stdlib": ("usr/lib/python3.11/ctypes/", "usr/lib/python3.11/lib-dynload/_ctypes.")}


def debs(packages, sub="python"):
    """The packages' .deb files, downloaded into $PODRUN_FIXTURE_CACHE/SUB on first use."""
    cache = os.environ.get("PODRUN_FIXTURE_CACHE") or os.path.expanduser("~/.cache/podrun-fixtures")
    dest = os.path.join(cache, sub)
    os.makedirs(dest, exist_ok=True)
    have = {n.split("_")[0]: n for n in os.listdir(dest) if n.endswith(".deb")}
    missing = [p for p in packages if p not in have]
    if missing:
        r = subprocess.run(["apt-get", "download", *missing], cwd=dest, capture_output=True, text=True)
        if r.returncode != 0:
            die(f"apt-get download {' '.join(missing)} failed (run `apt-get update` first?):\n{r.stderr}")
        have = {n.split("_")[0]: n for n in os.listdir(dest) if n.endswith(".deb")}
    return [os.path.join(dest, have[p]) for p in packages]


def deb_entries(deb, seen, keep=lambda name, m: True, rename=lambda name: name):
    """A package's files as layer entries, owned by root, skipping names in `seen` (the
    first package to bring a path wins) and those `keep` refuses; `rename` may move a path
    (hard link targets move with it)."""
    entries = []
    fs = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(fs)) as tf:
        for m in tf.getmembers():
            name = os.path.normpath(m.name).lstrip("/")
            if name in (".", "") or not keep(name, m):
                continue
            name = rename(name)
            if name in seen:
                continue
            seen.add(name)
            if m.isdir():
                entries.append(d(name, m.mode))
            elif m.issym():
                entries.append(sym(name, m.linkname))
            elif m.islnk():
                entries.append(hard(name, rename(os.path.normpath(m.linkname).lstrip("/"))))
            elif m.isfile():
                entries.append(f(name, tf.extractfile(m).read(), m.mode))
    return entries


def python_layer():
    """The packages' files as one layer (documentation left out), owned by root."""
    seen, entries = set(), []
    wanted = PYTHON_PACKAGES + list(PYTHON_PARTS)
    for pkg, deb in zip(wanted, debs(wanted)):
        parts = PYTHON_PARTS.get(pkg)

        def keep(name, m):
            if name.startswith(("usr/share/doc", "usr/share/man", "usr/share/lintian")):
                return False
            return not parts or name.startswith(parts) or m.isdir() and any(p.startswith(name + "/") for p in parts)

        entries += deb_entries(deb, seen, keep)
    entries.append(sym("usr/bin/python3", "python3.11"))
    return make_tar(entries)


def build_python(out, name="python", more=None):
    """busybox and python's layers, and the layer `more` makes over them if given, as an
    OCI image layout at OUT/NAME-oci."""
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    layers = [busybox_layer(tmp), python_layer()]
    if more:
        layers.append(more(layers))
    os.unlink(os.path.join(tmp, "busybox"))
    oci_layout(os.path.join(tmp, f"{name}-oci"), layers, name)
    return tmp


# Real Debian programs for looking at a container's resources, for the procview tests and
# demos: procps (free, top, ps, vmstat, uptime, w, pgrep, ...), GNU coreutils (nproc, df, ...)
# and util-linux's lscpu and taskset, with every library they link that the python layer
# below does not already have: the closure of the packages' Depends and Pre-Depends, taken from the .debs
# themselves (the first of alternatives), at the candidate versions as for python. Also
# dash as /bin/sh, as in Debian: busybox's ash runs its own applet for any name it has one
# for (ps, top, free, df, nproc, ...) whatever PATH says, so under it these programs would
# only ever run by their full path. And ncurses-base's terminfo, without which top stops
# ("terminals database is inaccessible"), also with -b. And libstdc++6, which the host's
# JVM (bound in by tests/programs.rs, where the host has one) links.
DEBIAN_ROOTS = ["procps", "coreutils", "libsmartcols1", "dash", "ncurses-base", "libstdc++6"]
# Of util-linux (5 MB, linking PAM, systemd, udev, blkid, mount, ...) only lscpu and taskset,
# which link libsmartcols1 (a root above) and libc6; util-linux's own Depends are not followed.
DEBIAN_PARTS = {"util-linux": ("usr/bin/lscpu", "usr/bin/taskset")}
# Dependencies that carry no file these programs load, only what maintainer scripts use,
# or documentation. check_needed() proves that no library in them is missed.
DEBIAN_SKIP = {
    "init-system-helpers",  # procps's: its init script and postinst (no init system here)
    "debianutils",  # dash's: add-shell for its postinst
    "dpkg",  # dash's: dpkg-divert for its postinst
    "gcc-12-base",  # libgcc-s1's: only /usr/share/doc
}
DEBIAN_DROP = ("usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info", "usr/share/lintian",
               "usr/share/bug", "etc/init.d")
LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib")


def dep_names(deb):
    """The packages a .deb Pre-Depends and Depends on: names only, the first of alternatives."""
    r = subprocess.run(["dpkg-deb", "-f", deb, "Pre-Depends", "Depends"], capture_output=True, text=True, check=True)
    out = []
    for line in r.stdout.splitlines():
        if ":" in line.split(" ", 1)[0]:
            line = line.split(":", 1)[1]
        for dep in line.split(","):
            name = dep.split("|")[0].split("(")[0].strip().split(":")[0]
            if name:
                out.append(name)
    return out


def debian_packages():
    """DEBIAN_ROOTS and the closure of their dependencies, less DEBIAN_SKIP and the python
    layer's packages, sorted."""
    have = set(PYTHON_PACKAGES) | set(DEBIAN_SKIP)
    found, todo = set(), list(DEBIAN_ROOTS)
    while todo:
        todo = sorted(set(todo) - found - have)
        found |= set(todo)
        todo = [dep for deb in debs(todo, "debian") for dep in dep_names(deb)]
    return sorted(found)


def elf_needed(data):
    """DT_NEEDED of an ELF64 little-endian file (from its section headers), None if not ELF."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    secs = [struct.unpack_from("<IIQQQQII", data, shoff + i * shentsize) for i in range(shnum)]
    needed = []
    for _, typ, _, _, off, size, link, _ in secs:
        if typ != 6:  # SHT_DYNAMIC
            continue
        strtab = secs[link][4]
        for j in range(off, off + size, 16):
            tag, val = struct.unpack_from("<qQ", data, j)
            if tag == 0:
                break
            if tag == 1:  # DT_NEEDED
                needed.append(data[strtab + val:data.index(b"\0", strtab + val)].decode())
    return needed


def check_needed(entries, lower):
    """Dies unless every DT_NEEDED of every ELF file in `entries` is a file or link in a
    library directory of `entries` or of the `lower` layer tars (how ld.so finds them
    without /etc/ld.so.cache). Returns how many ELF files it looked at."""
    libs = set()
    for t in lower:
        with tarfile.open(fileobj=io.BytesIO(t)) as tf:
            libs |= {m.name for m in tf.getmembers() if not m.isdir()}
    libs |= {t.name for t, _ in entries if not t.isdir()}
    libs = {os.path.basename(n) for n in libs if os.path.dirname(n) in LIB_DIRS}
    missing, elves = [], 0
    for t, data in entries:
        needed = elf_needed(data) if data else None
        if needed is None:
            continue
        elves += 1
        missing += [f"{t.name}: {n}" for n in needed if n not in libs]
    if missing:
        die("the debian layer misses libraries:\n  " + "\n  ".join(missing))
    return elves


def merged_usr(name):
    """bin/X and sbin/X as usr/bin/X and usr/sbin/X: Debian bookworm's merged /usr, where
    /bin is a link to usr/bin. (The busybox layer has real /bin and /usr/bin directories.)"""
    return "usr/" + name if name.startswith(("bin/", "sbin/")) else name


def debian_layer(lower):
    """The packages' files as one layer (documentation, translations and init scripts left
    out), owned by root, commands in /usr/bin and /usr/sbin with a link to each from /bin
    and /sbin: so every path to a command, /bin/df or /usr/bin/df, /usr/bin/nproc or
    /bin/nproc, is the Debian program and no longer a busybox applet link of the layer
    below (a layer's entry replaces the one of the same path beneath it)."""
    seen, entries = set(), []
    wanted = debian_packages() + list(DEBIAN_PARTS)
    for pkg, deb in zip(wanted, debs(wanted, "debian")):
        parts = DEBIAN_PARTS.get(pkg)

        def keep(name, m):
            if name.startswith(DEBIAN_DROP):
                return False
            return not parts or name.startswith(parts) or m.isdir() and any(p.startswith(name + "/") for p in parts)

        entries += deb_entries(deb, seen, keep, merged_usr)
    links = []
    for t, _ in entries:
        top, _, rest = t.name.partition("/")
        if top == "usr" and rest.startswith(("bin/", "sbin/")) and not t.isdir():
            links.append(sym(rest, "/" + t.name))
    entries += [d(x) for x in ("bin", "sbin") if x not in seen] + sorted(links, key=lambda e: e[0].name)
    elves = check_needed(entries, lower)
    print(f"build.py: debian layer: {', '.join(wanted)}; {elves} ELF files, every DT_NEEDED present")
    return make_tar(entries)


def build_debian(out):
    return build_python(out, "debian", debian_layer)


def build_busybox(out):
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    layer = busybox_layer(tmp)
    os.unlink(os.path.join(tmp, "busybox"))
    oci_layout(os.path.join(tmp, "busybox-oci"), [layer], "busybox")
    tar_dir(os.path.join(tmp, "busybox-oci"), os.path.join(tmp, "busybox-oci.tar"))
    docker_save(os.path.join(tmp, "busybox-docker.tar"), [layer], "busybox")
    write(os.path.join(tmp, "busybox-rootfs.tar.gz"), gz(layer))
    return tmp


# --- hostile layers ---------------------------------------------------------------------

CANARY = "podrun-hostile-canary"  # no file of this name may ever appear outside the store

HOSTILE = {
    # name: (entries, what podrun must do)
    "dotdot.tar": [f("ok", b"x"), f(f"../../../../../../tmp/{CANARY}-dotdot", b"pwned")],
    "absolute.tar": [f(f"/{CANARY}-absolute", b"inside")],
    "symlink-root.tar": [sym("escape", "/"), f(f"escape/tmp/{CANARY}-symlink", b"pwned")],
    "symlink-chain.tar": [
        sym("a", "b"), sym("b", "c"), sym("c", "../../../../../../tmp"),
        f(f"a/{CANARY}-chain", b"pwned"),
    ],
    "symlink-replaced.tar": [sym("s", f"/tmp/{CANARY}-replaced"), f("s", b"a file, not a write through s")],
    "hardlink-absolute.tar": [hard("passwd", "/etc/passwd")],
    "hardlink-dotdot.tar": [hard("shadow", "../../../../../../etc/shadow")],
    "devices.tar": [
        d("dev"),
        (info("dev/sda", tarfile.BLKTYPE, mode=0o660, dev=(8, 0)), None),
        (info("dev/mem", tarfile.CHRTYPE, mode=0o640, dev=(1, 1)), None),
        f("dev/regular", b"kept"),
    ],
    "setuid.tar": [d("bin"), f("bin/su", b"#!/bin/sh\n", 0o4755), f("bin/sg", b"#!/bin/sh\n", 0o2755)],
    "xattrs.tar": [
        (info("d", tarfile.DIRTYPE, mode=0o755, pax={"SCHILY.xattr.trusted.overlay.opaque": "y"}), None),
        (info("d/f", mode=0o644, pax={"SCHILY.xattr.user.podrun": "kept", "SCHILY.xattr.trusted.overlay.redirect": "/etc"}), b"x"),
    ],
    "whiteout-dotdot.tar": [d("etc"), f("etc/.wh...", b"")],
    "newline-name.tar": [f("line1\nline2", b"odd but legal")],
}


def build_hostile(out):
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name, entries in HOSTILE.items():
        fmt = tarfile.PAX_FORMAT if name == "xattrs.tar" else tarfile.GNU_FORMAT
        write(os.path.join(tmp, name), make_tar(entries, fmt))
    # 10^5 tiny files in 100 directories.
    many = [d(f"d{i:03}") for i in range(100)]
    many += [f(f"d{i // 1000:03}/f{i:06}", b"%d\n" % i) for i in range(100_000)]
    write(os.path.join(tmp, "many-files.tar.gz"), gz(make_tar(many)))
    good = make_tar([d("etc"), f("etc/hostname", b"podrun\n")])
    write(os.path.join(tmp, "truncated.tar.gz"), gz(good)[: len(gz(good)) // 2])

    # Broken images: a layer blob whose bytes do not match its digest; a manifest pointing
    # at a blob that is not there; a config whose diff_id does not match the layer.
    def bad_blob(what, v):
        if what == "blobs":
            for h, b in v.items():
                if b[:2] == b"\x1f\x8b":
                    v[h] = gz(make_tar([f("etc/evil", b"altered")]))

    def missing_blob(what, v):
        if what == "blobs":
            for h in [h for h, b in v.items() if b[:2] == b"\x1f\x8b"]:
                del v[h]

    def bad_diff_id(what, v):
        if what == "config":
            v["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]

    oci_layout(os.path.join(tmp, "oci-bad-digest"), [good], "bad-digest", tamper=bad_blob)
    oci_layout(os.path.join(tmp, "oci-missing-blob"), [good], "missing-blob", tamper=missing_blob)
    oci_layout(os.path.join(tmp, "oci-bad-diffid"), [good], "bad-diffid", tamper=bad_diff_id)

    # A legitimate two-layer image with whiteouts: upper layer deletes etc/a and makes d opaque.
    lower = make_tar([d("etc"), f("etc/a", b"a"), f("etc/b", b"b"), d("d"), f("d/x", b"x")])
    upper = make_tar([d("etc"), f("etc/.wh.a", b""), d("d"), f("d/.wh..wh..opq", b""), f("d/y", b"y")])
    oci_layout(os.path.join(tmp, "whiteouts"), [lower, upper], "whiteouts")
    multi_layouts(tmp)
    # Two images sharing their bottom layer.
    base = make_tar([d("etc"), f("etc/base", b"shared")])
    oci_layout(os.path.join(tmp, "shared-a"), [base, make_tar([f("a", b"a")])], "shared-a")
    oci_layout(os.path.join(tmp, "shared-b"), [base, make_tar([f("b", b"b")])], "shared-b")
    return tmp


def build_synthetic(out):
    """About 200 MB in 20,000 files, half random and half text, like a real image's mix."""
    import random
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    rng = random.Random(42)
    text = b"".join(b"line %d of a configuration file, with some repeated words\n" % i for i in range(4000))
    entries = [d(f"usr/share/s{i:02}") for i in range(100)]
    entries[:0] = [d("usr"), d("usr/share")]
    for i in range(20_000):
        size = rng.randint(0, 20_000)
        data = rng.randbytes(size) if i % 2 else (text * 2)[:size]
        entries.append(f(f"usr/share/s{i % 100:02}/file{i:05}", data, 0o755 if i % 7 == 0 else 0o644))
    small = make_tar([d("etc"), f("etc/hostname", b"synthetic\n")])
    oci_layout(os.path.join(tmp, "synthetic-oci"), [make_tar(entries), small], "synthetic")
    return tmp


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("busybox", "hostile", "python", "debian", "all", "synthetic"):
        die(__doc__)
    what, out = sys.argv[1], os.path.abspath(sys.argv[2])
    os.makedirs(out, exist_ok=True)
    builders = {"busybox": build_busybox, "hostile": build_hostile, "python": build_python, "debian": build_debian, "synthetic": build_synthetic}
    for name, build in builders.items():
        if what != name and (what != "all" or name == "synthetic"):
            continue
        dest = os.path.join(out, name)
        stamp = os.path.join(dest, ".stamp")
        if os.path.exists(stamp) and open(stamp).read() == STAMP:
            continue
        tmp = build(dest)
        write(os.path.join(tmp, ".stamp"), STAMP.encode())
        old = dest + ".old"
        shutil.rmtree(old, ignore_errors=True)
        if os.path.exists(dest):
            os.rename(dest, old)
        os.rename(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
        print(f"build.py: wrote {dest}")


if __name__ == "__main__":
    main()
