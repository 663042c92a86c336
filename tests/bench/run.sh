#!/bin/sh
# Benchmarks that print ratios against peers measured in the same run.
# 4K queue-depth-1 reads on a page-cached 1 GiB raw file, through the block
# backend's async API vs plain pread (the ceiling) vs `qemu-img bench -d 1
# -s 4096 -t writeback -f raw` (sequential: it has no random mode); then
# the same for 4K QD1 writes, also with blk_config.may_block (the loop may
# block, as a tool like diskdm-img bench allows: writes run inline instead
# of on io_uring or a worker; the default does so too while they do not
# block). Random 4K writes into large page-cache folios cost the kernel
# tens of microseconds each (ext4 walks every block of the folio), so
# the sequential figures are the like-for-like ones. Each figure is the
# best of BENCH_REPS runs, interleaved, because the machine is shared and
# noisy; compare ratios.
# The "same-load" ratios come from bench-blk -m pair, which interleaves
# the two sides in slices inside one process: the steadiest figure.
#
# Usage: tests/bench/run.sh     (env: BUILD, BENCH_OPS, QEMU_OPS,
#                                BENCH_WRITE_OPS, BENCH_REPS, BENCH_DIR)
set -eu
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$SRCDIR/$BUILD" ;; esac
BENCH="$BUILD/tests/bench/bench-blk"
OPS=${BENCH_OPS:-500000}
QOPS=${QEMU_OPS:-100000}
WOPS=${BENCH_WRITE_OPS:-100000}
REPS=${BENCH_REPS:-3}
DIR=${BENCH_DIR:-/var/tmp}

[ -x "$BENCH" ] || { echo "run.sh: $BENCH not built (make tests)" >&2; exit 1; }
command -v qemu-img >/dev/null || { echo "run.sh: qemu-img missing" >&2; exit 1; }

T=$(mktemp -d "$DIR/diskdm-bench.XXXXXX")
trap 'rm -rf "$T"' EXIT INT TERM
IMG="$T/bench.raw"
WIMG="$T/write.raw"

# Real data blocks (not a sparse file), then pulled into the page cache.
# Writes go to a copy, so the read image is never written.
dd if=/dev/zero of="$IMG" bs=1M count=1024 status=none
cp "$IMG" "$WIMG"
# Written back before measuring: writes to a file under writeback block
# now and then (for milliseconds), which is not what is measured here.
sync
cat "$IMG" "$WIMG" > /dev/null

