#!/bin/sh
# qcow2 through diskdm against qemu-img and qemu-io: images qemu-img makes
# (option matrix, compressed, zero clusters, a depth-3 backing chain) read
# through diskdm-nbd exactly as `qemu-img convert -O raw` gives them; writes
# through diskdm-nbd (random, partial clusters, over a backing file,
# discard, write-zeroes) leave an image `qemu-img check` finds clean and
# `qemu-img compare` finds identical to the same writes on a raw file;
# snapshot mode leaves the image untouched.
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io
NBD="$BUILD/diskdm-nbd"
[ -x "$NBD" ] || { echo "missing $NBD"; exit 77; }
cd "$T"

n=0
serve() {   # serve ARGS... : start diskdm-nbd in the background on $sock
    n=$((n + 1))
    sock=$T/nbd$n.sock
    "$NBD" -t --fork --pid-file="$T/nbd$n.pid" -k "$sock" "$@" \
        || fail "diskdm-nbd $* did not start"
    pid=$(cat "$T/nbd$n.pid")
    at_exit "kill $pid"
}
stop() {    # stop [wait]: SIGTERM; wait for the image to be closed cleanly
    kill "$pid" 2>/dev/null || true
    if [ "${1:-}" = wait ]; then
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    fi
}
url() { echo "nbd+unix:///?socket=$sock"; }

WRITES="-c 'write -P 0x11 0 4k' -c 'write -P 0x22 1020k 70k' -c 'write -P 0x33 3000k 1k'
 -c 'write -P 0x44 5m 1m' -c 'write -z 5m 64k' -c 'write -z -u 5632k 128k'
 -c 'write -P 0x55 7m 513' -c 'write -P 0x66 8191k 1k'"

# --- reads of qemu-made images -------------------------------------------
for o in compat=0.10 compat=1.1 compat=1.1,cluster_size=512,refcount_bits=1 \
         compat=1.1,cluster_size=2M,refcount_bits=64 compat=1.1,lazy_refcounts=on \
         compat=1.1,preallocation=metadata compat=1.1,preallocation=full,cluster_size=4k; do
    rm -f q.qcow2 ref.raw out.raw
    qemu-img create -q -f qcow2 -o "$o" q.qcow2 8M
    eval qemu-io -f qcow2 $WRITES q.qcow2 >/dev/null
    qemu-img convert -f qcow2 -O raw q.qcow2 ref.raw
    serve -r -f qcow2 q.qcow2
    qemu-img convert -f raw -O raw "$(url)" out.raw
    stop
    cmp ref.raw out.raw || fail "read of qemu-made image ($o) differs"
    ok "read $o"
done

head -c 2M /dev/urandom > src.raw
yes diskdm | head -c 2M >> src.raw
truncate -s 6M src.raw
for ct in zlib zstd; do
    rm -f c.qcow2 out.raw
    qemu-img convert -q -c -f raw -O qcow2 -o compression_type=$ct src.raw c.qcow2
    serve -r -f qcow2 c.qcow2
    qemu-img convert -f raw -O raw "$(url)" out.raw
    stop
    cmp src.raw out.raw || fail "compressed ($ct) read differs"
    ok "compressed $ct"
done

# depth-3 chain: raw <- qcow2 <- qcow2 (in a subdirectory, relative names)
qemu-img create -q -f raw base.raw 8M
qemu-io -f raw -c 'write -P 0xa1 0 8M' base.raw >/dev/null
qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2
qemu-io -f qcow2 -c 'write -P 0xb2 1m 100k' -c 'write -z 4m 64k' mid.qcow2 >/dev/null
mkdir -p sub
qemu-img create -q -f qcow2 -b ../mid.qcow2 -F qcow2 -o cluster_size=4k sub/top.qcow2
qemu-io -f qcow2 -c 'write -P 0xc3 1050k 4k' -c 'write -P 0xc4 6m 3k' sub/top.qcow2 >/dev/null
qemu-img convert -f qcow2 -O raw sub/top.qcow2 ref.raw
serve -r -f qcow2 sub/top.qcow2
qemu-img convert -f raw -O raw "$(url)" out.raw
stop
cmp ref.raw out.raw || fail "backing chain read differs"
ok "backing chain depth 3"

# --- writes by diskdm, judged by qemu-img ----------------------------------
ops() {  # the same random I/O for qemu-io, on any target
    awk -v seed="$1" 'BEGIN { srand(seed);
        for (i = 0; i < 150; i++) {
            off = int(rand() * 8000) * 1024 + int(rand() * 2) * 512;
            len = (int(rand() * 200) + 1) * 512;
            if (off + len > 8388608) len = 8388608 - off;
            r = rand();
            if (r < 0.7) printf "-c \047write -P %d %d %d\047 ", 1 + i % 250, off, len;
            else if (r < 0.9) printf "-c \047write -z %d %d\047 ", off, len;
            else printf "-c \047write -z -u %d %d\047 ", off, len;
        } }'
}
for o in compat=1.1 compat=0.10 compat=1.1,cluster_size=512,refcount_bits=2; do
    for backing in no yes; do
        rm -f w.qcow2 ref.raw wb.qcow2
        if [ $backing = yes ]; then
            qemu-img create -q -f qcow2 wb.qcow2 8M
            qemu-io -f qcow2 -c 'write -P 0x5a 0 7M' wb.qcow2 >/dev/null
            qemu-img create -q -f qcow2 -o "$o" -b wb.qcow2 -F qcow2 w.qcow2 8M
            qemu-img convert -f qcow2 -O raw wb.qcow2 ref.raw
        else
            qemu-img create -q -f qcow2 -o "$o" w.qcow2 8M
            truncate -s 8M ref.raw
        fi
        cmds=$(ops $n)
        serve -f qcow2 w.qcow2
        eval qemu-io -f raw $cmds "'$(url)'" >/dev/null
        stop wait
        eval qemu-io -f raw $cmds ref.raw >/dev/null
        qemu-img check -q w.qcow2 || fail "qemu-img check after diskdm writes ($o, backing $backing)"
        qemu-img compare -q -f qcow2 -F raw w.qcow2 ref.raw \
            || fail "diskdm writes differ ($o, backing $backing)"
        ok "write $o backing=$backing"
    done
done

# discard through NBD trim: allowed to read back as zeroes or old data,
# the image must stay consistent
rm -f d.qcow2
qemu-img create -q -f qcow2 d.qcow2 8M
qemu-io -f qcow2 -c 'write -P 7 0 8M' d.qcow2 >/dev/null
serve -f qcow2 --discard=unmap d.qcow2
qemu-io -f raw -c 'discard 64k 1m' -c 'discard 3m 10k' "$(url)" >/dev/null
stop wait
qemu-img check -q d.qcow2 || fail "qemu-img check after discard"
ok "discard"

# --- snapshot mode ------------------------------------------------------------
rm -f s.qcow2
qemu-img create -q -f qcow2 s.qcow2 8M
qemu-io -f qcow2 -c 'write -P 0x31 0 8M' s.qcow2 >/dev/null
sum0=$(md5sum < s.qcow2)
serve -s -f qcow2 s.qcow2
qemu-io -f raw -c 'write -P 0x99 100k 200k' -c 'read -P 0x99 100k 200k' \
    -c 'read -P 0x31 0 100k' "$(url)" | grep -q "read 204800/204800" \
    || fail "snapshot writes not visible"
stop
[ "$(md5sum < s.qcow2)" = "$sum0" ] || fail "snapshot mode changed the image"
ok "snapshot"
