#!/bin/sh
# diskdm-img options against qemu-img 7.2: --object (accepted where
# qemu-img takes it, each bad value with qemu-img's message), -r rate
# limits, -W (in-order writes give qemu-img's qcow2 layout), -C, --bitmaps,
# --salvage, bench -i/-n/--pattern, -U where qemu-img has it.
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
# The same message as qemu-img gives for the same arguments.
same_err() {   # expected-rc subcommand args...
    rc=$1; shift
    set +e
    qemu-img "$@" > /dev/null 2> qerr.txt
    set -e
    expect_err "$rc" "$(sed 's/^qemu-img: /diskdm-img: /; s/'"'"'qemu-img --help'"'"'/'"'"'diskdm-img --help'"'"'/' qerr.txt)" "$IMG" "$@"
}

qemu-img create -q -f qcow2 a.qcow2 4M
qemu-io -c 'write -P 0x11 0 1M' a.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 top.qcow2
printf 'secret' > pw.txt

# --- --object ---------------------------------------------------------------
for o in 'foo,id=x' 'secret,data=abc' 'secret,id=s0' 'secret,id=s0,file=/nonexistent' \
         'secret,id=s0,data=a,file=pw.txt' 'secret,id=s0,data=abc,bogus=1' \
         'secret,id=0bad,data=a' 'secret,id=0x,bogus=1' 'secret,id=s0,data=abc,format=xx' \
         '' 'id=s0' 'secret,id=s0,data=!!!,format=base64' 'secret,id=s0,data=abc,keyid=k' \
         'secret,id=s0,data=a,keyid=s0'; do
    same_err 1 info --object "$o" a.qcow2
done
expect_err 1 "diskdm-img: Parameter 'qom-type' does not accept value 'foo'" \
    "$IMG" info --object foo,id=x a.qcow2
expect_err 1 "diskdm-img: Either 'file' or 'data' must be provided" \
    "$IMG" info --object secret,id=s0 a.qcow2
same_err 1 info --object secret,id=s0,data=a --object secret,id=s0,data=b a.qcow2
expect_err 1 "diskdm-img: attempt to add duplicate property 's0' to object (type 'container')" \
    "$IMG" info --object secret,id=s0,data=a --object=secret,id=s0,data=b a.qcow2
expect_err 1 "diskdm-img: Secret 's1': secrets encrypted with another secret (keyid) are not supported" \
    "$IMG" info --object secret,id=s0,data=a --object secret,id=s1,data=b,keyid=s0 a.qcow2
expect_err 1 "diskdm-img: missing argument for option '--object'
Try 'diskdm-img --help' for more information" "$IMG" info a.qcow2 --object
"$IMG" info --object help a.qcow2 > out.txt
printf 'List of user creatable objects:\n  secret\n' | diff -u - out.txt || fail "--object help"
"$IMG" info --object secret,help a.qcow2 | grep -q '^  keyid=<string>$' || fail "secret,help"
# Accepted by every subcommand qemu-img accepts it for, base64 and file too.
obj="--object secret,id=s0,data=c2VjcmV0,format=base64 --object secret,id=s1,file=pw.txt"
"$IMG" info $obj a.qcow2 > /dev/null
"$IMG" check $obj a.qcow2 > /dev/null
"$IMG" map $obj a.qcow2 > /dev/null
"$IMG" compare $obj a.qcow2 a.qcow2 > /dev/null
"$IMG" create $obj -q -f qcow2 n.qcow2 1M
"$IMG" convert $obj -O raw a.qcow2 c.raw
"$IMG" dd $obj -O raw if=a.qcow2 of=d.raw bs=64k count=1
"$IMG" measure $obj --size 1M -O raw > /dev/null
"$IMG" amend $obj -o lazy_refcounts=on n.qcow2
"$IMG" resize $obj -q n.qcow2 2M
"$IMG" rebase $obj -u -b a.qcow2 -F qcow2 n.qcow2
"$IMG" commit $obj -d top.qcow2 > /dev/null
same_err 1 bench --object secret,id=s0,data=a a.qcow2
ok "--object"

