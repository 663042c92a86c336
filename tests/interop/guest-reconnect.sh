#!/bin/sh
# The front end is killed mid-I/O (SIGKILL while the guest writes in a
# loop): diskdm-vhost survives, and a new QEMU on the same socket gets a
# disk that reads back consistently, writes, and matches the host image.
. "$SRCDIR/tests/interop/lib.sh"
. "$SRCDIR/tests/guest/lib.sh"
guest_prepare
img=$T/disk.img
qemu-img create -f raw "$img" 16M >/dev/null
vhost_start "file=$img,format=raw"
guest_start loop
guest_wait looping
sleep 1
kill -9 $QEMU_PID; wait $QEMU_PID 2>/dev/null || true
exec 7>&-
kill -0 $VHOST_PID || fail "diskdm-vhost died with its front end"
# The back end takes the next front end once it has let the last go.
i=0
until [ "$(vhost_ctl info | sed -n 2p)" = "connected no" ]; do
    i=$((i + 1)); [ $i -lt 200 ] || fail "back end still holds the dead front end"
    sleep 0.05
done
grep -q "front end disconnected" "$T/vhost.log" || fail "disconnect not logged"
before=$(host_sum "$img")
guest_start read-write
guest_end
kill -0 $VHOST_PID || fail "diskdm-vhost died"
[ "$(guest_val sum)" = "$before" ] || fail "second guest reads a different disk"
[ "$(guest_val readback)" = ok ] || fail "second guest's write: $(guest_val readback)"
[ "$(guest_val sum-after)" = "$(host_sum "$img")" ] || fail "final sums differ"
vhost_stop
ok "front end killed mid-I/O; the back end serves the next one"
