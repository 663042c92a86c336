#!/bin/sh
# diskdm-xl against diskdm-xenstored, read back with the real xenstore
# tools: the libxl layout and permissions for each kind of disk spec, xl's
# messages for bad specs, the commands on a domain without a device model,
# and the permission wall between domains.
. "$SRCDIR/tests/interop/lib.sh"
. "$SRCDIR/tests/interop/_xen-lib.sh"
start_xenstored --domain-socket "1:$T/dom1.sock" --domain-socket "2:$T/dom2.sock"
: > "$T/a.img"; : > "$T/b.img"; : > "$T/cd.iso"

$XL create --domid 1 --no-start --disk "$T/a.img,raw,hda,rw" \
    --disk "format=raw, vdev=hdb, access=ro, target=$T/b.img" \
    --disk ",,hdc,cdrom" --disk "$T/a.img,qcow2,vda,w,discard"
BE=/local/domain/0/backend
FE=/local/domain/1/device/vbd
xs_is $FE/768/backend $BE/vbd/1/768
xs_is $FE/768/backend-id 0
xs_is $FE/768/virtual-device 768
xs_is $FE/768/device-type disk
xs_is $FE/768/state 1
xs_is $BE/vbd/1/768/frontend $FE/768
xs_is $BE/vbd/1/768/frontend-id 1
xs_is $BE/vbd/1/768/online 1
xs_is $BE/vbd/1/768/state 1
xs_is $BE/vbd/1/768/dev hda
xs_is $BE/vbd/1/768/type phy
xs_is $BE/vbd/1/768/mode w
xs_is $BE/vbd/1/768/params "$T/a.img"
xs_is $BE/vbd/1/768/removable 0
xs_is $BE/vbd/1/832/mode r
xs_is $BE/vbd/1/832/dev hdb
# CD-ROMs always go to qdisk, read-only; an empty one has empty params
xs_is $FE/5632/backend $BE/qdisk/1/5632
xs_is $BE/qdisk/1/5632/device-type cdrom
xs_is $BE/qdisk/1/5632/mode r
xs_is $BE/qdisk/1/5632/params ""
xs_is $BE/qdisk/1/5632/removable 1
# qcow2 goes to qdisk with the format in params; vd names are major 254
xs_is $FE/65024/backend $BE/qdisk/1/65024
xs_is $BE/qdisk/1/65024/params "qcow2:$T/a.img"
xs_is $BE/qdisk/1/65024/type qdisk
xs_is $BE/qdisk/1/65024/discard-enable 1
xs_absent $BE/vbd/1/768/discard-enable
ok "layout"

# Permissions as libxl sets them: frontend n<domid> r0, backend n0 r<domid>
xenstore-ls -p $BE/vbd/1/768 | grep -q '^mode = "w" .*(n0,r1)$' ||
    fail "backend permissions: $(xenstore-ls -p $BE/vbd/1/768 | grep '^mode')"
xenstore-ls -p $FE/768 | grep -q '^backend = .*(n1,r0)$' || fail "frontend permissions"
ok "permissions written"

# The domain reads its own keys and its backend, but cannot change the mode.
xs1() { XENSTORED_PATH=$T/dom1.sock "$@"; }
xs2() { XENSTORED_PATH=$T/dom2.sock "$@"; }
[ "$(xs1 xenstore-read $FE/768/backend)" = "$BE/vbd/1/768" ] || fail "dom1 reads its frontend"
[ "$(xs1 xenstore-read $BE/vbd/1/832/mode)" = r ] || fail "dom1 reads its backend"
expect_fail 1 "xenstore-write: could not write path $BE/vbd/1/832/mode" xs1 xenstore-write $BE/vbd/1/832/mode w
xs_is $BE/vbd/1/832/mode r
# Another domain sees none of it.
$XL create --domid 2 --no-start --disk "$T/b.img,,hda"
expect_fail 1 "xenstore-read: couldn't read path $FE/768/backend" xs2 xenstore-read $FE/768/backend
expect_fail 1 "xenstore-read: couldn't read path $BE/vbd/1/832/params" xs2 xenstore-read $BE/vbd/1/832/params
expect_fail 1 "xenstore-write: could not write path $BE/vbd/1/832/mode" xs2 xenstore-write $BE/vbd/1/832/mode w
[ "$(xs2 xenstore-read /local/domain/2/device/vbd/768/backend)" = "$BE/vbd/2/768" ] ||
    fail "dom2 reads its own frontend"
ok "domains cannot read each other's keys"

# xl's messages for bad specs; nothing is written for a failed create.
P="diskdm-xl: command line: config parsing error in disk specification"
expect_fail 1 "$P: unknown value for access: near \`rx' in \`$T/a.img,raw,hda,rx'" \
    $XL create --domid 3 --no-start --disk "$T/a.img,raw,hda,rx"
expect_fail 1 "$P: unknown value for format: near \`vmdk' in \`$T/a.img,vmdk,hda'" \
    $XL create --domid 3 --no-start --disk "$T/a.img,vmdk,hda"
