#!/bin/sh
# Guest disks on NBD exports through the whole stack (diskdm-xenstored,
# diskdm-xl, diskdm --domid, a scripted guest on the qtest socket): a
# backend whose `params` is an nbd+unix:// URI served by diskdm-nbd -r.
# mode=r attaches read-only and guest writes get ABRT; mode=w on the
# read-only export is refused with the block layer's reason in
# hotplug-error, or the domain not started (a xenstore disk is never
# degraded to read-only behind the toolstack's back); a server that stops
# answering (SIGSTOP; timeout=2 in the URI, well inside the 30 s the
# guest waits for a busy drive) and then goes away under a reading guest gives
# the guest an error status, and the device model keeps answering.
. "$SRCDIR/tests/interop/lib.sh"
. "$SRCDIR/tests/interop/_xen-lib.sh"
NBD=$BUILD/diskdm-nbd
[ -x "$DISKDM" ] || fail "$DISKDM is not built"
[ -x "$NBD" ] || fail "$NBD is not built"
start_xenstored
dd if=/dev/zero bs=64K count=16 status=none | tr '\000' 'n' > "$T/n.img"
sha256sum "$T/n.img" > "$T/sums"

"$NBD" -r -t -e 4 -f raw -k "$T/n.sock" --fork --pid-file "$T/n.pid" "$T/n.img"
nbd_pid=$(cat "$T/n.pid")
at_exit "kill $nbd_pid 2>/dev/null; kill -CONT $nbd_pid 2>/dev/null || true"   # a stopped server takes SIGTERM once continued
URI="nbd+unix:///?socket=$T/n.sock&timeout=2"

# A domain whose disk is mode=w on the read-only export does not start:
# the open fails with the block layer's reason.
expect_fail 1 "diskdm-xl: device model for domain 2 failed: domain 2: hda: NBD export is read-only" \
    $XL create --domid 2 --disk "format=raw,vdev=hda,access=w,target=$URI"
xs_absent /local/domain/2/domid

# Domain 1: mode=r on hda; a mode=w disk on the same export attached
# while it runs is refused with the reason in hotplug-error.
$XL create --domid 1 --no-start --disk "format=raw,vdev=hda,access=r,target=$URI"
BE=/local/domain/0/backend/vbd/1
xs_is $BE/768/params "$URI"
xs_is $BE/768/mode r
cat > "$T/script1" <<EOS
sh $DISKDM --domid 1 -qtest unix:$T/q1.sock > $T/dm1.log 2>&1 & xenstore-write /local/domain/1/image/device-model-pid \$!
wait-key /local/domain/0/device-model/1/state running
connect
ide-present hda
ide-read hda 0
ide-write hda 0 0x11
ide-read hda 0
sh! $XL block-attach 1 'format=raw,vdev=hdb,access=w,target=$URI' 2> $T/attach.err
ide-present hdb
ide-read hda 8
sh kill -STOP $nbd_pid
ide-read hda 16
ide-read hda 24
sh kill -CONT $nbd_pid
sh kill $nbd_pid
ide-read hda 32
ide-present hda
EOS
cat > "$T/want1" <<EOS
hda: hard disk present
read from hda: OK, data 6e 6e 6e 6e 6e 6e 6e 6e
write to hda: rejected by the disk (status 0x41, error ABRT)
read from hda: OK, data 6e 6e 6e 6e 6e 6e 6e 6e
hdb: no drive
read from hda: OK, data 6e 6e 6e 6e 6e 6e 6e 6e
read from hda: failed (status 0x41, error ABRT)
read from hda: failed (status 0x41, error ABRT)
read from hda: failed (status 0x41, error ABRT)
hda: hard disk present
EOS
$GUEST --sock "$T/q1.sock" < "$T/script1" > "$T/out1" || { cat "$T/out1" "$T/dm1.log"; fail "guest 1"; }
same_lines "$T/want1" "$T/out1"
xs_is $BE/768/hotplug-status connected
xs_is $BE/768/info 4
xs_is $BE/768/sectors 2048
xs_is $BE/832/hotplug-status error
xs_is $BE/832/hotplug-error "NBD export is read-only"
grep -qx "diskdm-xl: block-attach hdb: NBD export is read-only" "$T/attach.err" ||
    fail "block-attach error: $(cat "$T/attach.err")"
ok "mode=r attaches read-only, mode=w on a read-only export is refused"
grep -q "NBD server nbd+unix://?socket=$T/n.sock did not answer within 2 s" "$T/dm1.log" ||
    fail "the timeout was not logged: $(cat "$T/dm1.log")"
xs_is /local/domain/0/device-model/1/state running
$XL destroy 1
sha256sum -c --quiet "$T/sums" || fail "the exported image changed"
ok "server stopped, then gone: the guest gets an error status, the device model answers"
no_sanitizer_reports
