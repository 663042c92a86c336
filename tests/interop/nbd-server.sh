#!/bin/sh
# diskdm-nbd against the real NBD peers: nbdinfo (properties, --list,
# --map), qemu-img convert/compare and qemu-io over nbd:// and nbd+unix://,
# nbdcopy, nbdsh; read-only (-r) and snapshot (-s) exports leave the image
# untouched; export name, description, offset, -e and shutdown behaviour.
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io nbdinfo nbdcopy nbdsh strace
. "$(dirname "$0")/_nbd-lib.sh"
cd "$T"

qemu-img create -q -f raw disk.raw 64M
qemu-io -f raw -c 'write -P 0x55 1M 1M' -c 'write -P 0xaa 16M 64k' disk.raw >/dev/null
sum0=$(md5sum < disk.raw)

# --- read-only export over a Unix socket --------------------------------
nbd_start ro -r -t -f raw -k ro.sock disk.raw
U='nbd+unix:///?socket=ro.sock'
nbdinfo --json "$U" > info.json
$PY - <<'PY' || fail "nbdinfo properties of a read-only export"
import json
e = json.load(open("info.json"))["exports"][0]
want = {"export-size": 64 << 20, "is_read_only": True, "can_trim": False,
        "can_zero": False, "can_flush": True, "can_fua": True, "can_df": True,
        "can_cache": True, "can_multi_conn": False, "is_rotational": False,
        "block_size_minimum": 1, "block_size_preferred": 4096,
        "block_size_maximum": 32 << 20}
for k, v in want.items():
    assert e[k] == v, (k, e[k], v)
assert "base:allocation" in e["contexts"], e
PY
ok "nbdinfo properties (read-only)"

nbdinfo --map "$U" | awk '{print $1, $2, $3}' > map.txt
# (qemu-img create allocates the first 4 KiB of a raw file)
cat > map.want <<'M'
0 4096 0
4096 1044480 3
1048576 1048576 0
2097152 14680064 3
16777216 65536 0
16842752 50266112 3
M
diff -u map.want map.txt || fail "nbdinfo --map"
ok "nbdinfo --map shows holes and data"

qemu-img convert -f raw -O raw "$U" copy.raw
cmp disk.raw copy.raw || fail "qemu-img convert over nbd+unix differs"
qemu-img compare -f raw -F raw disk.raw "$U" >/dev/null || fail "qemu-img compare"
nbdcopy "$U" copy2.raw
cmp disk.raw copy2.raw || fail "nbdcopy copy differs"
qemu-io -r -f raw -c 'read -P 0x55 1M 1M' -c 'read -P 0xaa 16M 64k' -c 'read -P 0 0 1M' "$U" \
    > io.txt || fail "qemu-io reads"
grep -q 'read 1048576/1048576' io.txt || fail "qemu-io read output: $(cat io.txt)"
ok "qemu-img convert/compare, nbdcopy, qemu-io read the same bytes"

# Writes reach the server only with strict mode off; the answer is EPERM.
$PY - "$T/ro.sock" <<'PY' || fail "writes to a read-only export"
import errno, sys, nbd
h = nbd.NBD()
h.connect_unix(sys.argv[1])
h.set_strict_mode(0)
for what, call in (("pwrite", lambda: h.pwrite(b"X" * 512, 0)),
                   ("trim", lambda: h.trim(4096, 0)),
                   ("zero", lambda: h.zero(4096, 0))):
    try:
        call()
        raise SystemExit(what + " succeeded on a read-only export")
    except nbd.Error as e:
        assert e.errnum == errno.EPERM, (what, e.errnum, e.string)
# reads past the end: EINVAL; the connection stays usable
for off, n in ((64 << 20, 512), ((64 << 20) - 512, 1024), (1 << 62, 1)):
    try:
        h.pread(n, off)
        raise SystemExit("read past the end succeeded")
    except nbd.Error as e:
        assert e.errnum == errno.EINVAL, (off, e.errnum)
assert h.pread(4, 1 << 20) == b"\x55" * 4
h.flush()
h.cache(1 << 20, 0)
h.shutdown()
PY
ok "read-only export: EPERM for pwrite/trim/zero, EINVAL past the end"
nbd_stop ro
[ "$(md5sum < disk.raw)" = "$sum0" ] || fail "the image changed under -r"
ok "image unchanged after -r"

