#!/bin/sh
# diskdm-img create, info and check against qemu-img: qcow2 creation
# options and the "Formatting" line, info JSON (chains, format-specific)
# equal to qemu-img's, check's report, JSON fields and exit codes on clean,
# leaking and corrupt images, repairs that qemu-img then finds clean.
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io python3
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
# JSON keys that must agree between two files (all of them when no list).
json_agree() {   # ours theirs [keys...]
    python3 - "$@" <<'PY' || fail "JSON differs: $*"
import json, sys
o = json.load(open(sys.argv[1])); t = json.load(open(sys.argv[2]))
keys = sys.argv[3:]
if not keys:
    assert o == t, (o, t)
for k in keys:
    assert o.get(k) == t.get(k), (k, o.get(k), t.get(k))
PY
}

# --- create -------------------------------------------------------------
"$IMG" create -f qcow2 a.qcow2 64M > out.txt
"$IMG" create -f qcow2 -o cluster_size=4k,compat=0.10,preallocation=metadata v2.qcow2 1M >> out.txt
"$IMG" create -f qcow2 -o lazy_refcounts=on,refcount_bits=8 lz.qcow2 1M >> out.txt
"$IMG" create -f qcow2 -b a.qcow2 -F qcow2 ov.qcow2 >> out.txt
"$IMG" create -f qcow2 -u -b gone.qcow2 -F qcow2 un.qcow2 1M >> out.txt
"$IMG" create -f raw -o preallocation=falloc r.raw 1M >> out.txt
diff -u "$GOLD/create.txt" out.txt || fail "create output differs from the golden file"
# The same commands through qemu-img (in q/) print the same lines.
mkdir q
(
    cd q
    qemu-img create -f qcow2 a.qcow2 64M
    qemu-img create -f qcow2 -o cluster_size=4k,compat=0.10,preallocation=metadata v2.qcow2 1M
    qemu-img create -f qcow2 -o lazy_refcounts=on,refcount_bits=8 lz.qcow2 1M
    qemu-img create -f qcow2 -b a.qcow2 -F qcow2 ov.qcow2
    qemu-img create -f qcow2 -u -b gone.qcow2 -F qcow2 un.qcow2 1M
    qemu-img create -f raw -o preallocation=falloc r.raw 1M
) > theirs.txt
diff -u theirs.txt out.txt || fail "create lines differ from qemu-img's"
for f in a v2 lz ov; do
    qemu-img check -q "$f.qcow2" || fail "qemu-img check $f.qcow2"
    qemu-img info --output=json "$f.qcow2" > t.json
    (cd q && qemu-img info --output=json "$f.qcow2") > q.json
    python3 - <<'PY' || fail "$f.qcow2 is not what qemu-img creates"
import json
t = json.load(open("t.json")); q = json.load(open("q.json"))
for k in ("virtual-size", "cluster-size", "format-specific", "backing-filename",
          "backing-filename-format", "dirty-flag"):
    assert t.get(k) == q.get(k), (k, t.get(k), q.get(k))
PY
done
"$IMG" create -f qcow2 -o help > out.txt
grep -q '^  lazy_refcounts=' out.txt || fail "create -o help lacks lazy_refcounts"
expect_err 1 "diskdm-img: ov2.qcow2: Backing file specified without backing format
Detected format of qcow2." "$IMG" create -f qcow2 -b a.qcow2 ov2.qcow2
expect_err 1 "diskdm-img: ov2.qcow2: Could not open 'nope.qcow2': No such file or directory
Could not open backing image." "$IMG" create -f qcow2 -b nope.qcow2 -F qcow2 ov2.qcow2
expect_err 1 "diskdm-img: ov2.qcow2: Image creation needs a size parameter" \
    "$IMG" create -f qcow2 ov2.qcow2
expect_err 1 "diskdm-img: ov2.qcow2: Cluster size must be a power of two between 512 and 2048k" \
    "$IMG" create -f qcow2 -o cluster_size=3000 ov2.qcow2 1M
expect_err 1 "diskdm-img: ov2.qcow2: Lazy refcounts only supported with compatibility level 1.1 and above (use version=v3 or greater)" \
    "$IMG" create -f qcow2 -o compat=0.10,lazy_refcounts=on ov2.qcow2 1M
expect_err 1 "diskdm-img: Expecting image file name
Try 'diskdm-img --help' for more information" "$IMG" create
[ ! -e ov2.qcow2 ] || fail "a failed create left ov2.qcow2"
ok create

