#!/bin/sh
# `make demo` (scripts/demo.sh), the README's first command, keeps telling
# its story: hda writable, hdb refused with ABRT and unchanged, then
# writable after block-set-mode, and nothing left running afterwards.
. "$SRCDIR/tests/interop/lib.sh"
need python3 xenstore-read sha256sum
BUILD=$BUILD TMPDIR=$T sh "$SRCDIR/scripts/demo.sh" > "$T/demo.out" 2>&1 ||
    { cat "$T/demo.out"; fail "demo failed"; }
out=$T/demo.out
grep -qx "   write to hda: OK" "$out" || fail "hda write"
[ "$(grep -c -x "   write to hdb: rejected by the disk (status 0x41, error ABRT)" "$out")" = 2 ] ||
    fail "hdb refusals"
[ "$(grep -c -x "   write to hdb: OK" "$out")" = 1 ] || fail "hdb write after the mode change"
before=$(sed -n 's/^   hdb.img checksum before: \([0-9a-f]*\).*/\1/p' "$out")
after=$(sed -n 's/^   hdb.img checksum after:  \([0-9a-f]*\).*/\1/p' "$out")
now=$(sed -n 's/^   hdb.img checksum now:    \([0-9a-f]*\).*/\1/p' "$out")
[ -n "$before" ] && [ "$before" = "$after" ] || fail "hdb changed while read-only"
[ -n "$now" ] && [ "$now" != "$before" ] || fail "hdb unchanged after the write"
pid=$(sed -n 's/^1\. Started diskdm-xenstored (pid \([0-9]*\)).*/\1/p' "$out")
[ -n "$pid" ] || fail "no daemon pid in the output"
if [ -e "/proc/$pid/stat" ] && ! grep -q ') Z' "/proc/$pid/stat"; then
    fail "diskdm-xenstored $pid is still running"
fi
[ -z "$(ls "$T" | grep diskdm-demo)" ] || fail "the demo left its directory behind"
ok "demo"
