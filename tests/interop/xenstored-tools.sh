#!/bin/sh
# diskdm-xenstored driven by the real xenstore-* tools (xenstore-utils):
# exact outputs and exit codes of write/read/ls/list/exists/rm/chmod/watch,
# their error messages, a guest talking through a --domain-socket that
# cannot see another guest's keys, and the read-only socket.
. "$(dirname "$0")/lib.sh"
need xenstore-read xenstore-write xenstore-ls xenstore-list xenstore-rm \
     xenstore-chmod xenstore-exists xenstore-watch

XSD="$BUILD/diskdm-xenstored"
[ -x "$XSD" ] || fail "$XSD not built"

# Start the daemon; it writes the pid file once its sockets listen.
"$XSD" --socket "$T/sock" --ro-socket "$T/ro" --domain-socket "5:$T/dom5" \
    --domain-socket "6:$T/dom6" --pidfile "$T/pid" --log "$T/log" -v &
XSD_PID=$!
at_exit 'kill $XSD_PID 2>/dev/null; wait $XSD_PID 2>/dev/null'
i=0
while [ ! -s "$T/pid" ]; do
    kill -0 $XSD_PID 2>/dev/null || fail "daemon exited: $(cat "$T/log")"
    i=$((i + 1)); [ $i -lt 500 ] || fail "daemon did not start"
    sleep 0.01
done
export XENSTORED_PATH="$T/sock"

# expect "want-stdout" want-rc command...  (stderr is kept in $T/err)
expect() {
    want=$1; want_rc=$2; shift 2
    set +e
    got=$("$@" 2>"$T/err")
    rc=$?
    set -e
    [ "$rc" = "$want_rc" ] || fail "$*: exit $rc, want $want_rc (stderr: $(cat "$T/err"))"
    [ "$got" = "$want" ] || fail "$*: got '$got', want '$want'"
}
expect_err() {     # "want-stderr" command...   (exit code 1)
    want_err=$1; shift
    expect "" 1 "$@"
    [ "$(cat "$T/err")" = "$want_err" ] || fail "$*: stderr '$(cat "$T/err")', want '$want_err'"
}

# --- read / write / exists / list / ls ---------------------------------
expect "" 0 xenstore-write /foo bar
expect "bar" 0 xenstore-read /foo
expect_err "xenstore-read: couldn't read path /nope" xenstore-read /nope
expect "" 0 xenstore-write /vm/a 1 /vm/b "two words"
expect "1
two words" 0 xenstore-read /vm/a /vm/b
expect "" 0 xenstore-exists /vm/a
expect "" 1 xenstore-exists /vm/zz
expect "a
b" 0 xenstore-list /vm
expect_err "xenstore-list: could not list path /nope" xenstore-list /nope
expect 'tool = ""
 xenstored = ""
foo = "bar"
vm = ""
 a = "1"
 b = "two words"' 0 xenstore-ls /
expect '/vm/a = "1"
/vm/b = "two words"' 0 xenstore-ls -f /vm
expect_err "xenstore-ls: xs_directory (/nope): No such file or directory" xenstore-ls /nope
expect_err "xenstore-write: could not write path /a b" xenstore-write "/a b" 1
expect_err "xenstore-write: could not write path /a//b" xenstore-write /a//b 1
expect_err "xenstore-write: could not write path /a/" xenstore-write /a/ 1
# Relative paths are below /local/domain/0 for the toolstack.
expect "" 0 xenstore-write rel value
expect "value" 0 xenstore-read /local/domain/0/rel
ok "read/write/exists/list/ls"

# --- rm -----------------------------------------------------------------
expect "" 0 xenstore-write /r/x/y/z 1
expect "" 0 xenstore-rm /r/x
expect "" 1 xenstore-exists /r/x/y/z
expect "" 0 xenstore-exists /r
expect "" 0 xenstore-rm /r/missing
expect_err "xenstore-rm: could not remove path /nothere/x" xenstore-rm /nothere/x
expect "" 0 xenstore-write /t/only/leaf 1
expect "" 0 xenstore-rm -t /t/only/leaf
expect "" 1 xenstore-exists /t
ok "rm"

