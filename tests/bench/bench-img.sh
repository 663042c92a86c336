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

# qemu-img convert's defaults: source cache writeback, target 'unsafe'
# (no flushes); ours are the same. Five runs each, alternating who goes
# first, medians; the source stays page-cached, targets are removed
# (and the removal synced) between runs.
median() { tr ' ' '\n' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "convert, 1 GiB fully allocated (random data), default cache modes, median of ${RUNS:=5}"
for dir in qcow2-raw raw-qcow2; do
    in=${dir%-*}; out=${dir#*-}
    rm -f o.* q.*; sync
    ol=; tl=
    i=0
    while [ $i -lt "$RUNS" ]; do
        cat "src.$in" > /dev/null
        if [ $((i % 2)) = 0 ]; then
            ol="$ol $(secs "$IMG" convert -f "$in" -O "$out" "src.$in" "o.$out")"; rm -f "o.$out"; sync
            tl="$tl $(secs qemu-img convert -f "$in" -O "$out" "src.$in" "q.$out")"; rm -f "q.$out"; sync
        else
            tl="$tl $(secs qemu-img convert -f "$in" -O "$out" "src.$in" "q.$out")"; rm -f "q.$out"; sync
            ol="$ol $(secs "$IMG" convert -f "$in" -O "$out" "src.$in" "o.$out")"; rm -f "o.$out"; sync
        fi
        i=$((i + 1))
    done
    ours=$(echo $ol | median); theirs=$(echo $tl | median)
    printf '  %-10s diskdm-img %6ss  qemu-img %6ss  speed-up %sx   (runs: ours%s; qemu-img%s)\n' \
        "$in->$out" "$ours" "$theirs" "$(ratio "$theirs" "$ours")" "$ol" "$tl"
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
