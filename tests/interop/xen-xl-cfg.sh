#!/bin/sh
# diskdm-xl create from an xl domain config file, against diskdm-xenstored
# and read back with the real xenstore tools: an IDE disk, a read-only
# qcow2 disk and a CD-ROM, the next free domain id, the device model
# started and running, `list`, the dry run's keys, KEY=VALUE overrides,
# device_model_args/override, and every config error with its place.
. "$SRCDIR/tests/interop/lib.sh"
. "$SRCDIR/tests/interop/_xen-lib.sh"
need qemu-img
[ -x "$DISKDM" ] || fail "$DISKDM is not built"
start_xenstored
truncate -s 1M "$T/a.img" "$T/c.img"
qemu-img create -q -f qcow2 "$T/b.qcow2" 2M
dd if=/dev/zero bs=64K count=16 status=none | tr '\000' 'X' > "$T/cd.iso"
BE=/local/domain/0/backend
FE=/local/domain/1/device/vbd

cat > "$T/guest.cfg" <<EOF
# An HVM guest as xl would take it; only the disks concern diskdm.
name = "guest"
type = "hvm"
memory = 512
vcpus = 2
vif = [ 'mac=00:16:3e:00:00:01,bridge=xenbr0', ]
disk = [ '$T/a.img,raw,hda,rw',
         "format=qcow2, vdev=hdb, access=ro, target=$T/b.qcow2",
         # the installer's CD
         '$T/cd.iso,raw,hdc,cdrom',
       ]
device_model_args = [ "-v" ]
EOF

# -n: the keys that would be written, in order; nothing is written.
$XL create -n "$T/guest.cfg" > "$T/dry" 2> "$T/dry.err"
echo "Parsing config from $T/guest.cfg" > "$T/want"
same_lines "$T/want" "$T/dry.err"
cat > "$T/want" <<EOF
/local/domain/1 (n0,r1)
/local/domain/1/domid = "1"
/local/domain/1/name = "guest"
/libxl/1/toolstack = "diskdm-xl"
/local/domain/1/device (n1,r0)
/local/domain/1/device/vbd (n1,r0)
EOF
for d in "768 vbd phy hda disk 0 w $T/a.img" "832 qdisk qdisk hdb disk 0 r qcow2:$T/b.qcow2" \
         "5632 qdisk qdisk hdc cdrom 1 r aio:$T/cd.iso"; do
    set -- $d
    cat >> "$T/want" <<EOF
$FE/$1 (n1,r0)
$BE/$2/1/$1 (n0,r1)
$BE/$2/1/$1/frontend = "$FE/$1"
$BE/$2/1/$1/frontend-id = "1"
$BE/$2/1/$1/online = "1"
$BE/$2/1/$1/removable = "$6"
$BE/$2/1/$1/bootable = "1"
$BE/$2/1/$1/dev = "$4"
$BE/$2/1/$1/type = "$3"
$BE/$2/1/$1/mode = "$7"
$BE/$2/1/$1/device-type = "$5"
$BE/$2/1/$1/params = "$8"
$FE/$1/backend = "$BE/$2/1/$1"
$FE/$1/backend-id = "0"
$FE/$1/virtual-device = "$1"
$FE/$1/device-type = "$5"
$FE/$1/trusted = "1"
$FE/$1/state = "1"
$BE/$2/1/$1/state = "1"
EOF
done
same_lines "$T/want" "$T/dry"
xs_absent /local/domain/1/domid
xs_absent /libxl/1/toolstack
ok "dry run prints the keys and writes none"

# The real thing: the next free id (1), xl's lines, the device model up.
$XL -v create "$T/guest.cfg" --dm-log "$T/dm.log" > "$T/out" 2> "$T/err"
echo "Domain 1 (guest) created" > "$T/want"
same_lines "$T/want" "$T/out"
cat > "$T/want" <<EOF
Parsing config from $T/guest.cfg
diskdm-xl: $T/guest.cfg: ignoring settings that do not concern disks: type, memory, vcpus, vif
EOF
same_lines "$T/want" "$T/err"
xs_is /local/domain/1/name guest
xs_is /local/domain/0/device-model/1/state running
pid=$(xenstore-read /local/domain/1/image/device-model-pid)
kill -0 "$pid" || fail "the device model is not running"
grep -q '^diskdm$' "/proc/$pid/comm" || fail "pid $pid is not diskdm"
tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "--domid 1 -v $" ||
    fail "device_model_args not passed: $(tr '\0' ' ' < "/proc/$pid/cmdline")"
