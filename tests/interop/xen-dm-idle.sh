#!/bin/sh
# An idle device model sleeps: with an IDE disk, a CD-ROM and a virtio disk
# attached from xenstore, no system call completes in its process while
# nobody talks to it (no polling timer; the guest's CD eject reaches
# xenstore through the device's tray callback, checked after the eject
# without waiting).
. "$SRCDIR/tests/interop/lib.sh"
. "$SRCDIR/tests/interop/_xen-lib.sh"
need strace timeout
[ -x "$DISKDM" ] || fail "$DISKDM is not built"
start_xenstored
truncate -s 1M "$T/a.img" "$T/v.img"
dd if=/dev/zero bs=64K count=16 status=none | tr '\000' 'X' > "$T/one.iso"
FE=/local/domain/1/device/vbd

# idle.sh: strace the device model for a second and keep the calls that
# completed (one in progress when strace attaches or detaches did not).
# A quiet second passes; up to five tries, so that a late watch event from
# the steps before cannot fail the test, while a device model that wakes
# up on a timer never has a quiet second.
cat > "$T/idle.sh" <<EOS
pid=\$(xenstore-read /local/domain/1/image/device-model-pid) || exit 1
for try in 1 2 3 4 5; do
    timeout -s INT 1 strace -f -qq -o "$T/idle.st" -p "\$pid"
    grep -v -e '<unfinished \.\.\.>\$' -e '<detached \.\.\.>\$' "$T/idle.st" > "$T/idle.calls"
    [ -s "$T/idle.calls" ] || exit 0
done
cat "$T/idle.calls"
exit 1
EOS

cat > "$T/script" <<EOS
sh $XL create --domid 1 --disk $T/a.img,raw,hda,w --disk $T/one.iso,,hdc,cdrom --disk $T/v.img,raw,xvdb,w,specification=virtio --dm-log $T/dm.log -- -qtest unix:$T/q.sock
connect
ide-present hdc
atapi-tur hdc
sh sh $T/idle.sh
echo idle for a second: no system calls
atapi-eject hdc
sh test "\$(xenstore-read $FE/5632/eject)" = eject
echo guest eject in xenstore at once
sh sh $T/idle.sh
echo idle again: no system calls
EOS
cat > "$T/want" <<EOS
hdc: CD-ROM present
test unit ready hdc: OK
idle for a second: no system calls
eject hdc: OK
guest eject in xenstore at once
idle again: no system calls
EOS
$GUEST --sock "$T/q.sock" < "$T/script" > "$T/out" || { cat "$T/out" "$T/dm.log"; fail "guest"; }
same_lines "$T/want" "$T/out"
$XL destroy 1
ok "idle device model makes no system calls; guest eject reported at once"
no_sanitizer_reports
