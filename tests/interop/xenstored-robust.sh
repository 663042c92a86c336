#!/bin/sh
# diskdm-xenstored under hostile and busy clients: oversized lengths,
# garbage, clients vanishing mid-message, pipelined requests from many
# clients at once — the daemon answers the well-behaved ones and keeps
# running. Also its command-line errors and exit codes.
. "$(dirname "$0")/lib.sh"
need python3 xenstore-read xenstore-write

XSD="$BUILD/diskdm-xenstored"
[ -x "$XSD" ] || fail "$XSD not built"

# --- command line -------------------------------------------------------
set +e
"$XSD" > "$T/out" 2>&1; rc=$?
set -e
[ $rc = 2 ] || fail "no --socket: exit $rc"
grep -q "^diskdm-xenstored: --socket PATH is required$" "$T/out" || fail "no --socket: $(cat "$T/out")"
set +e
"$XSD" --socket "$T/s" --domain-socket 0:"$T/d" > "$T/out" 2>&1; rc=$?
set -e
[ $rc = 2 ] || fail "bad --domain-socket: exit $rc"
[ "$(cat "$T/out")" = "diskdm-xenstored: --domain-socket expects DOMID:PATH with a domain id from 1 to 65535" ] \
    || fail "bad --domain-socket: $(cat "$T/out")"
set +e
"$XSD" --socket "$T/s" extra > "$T/out" 2>&1; rc=$?
set -e
[ $rc = 2 ] || fail "extra argument: exit $rc"
[ "$(cat "$T/out")" = "diskdm-xenstored: unexpected argument 'extra'" ] || fail "extra: $(cat "$T/out")"
: > "$T/file"
set +e
"$XSD" --socket "$T/file" > "$T/out" 2>&1; rc=$?
set -e
[ $rc = 1 ] || fail "socket path is a file: exit $rc"
[ "$(cat "$T/out")" = "diskdm-xenstored: '$T/file' exists and is not a socket" ] \
    || fail "file: $(cat "$T/out")"
set +e
"$XSD" --socket "$T/s" --bogus > "$T/out" 2>&1; rc=$?
set -e
[ $rc = 2 ] || fail "unknown option: exit $rc"
grep -q "^Usage: diskdm-xenstored --socket PATH" "$T/out" || fail "unknown option: $(cat "$T/out")"
long="$T/$(printf '%0120d' 0)"
set +e
"$XSD" --socket "$long" > "$T/out" 2>&1; rc=$?
set -e
[ $rc = 1 ] || fail "long socket path: exit $rc"
[ "$(cat "$T/out")" = "diskdm-xenstored: socket path '$long' is too long (at most 107 bytes)" ] \
    || fail "long path: $(cat "$T/out")"
set +e
"$XSD" --socket "$T/s" --log "$T/no/such/log" > "$T/out" 2>&1; rc=$?
set -e
[ $rc = 1 ] || fail "bad log file: exit $rc"
[ "$(cat "$T/out")" = "diskdm-xenstored: cannot open log file '$T/no/such/log': No such file or directory" ] \
    || fail "log: $(cat "$T/out")"
set +e
"$XSD" --socket "$T/s" --pidfile "$T/no/such/pid" > "$T/out" 2>&1; rc=$?
set -e
[ $rc = 1 ] || fail "bad pid file: exit $rc"
[ "$(cat "$T/out")" = "diskdm-xenstored: cannot write pid file '$T/no/such/pid': No such file or directory" ] \
    || fail "pid: $(cat "$T/out")"
[ ! -e "$T/s" ] || fail "socket left behind after a failed start"
ok "command-line errors"

# --- the daemon -----------------------------------------------------------
"$XSD" --socket "$T/sock" --pidfile "$T/pid" --log "$T/log" -v &
XSD_PID=$!
at_exit 'kill $XSD_PID 2>/dev/null; wait $XSD_PID 2>/dev/null'
i=0
while [ ! -s "$T/pid" ]; do
    kill -0 $XSD_PID 2>/dev/null || fail "daemon exited: $(cat "$T/log")"
    i=$((i + 1)); [ $i -lt 500 ] || fail "daemon did not start"
    sleep 0.01
done
export XENSTORED_PATH="$T/sock"

