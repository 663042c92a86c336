#!/bin/sh
# `make demo`: the project's story on one machine, no hypervisor needed.
# A private diskdm-xenstored, a domain with a read-write IDE disk (hda) and a
# read-only one (hdb, xenstore mode=r) created by diskdm-xl, a scripted guest
# writing to both through diskdm's qtest transport, then hdb switched to
# read-write while the guest runs. Everything is torn down at the end.
set -eu
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$SRCDIR/build}
case "$BUILD" in /*) ;; *) BUILD="$SRCDIR/$BUILD" ;; esac
XL=$BUILD/diskdm-xl
for b in diskdm diskdm-xl diskdm-xenstored; do
    [ -x "$BUILD/$b" ] || { echo "demo: $BUILD/$b is not built (run make)" >&2; exit 1; }
done
command -v python3 >/dev/null || { echo "demo: python3 is needed for the scripted guest" >&2; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/diskdm-demo.XXXXXX")
xsd_pid=
cleanup() {
    if [ -n "$xsd_pid" ]; then
        "$XL" destroy 1 >/dev/null 2>&1 || true
        kill "$xsd_pid" 2>/dev/null || true
        wait "$xsd_pid" 2>/dev/null || true
    fi
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

say() { printf '%s\n' "$*"; }
sum() { sha256sum "$1" | cut -c1-16; }

say "diskdm demo: a guest with a read-write and a read-only IDE disk, configured"
say "through xenstore the way a Xen toolstack does it."
say ""

"$BUILD/diskdm-xenstored" --socket "$T/xenstore.sock" --pidfile "$T/xenstored.pid" \
    --log "$T/xenstored.log" &
xsd_pid=$!
i=0
while [ ! -e "$T/xenstored.pid" ]; do
    i=$((i + 1)); [ $i -lt 200 ] || { echo "demo: diskdm-xenstored did not start" >&2; exit 1; }
    sleep 0.05
done
XENSTORED_PATH=$T/xenstore.sock
export XENSTORED_PATH
say "1. Started diskdm-xenstored (pid $xsd_pid) on $T/xenstore.sock."

# Two 4 MiB raw images; hdb is filled with a pattern so its checksum means something.
dd if=/dev/zero of="$T/hda.img" bs=1M count=4 status=none
dd if=/dev/zero bs=1M count=4 status=none | tr '\000' 'B' > "$T/hdb.img"
say "2. Made two 4 MiB images: hda.img (zeroes) and hdb.img (all 'B')."
before=$(sum "$T/hdb.img")

say "3. diskdm-xl create --domid 1 --disk '<dir>/hda.img,raw,hda,rw' --disk '<dir>/hdb.img,raw,hdb,r'"
say "   writes the libxl layout to xenstore and starts 'diskdm --domid 1':"
BE=/local/domain/0/backend/vbd/1
GUEST_SCRIPT=$(cat <<EOF
sh "$XL" create --domid 1 --disk "$T/hda.img,raw,hda,rw" --disk "$T/hdb.img,raw,hdb,r" --dm-log "$T/diskdm.log" -- -qtest "unix:$T/qtest.sock"
connect
sh echo "   $BE/768/mode = \$(xenstore-read $BE/768/mode)   (hda)"
sh echo "   $BE/832/mode = \$(xenstore-read $BE/832/mode)   (hdb)"
sh echo "   /local/domain/0/device-model/1/state = \$(xenstore-read /local/domain/0/device-model/1/state)"
echo
echo 4. The guest writes sector 0 of each disk (ATA WRITE SECTORS, 0xAA bytes):
ide-write hda 0 0xaa
ide-write hdb 0 0xaa
fd-mode 1 $T/hdb.img
sh echo "   hdb.img checksum before: $before"
sh echo "   hdb.img checksum after:  \$(sha256sum "$T/hdb.img" | cut -c1-16)   (unchanged: the image was never opened for writing)"
echo
echo 5. The toolstack makes hdb writable while the guest runs:
echo    diskdm-xl block-set-mode 1 hdb w   (xenstore mode r -> w; diskdm reopens the image read-write)
sh "$XL" block-set-mode 1 hdb w
fd-mode 1 $T/hdb.img
ide-write hdb 0 0xaa
ide-read hdb 0
sh echo "   hdb.img checksum now:    \$(sha256sum "$T/hdb.img" | cut -c1-16)   (changed: sector 0 holds the guest's data)"
echo
echo 6. And back: diskdm-xl block-set-mode 1 hdb r
sh "$XL" block-set-mode 1 hdb r
fd-mode 1 $T/hdb.img
ide-write hdb 1 0xaa
EOF
)
status=0
printf '%s\n' "$GUEST_SCRIPT" > "$T/guest.script"
python3 "$SRCDIR/scripts/xen-guest.py" --sock "$T/qtest.sock" < "$T/guest.script" \
    > "$T/guest.out" || status=1
sed -e 's/^\(write\|read\|hdb\.img:\|guest:\)/   \1/' "$T/guest.out"
if [ $status -ne 0 ]; then
    echo "demo: the guest script failed; diskdm's log:" >&2
    cat "$T/diskdm.log" >&2 2>/dev/null || true
fi

"$XL" destroy 1
kill "$xsd_pid"
wait "$xsd_pid" 2>/dev/null || true
xsd_pid=
say ""
say "7. diskdm-xl destroy 1 stopped diskdm and removed the domain's keys;"
say "   diskdm-xenstored is stopped. Nothing is left running."
exit $status
