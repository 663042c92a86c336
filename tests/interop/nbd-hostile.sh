#!/bin/sh
# diskdm-nbd against hostile and broken clients, on raw sockets: bad
# magic, unknown flags, malformed and oversized options, bad requests,
# truncated messages, clients that vanish mid-request or never read, a
# stalled handshake; then 16 clients x 10k requests. The server must answer
# each with the exact error, never stall the others, and exit cleanly (no
# leak under ASan) when told to.
. "$(dirname "$0")/lib.sh"
need qemu-img
. "$(dirname "$0")/_nbd-lib.sh"
cd "$T"

qemu-img create -q -f raw disk.raw 64M
"$NBD" -t -e 0 -f raw -k s.sock --handshake-limit=1 disk.raw 2> server.log &
spid=$!
at_exit "kill $spid 2>/dev/null"
for i in $(seq 50); do [ -S s.sock ] && break; sleep 0.1; done

$PY - "$T/s.sock" <<'PY' || fail "hostile clients"
import errno, socket, struct, sys, threading, time
SOCK = sys.argv[1]
IHAVEOPT = 0x49484156454F5054
REP_MAGIC = 0x3e889045565a9
REQ_MAGIC = 0x25609513
ERR = lambda n: (1 << 31) | n
ACK, SERVER, INFO, META = 1, 2, 3, 4
UNSUP, POLICY, INVALID, TLS_REQD, UNKNOWN, TOO_BIG = ERR(1), ERR(2), ERR(3), ERR(5), ERR(6), ERR(9)

class Conn:
    def __init__(self, flags=3, greet=True):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(20)
        self.s.connect(SOCK)
        if greet:
            g = self.recv(18)
            assert g[:16] == b"NBDMAGICIHAVEOPT" and g[16:] == b"\0\3", g
            if flags is not None:
                self.s.sendall(struct.pack(">I", flags))
    def recv(self, n):
        b = b""
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c:
                raise EOFError("closed after %d of %d bytes" % (len(b), n))
            b += c
        return b
    def closed(self):
        try:
            return self.s.recv(1) == b""
        except ConnectionResetError:
            return True
    def opt(self, opt, data=b"", magic=IHAVEOPT):
        self.s.sendall(struct.pack(">QII", magic, opt, len(data)) + data)
    def rep(self):
        m, o, t, l = struct.unpack(">QIII", self.recv(20))
        assert m == REP_MAGIC, hex(m)
        return o, t, self.recv(l)
    def expect(self, opt, typ):
        o, t, d = self.rep()
        assert (o, t) == (opt, typ), (o, hex(t), d, "wanted", opt, hex(typ))
        return d
    def go(self, sr=True, ctx=False):
        if sr:
            self.opt(8); self.expect(8, ACK)
        if ctx:
            q = b"base:allocation"
            self.opt(10, struct.pack(">I", 0) + struct.pack(">I", 1) + struct.pack(">I", len(q)) + q)
            self.expect(10, META); self.expect(10, ACK)
        self.opt(7, struct.pack(">IH", 0, 0))
        while True:
            o, t, d = self.rep()
            if t == ACK:
                break
            assert t == INFO, hex(t)
            if struct.unpack(">H", d[:2])[0] == 0:
                self.size, self.tflags = struct.unpack(">QH", d[2:12])
    def req(self, cmd, off=0, length=0, flags=0, cookie=1, data=b""):
        self.s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, cookie, off, length) + data)
    def simple(self):
        m, err, cookie = struct.unpack(">IIQ", self.recv(16))
        assert m == 0x67446698, hex(m)
        return err, cookie
    def chunk(self):
        m, fl, typ, cookie, l = struct.unpack(">IHHQI", self.recv(20))
        assert m == 0x668e33ef, hex(m)
        return fl, typ, cookie, self.recv(l)

def check(name, fn):
    fn()
    print("ok:", name)

# --- handshake ---------------------------------------------------------
check("client without fixed newstyle is dropped", lambda: Conn(flags=0).closed() or 1/0)
check("unknown client flags are dropped", lambda: Conn(flags=3 | 8).closed() or 1/0)
def bad_opt_magic():
    c = Conn(); c.opt(3, magic=0x1234); assert c.closed()
