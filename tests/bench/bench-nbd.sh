#!/bin/sh
# NBD read throughput: nbdcopy to null: from diskdm-nbd, qemu-nbd and
# nbdkit serving the same page-cached 1 GiB image (raw; qcow2 for the two
# servers that read it), over a Unix socket and TCP, in one run. Prints
# MiB/s (median of ROUNDS), server CPU seconds per GiB, and diskdm-nbd's
# ratios against nbdkit. Every server allows 2 connections (nbdkit does by
# default), so nbdcopy uses 2 (multi-conn) throughout.
#
# Usage: tests/bench/bench-nbd.sh [ROUNDS]   (BUILD, SIZE_MB may be set)
set -eu
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$SRCDIR/build}
case "$BUILD" in /*) ;; *) BUILD="$SRCDIR/$BUILD" ;; esac
NBD="$BUILD/diskdm-nbd"
ROUNDS=${1:-5}
SIZE_MB=${SIZE_MB:-1024}
for c in qemu-nbd nbdkit nbdcopy qemu-img python3; do
    command -v $c >/dev/null || { echo "missing $c"; exit 77; }
done
[ -x "$NBD" ] || { echo "$NBD not built"; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/diskdm-bench.XXXXXX")
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; rm -rf "$T"; }
trap cleanup EXIT INT TERM
cd "$T"

head -c "${SIZE_MB}M" /dev/urandom > big.raw
qemu-img convert -f raw -O qcow2 big.raw big.qcow2
cat big.raw big.qcow2 > /dev/null          # into the page cache
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# start NAME TRANSPORT FORMAT: launch a server, print its pid and URI
start() {
    name=$1 tr=$2 fmt=$3
    img=big.$fmt
    if [ "$tr" = unix ]; then
        ep="-k $T/$name-$fmt.sock"; uri="nbd+unix:///?socket=$T/$name-$fmt.sock"
        kep="-U $T/$name-$fmt.sock"
    else
        p=$(port); ep="-b 127.0.0.1 -p $p"; uri="nbd://127.0.0.1:$p"
        kep="-i 127.0.0.1 -p $p"
    fi
    case $name in
    diskdm) "$NBD" -r -t -e 2 -f "$fmt" $ep "$img" & ;;
    qemu)   qemu-nbd -r -t -e 2 -f "$fmt" $ep "$img" & ;;
    nbdkit) nbdkit -r -f $kep file "$img" & ;;
    esac
    spid=$!
    pids="$pids $spid"
    # ready once a small copy succeeds
    for i in $(seq 100); do
        nbdcopy "$uri" null: --request-size=4096 2>/dev/null >/dev/null && break
        sleep 0.05
        [ "$i" = 100 ] && { echo "$name did not start"; exit 1; }
    done
}

printf '%-28s %9s %9s %12s\n' config MiB/s range CPU-s/GiB
results=""
for fmt in raw qcow2; do
  for tr in unix tcp; do
    for name in diskdm qemu nbdkit; do
        [ "$fmt" = qcow2 ] && [ "$name" = nbdkit ] && continue
        start $name $tr $fmt
        t0=$(ticks $spid)
        rates=""
        for r in $(seq "$ROUNDS"); do
            s=$(date +%s.%N)
            nbdcopy "$uri" null:
            e=$(date +%s.%N)
            rates="$rates $(echo "$SIZE_MB / ($e - $s)" | bc -l)"
        done
        t1=$(ticks $spid)
        kill $spid; wait $spid 2>/dev/null || true
        cpu=$(echo "($t1 - $t0) / $HZ / $ROUNDS * 1024 / $SIZE_MB" | bc -l)
        set -- $(printf '%s\n' $rates | sort -n)
        n=$#; med=$(printf '%s\n' "$@" | sed -n "$(( (n + 1) / 2 ))p")
        printf '%-28s %9.0f %4.0f-%-4.0f %12.3f\n' "$name $fmt $tr" "$med" "$1" "$(eval echo \${$n})" "$cpu"
        results="$results $name-$fmt-$tr=$med:$cpu"
    done
  done
done
echo
for tr in unix tcp; do
    d=$(printf '%s\n' $results | sed -n "s/^diskdm-raw-$tr=//p")
    k=$(printf '%s\n' $results | sed -n "s/^nbdkit-raw-$tr=//p")
    printf 'diskdm-nbd vs nbdkit, raw %-4s: %.2fx throughput, %.2fx CPU per GiB\n' "$tr" \
        "$(echo "${d%:*} / ${k%:*}" | bc -l)" "$(echo "${d#*:} / ${k#*:}" | bc -l)"
done
