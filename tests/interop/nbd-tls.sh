#!/bin/sh
# diskdm-nbd with TLS (GnuTLS): x509 certificates (client certificate
# required, as QEMU's verify-peer=on) and PSK, checked with nbdinfo and
# nbdcopy through libnbd; plaintext clients get NBD_REP_ERR_TLS_REQD;
# --tls-authz refuses other identities; bad credentials fail clearly.
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io nbdinfo nbdcopy openssl
. "$(dirname "$0")/_nbd-lib.sh"
cd "$T"

qemu-img create -q -f raw disk.raw 16M
qemu-io -f raw -c 'write -P 0x42 0 1M' disk.raw >/dev/null

# --- a CA, a server and a client certificate ----------------------------
mkdir pki cli
q() { "$@" >/dev/null 2>&1 || fail "openssl: $*"; }
q openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=diskdm test CA" \
    -keyout pki/ca-key.pem -out pki/ca-cert.pem
cat > ext.cnf <<'X'
[srv]
subjectAltName = DNS:localhost, IP:127.0.0.1
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
[cli]
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
X
for who in server client; do
    q openssl req -newkey rsa:2048 -nodes -subj "/O=diskdm/CN=$who" \
        -keyout "pki/$who-key.pem" -out "$who.csr"
    ext=srv; [ $who = client ] && ext=cli
    q openssl x509 -req -in "$who.csr" -CA pki/ca-cert.pem -CAkey pki/ca-key.pem \
        -CAcreateserial -days 2 -extfile ext.cnf -extensions $ext -out "pki/$who-cert.pem"
done
cp pki/ca-cert.pem pki/client-cert.pem pki/client-key.pem cli/

X509="--object tls-creds-x509,id=tls0,dir=$T/pki,endpoint=server"
nbd_start x -r -t -e 2 -f raw -k x.sock $X509 --tls-creds tls0 disk.raw
nbdinfo "nbds+unix:///?socket=x.sock&tls-certificates=$T/cli" > info.txt \
    || fail "nbdinfo over x509 TLS"
grep -q "protocol: newstyle-fixed with TLS" info.txt || fail "$(cat info.txt)"
nbdcopy "nbds+unix:///?socket=x.sock&tls-certificates=$T/cli" copy.raw
cmp disk.raw copy.raw || fail "data read over TLS differs"
ok "x509: nbdinfo and nbdcopy over TLS"

nbdinfo "nbd+unix:///?socket=x.sock" > /dev/null 2> err.txt && fail "plaintext client served"
$PY - "$T/x.sock" <<'PY' || fail "plaintext options must get ERR_TLS_REQD"
import socket, struct, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
assert s.recv(18, socket.MSG_WAITALL)[:8] == b"NBDMAGIC"
s.sendall(struct.pack(">I", 3))
for opt in (3, 7, 8):
    data = struct.pack(">IH", 0, 0) if opt == 7 else b""
    s.sendall(struct.pack(">QII", 0x49484156454F5054, opt, len(data)) + data)
    m, o, t, l = struct.unpack(">QIII", s.recv(20, socket.MSG_WAITALL))
    assert (o, t) == (opt, (1 << 31) | 5), (o, hex(t))
    assert b"TLS is required" in s.recv(l, socket.MSG_WAITALL)
PY
"$NBD" -L -k x.sock --object tls-creds-x509,id=c0,dir=$T/cli,endpoint=client \
    --tls-creds c0 > list.txt || fail "-L over TLS"
grep -q "^ export: ''$" list.txt || fail "-L over TLS: $(cat list.txt)"
"$NBD" -L -k x.sock > /dev/null 2>&1 && fail "-L in plaintext listed a TLS-only server"
mkdir nocert; cp pki/ca-cert.pem nocert/
nbdinfo "nbds+unix:///?socket=x.sock&tls-certificates=$T/nocert" > /dev/null 2>&1 \
    && fail "a client without a certificate was served (verify-peer=on)"
nbd_stop x
ok "x509: plaintext gets ERR_TLS_REQD; a client without a certificate is refused"

# an encrypted server key, its passphrase in a secret object
mkdir pki2
cp pki/ca-cert.pem pki/server-cert.pem pki2/
q openssl pkcs8 -topk8 -v2 aes-256-cbc -passout pass:sesame -in pki/server-key.pem \
    -out pki2/server-key.pem
