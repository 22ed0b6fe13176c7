#!/usr/bin/env bash
# The README's demo: build podrun and its busybox image, then show a pod.
#
#   sudo examples/demo-pod.sh        (Debian or Ubuntu with Rust; fetches busybox-static with apt)
#
# It leaves the pod running so you can look around; `podrun sandbox rm -f demo` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo-pod.sh: run it as root (podrun creates namespaces and mounts)" >&2; exit 1; }
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

cargo build --release -q
python3 rootfs-fixtures/build.py busybox target/podrun-fixtures
export PATH="$PWD/target/release:$PATH"
podrun sandbox rm -f demo >/dev/null 2>&1 || true

say podrun image import target/podrun-fixtures/busybox/busybox-oci
podrun image import target/podrun-fixtures/busybox/busybox-oci

say podrun sandbox create demo
podrun sandbox create demo

say "podrun run -d --join demo --name web busybox sh -c '... httpd -f -p 127.0.0.1:8080'"
podrun run -d --join demo --name web busybox sh -c \
  'mkdir -p /www && echo "hello from web, over the pod loopback" > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www'

say podrun run -d --join demo --name sleeper busybox sleep 3600
podrun run -d --join demo --name sleeper busybox sleep 3600

say podrun run --rm --join demo busybox wget -qO- http://127.0.0.1:8080/
for _ in $(seq 50); do podrun exec web sh -c 'netstat -ltn | grep -q :8080' && break; sleep 0.1; done
podrun run --rm --join demo busybox wget -qO- http://127.0.0.1:8080/

say podrun ps
podrun ps

say podrun sandbox inspect demo
podrun sandbox inspect demo

printf '\nThe pod is still running. Look around:\n'
printf '  podrun exec -it web sh          podrun run -it --rm --join demo busybox sh\n'
printf 'and remove it with:  podrun sandbox rm -f demo\n'
echo "(podrun is at $PWD/target/release/podrun)"