expect_fail 1 "$P: no vdev specified in \`$T/a.img'" \
    $XL create --domid 3 --no-start --disk "$T/a.img"
expect_fail 1 "$P: no target specified (and device not removable) in \`vdev=hda'" \
    $XL create --domid 3 --no-start --disk "vdev=hda"
expect_fail 1 "$P: unknown parameter: near \`color=red' in \`color=red,$T/a.img,,hda'" \
    $XL create --domid 3 --no-start --disk "color=red,$T/a.img,,hda"
expect_fail 1 "$P: too many positional parameters: near \`x' in \`$T/a.img,raw,hda,w,x'" \
    $XL create --domid 3 --no-start --disk "$T/a.img,raw,hda,w,x"
expect_fail 1 "$P: unknown value for type: near \`devtype=tape' in \`devtype=tape,vdev=hda,target=/x'" \
    $XL create --domid 3 --no-start --disk "devtype=tape,vdev=hda,target=/x"
expect_fail 1 "diskdm-xl: Invalid or unsupported virtual disk identifier hdz" \
    $XL create --domid 3 --no-start --disk "$T/a.img,raw,hdz"
expect_fail 1 "diskdm-xl: disk hda: format vhd is not supported by diskdm (raw or qcow2)" \
    $XL create --domid 3 --no-start --disk "$T/a.img,vhd,hda"
expect_fail 1 "diskdm-xl: disk 768: virtual device hda is given twice" \
    $XL create --domid 3 --no-start --disk "$T/a.img,,hda" --disk "$T/a.img,,768"
expect_fail 1 "diskdm-xl: domain 1 already exists" \
    $XL create --domid 1 --no-start --disk "$T/a.img,,hda"
xs_absent /local/domain/3/domid
ok "bad specs"

# A device model that dies before reporting running fails the create, and
# the domain's keys are removed again.
expect_fail 1 "diskdm-xl: device model for domain 3 exited (status 1)" \
    $XL --diskdm /bin/false create --domid 3 --disk "$T/a.img,,hda"
xs_absent /local/domain/3/domid
xs_absent /local/domain/0/backend/vbd/3/768/mode
printf '#!/bin/sh\nexec sleep 37\n' > "$T/slow-dm"
chmod +x "$T/slow-dm"
expect_fail 1 "diskdm-xl: device model for domain 3 did not report running within 1 s" \
    $XL --timeout 1 --diskdm "$T/slow-dm" create --domid 3 --disk "$T/a.img,,hda"
xs_absent /local/domain/3/domid
! pgrep -fx "sleep 37" >/dev/null || fail "the slow device model was left running"
ok "device model exits early or hangs"

# Usage errors exit 2.
expect_fail 2 "diskdm-xl: create: --domid N is required
Try 'diskdm-xl --help'." $XL create --disk "$T/a.img,,hda"
expect_fail 2 "diskdm-xl: invalid domain id 'x'
Try 'diskdm-xl --help'." $XL destroy x
expect_fail 2 "diskdm-xl: block-set-mode: mode must be r or w, not 'rw!'
Try 'diskdm-xl --help'." $XL block-set-mode 1 hda 'rw!'
expect_fail 2 "diskdm-xl: unknown command 'frobnicate'
Try 'diskdm-xl --help'." $XL frobnicate
ok "usage errors"

# Commands on a domain without a running device model only write keys.
$XL block-attach 1 "$T/b.img" raw hdd ro
xs_is $BE/vbd/1/5696/mode r
xs_is $BE/vbd/1/5696/dev hdd
expect_fail 1 "diskdm-xl: device hdd (5696) is already attached to domain 1" \
    $XL block-attach 1 "$T/b.img,,hdd"
$XL block-set-mode 1 hdd w
xs_is $BE/vbd/1/5696/mode w
$XL block-detach 1 hdd
xs_absent $FE/5696/backend
xs_absent $BE/vbd/1/5696/mode
expect_fail 1 "diskdm-xl: device hdd is not attached to domain 1" $XL block-detach 1 hdd
$XL cd-insert 1 hdc "$T/cd.iso"
xs_is $BE/qdisk/1/5632/params "aio:$T/cd.iso"
$XL cd-eject 1 hdc
xs_is $BE/qdisk/1/5632/params ""
expect_fail 1 "diskdm-xl: hda is not a CD-ROM drive" $XL cd-insert 1 hda "$T/cd.iso"
expect_fail 1 "diskdm-xl: domain 7 does not exist" $XL cd-eject 7 hdc
$XL block-list 1 > "$T/list"
grep -q "^hdb    832        phy    r     disk   -          $T/b.img\$" "$T/list" ||
    fail "block-list: $(cat "$T/list")"
ok "commands without a device model"

$XL destroy 1
$XL destroy 2
xs_absent /local/domain/1/domid
xs_absent $BE/vbd/1/768/mode
xs_absent $BE/qdisk/1/5632/mode
expect_fail 1 "diskdm-xl: domain 1 does not exist" $XL destroy 1
ok "destroy"