# --- info: chains and format-specific data as qemu-img --------------------
qemu-io -c 'write -P 1 0 1M' a.qcow2 > /dev/null
for args in "" "--output=json" "--backing-chain" "--backing-chain --output=json"; do
    # shellcheck disable=SC2086
    "$IMG" info $args ov.qcow2 > ours.txt
    # shellcheck disable=SC2086
    qemu-img info $args ov.qcow2 > theirs.txt
    diff -u theirs.txt ours.txt || fail "info $args differs"
done
# A missing backing file does not stop info (the chain is not opened).
for args in "" "--output=json"; do
    # shellcheck disable=SC2086
    "$IMG" info $args un.qcow2 > ours.txt
    # shellcheck disable=SC2086
    qemu-img info $args un.qcow2 > theirs.txt
    diff -u theirs.txt ours.txt || fail "info $args with a missing backing file differs"
done
"$IMG" info --output=json v2.qcow2 > o.json; qemu-img info --output=json v2.qcow2 > t.json
json_agree o.json t.json
"$IMG" info --image-opts driver=qcow2,file.filename=ov.qcow2 | grep -q '^backing file: a.qcow2$' \
    || fail "info --image-opts"
ok info

# --- check -------------------------------------------------------------------
qemu-io -c 'write -P 2 64k 128k' ov.qcow2 > /dev/null
"$IMG" check ov.qcow2 > out.txt || fail "check of a clean image failed"
diff -u "$GOLD/check-clean.txt" out.txt || fail "check text differs from the golden file"
qemu-img check ov.qcow2 > theirs.txt
diff -u theirs.txt out.txt || fail "check text differs from qemu-img's"
"$IMG" check --output=json ov.qcow2 > o.json; qemu-img check --output=json ov.qcow2 > t.json
json_agree o.json t.json
diff -u t.json o.json || fail "check JSON layout differs"

# A leaked cluster: refcount 1, no reference (cluster 7 of a 128k-data image).
qemu-img create -q -f qcow2 leak.qcow2 1M
qemu-io -c 'write 0 128k' leak.qcow2 > /dev/null
truncate -s 524288 leak.qcow2
printf '\000\001' | dd of=leak.qcow2 bs=1 seek=$((131072 + 14)) conv=notrunc 2>/dev/null
cp leak.qcow2 leak2.qcow2
set +e; "$IMG" check leak.qcow2 > out.txt; rc=$?; set -e
[ $rc = 3 ] || fail "check of a leaking image exited $rc, want 3"
grep -q '^1 leaked clusters were found on the image.$' out.txt || fail "leak not reported"
set +e; "$IMG" check --output=json leak.qcow2 > o.json; qemu-img check --output=json leak.qcow2 > t.json 2>/dev/null; set -e
json_agree o.json t.json leaks corruptions check-errors total-clusters allocated-clusters filename format
cp leak2.qcow2 leak3.qcow2; cp leak2.qcow2 leak4.qcow2
"$IMG" check -r leaks --output=json leak3.qcow2 | sed 's/leak3/leakN/' > o.json
qemu-img check -r leaks --output=json leak4.qcow2 2>/dev/null | sed 's/leak4/leakN/' > t.json
diff -u t.json o.json || fail "check -r leaks JSON differs from qemu-img's"
"$IMG" check -r leaks leak2.qcow2 > out.txt || fail "check -r leaks failed"
grep -q '^    1 leaked clusters$' out.txt || fail "repair not reported"
qemu-img check leak2.qcow2 > /dev/null || fail "qemu-img finds the repaired image unclean"

# A corruption: a data cluster's refcount dropped to 0.
qemu-img create -q -f qcow2 bad.qcow2 1M
qemu-io -c 'write 0 128k' bad.qcow2 > /dev/null
printf '\000\000' | dd of=bad.qcow2 bs=1 seek=$((131072 + 8)) conv=notrunc 2>/dev/null
set +e; "$IMG" check bad.qcow2 > out.txt; rc=$?; set -e
[ $rc = 2 ] || fail "check of a corrupt image exited $rc, want 2"
grep -q 'errors were found on the image.$' out.txt || fail "corruption not reported"
set +e; "$IMG" check --output=json bad.qcow2 > o.json; set -e
python3 -c 'import json; assert json.load(open("o.json"))["corruptions"] >= 1' || fail "JSON corruptions"
set +e; "$IMG" check -r leaks bad.qcow2 > /dev/null; rc=$?; set -e
[ $rc = 2 ] || fail "check -r leaks left corruptions but exited $rc"
"$IMG" check -r all bad.qcow2 > /dev/null || fail "check -r all failed"
qemu-img check bad.qcow2 > /dev/null || fail "qemu-img finds the repaired image unclean"
qemu-io -c 'read -P 0xcd 0 128k' bad.qcow2 | grep -q 'verification failed' && fail "data lost"

