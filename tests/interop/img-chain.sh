#!/bin/sh
# diskdm-img commit, rebase, resize and amend: every image they change
# passes qemu-img check and reads back through qemu-io / qemu-img compare
# as expected; a read-only base (forced, or a 0444 file for an
# unprivileged user) refuses the commit and stays unchanged; bad input
# gets its exact message.
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io python3 setpriv
IMG="$BUILD/diskdm-img"
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
readback() {   # image pattern offset length
    out=$(qemu-io -r -c "read -P $2 $3 $4" "$1")
    case "$out" in *"verification failed"*|*"error"*) fail "$1: $4 at $3 is not $2";; esac
}
chain() {   # make b0 <- b1 <- b2 (3 layers, 4 MiB)
    rm -f b0.qcow2 b1.qcow2 b2.qcow2
    qemu-img create -q -f qcow2 b0.qcow2 4M
    qemu-io -c 'write -P 0x10 0 2M' b0.qcow2 > /dev/null
    qemu-img create -q -f qcow2 -b b0.qcow2 -F qcow2 b1.qcow2
    qemu-io -c 'write -P 0x11 1M 1M' b1.qcow2 > /dev/null
    qemu-img create -q -f qcow2 -b b1.qcow2 -F qcow2 b2.qcow2
    qemu-io -c 'write -P 0x12 1536k 64k' -c 'write -z 0 64k' b2.qcow2 > /dev/null
}

# --- commit ------------------------------------------------------------------
chain
qemu-img convert -O raw b2.qcow2 want.raw
out=$("$IMG" commit b2.qcow2) || fail "commit"
[ "$out" = "Image committed." ] || fail "commit said: $out"
for f in b0 b1 b2; do qemu-img check -q $f.qcow2 || fail "$f.qcow2 unclean after commit"; done
qemu-img compare -F raw b2.qcow2 want.raw > /dev/null || fail "top reads differently after commit"
qemu-img compare -F raw b1.qcow2 want.raw > /dev/null || fail "b1 lacks the committed data"
[ "$(qemu-img map --output=json b2.qcow2 | grep -c '"depth": 0')" = 0 ] || fail "top not emptied"
readback b1.qcow2 0x12 1536k 64k
chain
"$IMG" commit -d b2.qcow2 > /dev/null
readback b2.qcow2 0x12 1536k 64k
qemu-io -r -c 'map' b2.qcow2 | grep -q 'allocated at offset' || fail "-d emptied the top"
chain
qemu-img convert -O raw b2.qcow2 want.raw
"$IMG" commit -p -b b0.qcow2 b2.qcow2 > out.txt
[ "$(cat out.txt)" = "Image committed." ] || fail "-p drew progress without a terminal"
qemu-img compare -F raw b0.qcow2 want.raw > /dev/null || fail "-b b0 commit"
qemu-img check -q b0.qcow2 || fail "b0 unclean"
expect_err 1 "diskdm-img: Image does not have a backing file" "$IMG" commit b0.qcow2
expect_err 1 "diskdm-img: Did not find 'nope' in the backing chain of 'b2.qcow2'" \
    "$IMG" commit -b nope b2.qcow2
expect_err 1 "diskdm-img: Could not open 'missing.qcow2': Could not open 'missing.qcow2': No such file or directory" \
    "$IMG" commit missing.qcow2
# Forced read-only base: refused, and nothing changes.
chain
sum=$(md5sum < b1.qcow2)
set +e
"$IMG" commit --image-opts driver=qcow2,file.filename=b2.qcow2,backing.force-read-only=on \
    > out.txt 2> err.txt
rc=$?
set -e
[ $rc = 1 ] || fail "commit into a forced read-only base exited $rc"
grep -q '^diskdm-img: ' err.txt || fail "no message for a forced read-only base"
grep -qi 'read-only\|permission' err.txt || fail "message does not say read-only: $(cat err.txt)"
[ "$(md5sum < b1.qcow2)" = "$sum" ] || fail "forced read-only base changed"
# A 0444 base as an unprivileged user: qemu-img's message.
chain
chmod 0777 "$T"; chmod 0666 b2.qcow2; chmod 0444 b1.qcow2
sum=$(md5sum < b1.qcow2)
unpriv() { if [ "$(id -u)" = 0 ]; then as_nobody "$@"; else "$@"; fi; }
set +e
unpriv "$IMG" commit -d b2.qcow2 > out.txt 2> err.txt
rc=$?
set -e
[ $rc = 1 ] || fail "commit into a 0444 base exited $rc"
grep -q "b1.qcow2.*Permission denied" err.txt || fail "0444 base message: $(cat err.txt)"
[ "$(md5sum < b1.qcow2)" = "$sum" ] || fail "0444 base changed"
chmod 0644 b1.qcow2
ok commit

