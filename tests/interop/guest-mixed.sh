#!/bin/sh
# Real guest runs a mixed workload on diskdm-vhost (random-offset O_DIRECT
# writes of 4-64 KiB, each read back and compared); the final image equals
# what the guest reads as its disk (four parallel writers at the end keep
# several requests in flight), and a qcow2 image works the same.
. "$SRCDIR/tests/interop/lib.sh"
. "$SRCDIR/tests/guest/lib.sh"
guest_prepare
for fmt in raw qcow2; do
    img=$T/disk.$fmt
    qemu-img create -f $fmt "$img" 16M >/dev/null
    vhost_start "file=$img,format=$fmt"
    guest_start mixed
    guest_end
    vhost_stop
    [ "$(guest_val mismatches)" = 0 ] || fail "$fmt: $(guest_val mismatches) mismatches"
    qemu-img convert -f $fmt -O raw "$img" "$T/flat.raw"
    [ "$(guest_val sum-after)" = "$(host_sum "$T/flat.raw")" ] ||
        fail "$fmt: image differs from what the guest wrote"
    qemu-img check -q -f $fmt "$img" 2>/dev/null || [ $fmt = raw ] || fail "qcow2 check"
    ok "$fmt: mixed workload verified in the guest and on the host"
done
