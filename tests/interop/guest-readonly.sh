#!/bin/sh
# Real guest on a read-only diskdm-vhost drive: VIRTIO_BLK_F_RO makes
# /sys/block/vda/ro 1, the guest's O_DIRECT write fails, the image keeps
# its bytes and mtime. With snapshot=on the guest's writes succeed and
# read back, and the image still keeps its bytes.
. "$SRCDIR/tests/interop/lib.sh"
. "$SRCDIR/tests/guest/lib.sh"
guest_prepare
img=$T/disk.img
qemu-img create -f raw "$img" 16M >/dev/null
qemu-io -f raw -c "write -P 0x33 0 2M" "$img" >/dev/null
touch -d 2020-01-01 "$img"
before=$(host_sum "$img")
mtime=$(stat -c %Y "$img")
vhost_start "file=$img,format=raw,readonly=on"
guest_start readonly
guest_end
[ "$(guest_val ro)" = 1 ] || fail "/sys/block/vda/ro is '$(guest_val ro)'"
[ "$(guest_val sum)" = "$before" ] || fail "guest read a different disk"
[ "$(guest_val write)" = failed ] || fail "write on a read-only disk: $(guest_val write)"
[ "$(guest_val sum-after)" = "$before" ] || fail "guest sees changed data"
[ "$(host_sum "$img")" = "$before" ] || fail "image changed"
[ "$(stat -c %Y "$img")" = "$mtime" ] || fail "image mtime changed"
ok "read-only drive: guest sees ro=1, writes fail, image unchanged"
vhost_stop
vhost_start "file=$img,format=raw,snapshot=on"
guest_start read-write
guest_end
[ "$(guest_val ro)" = 0 ] || fail "snapshot: ro=$(guest_val ro)"
[ "$(guest_val write)" = ok ] || fail "snapshot: write $(guest_val write)"
[ "$(guest_val readback)" = ok ] || fail "snapshot: readback $(guest_val readback)"
[ "$(guest_val sum-after)" != "$before" ] || fail "snapshot: the guest's write vanished"
[ "$(host_sum "$img")" = "$before" ] || fail "snapshot: image changed"
vhost_stop
ok "snapshot=on: guest writes land in the overlay, image unchanged"