# --- rebase ------------------------------------------------------------------
chain
qemu-img convert -O raw b2.qcow2 want.raw
"$IMG" rebase -b b0.qcow2 -F qcow2 b2.qcow2
qemu-img check -q b2.qcow2 || fail "rebased image unclean"
qemu-img info b2.qcow2 | grep -q '^backing file: b0.qcow2$' || fail "backing name after rebase"
qemu-img compare -F raw b2.qcow2 want.raw > /dev/null || fail "rebase changed the content"
"$IMG" rebase -b "" b2.qcow2
qemu-img info --output=json b2.qcow2 | grep -q backing && fail "-b '' left a backing file"
qemu-img compare -F raw b2.qcow2 want.raw > /dev/null || fail "flatten changed the content"
qemu-img check -q b2.qcow2 || fail "flattened image unclean"
"$IMG" rebase -u -b b1.qcow2 -F qcow2 b2.qcow2
qemu-img info b2.qcow2 | grep -q '^backing file format: qcow2$' || fail "-u backing format"
qemu-img check -q b2.qcow2 || fail "-u rebased image unclean"
"$IMG" rebase -u -b ../elsewhere/long-name-for-a-backing-file.qcow2 -F raw b2.qcow2
qemu-img info --output=json -U b2.qcow2 > i.json 2>/dev/null || true
grep -q 'long-name-for-a-backing-file' i.json || fail "-u with a missing file"
expect_err 1 "diskdm-img: Could not open new backing file 'nope.qcow2': Could not open 'nope.qcow2': No such file or directory" \
    "$IMG" rebase -b nope.qcow2 -F qcow2 b1.qcow2
expect_err 1 "Usage: diskdm-img rebase [--object objectdef] [--image-opts] [-U] [-q] [-f fmt] [-t cache] [-T src_cache] [-p] [-u] -b backing_file [-F backing_fmt] filename
diskdm-img: Must specify backing file (-b) or use unsafe mode (-u)
Try 'diskdm-img --help' for more information" "$IMG" rebase b1.qcow2
expect_err 1 "diskdm-img: Could not change the backing file to 'x.raw': Format driver 'raw' does not support backing files" \
    sh -c "qemu-img create -q -f raw r.raw 1M && exec \"$IMG\" rebase -u -f raw -b x.raw -F raw r.raw"
ok rebase

# --- resize ------------------------------------------------------------------
qemu-img create -q -f qcow2 rs.qcow2 1M
qemu-io -c 'write -P 0x21 0 1M' rs.qcow2 > /dev/null
out=$("$IMG" resize rs.qcow2 +1G) || fail "resize +1G"
[ "$out" = "Image resized." ] || fail "resize said: $out"
qemu-img check -q rs.qcow2 || fail "grown qcow2 unclean"
[ "$(qemu-img info --output=json rs.qcow2 | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')" = $((1024 * 1024 * 1024 + 1048576)) ] \
    || fail "size after +1G"
qemu-io -c 'write -P 0x22 1000M 64k' rs.qcow2 > /dev/null
readback rs.qcow2 0x21 0 1M
readback rs.qcow2 0x22 1000M 64k
readback rs.qcow2 0 2M 64k
# qcow2 shrink as qemu-img's: the tail's clusters and L2 tables freed,
# the file cut after its last cluster in use; regrown, the same as qemu-img's.
qemu-img create -q -f qcow2 -o cluster_size=4k sk.qcow2 8M
qemu-io -c 'write -P 0x31 0 1M' -c 'write -P 0x32 3M 8k' -c 'write -P 0x33 6M 1M' sk.qcow2 > /dev/null
cp sk.qcow2 sq.qcow2
qemu-img resize -q --shrink sq.qcow2 $((3 * 1048576 + 512))
"$IMG" resize --shrink sk.qcow2 $((3 * 1048576 + 512)) > out.txt
[ "$(cat out.txt)" = "Image resized." ] || fail "shrink output: $(cat out.txt)"
qemu-img check -q sk.qcow2 || fail "shrunk qcow2 unclean"
qemu-img compare -q sq.qcow2 sk.qcow2 || fail "shrunk qcow2 differs from qemu-img's"
[ "$(stat -c %s sk.qcow2)" = "$(stat -c %s sq.qcow2)" ] ||
    fail "shrunk file $(stat -c %s sk.qcow2) bytes, qemu-img $(stat -c %s sq.qcow2)"
