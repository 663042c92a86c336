# Shared helpers for shell tests; source it first:  . "$SRCDIR/tests/interop/lib.sh"
# Gives: $T (a private temp dir removed on exit), $BUILD, $SRCDIR, need CMD...
# (exit 77 when a peer is missing), fail MSG, and as_nobody CMD... .
set -eu
SRCDIR=${SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${BUILD:-$SRCDIR/build}
case "$BUILD" in /*) ;; *) BUILD="$SRCDIR/$BUILD" ;; esac
T=$(mktemp -d "${TMPDIR:-/tmp}/diskdm-test.XXXXXX")
chmod 0755 "$T"
_cleanup_fns=""
at_exit() { _cleanup_fns="$1; $_cleanup_fns"; }
_on_exit() { rc=$?; eval "$_cleanup_fns" 2>/dev/null || true; rm -rf "$T"; exit $rc; }
trap _on_exit EXIT INT TERM
need() {
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || { echo "missing peer: $c"; exit 77; }
    done
}
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
# Run a command as an unprivileged user (root ignores mode 0444).
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }
