#!/bin/sh
# diskdm-img versus qemu-img, side by side in one run (the machine is shared
# and noisy: compare the ratios, not the times):
#   1. convert of a fully allocated 1 GiB qcow2 (random data) to raw, and of
#      the raw image back to qcow2, default cache modes;
#   2. bench, 4K QD1 reads and writes, raw and qcow2, cache=writeback, on
#      page-cached 1 GiB images (separate copies: bench -w writes zeroes).
# Prints one line per case: both times (or IOPS) and ours/theirs speed-up.
# Usage: tests/bench/bench-img.sh [COUNT]   (BUILD, BENCH_DIR honoured)
set -eu
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$SRCDIR/build}
case "$BUILD" in /*) ;; *) BUILD="$SRCDIR/$BUILD" ;; esac
IMG=$BUILD/diskdm-img
N=${1:-200000}
[ -x "$IMG" ] || { echo "bench-img.sh: build $IMG first" >&2; exit 1; }
command -v qemu-img >/dev/null || { echo "bench-img.sh: qemu-img missing" >&2; exit 77; }
D=$(mktemp -d "${BENCH_DIR:-/var/tmp}/diskdm-bench-img.XXXXXX")
trap 'rm -rf "$D"' EXIT INT TERM
cd "$D"

now() { date +%s.%N; }
secs() {   # run a command, print its wall time in seconds
    t0=$(now); "$@" > /dev/null; t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
bench_secs() { awk '/Run completed in/ { print $4 }'; }

head -c 1073741824 /dev/urandom > src.raw
qemu-img convert -f raw -O qcow2 src.raw src.qcow2
cat src.raw src.qcow2 > /dev/null

echo "convert, 1 GiB fully allocated (random data), default cache modes"
for dir in qcow2-raw raw-qcow2; do
    in=${dir%-*}; out=${dir#*-}
    rm -f o.* q.*
    ours=$(secs "$IMG" convert -f "$in" -O "$out" "src.$in" "o.$out")
    rm -f "o.$out"; sync
    theirs=$(secs qemu-img convert -f "$in" -O "$out" "src.$in" "q.$out")
    rm -f "q.$out"; sync
    # Second round, the other order, best of both for each.
    theirs2=$(secs qemu-img convert -f "$in" -O "$out" "src.$in" "q.$out")
    rm -f "q.$out"; sync
    ours2=$(secs "$IMG" convert -f "$in" -O "$out" "src.$in" "o.$out")
    rm -f "o.$out"; sync
    ours=$(awk -v a="$ours" -v b="$ours2" 'BEGIN { print (a < b ? a : b) }')
    theirs=$(awk -v a="$theirs" -v b="$theirs2" 'BEGIN { print (a < b ? a : b) }')
    printf '  %-10s diskdm-img %6ss  qemu-img %6ss  speed-up %sx\n' \
        "$in->$out" "$ours" "$theirs" "$(ratio "$theirs" "$ours")"
done

echo "bench, 4K QD1, $N requests, cache=writeback, page-cached 1 GiB images"
cp src.raw w.raw
qemu-img convert -f raw -O qcow2 src.raw w.qcow2
cat w.raw w.qcow2 > /dev/null
for fmt in raw qcow2; do
    for rw in read write; do
        flag=; [ $rw = write ] && flag=-w
        img=src.$fmt; [ $rw = write ] && img=w.$fmt
        ours=$("$IMG" bench $flag -c "$N" -d 1 -s 4096 -t writeback -f $fmt "$img" | bench_secs)
        theirs=$(qemu-img bench $flag -c "$N" -d 1 -s 4096 -t writeback -f $fmt "$img" | bench_secs)
        printf '  %-5s %-5s diskdm-img %7.0f IOPS  qemu-img %7.0f IOPS  speed-up %sx\n' \
            $fmt $rw "$(ratio "$N" "$ours")" "$(ratio "$N" "$theirs")" "$(ratio "$theirs" "$ours")"
    done
done
