# Helpers for the diskdm-nbd shell tests; sourced after lib.sh.
NBD="$BUILD/diskdm-nbd"
[ -x "$NBD" ] || fail "$NBD not built"
PY=/usr/bin/python3     # python3-libnbd lives with the system python

# nbd_start NAME ARGS... : start diskdm-nbd daemonized with a pid file
# $T/NAME.pid, to be killed at exit. Fails the test if it does not start.
nbd_start() {
    _n=$1; shift
    "$NBD" --fork --pid-file="$T/$_n.pid" "$@" || fail "diskdm-nbd $* did not start"
    at_exit "nbd_stop $_n"
}
# pid_running PID: true while PID runs. A --fork'd server is an orphan that
# init reaps when it gets round to it (here, up to 2 s later), and kill -0
# still succeeds on the zombie, so a zombie counts as exited.
pid_running() {
    [ -e "/proc/$1" ] || return 1
    [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" != Z ]
}
# nbd_stop NAME: stop it (if running) and wait until it is gone.
nbd_stop() {
    _p=$(cat "$T/$1.pid" 2>/dev/null) || return 0
    kill "$_p" 2>/dev/null || true
    for _i in $(seq 50); do pid_running "$_p" || break; sleep 0.1; done
    rm -f "$T/$1.pid"
}
# nbd_wait_exit NAME: true once the server exited on its own (it removes
# its pid file as it goes).
nbd_wait_exit() {
    _p=$(cat "$T/$1.pid" 2>/dev/null) || return 0
    for _i in $(seq 100); do pid_running "$_p" || { rm -f "$T/$1.pid"; return 0; }; sleep 0.1; done
    return 1
}
free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