# --- chmod and permissions ------------------------------------------------
expect "" 0 xenstore-write /local/domain/6/secret s
expect "" 0 xenstore-chmod -r /local/domain/6 n6
expect "" 0 xenstore-write /local/domain/5 ""
expect "" 0 xenstore-chmod /local/domain/5 n5
expect 'secret = "s" . . . . . . . . . . . . . . . . . . . . . . . .  (n6)' \
    0 xenstore-ls -p /local/domain/6
expect_err "xenstore-chmod: Error occurred setting permissions on '/nope': No such file or directory" \
    xenstore-chmod /nope n0
# Domain 5 through its socket: its own keys yes, domain 6's no.
D5="$T/dom5"
expect "" 0 env XENSTORED_PATH="$D5" xenstore-write name five
expect "five" 0 xenstore-read /local/domain/5/name
expect "five" 0 env XENSTORED_PATH="$D5" xenstore-read name
expect_err "xenstore-read: couldn't read path /local/domain/6/secret" \
    env XENSTORED_PATH="$D5" xenstore-read /local/domain/6/secret
expect_err "xenstore-write: could not write path /local/domain/6/secret" \
    env XENSTORED_PATH="$D5" xenstore-write /local/domain/6/secret x
expect_err "xenstore-list: could not list path /local/domain/6" \
    env XENSTORED_PATH="$D5" xenstore-list /local/domain/6
expect_err "xenstore-ls: xs_directory (/local/domain/6): Permission denied" \
    env XENSTORED_PATH="$D5" xenstore-ls /local/domain/6
expect "" 1 env XENSTORED_PATH="$D5" xenstore-exists /local/domain/6/secret
expect_err "xenstore-rm: could not remove path /local/domain/6/secret" \
    env XENSTORED_PATH="$D5" xenstore-rm /local/domain/6/secret
expect_err "xenstore-chmod: Error occurred setting permissions on '/local/domain/6/secret': Permission denied" \
    env XENSTORED_PATH="$D5" xenstore-chmod /local/domain/6/secret b5
expect_err "xenstore-chmod: Error occurred setting permissions on 'name': Operation not permitted" \
    env XENSTORED_PATH="$D5" xenstore-chmod name n6
expect_err "xenstore-write: could not write path /top" \
    env XENSTORED_PATH="$D5" xenstore-write /top x
# Granting read access to domain 6.
expect_err "xenstore-read: couldn't read path /local/domain/5/name" \
    env XENSTORED_PATH="$T/dom6" xenstore-read /local/domain/5/name
expect "" 0 env XENSTORED_PATH="$D5" xenstore-chmod name n5 r6
expect "five" 0 env XENSTORED_PATH="$T/dom6" xenstore-read /local/domain/5/name
expect 'name = "five"  . . . . . . . . . . . . . . . . . . . . . . .  (n5,r6)' \
    0 env XENSTORED_PATH="$D5" xenstore-ls -p /local/domain/5
ok "chmod and guest permissions"

# --- read-only socket -----------------------------------------------------
expect "bar" 0 env XENSTORED_PATH="$T/ro" xenstore-read /foo
expect_err "xenstore-write: could not write path /foo" \
    env XENSTORED_PATH="$T/ro" xenstore-write /foo x
expect "bar" 0 xenstore-read /foo
ok "read-only socket"

# --- watch ---------------------------------------------------------------
expect "" 0 xenstore-write /w/a 1
xenstore-watch -n 5 /w > "$T/watch.out" 2>&1 &
WPID=$!
at_exit 'kill $WPID 2>/dev/null'
# The first event arrives once the watch is registered.
i=0
while [ ! -s "$T/watch.out" ]; do
    i=$((i + 1)); [ $i -lt 500 ] || fail "no initial watch event"
    sleep 0.01
done
expect "" 0 xenstore-write /w/a 2
expect "" 0 xenstore-write /elsewhere 1
expect "" 0 xenstore-chmod /w n0 r1
expect "" 0 xenstore-write /w/b/c 1
expect "" 0 xenstore-rm /w
wait $WPID || fail "xenstore-watch exited $?"
[ "$(cat "$T/watch.out")" = "/w
/w/a
/w
/w/b/c
/w" ] || fail "watch events: $(cat "$T/watch.out")"
ok "watch"

# The daemon answered every client and exits cleanly on SIGTERM.
kill $XSD_PID
wait $XSD_PID || fail "daemon exit status $?"
[ ! -e "$T/sock" ] || fail "socket left behind"
[ ! -e "$T/pid" ] || fail "pid file left behind"
ok "clean shutdown"
