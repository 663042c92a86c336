#!/bin/sh
# tests/run.sh in one build directory twice at the same time (different
# patterns): each run keeps the other's logs and prints its own summary
# line; a failure names its log, which holds the test's output; a log of a
# test that is not run again survives. Fake unit tests in a build
# directory of their own meet each other, so both runs are surely going
# at once, and B's run starts after A's test has begun.
. "$SRCDIR/tests/interop/lib.sh"
B=$T/build
mkdir -p "$B/tests/unit"
# test-fake-A and test-fake-B each wait (bounded) until the other started.
for me in A B; do
    other=$([ $me = A ] && echo B || echo A)
    cat > "$B/tests/unit/test-fake-$me" <<EOS
#!/bin/sh
echo "output of $me"
touch "$T/started-$me"
i=0
while [ ! -e "$T/started-$other" ]; do
    i=\$((i + 1)); [ \$i -lt 200 ] || { echo "$other never started"; exit 1; }
    sleep 0.05
done
[ "$me" = A ] || { echo "B fails on purpose"; exit 1; }
EOS
    chmod +x "$B/tests/unit/test-fake-$me"
done
BUILD=$B sh "$SRCDIR/tests/run.sh" unit/test-fake-A > "$T/runA.out" 2>&1 &
pa=$!
# B's run starts once A's test is running (its log already open).
i=0
while [ ! -e "$T/started-A" ]; do
    i=$((i + 1)); [ $i -lt 200 ] || fail "A never started"; sleep 0.05
done
BUILD=$B sh "$SRCDIR/tests/run.sh" unit/test-fake-B > "$T/runB.out" 2>&1 &
pb=$!
wait $pa || { cat "$T/runA.out"; fail "the run of A failed"; }
if wait $pb; then cat "$T/runB.out"; fail "the run of B passed"; fi
[ "$(tail -n 1 "$T/runA.out")" = "1 passed, 0 failed, 0 skipped" ] || {
    cat "$T/runA.out"; fail "run A's summary"; }
[ "$(tail -n 1 "$T/runB.out")" = "0 passed, 1 failed, 0 skipped" ] || {
    cat "$T/runB.out"; fail "run B's summary"; }
grep -qF "rc=1, log: $B/test-logs/unit_test-fake-B.log" "$T/runB.out" || {
    cat "$T/runB.out"; fail "run B does not name its log"; }
[ "$(cat "$B/test-logs/unit_test-fake-A.log")" = "output of A" ] || fail "A's log"
[ "$(head -n 1 "$B/test-logs/unit_test-fake-B.log")" = "output of B" ] || fail "B's log"
[ -z "$(ls -A "$B/test-logs" | grep -v -e '^unit_test-fake-A.log$' -e '^unit_test-fake-B.log$')" ] ||
    fail "left in test-logs: $(ls -A "$B/test-logs")"
ok "two runs at once keep both logs"

# Running A again replaces A's log only.
rm -f "$T/started-B"
touch "$T/started-B"
BUILD=$B sh "$SRCDIR/tests/run.sh" unit/test-fake-A > "$T/runA2.out" 2>&1 || {
    cat "$T/runA2.out"; fail "second run of A"; }
[ "$(head -n 1 "$B/test-logs/unit_test-fake-B.log")" = "output of B" ] || fail "B's log lost"
ok "a later run leaves the logs of tests it does not run"