check("bad option magic drops the client", bad_opt_magic)
def options():
    c = Conn()
    c.opt(99, b"junk"); assert b"not supported" in c.expect(99, UNSUP)
    c.opt(11); c.expect(11, UNSUP)                    # extended headers
    c.opt(3, b"x"); c.expect(3, INVALID)              # LIST with data
    c.opt(3); d = c.expect(3, SERVER); assert d[:4] == b"\0\0\0\0", d; c.expect(3, ACK)
    c.opt(5); assert b"not configured" in c.expect(5, POLICY)
    c.opt(10, struct.pack(">II", 0, 0)); c.expect(10, INVALID)   # meta before SR
    c.opt(6, b"\0\0"); c.expect(6, INVALID)           # INFO too short
    c.opt(6, struct.pack(">I", 50) + b"abcd" + b"\0\0"); c.expect(6, INVALID)
    c.opt(6, struct.pack(">I", 4) + b"nope" + struct.pack(">H", 0)); c.expect(6, UNKNOWN)
    c.opt(6, struct.pack(">I", 0) + struct.pack(">HH", 5, 1)); c.expect(6, INVALID)  # count mismatch
    c.opt(8, b"x"); c.expect(8, INVALID)
    c.opt(8); c.expect(8, ACK)
    c.opt(8); c.expect(8, INVALID)                    # twice
    c.opt(9, struct.pack(">II", 0, 1) + struct.pack(">I", 99)); c.expect(9, INVALID)
    c.opt(9, struct.pack(">II", 0, 0)); assert c.expect(9, META)[4:] == b"base:allocation"; c.expect(9, ACK)
    c.opt(9, struct.pack(">II", 0, 1) + struct.pack(">I", 5) + b"base:")
    c.expect(9, META); c.expect(9, ACK)
    c.opt(10, struct.pack(">II", 0, 1) + struct.pack(">I", 5) + b"base:"); c.expect(10, ACK)  # SET: exact names only
    c.opt(1000, b"\0" * 100000); c.expect(1000, TOO_BIG)   # skipped, then still usable
    c.opt(2); c.expect(2, ACK); assert c.closed()
check("option errors: UNSUP, INVALID, POLICY, UNKNOWN, TOO_BIG; ABORT", options)
def huge_option():
    c = Conn(); c.opt(3); c.expect(3, SERVER); c.expect(3, ACK)
    c.s.sendall(struct.pack(">QII", IHAVEOPT, 3, 1 << 30)); assert c.closed()
check("a 1 GiB option drops the client", huge_option)
def bad_export_name():
    c = Conn(); c.opt(1, b"nope"); assert c.closed()
check("EXPORT_NAME of an unknown export drops the client", bad_export_name)
def export_name_ok():
    c = Conn(); c.opt(1, b""); size, fl = struct.unpack(">QH", c.recv(10)); assert size == 64 << 20
    c.req(0, 0, 512); assert c.simple() == (0, 1); c.recv(512)
    c.req(2); assert c.closed()
check("EXPORT_NAME without zeroes, then DISC", export_name_ok)
def stalled():
    c = Conn(flags=None)
    t = time.time(); assert c.closed()    # dropped by --handshake-limit
check("a client stalled in the handshake is dropped", stalled)

# --- transmission ------------------------------------------------------
def bad_requests():
    c = Conn(); c.go(sr=False)
    c.req(99, cookie=7); assert c.simple() == (errno.EINVAL, 7)
    c.req(0, 0, 512, flags=0x80, cookie=8); assert c.simple() == (errno.EINVAL, 8)
    c.req(0, 0, 512, flags=4, cookie=9); assert c.simple() == (errno.EINVAL, 9)   # DF without SR
    c.req(7, 0, 512, cookie=10); assert c.simple() == (errno.EINVAL, 10)          # BLOCK_STATUS without SR
    c.req(0, 0, 64 << 20, cookie=11); assert c.simple() == (errno.EINVAL, 11)     # > max block
    c.req(0, c.size, 1, cookie=12); assert c.simple() == (errno.EINVAL, 12)
    c.req(1, c.size - 1, 2, cookie=13, data=b"ab"); assert c.simple() == (errno.ENOSPC, 13)
    c.req(6, 0, 512, flags=2 | 8, cookie=14); assert c.simple() == (errno.EINVAL, 14)  # REQ_ONE on zero
    c.req(3, cookie=15); assert c.simple() == (0, 15)
    c.req(0, 0, 0, cookie=16); assert c.simple() == (0, 16)
    c.req(1, 0, 64 << 20)         # oversized write: dropped
    assert c.closed()
