#!/bin/sh
# diskdm-trace itself: recording and replaying against diskdm, the diff it
# prints for reply, IRQ and step mismatches, masks and '?' wildcards, image
# checks, poll and reply timeouts, a target that dies, diskdm-only traces
# against QEMU, and every trace syntax and usage error with its message.
. "$(dirname "$0")/lib.sh"
TR="$BUILD/diskdm-trace"
DM="$BUILD/diskdm"
cd "$T"

# run EXPECTED-STATUS CMD...: stdout+stderr in $T/log
run() {
    want=$1; shift
    rc=0
    "$@" > log 2>&1 || rc=$?
    [ "$rc" = "$want" ] || { cat log; fail "$*: exit $rc, expected $want"; }
}
has() {
    grep -qxF -- "$1" log || { cat log; fail "output lacks the line '$1'"; }
}

cat > t.trace <<'EOF'
# a small trace: IDENTIFY with masks, a PIO write landing in the image
!disk if=ide,index=0,size=1M
irq_intercept_in ioapic
outb 0x1f7 0xec
!poll inb 0x3f6 mask 0x80 == 0x00
!mask bits 0x10
inb 0x1f7
!mask bytes 2-511
!pio inw 0x1f0 512
outb 0x1f2 1
outb 0x1f3 3
outb 0x1f6 0xe0
!window begin
outb 0x1f7 0x30
!pio outw 0x1f0 512 ramp 0xf0
!poll inb 0x3f6 mask 0x88 == 0x00
inb 0x1f7
!window end
!image 0 read 0x5fe 4
!raw "endianness"
EOF
run 0 "$TR" --record t.trace -- "$DM" -qtest stdio
has "t.trace: 12 steps recorded from diskdm into t.expected"
cat > want.expected <<'EOF'
# Expected replies for t.trace, written by diskdm-trace --record.
# '@LINE STEP', then the step's IRQ lines (sorted), then its reply;
# '?' matches any character. Masks belong in the trace (!mask).
@3 irq_intercept_in ioapic
OK
@4 outb 0x1f7 0xec
IRQ raise 14
OK
@7 inb 0x1f7
IRQ lower 14
OK 0x0048 (masked 0x10)
@9 !pio inw 0x1f0 512
OK 0x4000@MASKED@
@10 outb 0x1f2 1
OK
@11 outb 0x1f3 3
OK
@12 outb 0x1f6 0xe0
OK
@14 outb 0x1f7 0x30
IRQ lower 14
IRQ raise 14
OK
@15 !pio outw 0x1f0 512 ramp 0xf0
OK
@17 inb 0x1f7
OK 0x0050
@19 !image 0 read 0x5fe 4
OK 0x0c0df0f1
@20 !raw "endianness"
OK
EOF
# IDENTIFY: bytes 2-511 masked
sed -i "s/@MASKED@/$(printf '?%.0s' $(seq 1 1020))/" want.expected
sed -i '$s/.*/OK little/' want.expected
diff -u want.expected t.expected || fail "recorded expected file differs"
ok "record"

run 0 "$TR" t.trace -- "$DM" -qtest stdio
has "t.trace: 12 steps match t.expected against diskdm"
ok "replay matches"

# a different reply
sed 's/^OK 0x0050$/OK 0x0051/' t.expected > bad1.expected
run 1 "$TR" --expected bad1.expected t.trace -- "$DM" -qtest stdio
has "t.trace:17: inb 0x1f7"
has "    expected: OK 0x0051"
has "    got:      OK 0x0050"
has "t.trace: 1 difference from bad1.expected"
ok "reply difference"

# a long reply: shown around its first difference
sed 's/^OK 0x4000?/OK 0x4001?/' t.expected > bad3.expected
run 1 "$TR" --expected bad3.expected t.trace -- "$DM" -qtest stdio
has "t.trace:9: !pio inw 0x1f0 512"
has "    first difference at data byte 1 (expected 512 bytes, got 512)"
has "    expected: OK 0x4001$(printf '?%.0s' $(seq 1 87))..."
has "    got:      OK 0x4000$(printf '?%.0s' $(seq 1 87))..."
ok "long reply difference"

# a missing IRQ line
sed '/^@4 /,/^OK$/{/^IRQ raise 14$/d}' t.expected > bad2.expected
run 1 "$TR" --expected bad2.expected t.trace -- "$DM" -qtest stdio
has "t.trace:4: outb 0x1f7 0xec"
has "    expected IRQs: (none)"
has "    got IRQs:      IRQ raise 14"
ok "IRQ difference"

