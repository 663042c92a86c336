#!/bin/sh
# diskdm-nbd beyond raw files: qcow2 over a backing file with -A (the maps
# of base:allocation and qemu:allocation-depth must equal qemu-nbd's), and
# -P partitions of MBR (primary and logical) and GPT disks (the bytes must
# equal nbdkit's partition filter).
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io qemu-nbd nbdkit nbdinfo nbdcopy
. "$(dirname "$0")/_nbd-lib.sh"
cd "$T"

# --- qcow2 chain, -A: same maps as qemu-nbd -------------------------------
qemu-img create -q -f qcow2 base.qcow2 64M
qemu-io -f qcow2 -c 'write -P 1 0 2M' -c 'write -P 2 16M 1M' base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-io -f qcow2 -c 'write -z 0 1M' -c 'write -P 3 8M 1M' top.qcow2 >/dev/null
sum0=$(cat base.qcow2 top.qcow2 | md5sum)
nbd_start q -r -t -A -f qcow2 -k d.sock top.qcow2
qemu-nbd -r -t -A -f qcow2 -k "$T/q.sock" --fork --pid-file="$T/qemu.pid" top.qcow2
at_exit "nbd_stop qemu"
for ctx in base:allocation qemu:allocation-depth; do
    nbdinfo --map=$ctx 'nbd+unix:///?socket=d.sock' > ours.map
    nbdinfo --map=$ctx 'nbd+unix:///?socket=q.sock' > theirs.map
    diff -u theirs.map ours.map || fail "map of $ctx differs from qemu-nbd's"
done
qemu-img compare -f qcow2 top.qcow2 'nbd+unix:///?socket=d.sock' >/dev/null \
    || fail "qcow2 export data differs"
nbd_stop q; nbd_stop qemu
[ "$(cat base.qcow2 top.qcow2 | md5sum)" = "$sum0" ] || fail "-r changed the qcow2 chain"
ok "qcow2 chain: data, base:allocation and qemu:allocation-depth as qemu-nbd"

# qcow2 read-write through the export, then qemu-img check
cp top.qcow2 rw.qcow2
nbd_start qrw -t -f qcow2 -k rw.sock rw.qcow2
qemu-io -f raw -c 'write -P 9 30M 3M' -c 'write -z 8M 64k' -c 'discard 0 64k' \
    'nbd+unix:///?socket=rw.sock' >/dev/null || fail "qcow2 writes"
nbd_stop qrw
qemu-img check -q rw.qcow2 || fail "qemu-img check after writes through the export"
qemu-io -f qcow2 -c 'read -P 9 30M 3M' -c 'read -P 0 8M 64k' rw.qcow2 >/dev/null \
    || fail "qcow2 writes did not land"
ok "qcow2 read-write export stays consistent"

# --- partitions ----------------------------------------------------------
mark() {  # mark FILE BYTE-OFFSET TEXT
    printf '%s' "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
$PY - <<'PY' || fail "writing partition tables"
import struct, zlib, uuid
def mbr_entry(t, lba, n):
    return struct.pack("<B3sB3sII", 0, b"\0\0\0", t, b"\0\0\0", lba, n)
def write(f, off, data):
    f.seek(off); f.write(data)
with open("mbr.raw", "wb") as f:
    f.truncate(64 << 20)
    ents = [mbr_entry(0x83, 2048, 20480), mbr_entry(0x83, 43008, 20480),
            mbr_entry(0x05, 65536, 40960), b"\0" * 16]
    write(f, 446, b"".join(ents) + b"\x55\xaa")
    # logical 5 at 65536+2048 (4096 sectors); next EBR at +8192; logical 6
    write(f, 65536 * 512 + 446, mbr_entry(0x83, 2048, 4096) + mbr_entry(0x05, 8192, 16384)
          + b"\0" * 32 + b"\x55\xaa")
    write(f, (65536 + 8192) * 512 + 446, mbr_entry(0x83, 2048, 8192) + b"\0" * 48
          + b"\x55\xaa")
with open("gpt.raw", "wb") as f:
    f.truncate(64 << 20)
    write(f, 446, mbr_entry(0xee, 1, (64 << 11) - 1) + b"\0" * 48 + b"\x55\xaa")
    ents = b""
    for first, last in ((2048, 2048 + 8191), (16384, 16384 + 16383)):
        ents += struct.pack("<16s16sQQQ72s", uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4").bytes_le,
                            uuid.uuid4().bytes_le, first, last, 0, b"\0" * 72)
    ents = ents.ljust(128 * 128, b"\0")
    hdr = struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x10000, 92, 0, 0, 1,
                      (64 << 11) - 1, 34, (64 << 11) - 34, uuid.uuid4().bytes_le, 2, 128, 128,
                      zlib.crc32(ents))
    hdr = hdr[:16] + struct.pack("<I", zlib.crc32(hdr)) + hdr[20:]
    write(f, 512, hdr)
    write(f, 1024, ents)
PY
mark mbr.raw $((43008 * 512)) PART2MARK
mark mbr.raw $(((65536 + 8192 + 2048) * 512)) PART6MARK
mark gpt.raw $((16384 * 512)) GPT2MARK
sum1=$(cat mbr.raw gpt.raw | md5sum)
for spec in mbr.raw:1 mbr.raw:2 mbr.raw:5 mbr.raw:6 gpt.raw:1 gpt.raw:2; do
    img=${spec%:*}; n=${spec#*:}
    rm -f k.sock
    nbd_start p -r -t -f raw -P "$n" -k p.sock "$img"
    nbdkit -r -U k.sock -P "$T/k.pid" --filter=partition file "$img" partition="$n"
    at_exit "nbd_stop k"
    for i in $(seq 50); do [ -S k.sock ] && break; sleep 0.1; done
    [ "$(nbdinfo --size 'nbd+unix:///?socket=p.sock')" = \
      "$(nbdinfo --size 'nbd+unix:///?socket=k.sock')" ] || fail "size of $spec"
    nbdcopy 'nbd+unix:///?socket=p.sock' ours.bin
    nbdcopy 'nbd+unix:///?socket=k.sock' theirs.bin
    cmp ours.bin theirs.bin || fail "bytes of partition $spec differ from nbdkit's"
    nbd_stop p; nbd_stop k
done
head -c 9 ours.bin | grep -q GPT2MARK || fail "GPT partition 2 has no marker"
[ "$(cat mbr.raw gpt.raw | md5sum)" = "$sum1" ] || fail "-P -r changed the disk"
ok "-P: MBR primary and logical, GPT partitions equal nbdkit's"

rc=0; "$NBD" -r -f raw -P 3 -k x.sock mbr.raw 2> err.txt || rc=$?
[ $rc = 1 ] && grep -q "^diskdm-nbd: .*partition 3 not found" err.txt || fail "-P 3: $(cat err.txt)"
rc=0; "$NBD" -r -f raw -P 7 -k x.sock mbr.raw 2> err.txt || rc=$?
grep -q "partition 7 not found" err.txt || fail "-P 7: $(cat err.txt)"
rc=0; "$NBD" -r -f raw -P 3 -k x.sock gpt.raw 2> err.txt || rc=$?
grep -q "partition 3 not found" err.txt || fail "-P 3 gpt: $(cat err.txt)"
ok "-P of a missing partition fails clearly"
