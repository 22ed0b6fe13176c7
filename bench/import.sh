#!/usr/bin/env bash
# Import speed: `podrun image import` against `umoci unpack` (its peer, Debian's umoci) on
# the same OCI layouts, in the same run, on the same file system. Prints the median of
# each and the ratio podrun/umoci (below 1.0: podrun is faster).
#
#   bench/import.sh [RUNS]        (as root; default 5 runs each, alternating)
#
# Both start from nothing each run (a fresh store for podrun, a fresh bundle for umoci) and
# both write a complete root filesystem. podrun also verifies blob and diff digests and
# syncs the file system before committing; umoci also writes an mtree manifest.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
command -v umoci >/dev/null || { echo "bench: needs umoci (apt-get install umoci)" >&2; exit 1; }
cargo build --release -q
fx=target/podrun-fixtures
python3 rootfs-fixtures/build.py busybox "$fx" >/dev/null
python3 rootfs-fixtures/build.py synthetic "$fx" >/dev/null
work=$(mktemp -d /var/tmp/podrun-bench.XXXXXX)   # on disk, like a real store; not tmpfs
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

bench() {  # NAME LAYOUT
  local name=$1 layout=$2 p=() u=() t0
  for i in $(seq "$runs"); do
    rm -rf "$work/store" "$work/bundle"; sync
    t0=$(now); target/release/podrun --root "$work/store" image import -q "$layout" >/dev/null
    p+=("$(echo "$(now) - $t0" | bc)")
    sync
    t0=$(now); umoci --log error unpack --image "$layout:latest" "$work/bundle" >/dev/null
    u+=("$(echo "$(now) - $t0" | bc)")
  done
  local pm um
  pm=$(printf '%s\n' "${p[@]}" | median); um=$(printf '%s\n' "${u[@]}" | median)
  printf '%-10s podrun %7.3f s   umoci %7.3f s   ratio podrun/umoci %.2f\n' "$name" "$pm" "$um" "$(echo "$pm / $um" | bc -l)"
}

echo "median of $runs runs each, $(uname -r), $(findmnt -no FSTYPE -T "$work")"
bench busybox "$fx/busybox/busybox-oci"
bench synthetic "$fx/synthetic/synthetic-oci"