# '?' in the expected file matches anything; a step that is not the trace's
sed 's/^OK 0x0c0df0f1$/OK 0x??0df0??/' t.expected > wild.expected
run 0 "$TR" --expected wild.expected t.trace -- "$DM" -qtest stdio
sed 's/^@11 outb 0x1f3 3$/@11 outb 0x1f3 4/' t.expected > stale.expected
run 1 "$TR" --expected stale.expected t.trace -- "$DM" -qtest stdio
has "t.trace:11: step 6 is 'outb 0x1f3 3' but stale.expected has 'outb 0x1f3 4' there: re-record it"
ok "wildcards and stale expected files"

run 1 "$TR" --expected nonexistent.expected t.trace -- "$DM" -qtest stdio
has "diskdm-trace: cannot read nonexistent.expected: No such file or directory (record it with --record)"

# image checks
cat > img.trace <<'EOF'
!disk if=ide,index=0,size=64K,pattern=0x5a
!image 0 unchanged
!image 0 sha256 0000000000000000000000000000000000000000000000000000000000000000
outb 0x1f6 0xe0
outb 0x1f2 1
outb 0x1f3 2
outb 0x1f7 0x30
!poll inb 0x3f6 mask 0x88 == 0x08
!pio outw 0x1f0 512 fill 0x5a
!poll inb 0x3f6 mask 0x80 == 0x00
!image 0 unchanged
outb 0x1f7 0x30
!poll inb 0x3f6 mask 0x88 == 0x08
!pio outw 0x1f0 512 fill 0x00
!poll inb 0x3f6 mask 0x80 == 0x00
!image 0 unchanged
EOF
run 0 "$TR" --record img.trace -- "$DM" -qtest stdio
sum=$(head -c 65536 /dev/zero | tr '\0' 'Z' | sha256sum | cut -d' ' -f1)
grep -A1 '^@2 ' img.expected | grep -qxF "OK" || fail "unchanged image"
grep -A1 '^@3 ' img.expected | grep -qxF "FAIL sha256 is $sum" || fail "sha256: $(cat img.expected)"
grep -A1 '^@11 ' img.expected | grep -qxF "OK" || fail "same bytes written"
grep -A1 '^@16 ' img.expected | grep -qxF "FAIL image changed at offset 1536" ||
    fail "changed image: $(cat img.expected)"
ok "image checks"

# timeouts and a failing target
printf '!disk if=ide,index=0,size=64K\n!poll inb 0x3f6 mask 0xff == 0x12 timeout 50\n' > poll.trace
run 1 "$TR" --record poll.trace -- "$DM" -qtest stdio
has "diskdm-trace: poll.trace:2: !poll inb 0x3f6 mask 0xff == 0x12 timeout 50: condition not met within 50 ms (last reply 'OK 0x0050')"
printf '!disk if=ide,index=0,size=64K\nirq_intercept_in ioapic\noutb 0x1f7 0xec\n!wait irq raise 14\ninb 0x1f7\n!wait irq raise 14 timeout 50\n' > wait.trace
run 1 "$TR" --record wait.trace -- "$DM" -qtest stdio
has "diskdm-trace: wait.trace:6: !wait irq raise 14 timeout 50: no 'IRQ raise 14' within 50 ms"
printf 'endianness\n' > one.trace
run 1 "$TR" --timeout 1 --record one.trace -- sh -c 'cat > /dev/null'
has "diskdm-trace: one.trace:1: endianness: no reply within 1000 ms"
run 1 "$TR" --record one.trace -- sh -c 'exit 3'
has "diskdm-trace: one.trace:1: endianness: the target closed the channel before replying"
has "diskdm-trace: sh exited with status 3"
run 1 "$TR" --record one.trace -- "$T/no-such-program"
has "diskdm-trace: one.trace:1: endianness: the target closed the channel before replying"
ok "timeouts and failing targets"

