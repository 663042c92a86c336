#!/bin/sh
# diskdm-vhost --domid: the disk comes from the domain's xenstore vbd
# (written by diskdm-xl create --no-start), and `mode` flips made with
# diskdm-xl block-set-mode while a real guest runs take effect: under r
# the guest's writes fail with an I/O error and the image is unchanged,
# back under w they succeed. Also: a missing vbd, a domain without disks.
. "$SRCDIR/tests/interop/lib.sh"
. "$SRCDIR/tests/interop/_xen-lib.sh"
. "$SRCDIR/tests/guest/lib.sh"
guest_prepare
start_xenstored
img=$T/disk.img
qemu-img create -f raw "$img" 16M >/dev/null
$XL create --domid 3 --no-start --disk "$img,raw,vda,w" >/dev/null
expect_fail 1 "diskdm-vhost: domain 3 has no disk vdb" \
    "$VHOST" --socket "$T/vu.sock" --domid 3 --vdev vdb
expect_fail 1 "diskdm-vhost: domain 4 has no disk" \
    "$VHOST" --socket "$T/vu.sock" --domid 4

"$VHOST" --socket "$T/vu.sock" --domid 3 --vdev vda -v 2>>"$T/vhost.log" &
VHOST_PID=$!
at_exit "kill $VHOST_PID; wait $VHOST_PID"
wait_file "$T/vu.sock"
guest_start flip
guest_wait "waiting ro"
[ "$(guest_val write1)" = ok ] || fail "first write: $(guest_val write1)"
ro_sum=$(host_sum "$img")
$XL block-set-mode 3 vda r >/dev/null
i=0; until grep -q "vda is now read-only" "$T/vhost.log"; do
    i=$((i + 1)); [ $i -lt 200 ] || fail "mode r not followed"; sleep 0.05; done
guest_send go
guest_wait "waiting rw"
case "$(guest_val write2)" in
failed*"Input/output error"*) ;;
*) fail "write under mode r: '$(guest_val write2)'" ;;
esac
[ "$(host_sum "$img")" = "$ro_sum" ] || fail "image changed under mode r"
$XL block-set-mode 3 vda w >/dev/null
i=0; until grep -q "vda is now read-write" "$T/vhost.log"; do
    i=$((i + 1)); [ $i -lt 200 ] || fail "mode w not followed"; sleep 0.05; done
guest_send go
guest_end
[ "$(guest_val write3)" = ok ] || fail "write under mode w: $(guest_val write3)"
[ "$(guest_val sum-after)" = "$(host_sum "$img")" ] || fail "final sums differ"
vhost_stop
ok "xenstore mode w -> r -> w followed under a running guest"