"$IMG" resize sk.qcow2 8M > /dev/null
qemu-img resize -q sq.qcow2 8M
qemu-io -c 'read -P 0x31 0 1M' -c 'read -P 0x32 3M 512' -c 'read -P 0 6M 1M' sk.qcow2 > r.out
grep -q failed r.out && fail "regrown qcow2 reads wrong data"
qemu-img compare -q sq.qcow2 sk.qcow2 || fail "regrown qcow2 differs from qemu-img's"
qemu-img check -q sk.qcow2 || fail "regrown qcow2 unclean"
qemu-img create -q -f raw rs.raw 4M
"$IMG" resize -f raw rs.raw 8M > /dev/null
[ "$(stat -c %s rs.raw)" = 8388608 ] || fail "raw grow"
"$IMG" resize -f raw --shrink rs.raw -- -5M > /dev/null
"$IMG" resize -f raw --shrink rs.raw -1M > /dev/null
[ "$(stat -c %s rs.raw)" = 2097152 ] || fail "raw shrink with -"
"$IMG" resize -f raw --shrink rs.raw 1M > /dev/null
[ "$(stat -c %s rs.raw)" = 1048576 ] || fail "raw shrink"
expect_err 1 "diskdm-img: Use the --shrink option to perform a shrink operation.
diskdm-img: warning: Shrinking an image will delete all data beyond the shrunken image's end. Before performing such an operation, make sure there is no important data there." \
    "$IMG" resize -f raw rs.raw 512k
[ "$(stat -c %s rs.raw)" = 1048576 ] || fail "shrink without --shrink changed the file"
expect_err 1 "diskdm-img: Parameter 'size' expects a non-negative number below 2^64
Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-
and exabytes, respectively." "$IMG" resize -f raw rs.raw 10X
expect_err 1 "diskdm-img: Could not open 'missing.raw': Could not open 'missing.raw': No such file or directory" \
    "$IMG" resize missing.raw 1M
ok resize

# --- amend -------------------------------------------------------------------
qemu-img create -q -f qcow2 -o compat=0.10 am.qcow2 4M
qemu-io -c 'write -P 0x31 0 1M' am.qcow2 > /dev/null
"$IMG" amend -o compat=1.1,lazy_refcounts=on am.qcow2
qemu-img check -q am.qcow2 || fail "upgraded image unclean"
qemu-img info --output=json am.qcow2 > i.json
python3 - <<'PY' || fail "amend to 1.1"
import json
d = json.load(open("i.json"))["format-specific"]["data"]
assert d["compat"] == "1.1" and d["lazy-refcounts"] is True, d
PY
readback am.qcow2 0x31 0 1M
qemu-io -c 'write -z 1M 64k' -c 'write -P 0x32 2M 64k' am.qcow2 > /dev/null
"$IMG" amend -o lazy_refcounts=off am.qcow2
"$IMG" amend -o compat=0.10 am.qcow2
qemu-img check -q am.qcow2 || fail "downgraded image unclean"
qemu-img info am.qcow2 | grep -q '^    compat: 0.10$' || fail "amend to 0.10"
readback am.qcow2 0x31 0 1M
readback am.qcow2 0 1M 64k
readback am.qcow2 0x32 2M 64k
expect_err 1 "diskdm-img: Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or greater)" \
    "$IMG" amend -o lazy_refcounts=on am.qcow2
expect_err 1 "diskdm-img: Invalid parameter 'cluster_size'
This option is only supported for image creation" "$IMG" amend -o cluster_size=4k am.qcow2
expect_err 1 "diskdm-img: Unknown compatibility level 0.2" "$IMG" amend -o compat=0.2 am.qcow2
expect_err 1 "diskdm-img: Format driver 'raw' does not support option amendment" \
    "$IMG" amend -f raw -o size=1 rs.raw
ok amend
