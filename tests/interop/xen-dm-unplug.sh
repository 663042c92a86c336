#!/bin/sh
# Unplug and hotplug: block-detach (online=0 + state=5) detaches the drive
# and closes its image, block-attach brings one in while the guest runs,
# with its mode obeyed. Frontend/backend mismatches keep a disk out.
. "$SRCDIR/tests/interop/lib.sh"
. "$SRCDIR/tests/interop/_xen-lib.sh"
[ -x "$DISKDM" ] || fail "$DISKDM is not built"
start_xenstored
for x in a b c; do
    dd if=/dev/zero of="$T/$x.img" bs=1M count=1 status=none
done
BE=/local/domain/0/backend/vbd/1

cat > "$T/script" <<EOS
sh $XL create --domid 1 --disk $T/a.img,,hda,w --disk $T/b.img,,hdb,w --dm-log $T/dm.log -- -qtest unix:$T/q.sock
connect
ide-present hdb
ide-write hdb 0 0x11
sh $XL block-detach 1 hdb
ide-present hdb
fd-mode 1 $T/b.img
ide-present hda
sh $XL block-attach 1 $T/c.img,raw,hdb,r
ide-present hdb
ide-write hdb 0 0x22
fd-mode 1 $T/c.img
sh $XL block-attach 1 $T/b.img,raw,hdc,w
ide-write hdc 0 0x33
sh $XL block-detach 1 hdc
sh $XL block-detach 1 hdb
fd-mode 1 $T/b.img
fd-mode 1 $T/c.img
sh! $XL block-attach 1 $T/missing.img,raw,hdd,w
ide-present hdd
# forced removal: the toolstack deletes the keys without asking
sh xenstore-rm $BE/768
wait-closed 1 $T/a.img
ide-present hda
EOS
cat > "$T/want" <<EOS
hdb: hard disk present
write to hdb: OK
hdb: no drive
b.img: not open
hda: hard disk present
hdb: hard disk present
write to hdb: rejected by the disk (status 0x41, error ABRT)
c.img: open read-only
write to hdc: OK
b.img: not open
c.img: not open
hdd: no drive
hda: no drive
EOS
$GUEST --sock "$T/q.sock" < "$T/script" > "$T/out" 2> "$T/err" ||
    { cat "$T/out" "$T/err" "$T/dm.log"; fail "guest"; }
same_lines "$T/want" "$T/out"
grep -qx "diskdm-xl: block-attach hdd: Could not open '$T/missing.img': No such file or directory" "$T/err" || fail "block-attach error: $(cat "$T/err")"
xs_is $BE/5696/hotplug-status error
xs_absent $BE/832/mode
xs_absent $BE/768/hotplug-error
xs_absent $BE/768/state
xs_absent /local/domain/1/device/vbd/832/backend
$XL destroy 1
ok "unplug and hotplug"

# Mismatches: the frontend names another domain's backend; the backend
# points to another frontend; the devid does not match dev. None attached,
# and nothing is written into a backend that is not this disk's.
$XL create --domid 2 --no-start --disk "$T/a.img,,hda,w" --disk "$T/b.img,,hdb,w" \
    --disk "$T/c.img,,hdc,w"
$XL create --domid 3 --no-start --disk "$T/c.img,,hda,w"
xenstore-write /local/domain/2/device/vbd/768/backend /local/domain/0/backend/vbd/3/768
xenstore-write /local/domain/0/backend/vbd/2/832/frontend /local/domain/3/device/vbd/832
xenstore-write /local/domain/0/backend/vbd/2/5632/dev hdd
cat > "$T/script2" <<EOS
sh $DISKDM --domid 2 -qtest unix:$T/q2.sock > $T/dm2.log 2>&1 & xenstore-write /local/domain/2/image/device-model-pid \$!
wait-key /local/domain/0/device-model/2/state running
connect
ide-present hda
ide-present hdb
ide-present hdc
ide-present hdd
EOS
printf 'hda: no drive\nhdb: no drive\nhdc: no drive\nhdd: no drive\n' > "$T/want2"
$GUEST --sock "$T/q2.sock" < "$T/script2" > "$T/out2" || { cat "$T/out2" "$T/dm2.log"; fail "guest 2"; }
same_lines "$T/want2" "$T/out2"
grep -q "vbd 768: not attached: frontend /local/domain/2/device/vbd/768 names backend /local/domain/0/backend/vbd/3/768, expected /local/domain/0/backend/vbd/2/768 or /local/domain/0/backend/qdisk/2/768" "$T/dm2.log" ||
    fail "mismatch 1 not logged: $(cat "$T/dm2.log")"
grep -q "vbd 832: not attached: backend /local/domain/0/backend/vbd/2/832 points to frontend /local/domain/3/device/vbd/832, not /local/domain/2/device/vbd/832" "$T/dm2.log" ||
    fail "mismatch 2 not logged"
xs_is /local/domain/0/backend/vbd/2/5632/hotplug-error "vbd 5632 has dev hdd, whose device number is 5696"
xs_absent /local/domain/0/backend/vbd/3/768/hotplug-error
xs_absent /local/domain/0/backend/vbd/2/832/hotplug-error
$XL destroy 2
$XL destroy 3
ok "frontend/backend mismatches"
no_sanitizer_reports