# --- -r ---------------------------------------------------------------------
for v in abc -5 10x; do
    same_err 1 convert -r "$v" -O raw a.qcow2 r.raw
    same_err 1 commit -r "$v" top.qcow2
done
expect_err 1 "diskdm-img: Invalid rate limit specified. You may use k, M, G, T, P or E suffixes for
diskdm-img: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes." \
    "$IMG" convert -r 1Q -O raw a.qcow2 r.raw
same_err 1 rebase -r 1M -u -b a.qcow2 -F qcow2 top.qcow2
"$IMG" convert -r 0 -O raw a.qcow2 r0.raw
"$IMG" convert -r 1G -O raw a.qcow2 r1.raw
cmp c.raw r0.raw && cmp c.raw r1.raw || fail "convert -r changed the data"
"$IMG" commit -r 1G top.qcow2 > /dev/null
ok "-r"

# --- -W, -C, --bitmaps, --salvage --------------------------------------------
# Without -W the writes land in guest order: the same file as qemu-img's.
head -c 24M /dev/urandom > rnd.raw
qemu-img convert -f raw -O qcow2 rnd.raw q.qcow2
"$IMG" convert -m 4 -f raw -O qcow2 rnd.raw d.qcow2
cmp q.qcow2 d.qcow2 || fail "in-order raw -> qcow2 differs from qemu-img's file"
"$IMG" convert -W -m 4 -f raw -O qcow2 rnd.raw w.qcow2
qemu-img check -q w.qcow2 || fail "-W output fails qemu-img check"
qemu-img compare -f raw rnd.raw w.qcow2 > /dev/null || fail "-W output content"
same_err 1 convert -C -c -O qcow2 a.qcow2 x.qcow2
same_err 1 convert -C -S 4k -O raw a.qcow2 x.raw
"$IMG" convert -C -O qcow2 a.qcow2 cq.qcow2
same_err 1 convert --bitmaps -O raw a.qcow2 x.raw
same_err 1 convert --bitmaps -f raw -O qcow2 rnd.raw x.qcow2
"$IMG" convert --bitmaps -O qcow2 a.qcow2 bm.qcow2
qemu-img create -q -f qcow2 hasbm.qcow2 1M
qemu-img bitmap --add hasbm.qcow2 b0
expect_err 1 "diskdm-img: 'hasbm.qcow2' has persistent bitmaps: copying them is not supported" \
    "$IMG" convert --bitmaps -O qcow2 hasbm.qcow2 x.qcow2
[ ! -e x.qcow2 ] || fail "refused convert left a target"
# A compressed cluster whose data is garbage: an error without --salvage,
# zeroes and a warning per sector with it, as qemu-img.
qemu-img create -q -f raw c5a.raw 1M
qemu-io -f raw -c 'write -P 0x5a 0 1M' c5a.raw > /dev/null
qemu-img convert -c -f raw -O qcow2 c5a.raw bad.qcow2
python3 - <<'PY'
import struct
f = open("bad.qcow2", "r+b"); d = f.read()
l1 = struct.unpack(">Q", d[40:48])[0]
l2 = struct.unpack(">Q", d[l1:l1 + 8])[0] & 0x00fffffffffffe00
e = struct.unpack(">Q", d[l2 + 8:l2 + 16])[0]          # cluster 1, compressed
f.seek(e & ((1 << 54) - 1)); f.write(b"\xff" * 64)
PY
set +e
"$IMG" convert -O raw bad.qcow2 x.raw 2> err.txt
rc=$?
set -e
[ $rc = 1 ] || fail "corrupt source: exit $rc"
tail -n 1 err.txt | grep -qx 'diskdm-img: error while reading at byte 65536: Input/output error' ||
    fail "corrupt source message: $(cat err.txt)"
