#!/bin/sh
# The nbd client driver at queue depth 16: `diskdm-img bench -d 16` against
# `qemu-img bench -d 16` on the same nbd+unix:// export, served by
# diskdm-nbd and by nbdkit from one page-cached raw file. Runs alternate
# (rotating which tool goes first) so machine load hits both alike; printed
# per server and request size: the median run time of each tool, its
# MiB/s, and diskdm-img's throughput over qemu-img's (above 1: faster).
# Depth 1 is measured too, for the gain from having requests in flight.
#
# Usage: tests/bench/bench-nbd-client.sh [ROUNDS]   (BUILD, SIZE_MB,
#                                                   BENCH_DIR may be set)
set -eu
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$SRCDIR/build}
case "$BUILD" in /*) ;; *) BUILD="$SRCDIR/$BUILD" ;; esac
ROUNDS=${1:-5}
SIZE_MB=${SIZE_MB:-256}
for c in qemu-img nbdkit; do
    command -v $c >/dev/null || { echo "missing $c"; exit 77; }
done
for p in diskdm-img diskdm-nbd; do
    [ -x "$BUILD/$p" ] || { echo "$BUILD/$p not built"; exit 1; }
done
T=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/diskdm-bench.XXXXXX")
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$T"

head -c "${SIZE_MB}M" /dev/urandom > img.raw
cat img.raw > /dev/null
"$BUILD/diskdm-nbd" -r -t -e 4 -f raw -k "$T/d.sock" img.raw 2>d.log &
pids="$pids $!"
nbdkit -r -f -U "$T/k.sock" file img.raw 2>k.log &
pids="$pids $!"
for s in d k; do
    i=0
    while [ ! -S "$T/$s.sock" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
done

# seconds one bench run takes: TOOL DEPTH BUFSIZE URI
run() {
    out=$("$1" bench -f raw -d "$2" -s "$3" -c "$4" -S "$3" "$5" 2>&1) ||
        { echo "$1 failed: $out" >&2; exit 1; }
    echo "$out" | sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf '%-8s %5s %3s %12s %9s %12s %9s %7s\n' server size QD "diskdm-img s" "MiB/s" \
    "qemu-img s" "MiB/s" ratio
for s in d k; do
    name=$([ $s = d ] && echo diskdm-nbd || echo nbdkit)
    uri="nbd+unix:///?socket=$T/$s.sock"
    for bs in 4096 65536; do
        # a count that reads the image once (4 times with 64K requests,
        # for runs long enough to time; offsets wrap at the end)
        count=$((SIZE_MB * 1048576 / bs))
        [ $bs -gt 4096 ] && count=$((count * 4))
        for qd in 1 16; do
            : > a.t; : > b.t
            r=0
            while [ $r -lt "$ROUNDS" ]; do
                if [ $((r % 2)) -eq 0 ]; then
                    run "$BUILD/diskdm-img" $qd $bs $count "$uri" >> a.t
                    run qemu-img $qd $bs $count "$uri" >> b.t
                else
                    run qemu-img $qd $bs $count "$uri" >> b.t
                    run "$BUILD/diskdm-img" $qd $bs $count "$uri" >> a.t
                fi
                r=$((r + 1))
            done
            a=$(median < a.t); b=$(median < b.t)
            awk -v n="$name" -v bs=$bs -v qd=$qd -v a="$a" -v b="$b" -v mb="$((count * bs / 1048576))" \
                'BEGIN { printf "%-8s %4dK %3d %12.3f %9.0f %12.3f %9.0f %7.2f\n",
                         n, bs / 1024, qd, a, mb / a, b, mb / b, b / a }'
        done
    done
done