# New images have qemu-img's exact file size (the L1 table written as
# l1_size * 8 bytes past the last cluster: 196624 for 1G at 64k).
for o in cluster_size=65536 cluster_size=4096 cluster_size=512 cluster_size=2097152 \
         compat=0.10 refcount_bits=1 refcount_bits=64 lazy_refcounts=on \
         cluster_size=65536,preallocation=metadata cluster_size=4096,preallocation=metadata \
         cluster_size=2097152,preallocation=falloc; do
    for sz in 1M 64M 1G; do
        rm -f sq.qcow2 sd.qcow2
        qemu-img create -q -f qcow2 -o $o sq.qcow2 $sz
        "$IMG" create -q -f qcow2 -o $o sd.qcow2 $sz
        [ "$(stat -c %s sq.qcow2)" = "$(stat -c %s sd.qcow2)" ] ||
            fail "create -o $o $sz: $(stat -c %s sd.qcow2) bytes, qemu-img $(stat -c %s sq.qcow2)"
    done
done
rm -f sq.qcow2 sd.qcow2
"$IMG" create -q -f qcow2 sd.qcow2 1G
qemu-img create -q -f qcow2 sq.qcow2 1G
"$IMG" info --output=json sd.qcow2 > d.json
qemu-img info --output=json sq.qcow2 > q.json
json_agree d.json q.json actual-size virtual-size
rm -f sq.qcow2 sd.qcow2

# Per-cluster lines on stderr, report, exit code, JSON and end offset as
# qemu-img prints them: a leak inside the file (the end offset counts it),
# a data cluster whose refcount is 0 (two corruptions: the count and the
# COPIED flag), a data cluster with refcount 1 but no COPIED flag.
poke() {   # file offset hex-bytes
    printf "$3" | dd of="$1" bs=1 seek=$(($2)) conv=notrunc 2>/dev/null
}
qemu-img create -q -f qcow2 p.qcow2 1M
qemu-io -c 'write -P 1 0 64k' p.qcow2 > /dev/null
cp p.qcow2 lk.qcow2; truncate -s 458752 lk.qcow2; poke lk.qcow2 0x2000c '\000\001'
cp p.qcow2 z0.qcow2; poke z0.qcow2 0x2000a '\000\000'
cp p.qcow2 cf.qcow2; poke cf.qcow2 0x40000 '\000'
for f in lk z0 cf; do
    set +e
    qemu-img check $f.qcow2 > q.out 2> q.err; qrc=$?
    "$IMG" check $f.qcow2 > d.out 2> d.err; drc=$?
    qemu-img check --output=json $f.qcow2 > q.json 2> /dev/null
    "$IMG" check --output=json $f.qcow2 > d.json 2> /dev/null
    set -e
    [ $qrc = $drc ] || fail "check $f: exit $drc, qemu-img $qrc"
    diff -u q.out d.out || fail "check $f: report differs from qemu-img"
    diff -u q.err d.err || fail "check $f: stderr differs from qemu-img"
    json_agree d.json q.json image-end-offset corruptions leaks allocated-clusters
done
grep -qx 'ERROR OFLAG_COPIED data cluster: l2_entry=50000 refcount=1' d.err || fail "COPIED line"
for f in lk z0 cf; do
    cp $f.qcow2 $f-q.qcow2
    qemu-img check -r all --output=json $f-q.qcow2 > q.json 2> /dev/null || true
    "$IMG" check -r all --output=json $f.qcow2 > d.json 2> d.err || fail "check -r all $f"
    json_agree d.json q.json leaks-fixed corruptions-fixed corruptions leaks
    qemu-img check $f.qcow2 > /dev/null || fail "qemu-img finds the repaired $f unclean"
    qemu-io -c 'read -P 1 0 64k' $f.qcow2 | grep -q 'verification failed' && fail "$f: data lost"
done
grep -qx 'Repairing OFLAG_COPIED data cluster: l2_entry=50000 refcount=1' d.err || fail "repair line"

expect_err 63 "diskdm-img: This image format does not support checks" "$IMG" check -f raw r.raw
expect_err 1 "diskdm-img: Could not open 'missing.qcow2': Could not open 'missing.qcow2': No such file or directory" \
    "$IMG" check missing.qcow2
expect_err 1 "diskdm-img: Could not open 'r.raw': Unknown driver 'vmdk'" "$IMG" check -f vmdk r.raw
expect_err 1 "Usage: diskdm-img check [--object objectdef] [--image-opts] [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-T src_cache] [-U] filename
diskdm-img: Unknown option value for -r (expecting 'leaks' or 'all'): some
Try 'diskdm-img --help' for more information" "$IMG" check -r some a.qcow2
ok check
