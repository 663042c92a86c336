#!/bin/sh
# diskdm-img info on NBD exports (qemu-nbd over a Unix socket and over
# loopback TCP): the human and JSON output equal qemu-img info's on the
# same export, the image named by its node's name, not as typed.
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-nbd python3
IMG="$BUILD/diskdm-img"
[ -x "$IMG" ] || fail "$IMG not built"
cd "$T"

qemu-img create -q -f qcow2 d.qcow2 8M
cp d.qcow2 e.qcow2
cp d.qcow2 t.qcow2
start_nbd() {   # pid-file qemu-nbd-args...
    pidf=$1; shift
    qemu-nbd --fork --persistent --pid-file="$T/$pidf" "$@"
    at_exit "kill \$(cat '$T/$pidf') 2>/dev/null"
}
same_info() {   # what uri [-f fmt]
    what=$1; shift
    qemu-img info "$@" > q.txt
    "$IMG" info "$@" > d.txt
    diff -u q.txt d.txt || fail "$what: human output differs from qemu-img's"
    qemu-img info --output=json "$@" > q.json
    "$IMG" info --output=json "$@" > d.json
    diff -u q.json d.json || fail "$what: JSON differs from qemu-img's"
}

start_nbd u.pid -f raw -x exp -k "$T/u.sock" d.qcow2
start_nbd e.pid -f raw -k "$T/e.sock" e.qcow2
i=0
while [ ! -S "$T/u.sock" ] || [ ! -S "$T/e.sock" ]; do
    i=$((i + 1)); [ $i -lt 100 ] || fail "qemu-nbd did not start"; sleep 0.05
done
same_info "named export" "nbd+unix:///exp?socket=$T/u.sock"
"$IMG" info "nbd+unix:///exp?socket=$T/u.sock" | head -n 1 |
    grep -qx "image: nbd+unix:///exp?socket=$T/u.sock" || fail "named export name"
same_info "qcow2 over nbd" "nbd+unix:///exp?socket=$T/u.sock" -f qcow2
# Typed with "///" and an empty export: named as qemu-img names it.
same_info "empty export" "nbd+unix:///?socket=$T/e.sock"
"$IMG" info "nbd+unix:///?socket=$T/e.sock" | head -n 1 |
    grep -qx "image: nbd+unix://?socket=$T/e.sock" || fail "empty export name"
ok "unix"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_nbd t.pid -f qcow2 -b 127.0.0.1 -p "$port" -x tx t.qcow2
i=0
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port)).close()" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 100 ] || fail "qemu-nbd (tcp) did not start"; sleep 0.05
done
same_info "tcp" "nbd://127.0.0.1:$port/tx"
ok "tcp"
