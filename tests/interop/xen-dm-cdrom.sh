#!/bin/sh
# An ATAPI CD-ROM from xenstore: read-only media (WRITE(10) gets DATA
# PROTECT, the image stays unchanged), eject and insert through backend
# `params` (NOT READY, then UNIT ATTENTION and the new medium), an empty
# drive at start, and a guest eject (START STOP UNIT) reported by writing
# `eject` to the frontend's eject key.
. "$SRCDIR/tests/interop/lib.sh"
. "$SRCDIR/tests/interop/_xen-lib.sh"
[ -x "$DISKDM" ] || fail "$DISKDM is not built"
start_xenstored
dd if=/dev/zero bs=64K count=16 status=none | tr '\000' 'X' > "$T/one.iso"
dd if=/dev/zero bs=64K count=16 status=none | tr '\000' 'Y' > "$T/two.iso"
sum1=$(sha256sum < "$T/one.iso")
BE=/local/domain/0/backend/qdisk/1
FE=/local/domain/1/device/vbd

cat > "$T/script" <<EOS
sh $XL create --domid 1 --disk $T/one.iso,,hdc,cdrom --disk ,,hdd,cdrom --dm-log $T/dm.log -- -qtest unix:$T/q.sock
connect
ide-present hdc
atapi-tur hdc
atapi-tur hdc
atapi-read hdc 0
atapi-write hdc 0
fd-mode 1 $T/one.iso
atapi-tur hdd
sh $XL cd-eject 1 hdc
atapi-tur hdc
fd-mode 1 $T/one.iso
sh $XL cd-insert 1 hdc $T/two.iso
atapi-tur hdc
atapi-tur hdc
atapi-tur hdc
atapi-read hdc 1
fd-mode 1 $T/two.iso
sh $XL cd-insert 1 hdd $T/one.iso
atapi-tur hdd
atapi-tur hdd
atapi-read hdd 0
atapi-eject hdc
wait-key $FE/5632/eject eject
echo guest eject reported
atapi-tur hdc
sh! $XL cd-insert 1 hdd $T/missing.iso 2> $T/insert.err
sh grep -qx "diskdm-xl: cd-insert hdd: Could not open '$T/missing.iso': No such file or directory" $T/insert.err
atapi-tur hdd
EOS
cat > "$T/want" <<EOS
hdc: CD-ROM present
test unit ready hdc: OK
test unit ready hdc: OK
read from hdc: OK, data 58 58 58 58 58 58 58 58
write to hdc: check condition (DATA PROTECT, asc 0x27/0x00)
one.iso: open read-only
test unit ready hdd: check condition (NOT READY, asc 0x3a/0x00)
test unit ready hdc: check condition (NOT READY, asc 0x3a/0x00)
one.iso: not open
test unit ready hdc: check condition (NOT READY, asc 0x3a/0x00)
test unit ready hdc: check condition (UNIT ATTENTION, asc 0x28/0x00)
test unit ready hdc: OK
read from hdc: OK, data 59 59 59 59 59 59 59 59
two.iso: open read-only
test unit ready hdd: check condition (NOT READY, asc 0x3a/0x00)
test unit ready hdd: check condition (UNIT ATTENTION, asc 0x28/0x00)
read from hdd: OK, data 58 58 58 58 58 58 58 58
eject hdc: OK
guest eject reported
test unit ready hdc: check condition (NOT READY, asc 0x3a/0x00)
test unit ready hdd: check condition (NOT READY, asc 0x3a/0x00)
EOS
$GUEST --sock "$T/q.sock" < "$T/script" > "$T/out" || { cat "$T/out" "$T/dm.log"; fail "guest"; }
same_lines "$T/want" "$T/out"
[ "$(sha256sum < "$T/one.iso")" = "$sum1" ] || fail "one.iso changed"
xs_is $BE/5632/params "aio:$T/two.iso"
xs_is $BE/5632/info 7
xs_is $BE/5696/hotplug-error "Could not open '$T/missing.iso': No such file or directory"
$XL destroy 1
ok "CD-ROM media"
no_sanitizer_reports
