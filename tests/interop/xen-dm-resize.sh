#!/bin/sh
# diskdm-xl block-resize: a live disk's image grows (raw and qcow2, IDE and
# virtio), the backend publishes the new `sectors` as blkback does; a
# read-only disk (mode=r, from the start or after block-set-mode r), a
# CD-ROM, a shrink and bad sizes are refused with exact errors, and a
# read-only image never changes, also when the request key is written by
# hand past diskdm-xl's own check.
. "$SRCDIR/tests/interop/lib.sh"
. "$SRCDIR/tests/interop/_xen-lib.sh"
need qemu-img
[ -x "$DISKDM" ] || fail "$DISKDM is not built"
start_xenstored
truncate -s 1M "$T/a.img" "$T/r.img"
qemu-img create -q -f qcow2 "$T/v.qcow2" 16M
dd if=/dev/zero bs=64K count=16 status=none | tr '\000' 'X' > "$T/cd.iso"
sumr=$(sha256sum < "$T/r.img")
$XL create --domid 1 --disk "$T/a.img,raw,hda,w" --disk "$T/r.img,raw,hdb,r" \
    --disk "$T/cd.iso,,hdc,cdrom" --disk "$T/v.qcow2,qcow2,xvdb,w,specification=virtio" \
    --dm-log "$T/dm.log"
be() { xenstore-read "/local/domain/1/device/vbd/$1/backend"; }
# resize_by_hand BACKEND BYTES: the request key without diskdm-xl; wait
# (bounded, as a safety net only) until the device model took it away.
resize_by_hand() {
    xenstore-write "$1/resize" "$2"
    _i=0
    while xenstore-read "$1/resize" > /dev/null 2>&1; do
        _i=$((_i + 1)); [ $_i -lt 200 ] || fail "resize request not answered"; sleep 0.05
    done
}
A=$(be 768) R=$(be 832) V=$(be 51728)
xs_is "$A/sectors" 2048

$XL block-resize 1 hda 2M
xs_is "$A/sectors" 4096
xs_is "$A/state" 4
[ "$(stat -c %s "$T/a.img")" = 2097152 ] || fail "a.img is $(stat -c %s "$T/a.img") bytes"
xs_absent "$A/resize"
$XL block-resize 1 hda 2M       # the same size again: nothing to do
xs_is "$A/sectors" 4096
ok "raw IDE disk grown to 2 MiB, sectors published"

$XL block-resize 1 xvdb 64M
xs_is "$V/sectors" 131072
vsize=$(qemu-img info -U --output=json "$T/v.qcow2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
[ "$vsize" = 67108864 ] || fail "v.qcow2 virtual size is $vsize"
ok "qcow2 virtio disk grown to 64 MiB"

expect_fail 1 "diskdm-xl: block-resize hdb: the disk is read-only (mode=r); its image is never changed" \
    $XL block-resize 1 hdb 2M
expect_fail 1 "diskdm-xl: block-resize hdc: a CD-ROM cannot be resized" \
    $XL block-resize 1 hdc 2M
expect_fail 1 "diskdm-xl: block-resize hda: resize: Shrinking a disk in use is not supported (1048576 bytes is less than the current 2097152)" \
    $XL block-resize 1 hda 1M
xs_is "$A/sectors" 4096
expect_fail 2 "diskdm-xl: block-resize: invalid size 'lots'
Try 'diskdm-xl --help'." $XL block-resize 1 hda lots
expect_fail 2 "diskdm-xl: block-resize: size 1000 is not a multiple of 512 bytes
Try 'diskdm-xl --help'." $XL block-resize 1 hda 1000
expect_fail 2 "diskdm-xl: block-resize: expected a domain id, a device and a size
Try 'diskdm-xl --help'." $XL block-resize 1 hda
expect_fail 1 "diskdm-xl: device hdd is not attached to domain 1" \
    $XL block-resize 1 hdd 2M
ok "read-only, CD-ROM, shrink and bad sizes refused"

# Past diskdm-xl's check: the device model refuses too.
resize_by_hand "$R" 2097152
xs_is "$R/hotplug-error" "resize: the disk is read-only (mode=r); its image is never changed"
xs_is "$R/sectors" 2048
# A disk made read-only while the guest runs is refused the same way.
$XL block-set-mode 1 hda r
expect_fail 1 "diskdm-xl: block-resize hda: the disk is read-only (mode=r); its image is never changed" \
    $XL block-resize 1 hda 3M
resize_by_hand "$A" 3145728
xs_is "$A/hotplug-error" "resize: the disk is read-only (mode=r); its image is never changed"
[ "$(stat -c %s "$T/a.img")" = 2097152 ] || fail "a.img changed size"
[ "$(sha256sum < "$T/r.img")" = "$sumr" ] || fail "r.img changed"
[ "$(stat -c %s "$T/r.img")" = 1048576 ] || fail "r.img changed size"
$XL block-set-mode 1 hda w
$XL block-resize 1 hda 3M
xs_is "$A/sectors" 6144
xs_absent "$A/hotplug-error"
ok "the device model refuses a read-only disk's resize; the image is unchanged"
$XL destroy 1
no_sanitizer_reports
