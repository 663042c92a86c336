#!/bin/sh
# diskdm-nbd exits promptly: on SIGTERM (with -t) and when its last client
# leaves (without -t), in the foreground and with --fork. The bound is a
# generous 10 s so that load never fails the test; strace checks that the
# way out involves no sleep or timed wait, which is what makes it prompt.
. "$(dirname "$0")/lib.sh"
need nbdinfo strace
. "$(dirname "$0")/_nbd-lib.sh"
cd "$T"
truncate -s 16M disk.raw

# wait_gone PID: up to 10 s for PID to exit (a zombie counts as exited)
wait_gone() {
    for _i in $(seq 200); do pid_running "$1" || return 0; sleep 0.05; done
    return 1
}

# --- SIGTERM, --fork'd, -t ----------------------------------------------
nbd_start t1 -r -t -f raw -k t1.sock disk.raw
p=$(cat t1.pid)
nbdinfo --size 'nbd+unix:///?socket=t1.sock' >/dev/null || fail "nbdinfo (t1)"
kill -TERM "$p"
wait_gone "$p" || fail "diskdm-nbd -t still running 10 s after SIGTERM"
[ ! -e t1.sock ] || fail "socket left behind after SIGTERM"
ok "SIGTERM exit (--fork, -t)"

# --- last client leaves, --fork'd, no -t ----------------------------------
nbd_start t2 -r -f raw -k t2.sock disk.raw
p=$(cat t2.pid)
nbdinfo --size 'nbd+unix:///?socket=t2.sock' >/dev/null || fail "nbdinfo (t2)"
wait_gone "$p" || fail "diskdm-nbd still running 10 s after its last client left"
ok "exit after the last client (--fork)"

# --- foreground under strace: no sleep or timed wait on the way out ---------
ASAN_OPTIONS=detect_leaks=0 strace -f -qq -tt \
    -e trace=nanosleep,clock_nanosleep,futex,epoll_wait,epoll_pwait,poll,ppoll,exit_group \
    -o "$T/st.txt" "$NBD" -r -t -f raw -k t3.sock disk.raw &
st=$!
at_exit "kill $st"
for _i in $(seq 100); do [ -S t3.sock ] && break; sleep 0.1; done
nbdinfo --size 'nbd+unix:///?socket=t3.sock' >/dev/null || fail "nbdinfo (t3)"
sp=$(awk '$3 ~ /^epoll_(p)?wait/ {print $1; exit}' st.txt)
[ -n "$sp" ] || fail "no epoll_wait in the trace: $(head -5 st.txt)"
sleep 0.2     # let strace write out the connection's calls
n=$(wc -l < st.txt)
kill -TERM "$sp"
wait "$st" || fail "diskdm-nbd under strace exited non-zero after SIGTERM"
# After the signal (taken through a signalfd, so strace shows no delivery): no sleeps and no futex/poll with a timeout
tail -n +$((n + 1)) st.txt > after.txt
grep -q exit_group after.txt || fail "no exit_group after SIGTERM: $(cat after.txt)"
if grep -E 'nanosleep|FUTEX_WAIT[A-Z_]*, [0-9]+, \{tv_sec|epoll_p?wait\([0-9]+, .*, [1-9][0-9]*\)|poll\(.*, [1-9][0-9]*\)' after.txt; then
    fail "a timed wait on the way out after SIGTERM"
fi
ok "no sleep or timed wait after SIGTERM (strace)"
