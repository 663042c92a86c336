#!/bin/sh
# Dynamic read-only: diskdm-xl block-set-mode flips a live disk's xenstore
# `mode`; diskdm flushes and reopens the image (O_RDONLY for r, O_RDWR for
# w) and the guest's next write fails or succeeds. A mode change in the
# middle of a multi-sector write: the sectors done before it are in the
# image, the guest is told exactly where it stopped, nothing is lost
# silently. A mode that turns bad on a live disk makes it read-only.
. "$SRCDIR/tests/interop/lib.sh"
. "$SRCDIR/tests/interop/_xen-lib.sh"
[ -x "$DISKDM" ] || fail "$DISKDM is not built"
start_xenstored
dd if=/dev/zero of="$T/a.img" bs=1M count=2 status=none
dd if=/dev/zero of="$T/b.img" bs=1M count=2 status=none
BE=/local/domain/0/backend/vbd/1

cat > "$T/script" <<EOS
sh $XL create --domid 1 --disk $T/a.img,,hda,w --disk $T/b.img,,hdb,r --dm-log $T/dm.log -- -qtest unix:$T/q.sock
connect
ide-write hdb 0 0x11
fd-mode 1 $T/b.img
sh $XL block-set-mode 1 hdb w
fd-mode 1 $T/b.img
ide-write hdb 0 0x22
sh $XL block-set-mode 1 hdb r
fd-mode 1 $T/b.img
ide-write hdb 1 0x33
image-check $T/b.img 0 2 0x22
# w -> r between the sectors of one command
ide-write-mid hda 16 4 0x44 2 $XL block-set-mode 1 hda r
image-check $T/a.img 16 4 0x44
fd-mode 1 $T/a.img
# r -> w once a write command is issued: refused up front, nothing written
ide-write-mid hda 32 4 0x55 0 $XL block-set-mode 1 hda w
image-check $T/a.img 32 4 0x55
# w -> r while a DMA write is in flight: it completes under the old mode
ide-dma-write hda 64 8 0x77 $XL block-set-mode 1 hda r
image-check $T/a.img 64 8 0x77
ide-write hda 72 0x77
sh $XL block-set-mode 1 hda w
# a mode that turns bad makes the disk read-only
sh xenstore-write $BE/768/mode maybe
wait-key $BE/768/hotplug-error "unrecognised mode 'maybe' (expected r, w or w!); a disk is never writable by default"
ide-write hda 48 0x66
fd-mode 1 $T/a.img
sh xenstore-rm $BE/768/hotplug-error
sh $XL block-set-mode 1 hda w
ide-write hda 48 0x66
# the same mode again is acknowledged and changes nothing
sh $XL block-set-mode 1 hda w
ide-write hda 49 0x66
image-check $T/a.img 48 2 0x66
# r -> w refused while another domain reads the image: the disk stays
# read-only and the reason is reported
sh $XL create --domid 2 --disk $T/b.img,,hda,r --dm-log $T/dm2.log
sh! $XL block-set-mode 1 hdb w 2> $T/setmode.err
sh grep -q "^diskdm-xl: block-set-mode hdb w: mode change to w failed: Failed to get \"write\" lock" $T/setmode.err
fd-mode 1 $T/b.img
ide-write hdb 2 0x88
sh $XL destroy 2
sh $XL block-set-mode 1 hdb w
ide-write hdb 2 0x88
EOS
cat > "$T/want" <<EOS
write to hdb: rejected by the disk (status 0x41, error ABRT)
b.img: open read-only
b.img: open read-write
write to hdb: OK
b.img: open read-only
write to hdb: rejected by the disk (status 0x41, error ABRT)
b.img: sector 0 written, sector 1 not written
write of 4 sectors to hda: 2 done, then rejected (status 0x41, error ABRT)
a.img: sectors 16-17 written, sectors 18-19 not written
a.img: open read-only
write of 4 sectors to hda: 0 done, then rejected (status 0x41, error ABRT)
a.img: sectors 32-35 not written
DMA write of 8 sectors to hda, mode changed in flight: OK
a.img: sectors 64-71 written
write to hda: rejected by the disk (status 0x41, error ABRT)
write to hda: rejected by the disk (status 0x41, error ABRT)
a.img: open read-only
write to hda: OK
write to hda: OK
a.img: sectors 48-49 written
b.img: open read-only
write to hdb: rejected by the disk (status 0x41, error ABRT)
write to hdb: OK
EOS
$GUEST --sock "$T/q.sock" < "$T/script" > "$T/out" || { cat "$T/out" "$T/dm.log"; fail "guest"; }
same_lines "$T/want" "$T/out"
xs_is $BE/768/info 0
xs_is $BE/832/info 0
$XL destroy 1
ok "dynamic mode changes"
no_sanitizer_reports
