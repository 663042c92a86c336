#!/bin/sh
# diskdm-img convert, dd, measure and compare against qemu-img: converted
# images read the same as qemu-img's (cmp of raw outputs, qemu-img compare)
# and pass qemu-img check; measure's JSON equals qemu-img's; compare's exit
# codes and messages; bad input gets its exact message.
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io python3
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

# A chain with data, zero clusters, holes and an unaligned tail.
qemu-img create -q -f qcow2 base.qcow2 20M
qemu-io -c 'write -P 0x11 0 3M' -c 'write -P 0x22 8M 1M' -c 'write -z 12M 1M' base.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-io -c 'write -P 0x33 1M 64k' -c 'write -z 8M 64k' -c 'write -P 0x44 19M 1M' top.qcow2 > /dev/null
qemu-img create -q -f raw odd.raw 3000000
qemu-io -f raw -c 'write -P 0x55 1000 100000' -c 'write -P 0x66 2990000 10000' odd.raw > /dev/null

# --- convert ---------------------------------------------------------------
qemu-img convert -O raw top.qcow2 q.raw
"$IMG" convert -O raw top.qcow2 d.raw
cmp q.raw d.raw || fail "qcow2 chain -> raw differs from qemu-img's"
"$IMG" convert -f raw -O qcow2 d.raw d.qcow2
qemu-img check -q d.qcow2 || fail "converted qcow2 fails qemu-img check"
qemu-img compare -f raw -F qcow2 q.raw d.qcow2 > /dev/null || fail "raw -> qcow2 differs"
# Sparse: the zero and unallocated ranges are not allocated in the target.
qemu-img map --output=json d.qcow2 > m.json
python3 - <<'PY' || fail "raw -> qcow2 allocated zeroes"
import json
data = sum(e["length"] for e in json.load(open("m.json")) if e["data"])
assert data == 3 * 2**20 + 2**20 - 2**16 + 2**20, data
PY
"$IMG" convert -S 0 -O qcow2 -o cluster_size=4k,compat=0.10 top.qcow2 full.qcow2
qemu-img check -q full.qcow2 || fail "-S 0 image fails qemu-img check"
qemu-img compare top.qcow2 full.qcow2 > /dev/null || fail "-S 0 content"
"$IMG" info --output=json full.qcow2 | grep -q '"cluster-size": 4096' || fail "-o cluster_size"
# -B: only the top's clusters, over the same backing file.
"$IMG" convert -O qcow2 -B base.qcow2 -F qcow2 top.qcow2 ov.qcow2
qemu-img check -q ov.qcow2 || fail "-B image fails qemu-img check"
qemu-img compare top.qcow2 ov.qcow2 > /dev/null || fail "-B content"
qemu-img info ov.qcow2 | grep -q '^backing file: base.qcow2$' || fail "-B backing name"
# Unaligned raw into qcow2: whole sectors, as qemu-img makes it.
"$IMG" convert -f raw -O qcow2 odd.raw odd.qcow2
qemu-img convert -f raw -O qcow2 odd.raw qodd.qcow2
qemu-img compare odd.qcow2 qodd.qcow2 > /dev/null || fail "unaligned raw -> qcow2"
"$IMG" info --output=json odd.qcow2 | grep -q '"virtual-size": 3000320' || fail "unaligned qcow2 size"
# Unaligned raw, several sources, -n into an existing image.
"$IMG" convert -f raw -O raw odd.raw odd2.raw
cmp odd.raw odd2.raw || fail "unaligned raw copy"
"$IMG" convert -f raw -O raw odd.raw odd.raw cat.raw
cat odd.raw odd.raw | cmp - cat.raw || fail "two sources"
qemu-img create -q -f qcow2 pre.qcow2 20M
qemu-io -c 'write -P 0x77 0 20M' pre.qcow2 > /dev/null
"$IMG" convert -n -O qcow2 top.qcow2 pre.qcow2
qemu-img compare top.qcow2 pre.qcow2 > /dev/null || fail "-n did not overwrite zeroes"
qemu-img create -q -f qcow2 z.qcow2 20M
"$IMG" convert -n --target-is-zero -m 4 -W -t writethrough -T writeback -O qcow2 top.qcow2 z.qcow2
qemu-img compare top.qcow2 z.qcow2 > /dev/null || fail "--target-is-zero"
"$IMG" convert -p -O raw top.qcow2 p.raw > p.out
[ ! -s p.out ] || fail "-p drew progress without a terminal"
expect_err 1 "diskdm-img: Could not open 'missing.qcow2': Could not open 'missing.qcow2': No such file or directory" \
    "$IMG" convert -O raw missing.qcow2 x.raw
