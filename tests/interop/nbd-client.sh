#!/bin/sh
# The nbd client driver through diskdm-img: QEMU's option form
# (--image-opts driver=nbd,server.type=unix|inet,...) against qemu-nbd and
# diskdm-nbd gives the data and the checksum the URI form gives, its bad
# combinations exit 1 with their message; a server that stops answering
# makes diskdm-img fail with "Connection timed out" instead of hanging, and
# 16 requests in flight (bench -d 16) read nbdkit's data back unchanged;
# QEMU's legacy nbd:unix:PATH / nbd:HOST:PORT[:exportname=E] names open the
# export and are shown by the URI qemu-img shows.
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-nbd nbdkit python3
IMG="$BUILD/diskdm-img"
NBD="$BUILD/diskdm-nbd"
[ -x "$IMG" ] && [ -x "$NBD" ] || fail "diskdm-img or diskdm-nbd not built"
cd "$T"

head -c 4M /dev/urandom > d.raw
sum=$(md5sum < d.raw)
port_free() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_sock() {
    i=0
    while [ ! -S "$1" ]; do
        i=$((i + 1)); [ $i -lt 100 ] || fail "no server on $1"; sleep 0.05
    done
}
wait_port() {
    i=0
    until python3 -c "import socket; socket.create_connection(('127.0.0.1', $1)).close()" \
            2>/dev/null; do
        i=$((i + 1)); [ $i -lt 100 ] || fail "no server on port $1"; sleep 0.05
    done
}

# qemu-nbd and diskdm-nbd, each on a socket and on TCP
p1=$(port_free)
qemu-nbd --fork --persistent --shared=4 --pid-file="$T/q.pid" -r -f raw -x exp \
    -k "$T/q.sock" d.raw
at_exit "kill \$(cat '$T/q.pid') 2>/dev/null"
qemu-nbd --fork --persistent --shared=4 --pid-file="$T/qt.pid" -r -f raw -x exp \
    -b 127.0.0.1 -p "$p1" d.raw
at_exit "kill \$(cat '$T/qt.pid') 2>/dev/null"
p2=$(port_free)
"$NBD" --fork --persistent --shared=4 --pid-file="$T/d.pid" -r -f raw -x exp \
    -k "$T/d.sock" d.raw
at_exit "kill \$(cat '$T/d.pid') 2>/dev/null"
"$NBD" --fork --persistent --shared=4 --pid-file="$T/dt.pid" -r -f raw -x exp \
    -b 127.0.0.1 -p "$p2" d.raw
at_exit "kill \$(cat '$T/dt.pid') 2>/dev/null"
wait_sock "$T/q.sock"; wait_sock "$T/d.sock"; wait_port "$p1"; wait_port "$p2"

for srv in q d; do
    port=$([ $srv = q ] && echo "$p1" || echo "$p2")
    for form in "driver=nbd,server.type=unix,server.path=$T/$srv.sock,export=exp" \
                "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$port,export=exp,timeout=10" \
                "driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=$T/$srv.sock,file.export=exp"; do
        rm -f out.raw
        "$IMG" convert -O raw --image-opts "$form" out.raw ||
            fail "$srv: convert from $form"
        [ "$(md5sum < out.raw)" = "$sum" ] || fail "$srv: data differs via $form"
    done
    "$IMG" info --output=json --image-opts \
        "driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=$T/$srv.sock,file.export=exp" \
        > opt.json || fail "$srv: info on the option form"
    grep -q "\"virtual-size\": 4194304" opt.json || fail "$srv: size via the option form"
    ok "$srv: option form reads the export"
done

# bad combinations: exit 1, the message
bad() {     # message opts
    want=$1; shift
    set +e
    "$IMG" info --image-opts "$1" > /dev/null 2> err.txt
    rc=$?
    set -e
    [ $rc -eq 1 ] || fail "'$1' exited $rc"
    grep -qF "$want" err.txt || fail "'$1': $(cat err.txt), want '$want'"
}
bad "Parameter 'server.path' is missing" "driver=nbd,server.type=unix,export=exp"
bad "Parameter 'server.type' expects one of unix, inet: 'fd'" "driver=nbd,server.type=fd"
bad "Parameter 'server.port' expects a port number (1-65535): 'http'" \
    "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=http"
