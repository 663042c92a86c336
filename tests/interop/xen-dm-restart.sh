#!/bin/sh
# diskdm killed and restarted: the new process reads the same keys, attaches
# the same disks with the same modes and reports running again; the data
# written before the kill is there. Startup failures: state=error with the
# message, and diskdm-xl create reports it and destroys the domain.
. "$SRCDIR/tests/interop/lib.sh"
. "$SRCDIR/tests/interop/_xen-lib.sh"
[ -x "$DISKDM" ] || fail "$DISKDM is not built"
start_xenstored
dd if=/dev/zero of="$T/a.img" bs=1M count=1 status=none
dd if=/dev/zero of="$T/b.img" bs=1M count=1 status=none
DM=/local/domain/0/device-model/1

cat > "$T/script1" <<EOS
sh $XL create --domid 1 --disk $T/a.img,,hda,w --disk $T/b.img,,hdb,r --dm-log $T/dm.log -- -qtest unix:$T/q1.sock
connect
ide-write hda 3 0x77
ide-write hdb 3 0x77
sh kill -9 \$(xenstore-read /local/domain/1/image/device-model-pid)
wait-closed 1 $T/a.img
EOS
$GUEST --sock "$T/q1.sock" < "$T/script1" > "$T/out1" || { cat "$T/out1" "$T/dm.log"; fail "guest 1"; }
printf 'write to hda: OK\nwrite to hdb: rejected by the disk (status 0x41, error ABRT)\n' > "$T/want1"
same_lines "$T/want1" "$T/out1"

# A toolstack restarting the device model clears the stale state first.
xenstore-rm $DM/state
cat > "$T/script2" <<EOS
sh $DISKDM --domid 1 -qtest unix:$T/q2.sock > $T/dm2.log 2>&1 & xenstore-write /local/domain/1/image/device-model-pid \$!
wait-key $DM/state running
connect
ide-read hda 3
ide-write hdb 3 0x77
fd-mode 1 $T/b.img
ide-write hda 4 0x77
image-check $T/a.img 3 2 0x77
EOS
cat > "$T/want2" <<EOS
read from hda: OK, data 77 77 77 77 77 77 77 77
write to hdb: rejected by the disk (status 0x41, error ABRT)
b.img: open read-only
write to hda: OK
a.img: sectors 3-4 written
EOS
$GUEST --sock "$T/q2.sock" < "$T/script2" > "$T/out2" || { cat "$T/out2" "$T/dm2.log"; fail "guest 2"; }
same_lines "$T/want2" "$T/out2"
$XL destroy 1
ok "killed and restarted"

# Startup failure: an image that cannot be opened.
$XL create --domid 2 --no-start --disk "$T/missing.img,,hda,w"
set +e
$DISKDM --domid 2 -qtest stdio < /dev/null > "$T/dm3.out" 2> "$T/dm3.err"
rc=$?
set -e
[ $rc = 1 ] || fail "diskdm with a missing image exited $rc"
xs_is /local/domain/0/device-model/2/state error
msg=$(xenstore-read /local/domain/0/device-model/2/error)
case "$msg" in "domain 2: hda: "*missing.img*) ;; *) fail "error message: $msg" ;; esac
grep -q "^diskdm: .*domain 2: hda: .*missing.img" "$T/dm3.err" || fail "stderr: $(cat "$T/dm3.err")"
xs_is /local/domain/0/backend/vbd/2/768/hotplug-status error
xs_is /local/domain/0/backend/vbd/2/768/hotplug-error "${msg#domain 2: hda: }"
$XL destroy 2
expect_fail 1 "diskdm-xl: device model for domain 3 failed: $(echo "$msg" | sed 's/domain 2/domain 3/')" \
    $XL create --domid 3 --disk "$T/missing.img,,hda,w"
xs_absent /local/domain/3/domid
ok "startup failure reported"

# No xenstore daemon at all.
set +e
XENSTORED_PATH=$T/nothing.sock $DISKDM --domid 4 -qtest stdio < /dev/null 2> "$T/dm4.err"
rc=$?
set -e
[ $rc = 1 ] || fail "diskdm without xenstore exited $rc"
grep -q "cannot connect to xenstore at $T/nothing.sock" "$T/dm4.err" || fail "stderr: $(cat "$T/dm4.err")"
ok "no xenstore"
no_sanitizer_reports
