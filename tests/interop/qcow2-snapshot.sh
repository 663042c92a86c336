#!/bin/sh
# diskdm-img snapshot against qemu-img: -l prints exactly what
# `qemu-img snapshot -l` prints for the same image (snapshots made by
# either), qemu-img check is clean after every -c/-a/-d, snapshots keep
# their contents while the image is written (by qemu-io or diskdm), -a
# brings them back, and a read-only image refuses -c/-a/-d.
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io setpriv
IMG="$BUILD/diskdm-img"
[ -x "$IMG" ] || fail "$IMG not built"
cd "$T"

same_list() {
    "$IMG" snapshot -l "$1" > ours.txt || fail "snapshot -l $1"
    qemu-img snapshot -l "$1" > theirs.txt
    diff -u theirs.txt ours.txt || fail "snapshot -l differs from qemu-img's"
}
clean() { qemu-img check -q "$1" || fail "qemu-img check after $2"; }
expect_err() {   # expected-stderr command...
    want=$1; shift
    if "$@" > out.txt 2> err.txt; then fail "$* succeeded"; fi
    printf '%s\n' "$want" > want.txt
    diff -u want.txt err.txt || fail "$*: wrong message"
}

for opts in cluster_size=65536 cluster_size=4096,refcount_bits=8 extended_l2=on; do
    rm -f i.qcow2 *.raw
    qemu-img create -q -f qcow2 -o "$opts" i.qcow2 16M
    qemu-io -f qcow2 -c 'write -P 1 0 16M' i.qcow2 > /dev/null
    qemu-img convert -O raw i.qcow2 one.raw
    "$IMG" snapshot -c one i.qcow2; clean i.qcow2 "-c one ($opts)"
    qemu-io -f qcow2 -c 'write -P 2 1M 300k' -c 'write -z 8M 1M' -c 'write -P 3 15M 5000' \
        i.qcow2 > /dev/null
    clean i.qcow2 "qemu-io writes after -c"
    qemu-img snapshot -c two i.qcow2
    qemu-img convert -O raw i.qcow2 two.raw
    "$IMG" snapshot -c 'a longer snapshot name' i.qcow2; clean i.qcow2 "-c long"
    same_list i.qcow2
    # Both snapshots kept their contents.
    qemu-img convert -O raw -l snapshot.name=one i.qcow2 s.raw; cmp s.raw one.raw
    qemu-img convert -O raw -l snapshot.name=two i.qcow2 s.raw; cmp s.raw two.raw
    "$IMG" snapshot -a one i.qcow2; clean i.qcow2 "-a one"
    qemu-img compare -q -F raw i.qcow2 one.raw || fail "-a one: contents differ"
    "$IMG" snapshot -a 2 i.qcow2; clean i.qcow2 "-a 2"
    qemu-img compare -q -F raw i.qcow2 two.raw || fail "-a 2: contents differ"
    "$IMG" snapshot -d one i.qcow2; clean i.qcow2 "-d one"
    same_list i.qcow2
    expect_err "diskdm-img: Could not delete snapshot 'one': snapshot not found" \
        "$IMG" snapshot -d one i.qcow2
    expect_err "diskdm-img: Could not apply snapshot 'one': Failed to load snapshot: No such file or directory" \
        "$IMG" snapshot -a one i.qcow2
    "$IMG" snapshot -d two i.qcow2; "$IMG" snapshot -d 'a longer snapshot name' i.qcow2
    clean i.qcow2 "-d all"
    [ -z "$("$IMG" snapshot -l i.qcow2)" ] || fail "no snapshots: -l printed something"
    qemu-img compare -q -F raw i.qcow2 two.raw || fail "contents changed by -d"
done
ok "create, list, apply, delete"

# Read-only: the file mode (as an unprivileged user), and -U.
qemu-img create -q -f qcow2 r.qcow2 1M
"$IMG" snapshot -c one r.qcow2
chmod 0444 r.qcow2
for a in "-c x" "-a one" "-d one"; do
    # shellcheck disable=SC2086
    if as_nobody "$IMG" snapshot $a r.qcow2 2> err.txt; then fail "snapshot $a on a read-only file"; fi
    grep -q "Permission denied" err.txt || fail "snapshot $a: $(cat err.txt)"
done
as_nobody "$IMG" snapshot -l r.qcow2 > ours.txt
qemu-img snapshot -l r.qcow2 > theirs.txt
diff -u theirs.txt ours.txt
expect_err "diskdm-img: Could not open 'r.qcow2': force-share=on can only be used with read-only images" \
    "$IMG" snapshot -U -c y r.qcow2
ok "read-only refused"