check("bad requests get EINVAL/ENOSPC; an oversized WRITE drops the client", bad_requests)
def structured():
    c = Conn(); c.go(sr=True, ctx=True)
    c.req(0, 0, 1 << 20, cookie=5)
    got = 0
    while True:
        fl, typ, ck, d = c.chunk(); assert ck == 5
        if typ == 1: got += len(d) - 8
        elif typ == 2: got += struct.unpack(">QI", d)[1]
        if fl & 1: break
    assert got == 1 << 20, got
    c.req(7, 0, 64 << 20, flags=8, cookie=6)
    fl, typ, ck, d = c.chunk(); assert (fl, typ, ck) == (1, 5, 6) and len(d) == 12, (fl, typ, d)
    c.req(0, c.size, 512, cookie=7)
    fl, typ, ck, d = c.chunk()
    assert (fl, typ, ck) == (1, 0x8001, 7) and struct.unpack(">I", d[:4])[0] == errno.EINVAL
    c.req(7, 0, 0, cookie=8); fl, typ, ck, d = c.chunk(); assert typ == 0x8001
    c.req(0, 0, 512, cookie=9, flags=4)
    fl, typ, ck, d = c.chunk(); assert (fl, typ, len(d)) == (1, 1, 520), (fl, typ, len(d))
    c.s.sendall(struct.pack(">I", 0xdeadbeef) + b"\0" * 24); assert c.closed()
check("structured replies, REQ_ONE, error chunks, bad request magic", structured)
def truncated():
    for n in (3, 17, 27):
        c = Conn(); c.go(); c.s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, 0, 0, 1, 0, 512)[:n]); c.s.close()
    c = Conn(); c.go(); c.req(1, 0, 4096, data=b"x" * 100); c.s.close()    # payload cut short
    c = Conn(); c.s.sendall(b"\0\0"); c.s.close()
    c = Conn(); c.opt(3, b""[:0]); c.s.sendall(struct.pack(">QI", IHAVEOPT, 6)); c.s.close()
check("truncated messages", truncated)
def vanish():
    c = Conn(); c.go()
    for i in range(32):
        c.req(0, i << 20, 1 << 20, cookie=i)
    c.s.close()
check("a client vanishing with 32 MiB of reads in flight", vanish)
def slow_reader():
    bad = Conn(); bad.go(sr=False)
    bad.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for i in range(128):       # never reads the 128 MiB of replies
        bad.req(0, (i % 63) << 20, 1 << 20, cookie=i)
    good = Conn(); good.go(sr=False)
    for i in range(200):
        good.req(1, 4096 * i, 4096, cookie=i, data=bytes([i % 256]) * 4096)
        assert good.simple() == (0, i)
        good.req(0, 4096 * i, 4096, cookie=i)
        assert good.simple() == (0, i) and good.recv(4096) == bytes([i % 256]) * 4096
    good.req(2); bad.s.close()
check("a client that never reads does not stall another", slow_reader)

# --- load: 16 clients x 10k requests ------------------------------------
errors = []
def worker(k):
    try:
        c = Conn(); c.go(sr=False)
        base = (k * 4) << 20
        pat = lambda i: bytes([(k * 7 + i) % 256]) * 512
        done = 0
        while done < 10000:
            # 25 writes in flight, then 25 reads of them (a read racing a
            # write to the same block may see either: NBD does not order them)
            batch = min(50, 10000 - done) // 2
            js = range(done // 2, done // 2 + batch)
            for j in js:
                c.req(1, base + 512 * (j % 4096), 512, cookie=j, data=pat(j))
            got = sorted(c.simple() for j in js)
            assert got == [(0, j) for j in js], got
            for j in js:
                c.req(0, base + 512 * (j % 4096), 512, cookie=j)
            for j in js:
                err, ck = c.simple()
                assert err == 0, err
                assert c.recv(512) == pat(ck), (k, ck)
            done += 2 * batch
        c.req(2)
        assert c.closed()
    except Exception as e:
        errors.append((k, repr(e)))
ts = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
[t.start() for t in ts]; [t.join() for t in ts]
assert not errors, errors
print("ok: 16 clients x 10000 requests")
PY
kill -0 $spid || fail "the server died"
kill -TERM $spid
rc=0; wait $spid || rc=$?
[ $rc = 0 ] || fail "server exit status $rc: $(tail -20 server.log)"
grep -q "ERROR: \|runtime error" server.log && fail "sanitizer report: $(cat server.log)"
ok "server survived and exited cleanly"
