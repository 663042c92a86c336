#!/bin/sh
# The IDE, ATAPI and virtio-blk guest I/O traces (tests/traces), replayed by
# diskdm-trace against `diskdm --domid N` whose disks come from xenstore
# (written by diskdm-xl; readonly=on becomes mode=r) instead of -drive:
# every reply must match the same expected file, so a disk from xenstore
# behaves exactly like the same disk from the command line, read-only
# included.
. "$SRCDIR/tests/interop/lib.sh"
. "$SRCDIR/tests/interop/_xen-lib.sh"
[ -x "$DISKDM" ] || fail "$DISKDM is not built"
[ -x "$BUILD/diskdm-trace" ] || fail "$BUILD/diskdm-trace is not built"
start_xenstored
export XL DISKDM
n=0 domid=0
for tr in "$SRCDIR"/tests/traces/*.trace; do
    # traces with disks whose options all have a xenstore equivalent
    # (num-queues and serial have none)
    grep -q '^!disk' "$tr" || continue
    if grep '^!disk' "$tr" | grep -q -e num-queues -e serial=; then continue; fi
    domid=$((domid + 1))
    name=$(basename "$tr" .trace)
    if ! XEN_TRACE_DOMID=$domid "$BUILD/diskdm-trace" "$tr" -- \
            sh "$SRCDIR/tests/interop/_xen-trace-dm.sh" -qtest stdio > "$T/$name.log" 2>&1; then
        cat "$T/$name.log" >&2
        fail "trace $name differs with disks from xenstore"
    fi
    [ "$(xenstore-read /local/domain/0/device-model/$domid/state)" = running ] ||
        fail "$name: domain $domid did not run"
    $XL destroy $domid
    n=$((n + 1))
done
[ $n -gt 10 ] || fail "only $n traces ran"
ok "$n traces match with disks from xenstore"
no_sanitizer_reports