# -c: compressed clusters that qemu-img checks and reads, and we read back.
"$IMG" convert -c -O qcow2 top.qcow2 c.qcow2
qemu-img check c.qcow2 > chk.txt || fail "compressed image fails qemu-img check"
grep -q ' 100.00% compressed clusters$' chk.txt || fail "clusters not compressed: $(cat chk.txt)"
qemu-img compare top.qcow2 c.qcow2 > /dev/null || fail "compressed content (qemu-img)"
"$IMG" compare top.qcow2 c.qcow2 > /dev/null || fail "compressed content (ours)"
"$IMG" convert -O raw c.qcow2 c.raw
cmp q.raw c.raw || fail "compressed image reads back differently"
qemu-io -c 'write -P 0x88 1M 4k' c.qcow2 > /dev/null
qemu-io -r -c 'read -P 0x33 1052672 60k' c.qcow2 | grep -q 'verification failed' && fail "rewrite of a compressed cluster"
qemu-img check -q c.qcow2 || fail "compressed image after a rewrite"
expect_err 1 "diskdm-img: Compressed output needs a new image without backing file, from one source image" \
    "$IMG" convert -c -O qcow2 -B base.qcow2 -F qcow2 top.qcow2 cb.qcow2
expect_err 1 "diskdm-img: Compression not supported for this file format" \
    "$IMG" convert -c -O raw top.qcow2 x.raw
expect_err 1 "diskdm-img: Unknown file format 'vpc'" "$IMG" convert -O vpc top.qcow2 x.vpc
expect_err 1 "diskdm-img: --target-is-zero requires use of -n flag" \
    "$IMG" convert --target-is-zero -O raw top.qcow2 x.raw
expect_err 1 "diskdm-img: Invalid buffer size for sparse output specified. Valid sizes are multiples of 512 up to 1073741824. Select 0 to disable sparse detection (fully allocates output)." \
    "$IMG" convert -S 100 -O raw top.qcow2 x.raw
expect_err 1 "diskdm-img: Output image is too small (1048576 < 20971520)" \
    sh -c "qemu-img create -q -f raw small.raw 1M && exec \"$IMG\" convert -n -O raw top.qcow2 small.raw"
ok convert

# --- dd ---------------------------------------------------------------------
"$IMG" dd -f raw if=odd.raw of=dd1.raw bs=4k count=100 skip=3
qemu-img dd -f raw if=odd.raw of=dd2.raw bs=4k count=100 skip=3
cmp dd1.raw dd2.raw || fail "dd differs from qemu-img dd"
"$IMG" dd -O qcow2 if=top.qcow2 of=dd.qcow2 bs=1M count=4
qemu-img dd -O qcow2 if=top.qcow2 of=qdd.qcow2 bs=1M count=4
qemu-img compare dd.qcow2 qdd.qcow2 > /dev/null || fail "dd -O qcow2"
expect_err 1 "diskdm-img: Must specify both input and output files" "$IMG" dd if=odd.raw
expect_err 1 "diskdm-img: unrecognized operand foo" "$IMG" dd if=odd.raw of=x foo=1
expect_err 1 "diskdm-img: Invalid bs specified. Must be between 1 and 2147483647." \
    "$IMG" dd if=odd.raw of=x bs=0
ok dd

