#!/bin/sh
# Runs every test suite: Check unit tests (build/tests/unit/test-*), guest
# I/O traces (tests/traces/run.sh) and shell tests against real peers
# (tests/interop/*.sh). Each test's output goes to $BUILD/test-logs/NAME.log,
# replacing only that test's log from an earlier run, so that runs at the
# same time in one build directory (different patterns) keep each other's
# logs: a test writes to a file of its own run and renames it into place
# when it ends. The run ends with one line "N passed, N failed, N
# skipped". A shell test exits 77 to skip; with CI=true or STRICT=1 a skip
# fails the run.
#
# Usage: tests/run.sh [PATTERN...]   (run only tests whose name contains one)
set -u
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$SRCDIR/$BUILD" ;; esac
export SRCDIR BUILD
LOGS="$BUILD/test-logs"
mkdir -p "$LOGS"
# an interrupted run leaves no half-written log behind
trap 'rm -f "$LOGS"/.*.log.$$' EXIT
trap 'exit 130' INT TERM
pass=0; fail=0; skip=0; failed=""; skipped=""

wanted() {
    [ $# -eq 0 ] && return 0
    # shellcheck disable=SC2048
    for pat in $PATTERNS; do
        case "$1" in *"$pat"*) return 0 ;; esac
    done
    return 1
}
PATTERNS="$*"

run_one() {   # name command...
    name=$1; shift
    [ -z "$PATTERNS" ] || wanted "$name" $PATTERNS || return 0
    log="$LOGS/$(echo "$name" | tr '/' '_').log"
    tmp="$LOGS/.$(basename "$log").$$"
    start=$(date +%s)
    "$@" > "$tmp" 2>&1 < /dev/null
    rc=$?
    mv -f "$tmp" "$log"
    secs=$(( $(date +%s) - start ))
    case $rc in
    0) pass=$((pass + 1)); printf '  PASS  %-48s %3ds\n' "$name" "$secs" ;;
    77) skip=$((skip + 1)); skipped="$skipped $name"
        printf '  SKIP  %-48s (%s)\n' "$name" "$(tail -n 1 "$log")" ;;
    *) fail=$((fail + 1)); failed="$failed $name"
       printf '  FAIL  %-48s rc=%d, log: %s\n' "$name" "$rc" "$log"
       tail -n 25 "$log" | sed 's/^/        | /' ;;
    esac
}

for t in "$BUILD"/tests/unit/test-*; do
    [ -x "$t" ] || continue
    case "$t" in *.o|*.d) continue ;; esac
    CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-60} run_one "unit/$(basename "$t")" "$t"
done

if [ -x "$SRCDIR/tests/traces/run.sh" ]; then
    for tr in "$SRCDIR"/tests/traces/*.trace; do
        [ -e "$tr" ] || continue
        run_one "traces/$(basename "$tr" .trace)" sh "$SRCDIR/tests/traces/run.sh" "$tr"
    done
fi

for s in "$SRCDIR"/tests/interop/*.sh; do
    [ -e "$s" ] || continue
    case "$(basename "$s")" in lib.sh|_*) continue ;; esac
    run_one "interop/$(basename "$s" .sh)" timeout 600 sh "$s"
done

echo
[ -n "$failed" ] && echo "failed:$failed"
[ -n "$skipped" ] && echo "skipped:$skipped"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ] || exit 1
if [ "$skip" -ne 0 ] && { [ "${CI:-}" = true ] || [ "${STRICT:-0}" = 1 ]; }; then
    echo "run.sh: tests were skipped; every peer must be installed here" >&2
    exit 1
fi
[ $((pass + fail + skip)) -gt 0 ] || { echo "run.sh: no test ran" >&2; exit 1; }
exit 0
