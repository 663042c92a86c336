#!/bin/sh
# Guest-side sequential O_DIRECT reads (dd, 256 MiB at bs=1M and bs=4k) from
# a real Linux guest (bs=1M four times over) under QEMU TCG, against diskdm-vhost and against
# qemu-storage-daemon's vhost-user-blk export of the same page-cached raw
# image, in one run. Prints MiB/s per back end, the ratio (ours / theirs;
# >= 1 means no slower), and each back end's CPU time per GiB read.
SRCDIR=${SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$SRCDIR/tests/interop/lib.sh"
. "$SRCDIR/tests/guest/lib.sh"
need qemu-storage-daemon
guest_prepare
img=$T/bench.img
head -c 256M /dev/urandom >"$img"
cat "$img" >/dev/null           # page-cached for both

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# run_guest NAME PID: boots the bench workload against $T/vu.sock, fills
# $T/NAME.{1M,4k} with "MiB/s cpu-seconds-per-GiB".
run_guest() {
    guest_start bench
    for bs in 1M 4k; do
        guest_wait "waiting bench-$bs"
        c0=$(cpu_ticks "$2")
        guest_send go
        guest_wait "bench-$bs [0-9]"
        c1=$(cpu_ticks "$2")
        set -- "$1" "$2" $(guest_val "bench-$bs")
        awk -v t0="$3" -v t1="$4" -v n="$5" -v c="$((c1 - c0))" -v hz="$hz" 'BEGIN {
            s = t1 - t0; if (s <= 0) s = 0.01
            printf "%.1f %.3f\n", 256 * n / s, c / hz * 4 / n }' >"$T/$1.$bs"
        set -- "$1" "$2"
    done
    guest_end >/dev/null
}

vhost_start "file=$img,format=raw,cache=writeback"
run_guest diskdm $VHOST_PID
kill $VHOST_PID; wait $VHOST_PID || true

rm -f "$T/vu.sock"
qemu-storage-daemon \
    --blockdev driver=file,filename="$img",node-name=file0,cache.direct=off \
    --blockdev driver=raw,file=file0,node-name=disk0 \
    --export type=vhost-user-blk,id=exp0,node-name=disk0,writable=on,addr.type=unix,addr.path="$T/vu.sock" &
QSD_PID=$!
at_exit "kill $QSD_PID"
i=0; while [ ! -S "$T/vu.sock" ]; do i=$((i + 1)); [ $i -lt 100 ] || fail "no qsd socket"; sleep 0.05; done
run_guest qsd $QSD_PID
kill $QSD_PID; wait $QSD_PID || true

printf '%-6s %14s %14s %8s %16s %16s\n' bs "diskdm MiB/s" "qsd MiB/s" ratio \
    "diskdm cpu s/GiB" "qsd cpu s/GiB"
for bs in 1M 4k; do
    read -r dr dc <"$T/diskdm.$bs"
    read -r qr qc <"$T/qsd.$bs"
    awk -v bs=$bs -v dr="$dr" -v dc="$dc" -v qr="$qr" -v qc="$qc" 'BEGIN {
        printf "%-6s %14.1f %14.1f %8.2f %16.3f %16.3f\n", bs, dr, qr, dr / qr, dc, qc }'
done
