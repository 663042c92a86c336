#!/bin/sh
# diskdm-img create/info against qemu-img and qemu-io: images we create are
# what qemu-img expects, our info agrees with qemu-img info (text and JSON),
# bad input gets its exact message, a locked image is refused (and -U
# reads it), and an unprivileged user reads a 0444 image.
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io python3 setpriv
IMG="$BUILD/diskdm-img"
[ -x "$IMG" ] || fail "$IMG not built"
cd "$T"

# --- create -----------------------------------------------------------
out=$("$IMG" create -f raw a.raw 64M)
[ "$out" = "Formatting 'a.raw', fmt=raw size=67108864" ] || fail "create said: $out"
qemu-img info --output=json a.raw > q.json
python3 - <<'PY' || fail "qemu-img sees our image differently"
import json
q = json.load(open("q.json"))
assert q["format"] == "raw", q
assert q["virtual-size"] == 64 * 1024 * 1024, q
PY
out=$("$IMG" create a2.raw 1.5G)
[ "$out" = "Formatting 'a2.raw', fmt=raw size=1610612736" ] || fail "create 1.5G said: $out"
[ "$(stat -c %s a2.raw)" = 1610612736 ] || fail "a2.raw has the wrong size"
ok create

# --- info agrees with qemu-img ------------------------------------------
qemu-img create -q -f raw b.raw 1G
qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0x11 512M 64k' b.raw >/dev/null
for f in a.raw b.raw; do
    "$IMG" info -f raw "$f" > ours.txt
    qemu-img info -f raw "$f" > theirs.txt
    diff -u theirs.txt ours.txt || fail "info text differs for $f"
    "$IMG" info --output=json -f raw "$f" > ours.json
    qemu-img info --output=json -f raw "$f" > theirs.json
    python3 - <<'PY' || fail "info JSON differs for $f"
import json
o = json.load(open("ours.json")); t = json.load(open("theirs.json"))
for k in ("filename", "format", "virtual-size", "actual-size", "dirty-flag"):
    assert o.get(k) == t.get(k), (k, o.get(k), t.get(k))
assert set(o) == set(t), (sorted(o), sorted(t))
PY
    # For raw images the text is the same too, layout included.
    diff -u theirs.json ours.json || fail "info JSON text differs for $f"
done
# Probed format (no -f) is the same answer for a raw image.
"$IMG" info b.raw > ours.txt
qemu-img info b.raw > theirs.txt 2>/dev/null
diff -u theirs.txt ours.txt || fail "probed info differs"
ok info

# --- bad input ------------------------------------------------------------
expect_err() {   # expected-rc (or nz: any failure) expected-stderr command...
    rc=$1; want=$2; shift 2
    set +e
    "$@" > out.txt 2> err.txt
    got=$?
    set -e
    if [ "$rc" = nz ]; then
        [ "$got" != 0 ] || fail "$*: succeeded"
    else
        [ "$got" = "$rc" ] || fail "$*: exit $got, want $rc ($(cat err.txt))"
    fi
    printf '%s\n' "$want" > want.txt
    diff -u want.txt err.txt || fail "$*: wrong message"
}
expect_err 1 "diskdm-img: Could not open 'missing.raw': Could not open 'missing.raw': No such file or directory" \
    "$IMG" info missing.raw
mkdir adir
expect_err 1 "diskdm-img: Could not open 'adir': 'file' driver requires 'adir' to be a regular file" \
    "$IMG" info adir
expect_err 1 "diskdm-img: Could not open 'a.raw': Unknown driver 'vhdx'" \
    "$IMG" info -f vhdx a.raw
expect_err 1 "diskdm-img: Invalid image size specified. You may use k, M, G, T, P or E suffixes for
diskdm-img: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes." \
    "$IMG" create -f raw c.raw 10X
expect_err 1 "diskdm-img: Unknown file format 'vhdx'" "$IMG" create -f vhdx c.raw 1M
expect_err 1 "diskdm-img: c.raw: Invalid parameter 'cluster_size'" "$IMG" create -f raw -o cluster_size=4k c.raw 1M
# Usage errors: the exit code is the tool's (qemu-img says 1), the words are fixed.
expect_err nz "diskdm-img: --output must be used with human or json as argument.
Try 'diskdm-img --help' for more information" "$IMG" info --output=xml a.raw
expect_err nz "diskdm-img: Command not found: frobnicate
Try 'diskdm-img --help' for more information" "$IMG" frobnicate
[ ! -e c.raw ] || fail "a failed create left c.raw behind"
ok bad-input

# --- locks: qemu-io holds the image for writing -------------------------------
qemu-io -f raw -c 'sleep 20000' b.raw &
qpid=$!
at_exit "kill $qpid"
ino=$(stat -c %i b.raw)
i=0
until grep -q "OFDLCK.*:$ino 100 " /proc/locks; do
    i=$((i + 1)); [ $i -lt 500 ] || fail "qemu-io never locked b.raw"
    sleep 0.01
done
expect_err 1 "diskdm-img: Could not open 'b.raw': Failed to get shared \"write\" lock
Is another process using the image [b.raw]?" "$IMG" info -f raw b.raw
"$IMG" info -U -f raw b.raw > ours.txt || fail "info -U refused"
grep -q '^virtual size: 1 GiB (1073741824 bytes)$' ours.txt || fail "info -U output"
kill $qpid; wait $qpid 2>/dev/null || true
"$IMG" info -f raw b.raw > /dev/null || fail "info after qemu-io exited"
ok locks

# --- unprivileged user, 0444 image -------------------------------------------
cp b.raw ro.raw
chmod 0444 ro.raw
sum=$(md5sum < ro.raw)
unpriv() { if [ "$(id -u)" = 0 ]; then as_nobody "$@"; else "$@"; fi; }
unpriv "$IMG" info -f raw ro.raw > ours.txt || fail "nobody cannot read a 0444 image"
grep -q '^file format: raw$' ours.txt || fail "nobody info output"
[ "$(md5sum < ro.raw)" = "$sum" ] || fail "ro.raw changed"
ok nobody