qemu-img convert --salvage -O raw bad.qcow2 qs.raw 2> qerr.txt
"$IMG" convert --salvage -O raw bad.qcow2 ds.raw 2> err.txt
cmp qs.raw ds.raw || fail "--salvage output differs from qemu-img's"
grep 'warning:' qerr.txt | sed 's/^qemu-img/diskdm-img/' > want.txt
grep 'warning:' err.txt | sort -t' ' -k7n > got.txt
diff -u want.txt got.txt || fail "--salvage warnings"
ok "-W -C --bitmaps --salvage"

# --- bench ------------------------------------------------------------------
same_err 1 bench -c 1 -i foo a.qcow2
same_err 1 bench -c 1 -i native a.qcow2
same_err 1 bench -c 1 -n -i threads a.qcow2
same_err 1 bench -c 1 --pattern=256 a.qcow2
same_err 1 bench -c 1 -w --pattern=x a.qcow2
"$IMG" bench -q -c 1 -n -t none a.qcow2 2> /dev/null ||
    [ "$(df --output=fstype . | tail -1)" = tmpfs ] || fail "bench -n -t none"
"$IMG" bench -q -c 1 --pattern=0x41 a.qcow2
"$IMG" bench -q -c 1 -w --no-drain a.qcow2
"$IMG" bench -q -c 16 -d 1 -w --pattern=0x41 a.qcow2
qemu-io -c 'read -P 0x41 0 64k' a.qcow2 > /dev/null || fail "bench --pattern data"
ok "bench options"

# --- -U where qemu-img has it ------------------------------------------------
for c in bench check info map; do
    "$IMG" $c -U a.qcow2 > /dev/null || fail "$c -U"
done
"$IMG" compare -U a.qcow2 a.qcow2 > /dev/null || fail "compare -U"
"$IMG" convert -U -O raw a.qcow2 u.raw || fail "convert -U"
"$IMG" dd -U -O raw if=a.qcow2 of=u2.raw bs=64k count=1 || fail "dd -U"
"$IMG" measure -U -O raw a.qcow2 > /dev/null || fail "measure -U"
"$IMG" rebase -U -u -b a.qcow2 -F qcow2 top.qcow2 || fail "rebase -U"
for c in amend commit create resize; do
    same_err 1 $c -U a.qcow2
done
ok "-U"

# --- --image-opts: info names the node's file, not the option string ---------
for o in driver=qcow2,file.filename=a.qcow2 driver=qcow2,file.driver=file,file.filename=./a.qcow2 \
         file.filename=a.qcow2; do
    want=$(qemu-img info --image-opts "$o" | head -1)
    got=$("$IMG" info --image-opts "$o" | head -1)
    [ "$got" = "$want" ] || fail "info --image-opts $o: '$got', qemu-img '$want'"
done
ok "info --image-opts names"

# --- -o errors worded and prefixed as qemu-img's (create: the file before each;
# convert: "FILE: error while converting FMT: " before the driver's) ----------
qemu-img create -q -f raw src1m.raw 1M
for o in size=abc preallocation=bad cluster_size=3000 compat=9 lazy_refcounts=maybe \
         refcount_bits=3 extended_l2=x "a=b,,c" compat=0.10,lazy_refcounts=on \
         compat=0.10,refcount_bits=8 compat=0.10,extended_l2=on \
         compat=0.10,data_file=dd.raw data_file_raw=on; do
    want=$(qemu-img create -q -f qcow2 -o "$o" oe.qcow2 1M 2>&1 || true)
    got=$("$IMG" create -q -f qcow2 -o "$o" oe.qcow2 1M 2>&1 || true)
    [ "${got#diskdm-img}" = "${want#qemu-img}" ] || fail "create -o $o: '$got', qemu-img '$want'"
    want=$(qemu-img convert -O qcow2 -o "$o" src1m.raw oe.qcow2 2>&1 || true)
    got=$("$IMG" convert -O qcow2 -o "$o" src1m.raw oe.qcow2 2>&1 || true)
    [ "${got#diskdm-img}" = "${want#qemu-img}" ] || fail "convert -o $o: '$got', qemu-img '$want'"
done
ok "-o errors as qemu-img's"
