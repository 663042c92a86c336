#!/bin/sh
# Runs every libFuzzer target in build-fuzz/ for FUZZ_SECONDS (default 15)
# from its seed corpus under tests/fuzz/seeds/NAME (if any), with the
# dictionary tests/fuzz/dict/NAME.dict where the format has magic values.
# Any crash, leak or timeout fails the run.
set -eu
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
FB=${FUZZ_BUILD:-$SRCDIR/build-fuzz}
secs=${FUZZ_SECONDS:-15}
n=0
for f in "$FB"/tests/fuzz/fuzz-*; do
    [ -x "$f" ] || continue
    case "$f" in *.o|*.d) continue ;; esac
    name=$(basename "$f")
    work=$(mktemp -d)
    mkdir "$work/corpus"
    seeds="$SRCDIR/tests/fuzz/seeds/$name"
    [ -d "$seeds" ] && cp -r "$seeds"/. "$work/corpus"/ 2>/dev/null || true
    dict="$SRCDIR/tests/fuzz/dict/$name.dict"
    set --
    [ -f "$dict" ] && set -- -dict="$dict"
    echo "fuzz: $name for ${secs}s"
    if ! (cd "$work" && "$f" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
            -print_final_stats=0 "$@" "$work/corpus" > "$work/log" 2>&1); then
        tail -n 40 "$work/log"
        echo "fuzz: $name FAILED"
        exit 1
    fi
    rm -rf "$work"
    n=$((n + 1))
done
echo "fuzz: $n targets ran clean"