# A second daemon on the same socket refuses to take it over.
set +e
"$XSD" --socket "$T/sock" > "$T/out" 2>&1; rc=$?
set -e
[ $rc = 1 ] || fail "socket in use: exit $rc"
[ "$(cat "$T/out")" = "diskdm-xenstored: '$T/sock' is in use by a running daemon" ] \
    || fail "in use: $(cat "$T/out")"
ok "socket in use"

python3 - "$T/sock" <<'EOF'
import os, socket, struct, sys

path = sys.argv[1]
HDR = struct.Struct("<IIII")

def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    return s

def msg(t, req, payload, tx=0):
    return HDR.pack(t, req, tx, len(payload)) + payload

def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf

def reply(s):
    t, req, tx, ln = HDR.unpack(recv_exact(s, HDR.size))
    return t, req, tx, recv_exact(s, ln)

def closed(s):
    try:
        while s.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True

# Oversized payload lengths: the client is dropped.
for ln in (4097, 0x7fffffff, 0xffffffff):
    s = conn()
    s.sendall(HDR.pack(2, 1, 0, ln) + b"/x\0")
    assert closed(s), ln
    s.close()

# Vanishing mid-header and mid-payload.
s = conn(); s.sendall(b"\x02\x00\x00"); s.close()
s = conn(); s.sendall(HDR.pack(11, 1, 0, 100) + b"/half"); s.close()

# Garbage: whatever it parses as, the daemon must survive it.
rnd = os.urandom(1 << 20)
s = conn()
try:
    s.sendall(rnd)
except (BrokenPipeError, ConnectionResetError):
    pass
s.close()

# Unknown types: ENOSYS, ids echoed.
s = conn()
s.sendall(msg(99, 1234, b"x\0", tx=0))
assert reply(s) == (16, 1234, 0, b"ENOSYS\0"), "unknown type"
s.sendall(msg(15, 5, b"/a\0t\0"))
assert reply(s) == (16, 5, 0, b"ENOSYS\0"), "WATCH_EVENT from client"
s.close()

# Many clients at once, each pipelining requests before reading replies.
clients = [conn() for _ in range(64)]
for i, s in enumerate(clients):
    batch = b""
    for j in range(20):
        batch += msg(11, j, b"/load/%d/%d\0v%d" % (i, j, j))
    for j in range(20):
        batch += msg(2, 100 + j, b"/load/%d/%d\0" % (i, j))
    s.sendall(batch)
for i, s in enumerate(clients):
    for j in range(20):
        assert reply(s) == (11, j, 0, b"OK\0"), (i, j)
    for j in range(20):
        assert reply(s) == (2, 100 + j, 0, b"v%d" % j), (i, j)
for s in clients:
    s.close()
print("robust: ok")
EOF
[ "$(xenstore-read /load/63/19)" = v19 ] || fail "daemon lost data"
kill -0 $XSD_PID || fail "daemon died"
grep -q "dropping client (dom0): payload too long" "$T/log" || fail "no log of dropped client"
ok "hostile and busy clients"
kill $XSD_PID
wait $XSD_PID || fail "daemon exit status $?"

# Out of file descriptors: the daemon waits for clients to leave, then
# accepts again.
( ulimit -n 24; exec "$XSD" --socket "$T/sock2" --pidfile "$T/pid2" --log "$T/log2" -v ) &
XSD2_PID=$!
at_exit 'kill $XSD2_PID 2>/dev/null; wait $XSD2_PID 2>/dev/null'
i=0
while [ ! -s "$T/pid2" ]; do
    i=$((i + 1)); [ $i -lt 500 ] || fail "second daemon did not start"
    sleep 0.01
done
python3 - "$T/sock2" <<'EOF2'
import socket, struct, sys
HDR = struct.Struct("<IIII")
conns = []
for i in range(40):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    s.sendall(HDR.pack(2, i, 0, 6) + b"/tool\0")
    conns.append(s)
# The first ones are served while the rest wait in the listen backlog.
s = conns[0]
s.settimeout(30)
assert s.recv(HDR.size) == HDR.pack(2, 0, 0, 0)
for s in conns:
    s.close()
EOF2
[ "$(XENSTORED_PATH="$T/sock2" xenstore-read /tool)" = "" ] || fail "no service after EMFILE"
XENSTORED_PATH="$T/sock2" xenstore-write /after-emfile 1
grep -q "waiting for a client to close" "$T/log2" || fail "EMFILE not reached: $(cat "$T/log2")"
ok "out of file descriptors"
kill $XSD2_PID
wait $XSD2_PID || fail "second daemon exit status $?"