ours() { "$BENCH" "$@" | awk '{ print $4 }'; }
qemu() {   # ops, then qemu-img bench arguments
    n=$1; shift
    secs=$(qemu-img bench -c "$n" -d 1 -s 4096 -t writeback -f raw "$@" |
           sed -n 's/^Run completed in \([0-9.]*\) seconds\./\1/p')
    [ -n "$secs" ] || { echo "run.sh: could not parse qemu-img bench output" >&2; exit 1; }
    awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.0f", n / s }'
}
best() { [ "$1" -gt "$2" ] && echo "$1" || echo "$2"; }
# bench-blk -m pair: pread/pwrite and the backend interleaved in slices in
# one process, so both see the same machine load; prints the ratio. Of
# the ratios the median is reported (a best-of would pick a noise spike).
pair() { "$BENCH" -m pair "$@" | awk '{ print $5 }'; }
median() { echo "$1" | tr ' ' '\n' | sed '/^$/d' | sort -n |
           awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

pread=0; blk=0; blkseq=0; qr=0; pwrite=0; blkw=0; qw=0; blkwb=0; blkwseq=0
pr=; prb=; pw=; pwb=
i=0
while [ $i -lt "$REPS" ]; do
    pread=$(best "$pread" "$(ours -m pread -c "$OPS" "$IMG")")
    blk=$(best "$blk" "$(ours -m blk -c "$OPS" "$IMG")")
    blkseq=$(best "$blkseq" "$(ours -m blk -S -c "$OPS" "$IMG")")
    qr=$(best "$qr" "$(qemu "$QOPS" "$IMG")")
    pwrite=$(best "$pwrite" "$(ours -m pread -w -c "$WOPS" "$WIMG")")
    blkw=$(best "$blkw" "$(ours -m blk -w -c "$WOPS" "$WIMG")")
    blkwb=$(best "$blkwb" "$(ours -m blk -w -B -c "$WOPS" "$WIMG")")
    blkwseq=$(best "$blkwseq" "$(ours -m blk -w -S -c "$WOPS" "$WIMG")")
    qw=$(best "$qw" "$(qemu "$WOPS" -w "$WIMG")")
    pr="$pr $(pair -c "$OPS" "$IMG")"
    prb="$prb $(pair -B -c "$OPS" "$IMG")"
    pw="$pw $(pair -w -c "$WOPS" "$WIMG")"
    pwb="$pwb $(pair -w -B -c "$WOPS" "$WIMG")"
    i=$((i + 1))
done

echo "4K QD1 reads, page-cached 1 GiB raw file (best of $REPS)"
printf '  %-36s %10s IOPS\n' "plain pread (random, ceiling)" "$pread"
printf '  %-36s %10s IOPS\n' "diskdm backend aio (random)" "$blk"
printf '  %-36s %10s IOPS\n' "diskdm backend aio (sequential)" "$blkseq"
printf '  %-36s %10s IOPS\n' "qemu-img bench (sequential)" "$qr"
awk -v b="$blk" -v s="$blkseq" -v p="$pread" -v q="$qr" 'BEGIN {
    printf "  backend / pread                      = %.2f\n", b / p
    printf "  backend / qemu-img (random vs seq)   = %.1fx (target >= 10x)\n", b / q
    printf "  backend / qemu-img (both sequential) = %.1fx\n", s / q
    printf "  pread / qemu-img (the most possible) = %.1fx\n", p / q
}'
echo "  same-load ratios (pread and backend interleaved in one process, median of $REPS):"
printf '  backend / pread                      = %.2f (target >= 0.9)\n' "$(median "$pr")"
printf '  backend may_block / pread            = %.2f\n' "$(median "$prb")"
echo "4K QD1 writes, page-cached 1 GiB raw file, cache=writeback (best of $REPS)"
printf '  %-36s %10s IOPS\n' "plain pwrite (random, ceiling)" "$pwrite"
printf '  %-36s %10s IOPS\n' "diskdm backend aio (random)" "$blkw"
printf '  %-36s %10s IOPS\n' "diskdm backend, may_block (random)" "$blkwb"
printf '  %-36s %10s IOPS\n' "diskdm backend aio (sequential)" "$blkwseq"
printf '  %-36s %10s IOPS\n' "qemu-img bench -w (sequential)" "$qw"
awk -v b="$blkw" -v bb="$blkwb" -v s="$blkwseq" -v p="$pwrite" -v q="$qw" 'BEGIN {
    printf "  backend / pwrite                     = %.2f\n", b / p
    printf "  backend / qemu-img (random vs seq)   = %.1fx\n", b / q
    printf "  backend / qemu-img (both sequential) = %.1fx\n", s / q
    printf "  backend may_block / pwrite           = %.2f\n", bb / p
    printf "  backend may_block / qemu-img         = %.1fx\n", bb / q
}'
echo "  same-load ratios (pwrite and backend interleaved in one process, median of $REPS):"
printf '  backend / pwrite                     = %.2f\n' "$(median "$pw")"
printf '  backend may_block / pwrite           = %.2f\n' "$(median "$pwb")"

# The IDE DMA path: 64 KiB READ DMA EXT commands driven in process through
# the machine's registers vs plain pread of the same page-cached bytes.
echo "IDE DMA, 64 KiB READ DMA EXT, page-cached raw image"
"$BUILD/tests/bench/bench-ide-dma" -d "$DIR" | sed 's/^/  /'
