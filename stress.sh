#!/bin/sh
P="$1/target/debug/podrun --root /tmp/st"
rm -rf /tmp/st
cat /proc/self/cgroup
$P image import $1/target/podrun-fixtures/busybox/busybox-oci -q >/dev/null
$P run -d --name w busybox sleep 1000 >/dev/null
bad=0
for i in $(seq 1 150); do $P exec w true; rc=$?; [ $rc = 0 ] || { bad=$((bad+1)); echo "exec $i rc $rc"; }; done
echo "bad $bad of 150"
$P rm -f w >/dev/null
rm -rf /tmp/st
