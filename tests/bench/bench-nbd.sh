#!/bin/sh
# NBD read throughput: nbdcopy to null: from diskdm-nbd, qemu-nbd and
# nbdkit serving the same page-cached image, over a Unix socket and TCP, in
# one run. Images: a fully allocated random 1 GiB raw file and its qcow2
# conversion, and a "sparse" one (1 MiB of data every 2 MiB, the rest
# zeroes: unallocated clusters in qcow2, holes in raw) where block status
# lets nbdcopy skip half the disk. nbdkit 1.32 has no qcow2 reader, so it
# serves the raw twin of each image.
#
# Every server is started first and stays up; then every round copies once
# from each server, in an order rotated per round, so a change in machine
# load (the 2 cores are shared by client, server and anything else running)
# hits every server alike. Printed per server: median MiB/s and the range,
# server CPU seconds per GiB copied (utime+stime over all rounds) and
# nbdcopy's ("client"; its share of the 2 cores: once the server is cheap,
# the client's own cost bounds the throughput); per case
# the ratio of diskdm-nbd's median to nbdkit's and to qemu-nbd's, and the
# range of the per-round ratios. All nbdcopy runs use the same flags
# (NBDCOPY_FLAGS, default none); the servers' advertised multi-conn and
# preferred block size, which decide nbdcopy's connections and request
# size, are printed first.
#
# What nbdcopy 1.14 does here: one connection per thread (threads = cores,
# so 2, and only if the server offers multi-conn), 64 requests in flight and
# at most 16 MiB queued per connection, requests of max(256 KiB, the
# server's preferred block size), one block status request per 128 MiB
# before reading it (holes and zeroes are not read at all), and libnbd
# zeroes each read buffer before the data lands in it. Its own CPU per GiB
# (copying out of the socket, the zeroing, TCP receive work) is about 3-5
# times diskdm-nbd's, so on 2 cores it bounds the throughput; each run also
# spends about 12 ms starting and connecting.
#
# Usage: tests/bench/bench-nbd.sh [ROUNDS]   (BUILD, SIZE_MB, NBDCOPY_FLAGS,
#                                              BENCH_DIR may be set)
set -eu
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$SRCDIR/build}
case "$BUILD" in /*) ;; *) BUILD="$SRCDIR/$BUILD" ;; esac
NBD="$BUILD/diskdm-nbd"
ROUNDS=${1:-7}
SIZE_MB=${SIZE_MB:-1024}
FLAGS=${NBDCOPY_FLAGS:-}
for c in qemu-nbd nbdkit nbdcopy nbdinfo qemu-img python3; do
    command -v $c >/dev/null || { echo "missing $c"; exit 77; }
done
[ -x "$NBD" ] || { echo "$NBD not built"; exit 1; }
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

head -c "${SIZE_MB}M" /dev/urandom > full.raw
qemu-img convert -f raw -O qcow2 full.raw full.qcow2
# sparse.raw: the odd MiBs of full.raw, holes in between
python3 - "$SIZE_MB" <<'EOF'
import sys
n = int(sys.argv[1]); M = 1 << 20
with open("full.raw", "rb") as src, open("sparse.raw", "wb") as dst:
    dst.truncate(n * M)
    for i in range(1, n, 2):
        src.seek(i * M); dst.seek(i * M); dst.write(src.read(M))
EOF
qemu-img convert -f raw -O qcow2 sparse.raw sparse.qcow2
cat full.raw full.qcow2 sparse.raw sparse.qcow2 > /dev/null   # page cache
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# user+system seconds of this shell's finished children (nbdcopy's runs),
# from two outputs of `times` run in this shell (not in a $(...) subshell)
child_cpu() {
    awk 'FNR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, "m");
         sub("s", "", a[2]); t += a[1] * 60 + a[2] }
         d = FILENAME == ARGV[1] ? d - t : d + t } END { print d }' "$@"
}
HZ=$(getconf CLK_TCK)

# Server keys: SERVER-IMAGE-FORMAT-TRANSPORT, e.g. diskdm-full-qcow2-tcp.
# start KEY: launch the server, record its pid and URI in $T/KEY.{pid,uri}
start() {
    set -- $(echo "$1" | tr - ' ')
    name=$1 img=$2.$3 fmt=$3 tr=$4 key=$1-$2-$3-$4
    if [ "$tr" = unix ]; then
        sock=$T/$key.sock
        ep="-k $sock" kep="-U $sock" uri="nbd+unix:///?socket=$sock"
    else
        p=$(port)
        ep="-b 127.0.0.1 -p $p" kep="-i 127.0.0.1 -p $p" uri="nbd://127.0.0.1:$p"
    fi
    case $name in
    diskdm) "$NBD" -r -t -e 2 -f "$fmt" $ep "$img" 2>>"$T/$key.log" & ;;
    qemu)   qemu-nbd -r -t -e 2 -f "$fmt" $ep "$img" 2>>"$T/$key.log" & ;;
    nbdkit) nbdkit -r -f $kep file "$img" 2>>"$T/$key.log" & ;;
    esac
    pids="$pids $!"
    echo $! > "$key.pid"
    echo "$uri" > "$key.uri"
}

ready() {
    uri=$(cat "$1.uri")
    for i in $(seq 200); do
        nbdinfo --size "$uri" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "$1 did not start:"; cat "$T/$1.log"; exit 1
}

keys=""
for img in full sparse; do
  for fmt in raw qcow2; do
    for tr in unix tcp; do
      for name in diskdm qemu nbdkit; do
        # nbdkit reads raw only: one nbdkit per image and transport
        [ $name = nbdkit ] && [ $fmt = qcow2 ] && continue
        keys="$keys $name-$img-$fmt-$tr"
      done
    done
  done
done
for k in $keys; do start $k; done
for k in $keys; do ready $k; done

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores;" \
     "nbdcopy flags: '${FLAGS}'"
for name in diskdm qemu nbdkit; do
    nbdinfo --json "$(cat $name-full-raw-unix.uri)" | python3 -c '
import json, sys
e = json.load(sys.stdin)["exports"][0]
b = [str(e.get("block_size_" + n, "-"))
     for n in ("minimum", "preferred", "maximum")]
print("%-7s multi-conn %-5s block sizes (min/preferred/max) %s" %
      (sys.argv[1], e["can_multi_conn"], "/".join(b)))' $name
done

# rounds: rotate the order each round
nk=$(echo $keys | wc -w)
for r in $(seq "$ROUNDS"); do
    order=$(echo $keys | tr ' ' '\n' | awk -v s=$(( (r - 1) * 5 % nk )) -v n=$nk \
        '{ k[NR - 1] = $0 } END { for (i = 0; i < n; i++) print k[(i + s) % n] }')
    for k in $order; do
        pid=$(cat $k.pid)
        t0=$(ticks $pid)
        uri=$(cat $k.uri)
        s=$(date +%s.%N)
        times > times0
        nbdcopy $FLAGS "$uri" null:
        times > times1
        e=$(date +%s.%N)
        t1=$(ticks $pid)
        echo "$k $r $(echo "$SIZE_MB / ($e - $s)" | bc -l) $((t1 - t0))" \
             "$(child_cpu times0 times1)" >> runs
    done
done
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# runs: KEY ROUND MIBPS SERVER_TICKS CLIENT_SECONDS
awk -v hz="$HZ" -v size="$SIZE_MB" -v rounds="$ROUNDS" '
function median(a, n,    i, j, t) {
    for (i = 2; i <= n; i++) {
        t = a[i]
        for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
        a[j + 1] = t
    }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{
    rate[$1, $2] = $3; tk[$1] += $4; cl[$1] += $5
    if (!($1 in seen)) { seen[$1] = 1; order[++nk] = $1 }
}
END {
    printf "%-30s %7s %11s %10s %10s\n", "server-image-format-transport",
           "MiB/s", "range", "CPU-s/GiB", "client"
    for (i = 1; i <= nk; i++) {
        k = order[i]
        lo = hi = rate[k, 1]
        for (r = 1; r <= rounds; r++) {
            v[r] = rate[k, r]
            if (v[r] < lo) lo = v[r]
            if (v[r] > hi) hi = v[r]
        }
        med[k] = median(v, rounds)
        cpu[k] = tk[k] / hz / rounds * 1024 / size
        printf "%-30s %7.0f %5.0f-%-5.0f %10.3f %10.3f\n", k, med[k], lo, hi,
               cpu[k], cl[k] / rounds * 1024 / size
    }
    print ""
    print "diskdm-nbd against its peers (ratio of medians; [range of per-round ratios]):"
    for (i = 1; i <= nk; i++) {
        k = order[i]
        if (k !~ /^diskdm-/) continue
        split(k, p, "-")
        kk = "nbdkit-" p[2] "-raw-" p[4]
        qq = "qemu-" p[2] "-" p[3] "-" p[4]
        for (r = 1; r <= rounds; r++) {
            a[r] = rate[k, r] / rate[kk, r]; b[r] = rate[k, r] / rate[qq, r]
        }
        alo = ahi = a[1]; blo = bhi = b[1]
        for (r = 1; r <= rounds; r++) {
            if (a[r] < alo) alo = a[r]
            if (a[r] > ahi) ahi = a[r]
            if (b[r] < blo) blo = b[r]
            if (b[r] > bhi) bhi = b[r]
        }
        cr = cpu[kk] > 0 ? sprintf("%.2fx", cpu[k] / cpu[kk]) : "n/a"
        cq = cpu[qq] > 0 ? sprintf("%.2fx", cpu[k] / cpu[qq]) : "n/a"
        printf "  %-6s %-5s %-4s vs nbdkit%s: %5.2fx [%.2f-%.2f], CPU/GiB %s;" \
               "  vs qemu-nbd: %5.2fx [%.2f-%.2f], CPU/GiB %s\n",
               p[2], p[3], p[4], p[3] == "qcow2" ? "(raw)" : "     ",
               med[k] / med[kk], alo, ahi, cr, med[k] / med[qq], blo, bhi, cq
    }
}' runs