bad "An NBD URI ('filename') cannot be combined with 'server.*'" \
    "driver=nbd,filename=nbd+unix:///exp?socket=$T/q.sock,server.type=unix,server.path=$T/q.sock"
bad "Parameter 'server.host' is missing" "driver=nbd,server.type=inet,server.port=$p1"
ok "bad option combinations refused"

# A server that answers the handshake and then nothing: diskdm-img fails
# on the timeout instead of hanging.
nbdkit -r -U "$T/k.sock" -P "$T/k.pid" --filter=delay file d.raw delay-read=60
at_exit "kill \$(cat '$T/k.pid') 2>/dev/null"
wait_sock "$T/k.sock"
set +e
timeout 60 "$IMG" convert -O raw --image-opts \
    "driver=nbd,server.type=unix,server.path=$T/k.sock,timeout=1" slow.raw 2> err.txt
rc=$?
set -e
[ $rc -eq 1 ] || fail "convert from a silent server exited $rc: $(cat err.txt)"
grep -q "did not answer within 1 s" err.txt || fail "no timeout message: $(cat err.txt)"
grep -q "Connection timed out" err.txt || fail "no ETIMEDOUT: $(cat err.txt)"
ok "a silent server times out"

# 16 requests in flight against nbdkit, then the data unchanged
nbdkit -U "$T/f.sock" -P "$T/f.pid" --filter=delay file d.raw delay-read=1ms
at_exit "kill \$(cat '$T/f.pid') 2>/dev/null"
wait_sock "$T/f.sock"
"$IMG" bench -f raw -d 16 -c 2048 -s 4096 -S 4096 "nbd+unix:///?socket=$T/f.sock" \
    > bench.txt || fail "bench -d 16 on nbd"
rm -f out.raw
"$IMG" convert -O raw "nbd+unix:///?socket=$T/f.sock" out.raw
[ "$(md5sum < out.raw)" = "$sum" ] || fail "data differs after bench"
ok "queue depth 16"

# The legacy filenames, named as qemu-img names them; their errors
for srv in q d; do
    port=$([ $srv = q ] && echo "$p1" || echo "$p2")
    for name in "nbd:unix:$T/$srv.sock:exportname=exp" "nbd:127.0.0.1:$port:exportname=exp"; do
        want=$(qemu-img info -f raw "$name" | head -1)
        got=$("$IMG" info "$name" | head -1)
        [ "$got" = "$want" ] || fail "$srv: info $name: '$got', qemu-img '$want'"
        rm -f out.raw
        "$IMG" convert -f raw -O raw "$name" out.raw || fail "$srv: convert from $name"
        [ "$(md5sum < out.raw)" = "$sum" ] || fail "$srv: data differs via $name"
    done
done
for case in "nbd:127.0.0.1|error parsing address '127.0.0.1' (nbd:HOST:PORT)" \
            "nbd::exportname=x|NBD server address missing" \
            "nbd:unix:|NBD server address missing (nbd:unix:PATH)" \
            "nbd:127.0.0.1:abc|'abc' is not a port number (1-65535)" \
            "nbd:127.0.0.1:0|'0' is not a port number (1-65535)"; do
    name=${case%%|*}; msg=${case#*|}
    rc=0; "$IMG" info "$name" > /dev/null 2> err.txt || rc=$?
    [ $rc -eq 1 ] || fail "info $name exited $rc"
    [ "$(cat err.txt)" = "diskdm-img: Could not open '$name': $msg" ] ||
        fail "info $name: $(cat err.txt)"
done
ok "legacy nbd: filenames"

# A backing file named by an NBD URI is not a path: an overlay in another
# directory reaches the export, as qemu-img's does
mkdir -p sub
for b in "nbd+unix:///exp?socket=$T/d.sock" "nbd:unix:$T/d.sock:exportname=exp"; do
    rm -f sub/ov.qcow2 out.raw
    qemu-img create -q -f qcow2 -u -b "$b" -F raw sub/ov.qcow2 4M
    "$IMG" convert -O raw sub/ov.qcow2 out.raw || fail "convert through a backing $b"
    [ "$(md5sum < out.raw)" = "$sum" ] || fail "data differs through a backing $b"
done
ok "NBD backing file names"
