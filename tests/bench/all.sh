#!/bin/sh
# Every benchmark, one after the other (`make bench`): each prints its own
# figures and the ratio against the peer measured in the same run. Takes a
# few minutes; run one script alone to look at one path.
#   run.sh          block backend 4K QD1 vs pread and qemu-img bench; IDE DMA
#   bench-virtio    virtio-blk QD32 4K reads vs pread / io_uring (in process)
#   bench-qcow2.sh  qcow2 vs raw vs qemu-img bench; first-write allocation
#   bench-img.sh    diskdm-img convert and bench vs qemu-img
#   bench-nbd.sh    diskdm-nbd vs qemu-nbd and nbdkit through nbdcopy
#   bench-nbd-client.sh  the nbd:// client (diskdm-img bench) vs qemu-img bench
#   bench-vhost.sh  a Linux guest's dd on diskdm-vhost vs qemu-storage-daemon
set -eu
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$SRCDIR/$BUILD" ;; esac
export BUILD SRCDIR
B=$SRCDIR/tests/bench
rc=0
section() { printf '\n== %s\n' "$1"; }
section "block backend (tests/bench/run.sh)"
sh "$B/run.sh" || rc=1
section "virtio-blk, 4K random reads at QD32 (bench-virtio)"
"$BUILD/tests/bench/bench-virtio" -d "${BENCH_DIR:-/var/tmp}" || rc=1
for s in bench-qcow2 bench-img bench-nbd bench-nbd-client bench-vhost; do
    section "$s.sh"
    sh "$B/$s.sh" || rc=1
done
exit $rc