# Another program may still write into a raw file exported with -r: its
# data shows at once where the server answered "hole" before, and reads in
# READ-sized pieces match the file throughout.
cp disk.raw ext.raw
nbd_start ext -r -t -f raw -k ext.sock ext.raw
$PY - "$T/ext.sock" "$T/ext.raw" <<'PY' || fail "reads of a raw file changed from outside"
import sys, nbd
h = nbd.NBD()
h.connect_unix(sys.argv[1])
with open(sys.argv[2], "r+b") as f:
    for off in range(0, 4 << 20, 256 << 10):
        f.seek(off)
        assert h.pread(256 << 10, off) == f.read(256 << 10), off
    assert h.pread(4096, 8 << 20) == bytes(4096)
    f.seek(8 << 20)
    f.write(b"\x77" * 4096)
    f.flush()
    assert h.pread(4096, 8 << 20) == b"\x77" * 4096, "stale hole"
    assert h.pread(8192, (8 << 20) - 4096) == bytes(4096) + b"\x77" * 4096
h.shutdown()
PY
nbd_stop ext
ok "-r export of a raw file changed from outside: new data shows"

# -r is forced read-only: the image is never opened for writing, not even
# tried (strace sees every open of the process and its threads)
# (LeakSanitizer cannot run under ptrace: leaks are checked elsewhere)
ASAN_OPTIONS=detect_leaks=0 strace -f -qq -e trace=open,openat -o strace.txt \
    "$NBD" -r -f raw -k st.sock disk.raw &
st=$!
for i in $(seq 100); do [ -S st.sock ] && break; sleep 0.1; done
nbdcopy 'nbd+unix:///?socket=st.sock' null: || fail "nbdcopy under strace"
wait $st || fail "server under strace failed"
grep -q 'disk.raw", O_RDONLY' strace.txt || fail "strace saw no open of the image"
grep 'disk.raw"' strace.txt | grep -q 'O_RDWR\|O_WRONLY' && fail "-r opened the image for writing: $(grep disk.raw strace.txt)"
ok "-r never opens the image for writing"

# --- read-write over TCP, several clients --------------------------------
port=$(free_port)
cp disk.raw rw.raw
nbd_start rw -t -e 4 -f raw -b 127.0.0.1 -p "$port" -x disk0 -D "test raw image" rw.raw
N="nbd://127.0.0.1:$port/disk0"
nbdinfo --list "nbd://127.0.0.1:$port" > list.txt
grep -q 'export="disk0":' list.txt || fail "nbdinfo --list: $(cat list.txt)"
grep -q 'description: test raw image' list.txt || fail "no description in --list"
grep -q 'can_multi_conn: true' list.txt || fail "-e 4 should allow multi-conn"
grep -q 'can_fast_zero: true' list.txt || fail "no fast zero on a rw export"
# -L prints what qemu-nbd -L prints
"$NBD" -L -b 127.0.0.1 -p "$port" > ours-L.txt || fail "-L failed"
qemu-nbd -L -b 127.0.0.1 -p "$port" > theirs-L.txt
diff -u theirs-L.txt ours-L.txt || fail "-L output differs from qemu-nbd -L"
rc=0; "$NBD" -L -k "$T/none.sock" 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "^diskdm-nbd: .*connect" err.txt || fail "-L without a server: $(cat err.txt)"
nbdinfo "nbd://127.0.0.1:$port/wrong" > /dev/null 2>err.txt && fail "unknown export name accepted"
grep -q 'No such file or directory for export: wrong' err.txt || fail "unknown export: $(cat err.txt)"
qemu-img convert -f raw -O raw "$N" tcp.raw
cmp disk.raw tcp.raw || fail "qemu-img convert over nbd:// differs"
qemu-io -f raw -c 'write -P 0x33 4M 1M' -c 'write -z 1M 64k' -c 'discard 16M 64k' \
    -c 'flush' -c 'read -P 0x33 4M 1M' -c 'read -P 0 1M 64k' "$N" > io.txt \
    || fail "qemu-io read-write: $(cat io.txt)"
$PY - "$port" <<'PY' || fail "write errors"
import errno, sys, nbd
h = nbd.NBD()
h.set_export_name("disk0")
h.connect_tcp("127.0.0.1", sys.argv[1])
h.set_strict_mode(0)
size = h.get_size()
for what, call in (("pwrite", lambda: h.pwrite(b"X" * 1024, size - 512)),
                   ("zero", lambda: h.zero(4096, size)),
                   ("trim", lambda: h.trim(4096, size - 1))):
    try:
        call()
        raise SystemExit(what + " past the end succeeded")
    except nbd.Error as e:
        assert e.errnum == errno.ENOSPC, (what, e.errnum)
