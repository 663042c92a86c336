#!/bin/sh
# Real guest on diskdm-vhost: reads the whole disk (checksum equals the
# host's), writes a pattern with O_DIRECT, flushes, reads it back; the host
# sees the guest's data in the image afterwards.
. "$SRCDIR/tests/interop/lib.sh"
. "$SRCDIR/tests/guest/lib.sh"
guest_prepare
img=$T/disk.img
qemu-img create -f raw "$img" 32M >/dev/null
qemu-io -f raw -c "write -P 0x5a 0 1M" -c "write -P 0xa5 8M 3M" "$img" >/dev/null
before=$(host_sum "$img")
vhost_start "file=$img,format=raw"
guest_start read-write
guest_end
[ "$(guest_val size)" = 65536 ] || fail "size $(guest_val size)"
[ "$(guest_val ro)" = 0 ] || fail "ro $(guest_val ro)"
[ "$(guest_val sum)" = "$before" ] || fail "guest sum $(guest_val sum) != host $before"
[ "$(guest_val write)" = ok ] || fail "write: $(guest_val write)"
[ "$(guest_val readback)" = ok ] || fail "readback: $(guest_val readback)"
qemu-io -r -U -f raw -c "read -P 0xfc 1M 64k" "$img" | grep -q "^read 65536" ||
    fail "pattern not in the image"
qemu-io -r -U -f raw -c "read -P 0x5a 0 1M" -c "read -P 0 1088k 6M" "$img" |
    grep -q "Pattern verification failed" && fail "image damaged around the write"
[ "$(guest_val sum-after)" = "$(host_sum "$img")" ] || fail "final sums differ"
vhost_stop
ok "guest read, wrote, flushed; the host sees it"
