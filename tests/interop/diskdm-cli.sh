#!/bin/sh
# diskdm's command line: help and version, usage errors (exit 2), unusable
# drive specs (exit 1: missing image, two drives on one slot, unknown
# interface), the qtest transport on stdio and on a Unix socket it
# connects to (as QEMU does, checked with the same harness), the pidfile,
# and a clean exit on EOF and on SIGTERM.
. "$(dirname "$0")/lib.sh"
need python3 qemu-img qemu-system-x86_64
DM="$BUILD/diskdm"

qemu-img create -q -f raw "$T/a.img" 1M
qemu-img create -q -f qcow2 "$T/b.qcow2" 1M

# expect STATUS STDERR-SUBSTRING ARGS...
expect() {
    want=$1 msg=$2; shift 2
    rc=0
    "$DM" "$@" < /dev/null > "$T/out" 2> "$T/err" || rc=$?
    [ "$rc" = "$want" ] || fail "diskdm $*: exit $rc, expected $want ($(cat "$T/err"))"
    grep -qF -- "$msg" "$T/err" || fail "diskdm $*: stderr lacks '$msg': $(cat "$T/err")"
    ok "diskdm $* -> $rc"
}

"$DM" -h | grep -q '^Usage: diskdm' || fail "-h"
"$DM" --help | grep -q -- '-qtest unix:PATH' || fail "--help"
[ "$("$DM" -V)" = "diskdm 0.1" ] || fail "-V"
ok "help and version"

# usage errors
expect 2 "diskdm: unknown option '--bogus'" --bogus
expect 2 "diskdm: unexpected argument 'disk.img'" disk.img
expect 2 "diskdm: option '-drive' needs an argument" -drive
expect 2 "diskdm: -m: expected a RAM size from 1M to 64G, not 'lots'" -m lots
expect 2 "diskdm: -m: expected a RAM size from 1M to 64G, not '100G'" -m 100G
expect 2 "diskdm: -m: expected a RAM size from 1M to 64G, not '0'" -m 0
expect 2 "diskdm: -qtest: expected 'stdio' or 'unix:PATH', not 'tcp:localhost:4444'" -qtest tcp:localhost:4444
expect 2 "diskdm: -qtest: expected 'stdio' or 'unix:PATH', not 'unix:'" -qtest unix:
expect 2 "Try 'diskdm -h'." -qtest

# unusable drives: the -drive value, then the reason
expect 1 "diskdm: -drive file=$T/missing.img,format=raw,if=ide: Could not open '$T/missing.img': No such file or directory" \
    -drive "file=$T/missing.img,format=raw,if=ide" -qtest stdio
expect 1 "diskdm: -drive file=$T/b.qcow2,format=qcow2,if=ide,index=0: IDE bus 0 unit 0 is already in use" \
    -drive "file=$T/a.img,format=raw,if=ide,index=0" \
    -drive "file=$T/b.qcow2,format=qcow2,if=ide,index=0" -qtest stdio
expect 1 "diskdm: -drive file=$T/b.qcow2,format=qcow2,bus=0,unit=0: IDE bus 0 unit 0 is already in use" \
    -drive "file=$T/a.img,format=raw,if=ide,index=0" \
    -drive "file=$T/b.qcow2,format=qcow2,bus=0,unit=0" -qtest stdio
expect 1 "diskdm: -drive file=$T/a.img,if=scsi: Unsupported interface 'scsi'" \
    -drive "file=$T/a.img,if=scsi" -qtest stdio
expect 1 "diskdm: -drive file=$T/a.img,bogus=1: Invalid parameter 'bogus'" \
    -drive "file=$T/a.img,bogus=1" -qtest stdio
expect 1 "diskdm: -drive file=$T/a.img,if=ide,index=9: index 9 too big (max is 3)" \
    -drive "file=$T/a.img,if=ide,index=9" -qtest stdio
expect 1 "diskdm: -qtest unix:$T/nosock: cannot connect: No such file or directory" \
    -qtest "unix:$T/nosock"

# stdio: replies, exit 0 at EOF
out=$(printf 'endianness\noutl 0xcf8 0x80000900\ninl 0xcfc\ninb 0x1f7\n' |
      "$DM" -drive "file=$T/a.img,format=raw,if=ide,index=0" -qtest stdio) ||
    fail "stdio session failed"
[ "$out" = "OK little
OK
OK 0x70108086
OK 0x0050" ] || fail "stdio replies: $out"
ok "qtest on stdio, exit at EOF"

# read-only and qcow2 drives, an empty CD-ROM, from a file as input
printf 'outb 0x176 0xa0\ninb 0x177\n' > "$T/in"
out=$("$DM" -drive "file=$T/a.img,format=raw,if=ide,index=0,readonly=on" \
      -drive "file=$T/b.qcow2,format=qcow2,if=ide,index=1" \
      -drive "if=ide,index=2,media=cdrom" -qtest stdio < "$T/in") || fail "ro/qcow2/cdrom"
[ "$out" = "OK
OK 0x0050" ] || fail "cdrom status: $out"
ok "read-only, qcow2 and empty CD-ROM drives; input from a file"

# unix:PATH: diskdm connects; it exits when the peer hangs up
cat > "$T/server.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(1)
open(sys.argv[2], "w").close()
c, _ = s.accept()
c.sendall(b"endianness\ninw 0x1234\n")
buf = b""
while buf.count(b"\n") < 2:
    d = c.recv(4096)
    if not d: break
    buf += d
sys.stdout.write(buf.decode())
c.close()
PY
python3 "$T/server.py" "$T/sock" "$T/listening" > "$T/sockout" &
spid=$!
at_exit "kill $spid 2>/dev/null"
i=0; while [ ! -e "$T/listening" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
timeout 10 "$DM" -qtest "unix:$T/sock" --pidfile "$T/pid" || fail "unix transport: exit $?"
wait $spid
[ "$(cat "$T/sockout")" = "OK little
OK 0xffff" ] || fail "unix replies: $(cat "$T/sockout")"
[ ! -e "$T/pid" ] || fail "pidfile left behind"
ok "qtest on a Unix socket diskdm connects to"

# the same harness against QEMU: it too connects to the socket as a client
rm -f "$T/listening" "$T/sock"
python3 "$T/server.py" "$T/sock" "$T/listening" > "$T/qout" &
spid=$!
i=0; while [ ! -e "$T/listening" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
qemu-system-x86_64 -machine pc -nodefaults -display none -accel tcg -S \
    -qtest "unix:$T/sock" -qtest-log none &
qpid=$!
at_exit "kill $qpid 2>/dev/null"
wait $spid
kill $qpid 2>/dev/null; wait $qpid 2>/dev/null || true
[ "$(cat "$T/qout")" = "$(cat "$T/sockout")" ] || fail "QEMU over the socket: $(cat "$T/qout")"
ok "QEMU answers the same over the same socket harness"

# pidfile while running; SIGTERM ends it cleanly
mkfifo "$T/fifo"
"$DM" -qtest stdio --pidfile "$T/pid2" < "$T/fifo" > /dev/null &
dpid=$!
exec 3> "$T/fifo"
at_exit "kill $dpid 2>/dev/null"
i=0; while [ ! -s "$T/pid2" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
[ "$(cat "$T/pid2")" = "$dpid" ] || fail "pidfile holds '$(cat "$T/pid2")', not $dpid"
kill -TERM $dpid
rc=0; wait $dpid || rc=$?
exec 3>&-
[ $rc = 0 ] || fail "SIGTERM: exit $rc"
[ ! -e "$T/pid2" ] || fail "pidfile left after SIGTERM"
ok "pidfile and SIGTERM"
