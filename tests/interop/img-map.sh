#!/bin/sh
# diskdm-img map (text and JSON equal to qemu-img's over chains, zero
# clusters, raw files with holes, --start-offset / --max-length), bench's
# report and option checks, --help for every subcommand and usage errors.
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io
IMG="$BUILD/diskdm-img"
GOLD="$SRCDIR/tests/interop/img-golden"
[ -x "$IMG" ] || fail "$IMG not built"
cd "$T"

expect_err() {   # expected-rc expected-stderr command...
    rc=$1; want=$2; shift 2
    set +e
    "$@" > out.txt 2> err.txt
    got=$?
    set -e
    [ "$got" = "$rc" ] || fail "$*: exit $got, want $rc ($(cat err.txt))"
    printf '%s\n' "$want" > want.txt
    diff -u want.txt err.txt || fail "$*: wrong message"
}

# --- map -----------------------------------------------------------------------
qemu-img create -q -f qcow2 b.qcow2 8M
qemu-io -c 'write -P 1 0 1M' -c 'write -z 2M 128k' -c 'write -P 2 4M 64k' b.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 t.qcow2
qemu-io -c 'write -P 3 512k 64k' -c 'write -z 4M 64k' -c 'write -P 4 7M 1M' t.qcow2 > /dev/null
qemu-img create -q -f raw h.raw 4M
qemu-io -f raw -c 'write -P 5 1M 64k' -c 'write -P 6 3M 4k' h.raw > /dev/null
"$IMG" map t.qcow2 > out.txt
diff -u "$GOLD/map-chain.txt" out.txt || fail "map text differs from the golden file"
for f in t.qcow2 b.qcow2 h.raw; do
    fmt=qcow2; [ "$f" = h.raw ] && fmt=raw
    for args in "" "--output=json" "--start-offset=512k --max-length=4M" \
                "--output=json --start-offset=1M --max-length=3200k"; do
        # shellcheck disable=SC2086
        "$IMG" map -f $fmt $args $f > ours.txt
        # shellcheck disable=SC2086
        qemu-img map -f $fmt $args $f > theirs.txt
        diff -u theirs.txt ours.txt || fail "map $args $f differs"
    done
done
expect_err 1 "diskdm-img: Could not open 'missing.qcow2': Could not open 'missing.qcow2': No such file or directory" \
    "$IMG" map missing.qcow2
expect_err 1 "diskdm-img: --output must be used with human or json as argument.
Try 'diskdm-img --help' for more information" "$IMG" map --output=yaml t.qcow2
ok map

# --- bench -----------------------------------------------------------------------
"$IMG" bench -c 1000 -d 1 -f qcow2 t.qcow2 > out.txt
head -n 1 out.txt > first.txt
echo "Sending 1000 read requests, 4096 bytes each, 1 in parallel (starting at offset 0, step size 4096)" \
    | diff -u - first.txt || fail "bench header"
grep -q '^Run completed in [0-9]*\.[0-9][0-9][0-9] seconds\.$' out.txt || fail "bench footer"
cp h.raw w.raw
"$IMG" bench -w -c 100 -d 4 -s 64k -S 128k -o 64k --pattern=0x5a --flush-interval=10 \
    -f raw -t writethrough w.raw > out.txt
sed -n 2p out.txt | grep -q '^Sending flush every 10 requests$' || fail "bench flush line"
qemu-io -f raw -r -c 'read -P 0x5a 64k 64k' -c 'read -P 0 128k 64k' -c 'read -P 0x5a 192k 64k' w.raw \
    | grep -q 'verification failed' && fail "bench -w wrote the wrong places"
"$IMG" bench -c 100 -d 8 -f raw h.raw > /dev/null || fail "bench depth 8"
expect_err 1 "diskdm-img: --flush-interval is only available in write tests" \
    "$IMG" bench -c 10 --flush-interval=10 t.qcow2
expect_err 1 "diskdm-img: Invalid request count specified" "$IMG" bench -c x t.qcow2
expect_err 1 "diskdm-img: Failed request: Input/output error" "$IMG" bench -c 4 -s 8M -f raw h.raw
ok bench

# --- help and usage ------------------------------------------------------------------
for cmd in amend bench check commit compare convert create dd info map measure rebase resize; do
    "$IMG" $cmd --help > out.txt || fail "$cmd --help"
    grep -q "^Usage: diskdm-img $cmd " out.txt || fail "$cmd --help output"
done
"$IMG" --help | grep -q '^  convert ' || fail "--help lists convert"
expect_err 1 "diskdm-img: unrecognized option '--frob'
Try 'diskdm-img --help' for more information" "$IMG" convert --frob a b
expect_err 1 "Usage: diskdm-img map [--object objectdef] [--image-opts] [-f fmt] [--start-offset=offset] [--max-length=len] [--output=ofmt] [-U] filename
diskdm-img: Expecting one image file name
Try 'diskdm-img --help' for more information" "$IMG" map
ok help

# --- -p on a terminal, -U past another writer's lock ---------------------------------
if command -v script > /dev/null; then
    script -qc "\"$IMG\" convert -p -O raw t.qcow2 p.raw" /dev/null > tty.out
    grep -q '(100.00/100%)' tty.out || fail "-p drew no progress on a terminal"
    "$IMG" commit -p -d --image-opts driver=qcow2,file.filename=t.qcow2 > notty.out
    [ "$(cat notty.out)" = "Image committed." ] || fail "-p drew progress without a terminal"
fi
qemu-io -c 'sleep 20000' t.qcow2 &
qpid=$!
at_exit "kill $qpid"
i=0
until grep -q "OFDLCK.*:$(stat -c %i t.qcow2) 100 " /proc/locks; do
    i=$((i + 1)); [ $i -lt 500 ] || fail "qemu-io never locked t.qcow2"
    sleep 0.01
done
expect_err 1 "diskdm-img: Could not open 't.qcow2': Failed to get shared \"write\" lock
Is another process using the image [t.qcow2]?" "$IMG" map t.qcow2
for cmd in "map -U" "check -U" "info -U" "compare -U t.qcow2" "measure -U -O qcow2"; do
    # shellcheck disable=SC2086
    "$IMG" $cmd t.qcow2 > /dev/null || fail "$cmd refused a locked image"
done
kill $qpid; wait $qpid 2>/dev/null || true
ok progress-and-locks
