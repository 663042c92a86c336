#!/bin/sh
# diskdm-img with qcow2 extended L2 entries and external data files,
# against qemu-img and qemu-io: the "Formatting" line of create equals
# qemu-img's; images either side creates, written by the other side at
# scattered offsets, convert to the same raw bytes; qemu-img check is clean.
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io
IMG="$BUILD/diskdm-img"
[ -x "$IMG" ] || fail "$IMG not built"
cd "$T"

WRITES="-c 'write -P 0x11 0 4k' -c 'write -P 0x22 1020k 70k' -c 'write -P 0x33 3000k 1k'"
WRITES="$WRITES -c 'write -z 5m 64k' -c 'write -P 0x55 7m 513' -c 'write -P 0x77 6m 2k'"
WRITES="$WRITES -c 'write -z 6146k 2k'"

for opts in extended_l2=on extended_l2=on,cluster_size=16384 data_file=d.raw \
            data_file=d.raw,data_file_raw=on data_file=d.raw,extended_l2=on; do
    rm -f ours.qcow2 theirs.qcow2 d.raw *.out *.raw
    "$IMG" create -f qcow2 -o "$opts" ours.qcow2 8M > ours.out
    rm -f d.raw
    qemu-img create -f qcow2 -o "$opts" ours.qcow2 8M > theirs.out
    diff -u theirs.out ours.out || fail "create -o $opts: Formatting line differs"
    rm -f ours.qcow2 d.raw
    # Made by diskdm, written by qemu-io, read by both.
    "$IMG" create -q -f qcow2 -o "$opts" ours.qcow2 8M
    eval qemu-io -f qcow2 "$WRITES" ours.qcow2 > /dev/null
    qemu-img check -q ours.qcow2 || fail "$opts: qemu-img check"
    qemu-img convert -O raw ours.qcow2 theirs.raw
    "$IMG" convert -O raw ours.qcow2 ours.raw
    cmp theirs.raw ours.raw || fail "$opts: diskdm reads differently"
    # Made by qemu-img, converted by diskdm into a new image of the kind.
    rm -f d.raw
    "$IMG" convert -O qcow2 -o "$opts" theirs.raw copy.qcow2
    qemu-img check -q copy.qcow2 || fail "$opts: check of diskdm's copy"
    qemu-img compare -q -F raw copy.qcow2 theirs.raw || fail "$opts: copy differs"
    rm -f copy.qcow2
done
ok "extended L2 and data file images"

# info shows a data file as qemu-img does (human and JSON)
qemu-img create -q -f qcow2 -o data_file=i.raw i.qcow2 1M
qemu-img create -q -f qcow2 -o data_file=j.raw,data_file_raw=on,extended_l2=on j.qcow2 1M
for f in i.qcow2 j.qcow2; do
    for o in human json; do
        qemu-img info --output=$o $f > want.txt
        "$IMG" info --output=$o $f > got.txt
        diff -u want.txt got.txt || fail "info --output=$o $f differs from qemu-img's"
    done
done
ok "info of data file images"

# map names the data file where the data lives, as qemu-img does
qemu-io -f qcow2 -c 'write -P 1 0 64k' -c 'write -P 2 512k 128k' i.qcow2 > /dev/null
for o in human json; do
    qemu-img map --output=$o i.qcow2 > want.txt
    "$IMG" map --output=$o i.qcow2 > got.txt
    diff -u want.txt got.txt || fail "map --output=$o of a data file image differs from qemu-img's"
done
ok "map of a data file image"
