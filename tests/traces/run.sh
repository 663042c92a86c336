#!/bin/sh
# Replays one guest I/O trace against QEMU (unless the trace says
# `!target diskdm`) and against diskdm; each must match FILE.expected.
#   sh tests/traces/run.sh FILE.trace            compare (what make check runs)
#   sh tests/traces/run.sh --record FILE.trace   re-record FILE.expected from QEMU
# QEMU runs with TCG and -S: no guest CPU, only the qtest channel drives it.
set -eu
SRCDIR=${SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${BUILD:-$SRCDIR/build}
case "$BUILD" in /*) ;; *) BUILD="$SRCDIR/$BUILD" ;; esac
QEMU=${QEMU:-qemu-system-x86_64}
record=
if [ "${1:-}" = --record ]; then record=--record; shift; fi
[ $# -eq 1 ] || { echo "usage: run.sh [--record] FILE.trace" >&2; exit 2; }
tr=$1
replay="$BUILD/diskdm-trace"
[ -x "$replay" ] || { echo "run.sh: $replay is not built" >&2; exit 1; }

if grep -q '^!target diskdm' "$tr"; then
    qemu_too=false
else
    qemu_too=true
    command -v "$QEMU" >/dev/null 2>&1 || { echo "missing peer: $QEMU"; exit 77; }
fi

if [ -n "$record" ]; then
    $qemu_too || { echo "run.sh: $tr is diskdm-only: its expected file is written by hand" >&2; exit 2; }
    exec "$replay" --record "$tr" -- "$QEMU" -machine pc -nodefaults -display none \
        -qtest stdio -qtest-log none -accel tcg -S
fi

if $qemu_too; then
    echo "== QEMU"
    "$replay" "$tr" -- "$QEMU" -machine pc -nodefaults -display none \
        -qtest stdio -qtest-log none -accel tcg -S
fi
echo "== diskdm"
[ -x "$BUILD/diskdm" ] || { echo "diskdm is not built"; exit 77; }
"$replay" "$tr" -- "$BUILD/diskdm" -qtest stdio
