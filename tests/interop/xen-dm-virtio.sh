#!/bin/sh
# virtio-blk disks from xenstore: vd* names and specification=virtio put a
# disk on virtio-blk (PCI slots from 00:02.0, in devid order); mode=r offers
# VIRTIO_BLK_F_RO and fails OUT requests with VIRTIO_BLK_S_IOERR, the image
# untouched; a live mode change re-evaluates the feature and the next
# request succeeds or fails accordingly.
. "$SRCDIR/tests/interop/lib.sh"
. "$SRCDIR/tests/interop/_xen-lib.sh"
[ -x "$DISKDM" ] || fail "$DISKDM is not built"
start_xenstored
for x in a b c; do
    dd if=/dev/zero of="$T/$x.img" bs=1M count=1 status=none
done
# devids: xvdc 51744 (slot 2), vda 65024 (slot 3), vdb 65040 (slot 4)
cat > "$T/script" <<EOS
sh $XL create --domid 1 --disk $T/a.img,raw,vda,r --disk $T/b.img,raw,vdb,w --disk $T/c.img,raw,xvdc,r,specification=virtio --dm-log $T/dm.log -- -qtest unix:$T/q.sock
connect
virtio-ro 2
virtio-ro 3
virtio-ro 4
virtio-ro 5
virtio-write 2 0 0x11
virtio-write 3 0 0x11
virtio-write 4 0 0x11
fd-mode 1 $T/a.img
fd-mode 1 $T/c.img
sh $XL block-set-mode 1 vda w
virtio-ro 3
virtio-write 3 1 0x22
fd-mode 1 $T/a.img
sh $XL block-set-mode 1 vda r
virtio-ro 3
virtio-write 3 2 0x22
image-check $T/a.img 0 3 0x22
image-check $T/b.img 0 1 0x11
image-check $T/c.img 0 1 0x11
EOS
cat > "$T/want" <<EOS
virtio slot 2: read-only feature offered
virtio slot 3: read-only feature offered
virtio slot 4: read-only feature not offered
virtio slot 5: no device
virtio write to slot 2: I/O error
virtio write to slot 3: I/O error
virtio write to slot 4: OK
a.img: open read-only
c.img: open read-only
virtio slot 3: read-only feature not offered
virtio write to slot 3: OK
a.img: open read-write
virtio slot 3: read-only feature offered
virtio write to slot 3: I/O error
a.img: sector 0 not written, sector 1 written, sector 2 not written
b.img: sector 0 written
c.img: sector 0 not written
EOS
$GUEST --sock "$T/q.sock" < "$T/script" > "$T/out" || { cat "$T/out" "$T/dm.log"; fail "guest"; }
same_lines "$T/want" "$T/out"
xs_is /local/domain/0/backend/vbd/1/65024/info 4
$XL destroy 1

# A virtio CD-ROM does not exist: refused with the reason.
$XL create --domid 2 --no-start --disk "$T/a.img,raw,vda,r"
xenstore-write /local/domain/0/backend/vbd/2/65024/device-type cdrom
$DISKDM --domid 2 > "$T/dm2.log" 2>&1 &
xenstore-write /local/domain/2/image/device-model-pid $!
i=0
until [ "$(xenstore-read /local/domain/0/device-model/2/state 2>/dev/null)" = running ]; do
    i=$((i + 1)); [ $i -lt 600 ] || fail "domain 2 did not start: $(cat "$T/dm2.log")"
    sleep 0.05
done
xs_is /local/domain/0/backend/vbd/2/65024/hotplug-error "vda: a CD-ROM cannot be a virtio disk"
$XL destroy 2
no_sanitizer_reports
ok "virtio-blk from xenstore"