# --- measure: JSON equal to qemu-img's ------------------------------------------
for args in "-O qcow2 top.qcow2" "-O raw top.qcow2" "-O qcow2 --size 1G" \
            "-O raw --size 1000" "-O qcow2 -o cluster_size=4k,compat=0.10 -f raw odd.raw" \
            "-O qcow2 -o cluster_size=2M,refcount_bits=1 --size 100G" "-O qcow2 d.qcow2"; do
    # shellcheck disable=SC2086
    "$IMG" measure --output=json $args > o.json
    # shellcheck disable=SC2086
    qemu-img measure --output=json $args > t.json
    diff -u t.json o.json || fail "measure $args differs"
    # shellcheck disable=SC2086
    "$IMG" measure $args > o.txt
    # shellcheck disable=SC2086
    qemu-img measure $args > t.txt
    diff -u t.txt o.txt || fail "measure text $args differs"
done
expect_err 1 "diskdm-img: Either --size N or one filename must be specified." "$IMG" measure -O qcow2
expect_err 1 "diskdm-img: --size N cannot be used together with a filename." \
    "$IMG" measure --size 1G top.qcow2
ok measure

# --- compare ------------------------------------------------------------------
out=$("$IMG" compare top.qcow2 d.raw) || fail "compare of equal images"
[ "$out" = "Images are identical." ] || fail "compare said: $out"
qemu-io -f raw -c 'write -P 0x99 5000000 1' d.raw > /dev/null
set +e; out=$("$IMG" compare -f qcow2 -F raw top.qcow2 d.raw); rc=$?; set -e
[ $rc = 1 ] && [ "$out" = "Content mismatch at offset 4999680!" ] || fail "compare differ: $rc $out"
set +e; theirs=$(qemu-img compare -f qcow2 -F raw top.qcow2 d.raw); set -e
[ "$out" = "$theirs" ] || fail "compare message differs from qemu-img's: $theirs"
set +e; out=$("$IMG" compare -s top.qcow2 ov.qcow2); rc=$?; set -e
[ $rc = 0 ] || fail "strict compare of the same chain layout: $rc $out"
set +e; out=$("$IMG" compare -s top.qcow2 full.qcow2); rc=$?; set -e
theirs=$(qemu-img compare -s top.qcow2 full.qcow2 || true)
[ $rc = 1 ] && [ "$out" = "$theirs" ] || fail "strict compare: $rc '$out' vs '$theirs'"
qemu-img create -q -f raw big.raw 40M
set +e; out=$("$IMG" compare -f raw -F raw odd.raw big.raw); rc=$?; set -e
theirs=$(qemu-img compare -f raw -F raw odd.raw big.raw || true)
[ $rc = 1 ] && [ "$out" = "$theirs" ] || fail "size mismatch compare: $rc '$out' vs '$theirs'"
expect_err 2 "diskdm-img: Could not open 'missing.raw': Could not open 'missing.raw': No such file or directory" \
    "$IMG" compare top.qcow2 missing.raw
ok compare

# --- convert's shortcuts stay out of the way --------------------------------
# An external data file: block status maps into it, not into the image
# file, so the image file (padded here to cover those offsets) must not be
# read in its place.
qemu-img create -q -f qcow2 -o data_file=ext.data,cluster_size=4k ext.qcow2 64M
qemu-io -c 'write -P 0x77 0 1M' -c 'write -P 0x99 40M 1M' ext.qcow2 > /dev/null
head -c 1048576 /dev/urandom >> ext.qcow2
qemu-img convert -O raw ext.qcow2 qext.raw
"$IMG" convert -O raw ext.qcow2 dext.raw
cmp qext.raw dext.raw || fail "external data file source"
"$IMG" convert -O qcow2 ext.qcow2 dext.qcow2
qemu-img compare -f raw qext.raw dext.qcow2 > /dev/null || fail "external data file -> qcow2"
# -U and -T none take the buffered path: the same result.
"$IMG" convert -U -O raw top.qcow2 u.raw
cmp q.raw u.raw || fail "convert -U"
ok "convert shortcuts"
