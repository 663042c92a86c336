#!/bin/sh
# Every backend `mode` value through the whole stack (diskdm-xenstored,
# diskdm-xl, diskdm --domid, a scripted guest on the qtest socket): w and w!
# are writable, r is read-only with the image held O_RDONLY, and a missing
# or unrecognised mode leaves the disk out (never writable), with the reason
# written to the backend's hotplug-error.
. "$SRCDIR/tests/interop/lib.sh"
. "$SRCDIR/tests/interop/_xen-lib.sh"
[ -x "$DISKDM" ] || fail "$DISKDM is not built"
start_xenstored
for x in a b c d e f g; do
    dd if=/dev/zero bs=64K count=16 status=none | tr '\000' "$x" > "$T/$x.img"
done
sha256sum "$T"/?.img > "$T/sums"

# Domain 1: w, r, rw (garbage: blkback would call it writable), missing.
$XL create --domid 1 --no-start --disk "$T/a.img,,hda,w" --disk "$T/b.img,,hdb,r" \
    --disk "$T/c.img,,hdc,w" --disk "$T/d.img,,hdd,w"
BE=/local/domain/0/backend/vbd/1
xenstore-write $BE/5632/mode rw
xenstore-rm $BE/5696/mode

cat > "$T/script1" <<EOS
sh $DISKDM --domid 1 -qtest unix:$T/q1.sock > $T/dm1.log 2>&1 & xenstore-write /local/domain/1/image/device-model-pid \$!
wait-key /local/domain/0/device-model/1/state running
connect
ide-present hda
ide-present hdb
ide-present hdc
ide-present hdd
ide-write hda 0 0x11
ide-write hdb 0 0x11
ide-write hdc 0 0x11
ide-write hdd 0 0x11
fd-mode 1 $T/a.img
fd-mode 1 $T/b.img
fd-mode 1 $T/c.img
fd-mode 1 $T/d.img
EOS
cat > "$T/want1" <<EOS
hda: hard disk present
hdb: hard disk present
hdc: no drive
hdd: no drive
write to hda: OK
write to hdb: rejected by the disk (status 0x41, error ABRT)
write to hdc: no drive answers
write to hdd: no drive answers
a.img: open read-write
b.img: open read-only
c.img: not open
d.img: not open
EOS
$GUEST --sock "$T/q1.sock" < "$T/script1" > "$T/out1" || { cat "$T/out1" "$T/dm1.log"; fail "guest 1"; }
same_lines "$T/want1" "$T/out1"
xs_is $BE/768/hotplug-status connected
xs_is $BE/832/hotplug-status connected
xs_is $BE/5632/hotplug-status error
xs_is $BE/5632/hotplug-error "unrecognised mode 'rw' (expected r, w or w!); a disk is never writable by default"
xs_is $BE/5696/hotplug-status error
xs_is $BE/5696/hotplug-error "backend has no 'mode' key; a disk is never writable by default"
grep -q "vbd 5632: not attached: unrecognised mode 'rw'" "$T/dm1.log" || fail "reason not logged"
grep -q "vbd 5696: not attached: backend has no 'mode' key" "$T/dm1.log" || fail "reason not logged"
xs_is /local/domain/0/device-model/1/state running
ok "domain 1: w, r, garbage, missing"

# Domain 2: w! shares a.img with domain 1's writer (the lock is skipped);
# "" and "W" are refused; r on an image another domain also reads.
$XL create --domid 2 --no-start --disk "$T/a.img,,hda,w" --disk "$T/e.img,,hdb,w" \
    --disk "$T/f.img,,hdc,w" --disk "$T/b.img,,hdd,r"
BE2=/local/domain/0/backend/vbd/2
xenstore-write $BE2/768/mode 'w!'
xenstore-write $BE2/832/mode ''
xenstore-write $BE2/5632/mode W
cat > "$T/script2" <<EOS
sh $DISKDM --domid 2 -qtest unix:$T/q2.sock > $T/dm2.log 2>&1 & xenstore-write /local/domain/2/image/device-model-pid \$!
wait-key /local/domain/0/device-model/2/state running
connect
ide-write hda 8 0x22
ide-write hdb 0 0x22
ide-present hdc
ide-write hdd 0 0x22
fd-mode 2 $T/a.img
fd-mode 2 $T/b.img
EOS
cat > "$T/want2" <<EOS
write to hda: OK
write to hdb: no drive answers
hdc: no drive
write to hdd: rejected by the disk (status 0x41, error ABRT)
a.img: open read-write
b.img: open read-only
EOS
$GUEST --sock "$T/q2.sock" < "$T/script2" > "$T/out2" || { cat "$T/out2" "$T/dm2.log"; fail "guest 2"; }
same_lines "$T/want2" "$T/out2"
xs_is $BE2/832/hotplug-error "unrecognised mode '' (expected r, w or w!); a disk is never writable by default"
xs_is $BE2/5632/hotplug-error "unrecognised mode 'W' (expected r, w or w!); a disk is never writable by default"
ok "domain 2: w!, empty, W, r"

# Locking: a second writer is refused unless its mode is w!, and the
# refusal fails the domain's start with the block layer's message.
dd if=/dev/zero of="$T/lock.img" bs=1M count=1 status=none
$XL create --domid 3 --disk "$T/lock.img,,hda,w" --dm-log "$T/dm3.log"
expect_fail 1 "diskdm-xl: device model for domain 4 failed: domain 4: hda: Failed to get \"write\" lock
Is another process using the image [$T/lock.img]?" $XL create --domid 4 --disk "$T/lock.img,,hda,w"
xs_absent /local/domain/4/domid
$XL create --domid 5 --no-start --disk "$T/lock.img,,hda,w"
xenstore-write /local/domain/0/backend/vbd/5/768/mode 'w!'
$DISKDM --domid 5 > "$T/dm5.log" 2>&1 &
xenstore-write /local/domain/5/image/device-model-pid $!
i=0
until [ "$(xenstore-read /local/domain/0/device-model/5/state 2>/dev/null)" = running ]; do
    i=$((i + 1)); [ $i -lt 600 ] || fail "domain 5 did not start: $(cat "$T/dm5.log")"
    sleep 0.05
done
xs_is /local/domain/0/backend/vbd/5/768/hotplug-status connected
$XL destroy 3
$XL destroy 5
ok "w! skips the lock another writer holds"

# No image behind a refused or read-only disk changed.
grep -e '/[bcdef]\.img$' "$T/sums" | sha256sum -c --quiet - || fail "a read-only or refused image changed"
$XL destroy 1
$XL destroy 2
ok "images unchanged"
no_sanitizer_reports