h.pwrite(b"Y" * 512, 8 << 20, nbd.CMD_FLAG_FUA)
h.zero(65536, 9 << 20, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA)
try:
    h.zero(65536, 10 << 20, nbd.CMD_FLAG_FAST_ZERO)
except nbd.Error as e:
    assert e.errnum == errno.ENOTSUP, e.errnum   # allowed by the spec
h.trim(65536, 11 << 20, nbd.CMD_FLAG_FUA)
assert h.pread(512, 8 << 20) == b"Y" * 512
assert h.pread(512, 9 << 20, nbd.CMD_FLAG_DF) == b"\0" * 512
h.shutdown()
PY
nbd_stop rw
qemu-io -f raw -c 'read -P 0x33 4M 1M' -c 'read -P 0 1M 64k' -c 'read -P 0x59 8M 512' rw.raw \
    > /dev/null || fail "writes did not reach the image"
ok "read-write export: qemu-io, FUA, NO_HOLE, ENOSPC past the end, --list, -L"

# --- offset window; the server exits after its last client without -t ---
nbd_start off -r -f raw -o 1M -k off.sock disk.raw
[ "$(nbdinfo --size 'nbd+unix:///?socket=off.sock')" = $((63 << 20)) ] || fail "-o size"
nbd_wait_exit off || fail "server without -t kept running after its client left"
nbd_start off2 -r -t -f raw -o 1M -k off.sock disk.raw
qemu-io -r -f raw -c 'read -P 0x55 0 1M' 'nbd+unix:///?socket=off.sock' >/dev/null \
    || fail "-o 1M does not start at 1M"
nbd_stop off2
ok "-o offset window; exit after the last client without -t"

# --- snapshot mode: writes succeed, image untouched ---------------------
if "$NBD" -s -f raw -k snap.sock --fork --pid-file="$T/snap.pid" disk.raw 2>snap.err; then
    at_exit "nbd_stop snap"
    qemu-io -f raw -c 'write -P 0x77 0 1M' -c 'read -P 0x77 0 1M' \
        'nbd+unix:///?socket=snap.sock' >/dev/null || fail "-s writes"
    nbd_stop snap
    ok "-s: writes go to the overlay"
else
    # the block layer refuses snapshot=on until its qcow2 overlay exists:
    # the refusal must be clear
    grep -q "diskdm-nbd: .*snapshot=on is not supported" snap.err \
        || fail "-s failed unclearly: $(cat snap.err)"
    ok "-s refused clearly: $(cat snap.err)"
fi
[ "$(md5sum < disk.raw)" = "$sum0" ] || fail "the image changed under -s"
ok "image unchanged after -s"

# --- usage errors ------------------------------------------------------
rc=0; "$NBD" 2>err.txt || rc=$?
[ $rc = 2 ] || fail "no FILE should be a usage error (rc=$rc)"
rc=0; "$NBD" -r -s disk.raw 2>err.txt || rc=$?
[ $rc = 2 ] || fail "-r -s should be a usage error (rc=$rc)"
grep -q -- "-s and -r cannot be used together" err.txt || fail "$(cat err.txt)"
"$NBD" -P 9 -f raw -k p.sock disk.raw 2>err.txt && fail "-P on a disk without partitions"
grep -q "no MBR partition table" err.txt || fail "-P: $(cat err.txt)"
"$NBD" -c /dev/nbd0 disk.raw 2>err.txt && fail "-c without a kernel nbd device"
grep -q "^diskdm-nbd: Failed to open /dev/nbd0: No such file or directory$" err.txt \
    || fail "-c: $(cat err.txt)"
"$NBD" -d /dev/nbd0 2>err.txt && fail "-d without a kernel nbd device"
grep -q "^diskdm-nbd: Failed to open /dev/nbd0: No such file or directory$" err.txt \
    || fail "-d: $(cat err.txt)"
: > notadev
"$NBD" -c "$T/notadev" disk.raw 2>err.txt && fail "-c on a regular file"
grep -q "^diskdm-nbd: Failed to set up NBD device $T/notadev: Inappropriate ioctl for device$" \
    err.txt || fail "-c notadev: $(cat err.txt)"
"$NBD" -f raw -k x.sock missing.raw 2>err.txt && fail "missing image accepted"
grep -q "^diskdm-nbd: .*missing.raw" err.txt || fail "missing: $(cat err.txt)"
ok "usage and open errors"
