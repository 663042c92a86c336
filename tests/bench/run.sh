#!/bin/sh
# Benchmarks that print ratios against peers measured in the same run.
# First: 4K queue-depth-1 random reads on a page-cached 1 GiB raw file,
# through the block backend's async API vs plain pread (the ceiling) vs
# `qemu-img bench -d 1 -s 4096 -t writeback -f raw` (sequential: it has no
# random mode). Then the same for 4K QD1 writes (which go through the
# worker pool: page-cache writes cannot be tried without blocking on ext4).
# Figures are noisy on a shared machine; compare the ratios.
#
# Usage: tests/bench/run.sh            (BUILD, BENCH_OPS, QEMU_OPS, BENCH_DIR)
set -eu
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$SRCDIR/$BUILD" ;; esac
BENCH="$BUILD/tests/bench/bench-blk"
OPS=${BENCH_OPS:-1000000}
QOPS=${QEMU_OPS:-200000}
WOPS=${BENCH_WRITE_OPS:-200000}
DIR=${BENCH_DIR:-/var/tmp}

[ -x "$BENCH" ] || { echo "run.sh: $BENCH not built (make tests)" >&2; exit 1; }
command -v qemu-img >/dev/null || { echo "run.sh: qemu-img missing" >&2; exit 1; }

T=$(mktemp -d "$DIR/diskdm-bench.XXXXXX")
trap 'rm -rf "$T"' EXIT INT TERM
IMG="$T/bench.raw"

# Real data blocks (not a sparse file), then pulled into the page cache.
dd if=/dev/zero of="$IMG" bs=1M count=1024 status=none
cat "$IMG" > /dev/null

iops() { awk '{ print $4 }'; }

pread_iops=$("$BENCH" -m pread -c "$OPS" "$IMG" | iops)
blk_iops=$("$BENCH" -m blk -c "$OPS" "$IMG" | iops)
seq_iops=$("$BENCH" -m blk -S -c "$OPS" "$IMG" | iops)
qsecs=$(qemu-img bench -c "$QOPS" -d 1 -s 4096 -t writeback -f raw "$IMG" |
        sed -n 's/^Run completed in \([0-9.]*\) seconds\./\1/p')
[ -n "$qsecs" ] || { echo "run.sh: could not parse qemu-img bench output" >&2; exit 1; }
qemu_iops=$(awk -v n="$QOPS" -v s="$qsecs" 'BEGIN { printf "%.0f", n / s }')

echo "4K QD1 reads, page-cached 1 GiB raw file"
printf '  %-36s %10s IOPS\n' "plain pread (random, ceiling)" "$pread_iops"
printf '  %-36s %10s IOPS\n' "diskdm backend aio (random)" "$blk_iops"
printf '  %-36s %10s IOPS\n' "diskdm backend aio (sequential)" "$seq_iops"
printf '  %-36s %10s IOPS\n' "qemu-img bench (sequential)" "$qemu_iops"
awk -v b="$blk_iops" -v s="$seq_iops" -v p="$pread_iops" -v q="$qemu_iops" 'BEGIN {
    printf "  backend / pread                   = %.2f\n", b / p
    printf "  backend / qemu-img (random/seq)   = %.1fx (target >= 10x)\n", b / q
    printf "  backend / qemu-img (both seq)     = %.1fx\n", s / q
    printf "  pread / qemu-img (the most possible) = %.1fx\n", p / q
}'

# Writes: on a copy, so the read image is never written.
WIMG="$T/write.raw"
cp "$IMG" "$WIMG"
pwrite_iops=$("$BENCH" -m pread -w -c "$WOPS" "$WIMG" | iops)
blkw_iops=$("$BENCH" -m blk -w -c "$WOPS" "$WIMG" | iops)
qwsecs=$(qemu-img bench -w -c "$WOPS" -d 1 -s 4096 -t writeback -f raw "$WIMG" |
         sed -n 's/^Run completed in \([0-9.]*\) seconds\./\1/p')
[ -n "$qwsecs" ] || { echo "run.sh: could not parse qemu-img bench -w output" >&2; exit 1; }
qemuw_iops=$(awk -v n="$WOPS" -v s="$qwsecs" 'BEGIN { printf "%.0f", n / s }')
echo "4K QD1 writes, page-cached 1 GiB raw file, cache=writeback"
printf '  %-36s %10s IOPS\n' "plain pwrite (random, ceiling)" "$pwrite_iops"
printf '  %-36s %10s IOPS\n' "diskdm backend aio (random)" "$blkw_iops"
printf '  %-36s %10s IOPS\n' "qemu-img bench -w (sequential)" "$qemuw_iops"
awk -v b="$blkw_iops" -v p="$pwrite_iops" -v q="$qemuw_iops" 'BEGIN {
    printf "  backend / pwrite                  = %.2f\n", b / p
    printf "  backend / qemu-img                = %.1fx\n", b / q
}'