printf sesame > pw.txt    # used as is, as QEMU does: no newline
nbd_start enc -r -t -f raw -k enc.sock --object secret,id=pw,file=$T/pw.txt \
    --object tls-creds-x509,id=tls2,dir=$T/pki2,endpoint=server,passwordid=pw \
    --tls-creds tls2 disk.raw
nbdinfo "nbds+unix:///?socket=enc.sock&tls-certificates=$T/cli" > /dev/null \
    || fail "TLS with an encrypted key"
nbd_stop enc
rc=0; "$NBD" -r -f raw -k enc.sock --object secret,id=pw,data=wrong \
    --object tls-creds-x509,id=tls2,dir=$T/pki2,endpoint=server,passwordid=pw \
    --tls-creds tls2 disk.raw 2> err.txt || rc=$?
[ $rc = 1 ] && grep -q "^diskdm-nbd: Cannot load certificate .*server-key.pem" err.txt \
    || fail "wrong passphrase: $(cat err.txt)"
ok "x509 with an encrypted key and a secret object"

# --- --tls-authz ----------------------------------------------------------
nbd_start az -r -t -f raw -k az.sock $X509 --tls-creds tls0 \
    --object authz-simple,id=auth0,identity=O=diskdm,,CN=someone-else --tls-authz auth0 disk.raw
nbdinfo "nbds+unix:///?socket=az.sock&tls-certificates=$T/cli" > /dev/null 2>&1 \
    && fail "--tls-authz let another identity in"
nbd_stop az
nbd_start az2 -r -t -f raw -k az.sock $X509 --tls-creds tls0 \
    --object "authz-simple,id=auth0,identity=O=diskdm,,CN=client" --tls-authz auth0 disk.raw
nbdinfo "nbds+unix:///?socket=az.sock&tls-certificates=$T/cli" > /dev/null \
    || fail "--tls-authz refused the right identity"
nbd_stop az2
ok "--tls-authz admits only its identity"

# --- PSK ------------------------------------------------------------------
mkdir psk
echo "alice:$(openssl rand -hex 32)" > psk/keys.psk
echo "alice:$(openssl rand -hex 32)" > wrong.psk
nbd_start p -t -e 2 -f raw -k p.sock \
    --object tls-creds-psk,id=tls1,dir=$T/psk,endpoint=server --tls-creds tls1 disk.raw
nbdinfo "nbds+unix://alice@/?socket=p.sock&tls-psk-file=$T/psk/keys.psk" > info.txt \
    || fail "nbdinfo over PSK"
grep -q "with TLS" info.txt || fail "$(cat info.txt)"
nbdcopy "nbds+unix://alice@/?socket=p.sock&tls-psk-file=$T/psk/keys.psk" copy2.raw
cmp disk.raw copy2.raw || fail "data read over PSK differs"
nbdinfo "nbds+unix://alice@/?socket=p.sock&tls-psk-file=$T/wrong.psk" > /dev/null 2>&1 \
    && fail "a wrong PSK was accepted"
nbd_stop p
ok "PSK: right key served, wrong key refused"

# --- bad credentials ------------------------------------------------------
rc=0; "$NBD" -f raw -k b.sock --object tls-creds-x509,id=t,dir=$T/pki,endpoint=client \
    --tls-creds t disk.raw 2> err.txt || rc=$?
[ $rc = 1 ] || fail "client endpoint accepted (rc=$rc)"
grep -q "^diskdm-nbd: Expecting TLS credentials with a server endpoint$" err.txt || fail "$(cat err.txt)"
rc=0; "$NBD" -f raw -k b.sock --object tls-creds-x509,id=t,dir=$T/nowhere,endpoint=server \
    --tls-creds t disk.raw 2> err.txt || rc=$?
[ $rc = 1 ] || fail "missing credentials accepted"
grep -q "Unable to access credentials $T/nowhere/ca-cert.pem" err.txt || fail "$(cat err.txt)"
rc=0; "$NBD" -f raw -k b.sock --tls-creds nope disk.raw 2> err.txt || rc=$?
grep -q "No TLS credentials with id 'nope'" err.txt || fail "$(cat err.txt)"
rc=0; "$NBD" -f raw -k b.sock --object bogus,id=x disk.raw 2> err.txt || rc=$?
[ $rc = 2 ] && grep -q "invalid object type 'bogus'" err.txt || fail "$(cat err.txt)"
ok "bad credentials fail with a clear message"
