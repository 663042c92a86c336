# Host side of the guest tests; source after tests/interop/lib.sh.
# A real Linux guest (Debian's cloud kernel, busybox initramfs running
# tests/guest/init) under QEMU TCG, its disk served by diskdm-vhost over
# vhost-user. Gives: guest_prepare, vhost_start, guest_start, guest_wait,
# guest_send, guest_val, guest_stop, vhost_ctl.
need qemu-system-x86_64 qemu-img sha256sum
# The kernel is fetched once per tree (scripts/deps.sh), whatever $BUILD.
KERNEL_DIR=$SRCDIR/build/guest/kernel
GUEST_DIR=$BUILD/guest
VHOST=$BUILD/diskdm-vhost
GUEST_TIMEOUT=${GUEST_TIMEOUT:-180}     # seconds; TCG on a loaded machine

guest_prepare() {
    sh "$SRCDIR/tests/guest/fetch-kernel.sh" "$KERNEL_DIR" ||
        fail "guest kernel missing (scripts/deps.sh fetches it)"
    sh "$SRCDIR/tests/guest/build-initramfs.sh" "$KERNEL_DIR" \
        "$GUEST_DIR/initramfs.gz" || fail "building the initramfs"
}

# vhost_start DRIVE-OPTIONS: diskdm-vhost on $T/vu.sock, control $T/ctl.sock.
vhost_start() {
    rm -f "$T/vu.sock"
    "$VHOST" --socket "$T/vu.sock" --control "$T/ctl.sock" --drive "$1" \
        -v 2>>"$T/vhost.log" &
    VHOST_PID=$!
    at_exit "kill $VHOST_PID; wait $VHOST_PID"
    i=0
    while [ ! -S "$T/vu.sock" ]; do
        kill -0 $VHOST_PID 2>/dev/null || { cat "$T/vhost.log"; fail "diskdm-vhost exited"; }
        i=$((i + 1)); [ $i -lt 100 ] || fail "no vhost-user socket"
        sleep 0.05
    done
}

vhost_ctl() {   # vhost_ctl "readonly on": prints the answer
    python3 -c 'import socket,sys
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall((sys.argv[2]+"\n").encode()); s.shutdown(socket.SHUT_WR)
print(s.makefile().read(), end="")' "$T/ctl.sock" "$1"
}

# guest_start TEST: boot the guest running workload TEST; serial in $T/serial.
guest_start() {
    rm -f "$T/in" "$T/serial"
    mkfifo "$T/in"
    qemu-system-x86_64 -accel tcg -m 512 -nographic -no-reboot \
        -kernel "$KERNEL_DIR/vmlinuz" -initrd "$GUEST_DIR/initramfs.gz" \
        -append "console=ttyS0 panic=-1 quiet diskdm.test=$1" \
        -object memory-backend-memfd,id=mem,size=512M,share=on \
        -numa node,memdev=mem -chardev socket,id=c,path="$T/vu.sock" \
        -device vhost-user-blk-pci,chardev=c <"$T/in" >"$T/serial" 2>&1 &
    QEMU_PID=$!
    exec 7>"$T/in"
    at_exit "kill $QEMU_PID"
}

# guest_wait PATTERN: until a DISKDM line matches (or the guest ends).
guest_wait() {
    i=0
    while ! grep -q "DISKDM $1" "$T/serial" 2>/dev/null; do
        if ! kill -0 $QEMU_PID 2>/dev/null; then
            cat "$T/serial"; fail "guest ended before '$1'"
        fi
        i=$((i + 1))
        [ $i -lt $((GUEST_TIMEOUT * 5)) ] || { cat "$T/serial"; fail "timeout waiting for '$1'"; }
        sleep 0.2
    done
}

guest_send() { echo "$1" >&7; }
# Value of the first "DISKDM KEY ..." line.
guest_val() { sed -n "s/^.*DISKDM $1 \\(.*\\)$/\\1/p" "$T/serial" | tr -d '\r' | head -1; }
# Wait for the workload's END and QEMU's exit.
guest_end() {
    guest_wait END
    wait $QEMU_PID || true
    exec 7>&-
    echo "--- serial"; grep DISKDM "$T/serial" | tr -d '\r'
}
host_sum() { sha256sum "$1" | cut -d' ' -f1; }
# SIGTERM the back end; it must exit 0 (under ASan: no leak, no error).
vhost_stop() {
    kill $VHOST_PID
    wait $VHOST_PID || fail "diskdm-vhost exit status $?: $(tail -5 "$T/vhost.log")"
}
