#!/bin/sh
# diskdm-vhost's command line and control socket: usage errors exit 2,
# open errors exit 1 with `diskdm-vhost: what: why`, SIGTERM removes the
# sockets, and the control socket's answers.
. "$SRCDIR/tests/interop/lib.sh"
V=$BUILD/diskdm-vhost
img=$T/d.img
qemu-img create -f raw "$img" 1M >/dev/null

expect() {  # expect RC MESSAGE command...
    rc=$1 msg=$2; shift 2
    set +e; "$@" >"$T/out" 2>"$T/err"; got=$?; set -e
    [ $got = "$rc" ] || fail "$*: exit $got, not $rc ($(cat "$T/err"))"
    [ "$(head -1 "$T/err")" = "$msg" ] || fail "$*: said '$(head -1 "$T/err")', not '$msg'"
}
expect 2 "diskdm-vhost: --socket is required" $V --drive file="$img"
expect 2 "diskdm-vhost: --drive or --domid is required" $V --socket "$T/s"
expect 2 "diskdm-vhost: --drive and --domid exclude each other" $V --socket "$T/s" --domid 1 --drive file="$img"
expect 2 "diskdm-vhost: --vdev needs --domid" $V --socket "$T/s" --vdev vda --drive file="$img"
expect 2 "diskdm-vhost: --domid: invalid domain id 'x'" $V --socket "$T/s" --domid x
expect 2 "diskdm-vhost: unexpected argument" $V --socket "$T/s" --drive file="$img" extra
expect 1 "diskdm-vhost: --drive file=$T/none: Could not open '$T/none': No such file or directory" \
    $V --socket "$T/s" --drive file="$T/none"
expect 1 "diskdm-vhost: --drive file=$img,bogus=1: Invalid parameter 'bogus'" \
    $V --socket "$T/s" --drive file="$img",bogus=1
expect 1 "diskdm-vhost: vhost-user-blk: num-queues 17 out of range (1 to 16)" \
    $V --socket "$T/s" --drive file="$img",format=raw,num-queues=17
expect 1 "diskdm-vhost: --socket: $T/no/s: No such file or directory" \
    $V --socket "$T/no/s" --drive file="$img",format=raw
expect 1 "diskdm-vhost: --control: $T/no/c: No such file or directory" \
    $V --socket "$T/s" --control "$T/no/c" --drive file="$img",format=raw
[ ! -e "$T/s" ] || fail "socket left behind after a failed start"
$V --help | grep -q "^Usage: diskdm-vhost --socket PATH" || fail "--help"

# Control socket: info, read-only flips, a refused flip on a forced
# read-only drive, unknown commands. Then SIGTERM tidies up.
ctl() {
    python3 -c 'import socket,sys
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall((sys.argv[2]+"\n").encode()); s.shutdown(socket.SHUT_WR)
print(s.makefile().read(), end="")' "$T/c" "$1"
}
start() {
    $V --socket "$T/s" --control "$T/c" --drive "$1" 2>"$T/log" &
    pid=$!
    i=0; while [ ! -S "$T/c" ]; do i=$((i + 1)); [ $i -lt 100 ] || fail "no control socket"; sleep 0.05; done
}
start "file=$img,format=raw"
[ "$(ctl info)" = "readonly off
connected no" ] || fail "info: $(ctl info)"
[ "$(ctl "readonly on")" = ok ] || fail "readonly on"
[ "$(ctl info | head -1)" = "readonly on" ] || fail "info after readonly on"
[ "$(ctl "readonly off")" = ok ] || fail "readonly off"
[ "$(ctl "frobnicate")" = "error: unknown command 'frobnicate'" ] || fail "unknown command"
kill $pid; wait $pid || fail "SIGTERM: exit status $?"
[ ! -e "$T/s" ] && [ ! -e "$T/c" ] || fail "sockets left behind"
start "file=$img,format=raw,readonly=on"
case "$(ctl "readonly off")" in
"error: "*) ;;
*) fail "a forced read-only drive became writable" ;;
esac
[ "$(ctl info | head -1)" = "readonly on" ] || fail "forced read-only drive changed"
kill $pid; wait $pid
ok "usage and open errors, control socket, SIGTERM"
