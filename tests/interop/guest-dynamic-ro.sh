#!/bin/sh
# Dynamic read-only under a running guest: a write succeeds; the control
# socket flips the drive to read-only; the next write fails with an I/O
# error and the image is unchanged; flipping back lets writes succeed.
. "$SRCDIR/tests/interop/lib.sh"
. "$SRCDIR/tests/guest/lib.sh"
guest_prepare
img=$T/disk.img
qemu-img create -f raw "$img" 16M >/dev/null
vhost_start "file=$img,format=raw"
guest_start flip
guest_wait "waiting ro"
[ "$(guest_val write1)" = ok ] || fail "first write: $(guest_val write1)"
ro_sum=$(host_sum "$img")
[ "$(vhost_ctl "readonly on")" = ok ] || fail "readonly on refused"
[ "$(vhost_ctl info | head -1)" = "readonly on" ] || fail "info does not say read-only"
guest_send go
guest_wait "waiting rw"
case "$(guest_val write2)" in
failed*"Input/output error"*) ;;
*) fail "write on the flipped drive: '$(guest_val write2)'" ;;
esac
[ "$(host_sum "$img")" = "$ro_sum" ] || fail "image changed while read-only"
[ "$(guest_val sum-ro)" = "$ro_sum" ] || fail "guest saw data the image lacks"
[ "$(vhost_ctl "readonly off")" = ok ] || fail "readonly off refused"
guest_send go
guest_end
[ "$(guest_val write3)" = ok ] || fail "write after flipping back: $(guest_val write3)"
qemu-io -r -U -f raw -c "read -P 0x41 0 64k" -c "read -P 0 64k 64k" \
    -c "read -P 0x43 128k 64k" "$img" | grep -q "verification failed" &&
    fail "image content wrong"
[ "$(guest_val sum-after)" = "$(host_sum "$img")" ] || fail "final sums differ"
[ "$(vhost_ctl "readonly maybe")" = "error: unknown command 'readonly maybe'" ] ||
    fail "bad control command accepted"
vhost_stop
ok "rw -> ro (writes EIO, image unchanged) -> rw (writes succeed)"