# SIGTERM ends a replay cleanly: target stopped, work directory removed
mkdir "$T/tmp"
printf '!disk if=ide,index=0,size=64K\n!poll inb 0x3f6 mask 0xff == 0x12 timeout 60000\n' > long.trace
TMPDIR="$T/tmp" "$TR" --record long.trace -- "$DM" -qtest stdio > log 2>&1 &
tpid=$!
at_exit "kill $tpid 2>/dev/null"
i=0; while [ -z "$(ls "$T/tmp")" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
sleep 0.2
kill -TERM $tpid
rc=0; wait $tpid || rc=$?
[ $rc = 1 ] || fail "SIGTERM: exit $rc"
has "diskdm-trace: long.trace:2: !poll inb 0x3f6 mask 0xff == 0x12 timeout 60000: interrupted by a signal"
[ -z "$(ls "$T/tmp")" ] || fail "work directory left: $(ls "$T/tmp")"
ok "SIGTERM"

# a diskdm-only trace against QEMU is not run
printf '!target diskdm\n!raw ""\n' > only.trace
run 77 "$TR" only.trace -- qemu-system-x86_64 -machine pc
has "only.trace: !target diskdm: not replayed against QEMU"
run 77 "$TR" --target qemu only.trace -- "$DM" -qtest stdio
ok "diskdm-only traces"

# syntax errors
syntax() {   # MESSAGE TRACE-TEXT
    printf '%b' "$2" > syn.trace
    run 1 "$TR" --record syn.trace -- "$DM" -qtest stdio
    has "diskdm-trace: syn.trace:$1"
}
syntax "1: unknown directive '!bogus'" '!bogus\n'
syntax "1: trailing whitespace; use !raw \"...\" for such lines" 'inb 0x80 \n'
syntax "1: trailing whitespace; use !raw \"...\" for such lines" 'inb 0x80\r\n'
syntax "1: !target: 'diskdm' or 'any'" '!target qemu\n'
syntax "1: bad disk size 'lots'" '!disk if=ide,size=lots\n'
syntax "1: bad pattern 'stripes' (seq, zero or a byte value)" '!disk size=1M,pattern=stripes\n'
syntax "1: !disk creates its own image; no file=" '!disk file=x.img\n'
syntax "1: !poll needs 'mask M == V'" '!poll inb 0x1f7\n'
syntax "1: !poll: expected 'CMD mask M ==|!= V [timeout MS]'" '!poll inb 0x1f7 mask 0x80 == 0 after 5\n'
syntax "1: !poll: bad mask, operator or value" '!poll inb 0x1f7 mask 0x80 <= 0\n'
syntax "1: !pio: expected 'inX|outX PORT BYTES ...'" '!pio inw 0x10000 2\n'
syntax "1: !pio: unknown access 'inq'" '!pio inq 0x1f0 2\n'
syntax "1: !pio in: trailing arguments" '!pio inw 0x1f0 2 fill 1\n'
syntax "1: !pio out: expected 'fill|ramp BYTE'" '!pio outw 0x1f0 2 fill 0x100\n'
syntax "1: !pio: 3 bytes is not a multiple of the access width" '!pio outw 0x1f0 3 fill 1\n'
syntax "1: !image: expected the number of a !disk given above" '!image 0 unchanged\n'
syntax "2: !image: expected 'unchanged', 'read OFF LEN' or 'sha256 HEX'" '!disk size=1M\n!image 0 read 0\n'
syntax "2: !image: disk 0 has no image" '!disk if=ide,media=cdrom\n!image 0 unchanged\n'
syntax "1: !mask: expected 'bytes RANGES' or 'bits M'" '!mask nibbles 3\n'
syntax "1: !mask bytes: bad range list '5-2'" '!mask bytes 5-2\n'
syntax "2: !mask at the end applies to nothing" 'inb 0x80\n!mask bits 0x10\n'
syntax "1: !raw: expected one quoted string without \\n" '!raw "abc\n'
syntax "1: !raw: expected one quoted string without \\n" '!raw "a\\nb"\n'
syntax "1: !window end without a begin" '!window end\n'
syntax "2: !window begin without an end" '!window begin\ninb 0x80\n'
syntax "1: !window: 'begin' or 'end'" '!window open\n'
syntax "1: !wait: expected 'irq raise|lower N [timeout MS]'" '!wait irq blink 11\n'
syntax "1: !wait: expected 'irq raise|lower N [timeout MS]'" '!wait 100\n'
ok "syntax errors"

# usage
run 2 "$TR"
has "diskdm-trace: expected TRACE -- COMMAND [ARGS...]"
run 2 "$TR" t.trace "$DM"
has "diskdm-trace: expected TRACE -- COMMAND [ARGS...]"
run 2 "$TR" --timeout 0 t.trace -- "$DM"
has "diskdm-trace: --timeout: expected seconds (1-3600), not '0'"
run 2 "$TR" --target bochs t.trace -- "$DM"
has "diskdm-trace: --target: 'qemu' or 'diskdm', not 'bochs'"
run 2 "$TR" --bogus t.trace -- "$DM"
run 0 "$TR" --help
has "Usage: diskdm-trace [--record] [--expected FILE] [--timeout S] [--target qemu|diskdm]"
run 1 "$TR" missing.trace -- "$DM"
has "diskdm-trace: cannot read missing.trace: No such file or directory"
ok "usage"