# what the device model answered, per disk
xenstore-ls $BE/vbd/1/768 > "$T/ls768"
grep -q '^mode = "w"$' "$T/ls768" || fail "hda mode: $(cat "$T/ls768")"
grep -q '^hotplug-status = "connected"$' "$T/ls768" || fail "hda not connected: $(cat "$T/ls768")"
grep -q '^info = "0"$' "$T/ls768" || fail "hda info: $(cat "$T/ls768")"
grep -q '^sectors = "2048"$' "$T/ls768" || fail "hda sectors: $(cat "$T/ls768")"
xenstore-ls $BE/qdisk/1/832 > "$T/ls832"
grep -q '^mode = "r"$' "$T/ls832" || fail "hdb mode: $(cat "$T/ls832")"
grep -q '^params = "qcow2:'"$T"'/b.qcow2"$' "$T/ls832" || fail "hdb params: $(cat "$T/ls832")"
grep -q '^hotplug-status = "connected"$' "$T/ls832" || fail "hdb not connected"
grep -q '^info = "4"$' "$T/ls832" || fail "hdb is not read-only: $(cat "$T/ls832")"
xenstore-ls $BE/qdisk/1/5632 > "$T/ls5632"
grep -q '^device-type = "cdrom"$' "$T/ls5632" || fail "hdc type: $(cat "$T/ls5632")"
grep -q '^mode = "r"$' "$T/ls5632" || fail "hdc mode"
grep -q '^hotplug-status = "connected"$' "$T/ls5632" || fail "hdc not connected"
grep -q '^info = "7"$' "$T/ls5632" || fail "hdc info: $(cat "$T/ls5632")"
# the permissions libxl sets
xenstore-ls -p $BE/qdisk/1/832 | grep -q '^mode = "r" .*(n0,r1)$' || fail "backend permissions"
xenstore-ls -p $FE/832 | grep -q '^backend = .*(n1,r0)$' || fail "frontend permissions"
# the read-only image was opened without a write descriptor
for fd in /proc/$pid/fd/*; do
    [ "$(readlink "$fd")" = "$T/b.qcow2" ] || continue
    grep -q '^flags:.*0$' "/proc/$pid/fdinfo/${fd##*/}" ||
        fail "b.qcow2 is open for writing: $(grep flags "/proc/$pid/fdinfo/${fd##*/}")"
done
$XL block-list 1 > "$T/bl"
grep -q "^hdb    832        qdisk  r     disk   connected  qcow2:$T/b.qcow2\$" "$T/bl" ||
    fail "block-list: $(cat "$T/bl")"
ok "create from a config file: keys, device model, read-only disk"

# KEY=VALUE overrides: a later key wins, as with xl; the next id is 2.
$XL create "$T/guest.cfg" 'name="other"' "disk=['$T/a.img,raw,hdd,ro']" --no-start \
    > "$T/out" 2>/dev/null
echo "Domain 2 (other) created" > "$T/want"
same_lines "$T/want" "$T/out"
xs_is /local/domain/2/name other
xs_is $BE/vbd/2/5696/mode r
xs_absent $BE/vbd/2/768/mode
# -f FILE and --domid, an override alone naming the domain
$XL create --domid 7 -f "$T/guest.cfg" 'name = "seven"' 'disk = []' --no-start >/dev/null 2>&1
xs_is /local/domain/7/name seven
xenstore-list /local/domain/7/device/vbd > "$T/l7"
[ ! -s "$T/l7" ] || fail "domain 7 has disks: $(cat "$T/l7")"
# --disk specs come after the file's disks
$XL create -n "$T/guest.cfg" 'name="g9"' --disk "$T/c.img,,hdd,ro" > "$T/dry" 2>/dev/null
grep -q "^$BE/vbd/3/5696/params = \"$T/c.img\"\$" "$T/dry" || fail "--disk with a file: $(cat "$T/dry")"
grep -q "^$BE/vbd/3/768/dev = \"hda\"\$" "$T/dry" || fail "--disk with a file lost hda"
$XL create 'name="bare"' "disk=['$T/a.img,,hda']" --no-start > "$T/out"
echo "Domain 3 (bare) created" > "$T/want"
same_lines "$T/want" "$T/out"
ok "overrides, -f, --domid"

# list: the domains diskdm-xl made (not another toolstack's), by id.
xenstore-write /local/domain/9/domid 9 /local/domain/9/name foreign
cat > "$T/want" <<EOF
Name                                        ID DM state   Disks
guest                                        1 running        3
other                                        2 -              1
bare                                         3 -              1
seven                                        7 -              0
EOF
$XL list > "$T/list"
same_lines "$T/want" "$T/list"
xenstore-rm /local/domain/9
ok "list"

# Config errors name the file, line and column; nothing is written.
C=$T/bad.cfg
P="diskdm-xl: $C"
bad() { # bad MESSAGE CONFIG-TEXT
    printf '%s\n' "$2" > "$C"
    expect_fail 1 "Parsing config from $C
$1" $XL create "$C" --no-start
}
bad "$P:2:9: config parsing error: unterminated string" "name = 'x'
disk = ['$T/a.img,,hda]"
bad "$P:1:6: config parsing error: expected '=' after 'name'" 'name "x"'
bad "$P:1:8: config parsing error: expected a value after 'name =', not 'x' (strings need quotes)" 'name = x'
bad "$P:2:1: config parsing error: expected a setting name, not '['" "name = 'x'
[ 'a' ]"
bad "$P:1:12: config parsing error: expected the end of the line after the value of 'name'" "name = 'x' 'y'"
bad "$P:2:8: config parsing error: unterminated list (no ']')" "name = 'x'
disk = [ 'a',
         'b',"
bad "$P:3:10: config parsing error: expected ',' or ']' in the list" "name = 'x'
disk = [ '$T/a.img,,hda'
         '$T/a.img,,hdb' ]"
bad "$P:1:8: config parsing error: 'disk' must be a list of disk specs" "disk = '$T/a.img,,hda'"
bad "$P:1:8: config parsing error: 'name' must be a string" "name = 5"
bad "$P:2:10: config parsing error in disk specification: unknown parameter: near \`colour=red' in \`colour=red,$T/a.img,,hda'" "name = 'x'
disk = [ 'colour=red,$T/a.img,,hda' ]"
bad "$P:3:3: config parsing error in disk specification: unknown value for access: near \`rx' in \`$T/a.img,raw,hdb,rx'" "name = 'x'
disk = [ '$T/a.img,raw,hda,rw',
  '$T/a.img,raw,hdb,rx' ]"
bad "$P:2:10: config parsing error in disk specification: empty value for access (leave access out for rw) in \`vdev=hda,access=,target=$T/a.img'" "name = 'x'
disk = [ 'vdev=hda,access=,target=$T/a.img' ]"
bad "$P:2:10: Invalid or unsupported virtual disk identifier hdz" "name = 'x'
disk = [ '$T/a.img,raw,hdz' ]"
bad "$P:2:10: disk hda: format vhd is not supported by diskdm (raw or qcow2)" "name = 'x'
disk = [ '$T/a.img,vhd,hda' ]"
bad "diskdm-xl: disk hda: virtual device hda is given twice" "name = 'x'
disk = [ '$T/a.img,,hda', '$T/a.img,,hda,ro' ]"
bad "$P: domain name must be specified (name = \"...\")" "disk = [ '$T/a.img,,hda' ]"
bad "diskdm-xl: domain with name \"guest\" already exists" "name = 'guest'"
expect_fail 1 "diskdm-xl: command line:1:6: config parsing error: expected a value after 'name =', not 'g' (strings need quotes)" \
    $XL create 'name=g' --no-start
expect_fail 1 "diskdm-xl: command line: domain name must be specified (name = \"...\")" \
    $XL create 'memory=5' --no-start
expect_fail 1 "diskdm-xl: $T/none.cfg: No such file or directory" $XL create "$T/none.cfg"
truncate -s 1025K "$T/big.cfg"
expect_fail 1 "diskdm-xl: $T/big.cfg: larger than 1048576 bytes; not a domain config file" \
    $XL create "$T/big.cfg"
expect_fail 2 "diskdm-xl: create: unexpected argument 'b.cfg'
Try 'diskdm-xl --help'." $XL create "$T/guest.cfg" b.cfg
expect_fail 2 "diskdm-xl: create: more than one config file
Try 'diskdm-xl --help'." $XL create "$T/guest.cfg" -f "$T/guest.cfg"
expect_fail 2 "diskdm-xl: list: takes no arguments
Try 'diskdm-xl --help'." $XL list 1
for id in 4 5 6 8; do xs_absent /local/domain/$id/domid; done
ok "config errors"

# device_model_override names the device model; --diskdm still wins.
cat > "$T/false.cfg" <<EOF
name = "f"
disk = [ '$T/c.img,,hdd,ro' ]
device_model_override = "/bin/false"
EOF
expect_fail 1 "Parsing config from $T/false.cfg
diskdm-xl: device model for domain 4 exited (status 1)" $XL create "$T/false.cfg"
xs_absent /local/domain/4/domid
$XL --diskdm "$DISKDM" create "$T/false.cfg" --dm-log "$T/dm4.log" -- -v > "$T/out" 2>/dev/null
echo "Domain 4 (f) created" > "$T/want"
same_lines "$T/want" "$T/out"
xs_is /local/domain/0/device-model/4/state running
pid4=$(xenstore-read /local/domain/4/image/device-model-pid)
tr '\0' ' ' < "/proc/$pid4/cmdline" | grep -q -- "^diskdm --domid 4 -v $" ||
    fail "arguments after --: $(tr '\0' ' ' < "/proc/$pid4/cmdline")"
ok "device_model_override"

# A device model that went away shows as exited.
alive() { # alive PID: the process exists and is not a zombie
    _st=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null)
    [ -n "$_st" ] && [ "$_st" != Z ]
}
kill -KILL "$pid4"
i=0
while alive "$pid4"; do
    i=$((i + 1)); [ $i -lt 200 ] || fail "pid $pid4 did not die"; sleep 0.05
done
$XL list | grep -q '^f  *4 exited  *1$' || fail "list after kill: $($XL list)"
ok "list shows an exited device model"

for id in 1 2 3 4 7; do $XL destroy $id; done
! alive "$pid" || fail "destroy left the device model running"
$XL list > "$T/list"
echo "Name                                        ID DM state   Disks" > "$T/want"
same_lines "$T/want" "$T/list"
no_sanitizer_reports
ok "destroy"
