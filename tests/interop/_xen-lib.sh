# Shared by tests/interop/xen-*.sh (source after lib.sh): a private
# diskdm-xenstored on a Unix socket in $T, and small assertion helpers.
need xenstore-read xenstore-write xenstore-ls xenstore-list xenstore-rm python3
XSD=$BUILD/diskdm-xenstored
XL=$BUILD/diskdm-xl
DISKDM=$BUILD/diskdm
GUEST="python3 $SRCDIR/scripts/xen-guest.py"
export DISKDM
for b in "$XSD" "$XL"; do
    [ -x "$b" ] || fail "$b is not built"
done

# Wait (bounded, as a safety net only) until a file exists.
wait_file() {
    _i=0
    while [ ! -e "$1" ]; do
        _i=$((_i + 1))
        [ $_i -lt 600 ] || fail "timed out waiting for $1"
        sleep 0.05
    done
}

# start_xenstored [extra daemon options...]
start_xenstored() {
    "$XSD" --socket "$T/xs.sock" --pidfile "$T/xs.pid" --log "$T/xs.log" "$@" &
    xsd_pid=$!
    at_exit "kill $xsd_pid; wait $xsd_pid"
    wait_file "$T/xs.pid"
    XENSTORED_PATH=$T/xs.sock
    export XENSTORED_PATH
    # Device models the test started are stopped before the daemon goes.
    at_exit stop_dms
}

stop_dms() {
    for _d in $(xenstore-list /local/domain 2>/dev/null); do
        _p=$(xenstore-read "/local/domain/$_d/image/device-model-pid" 2>/dev/null) || continue
        kill "$_p" 2>/dev/null || true
    done
    [ -z "${dm_pids:-}" ] || kill $dm_pids 2>/dev/null || true
}

# xs_is PATH VALUE: the key exists and holds exactly VALUE.
xs_is() {
    _v=$(xenstore-read "$1" 2>&1) || fail "cannot read $1: $_v"
    [ "$_v" = "$2" ] || fail "$1 is '$_v', want '$2'"
}

# xs_absent PATH
xs_absent() {
    if _v=$(xenstore-read "$1" 2>/dev/null); then fail "$1 exists ('$_v')"; fi
}

# expect_fail RC MESSAGE CMD...: CMD exits with RC and prints exactly MESSAGE.
expect_fail() {
    _rc=$1 _msg=$2
    shift 2
    set +e
    _out=$("$@" 2>&1)
    _got=$?
    set -e
    [ "$_got" = "$_rc" ] || fail "$*: exit $_got, want $_rc (output: $_out)"
    [ "$_out" = "$_msg" ] || fail "$*: printed '$_out', want '$_msg'"
}

# same_lines EXPECTED-FILE ACTUAL-FILE
same_lines() {
    diff -u "$1" "$2" >&2 || fail "output differs from the expected lines"
}

# no_sanitizer_reports: the device models' logs in $T (written by the time
# diskdm-xl destroy returns) carry no ASan/UBSan/LSan report.
no_sanitizer_reports() {
    for _l in "$T"/*.log "$T"/*.err; do
        [ -e "$_l" ] || continue
        if grep -q -e 'Sanitizer' -e 'runtime error' "$_l"; then
            cat "$_l" >&2
            fail "sanitizer report in $_l"
        fi
    done
}
