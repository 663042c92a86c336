#!/bin/sh
# Make sure the Debian packages diskdm builds and tests with are installed.
# As root the missing ones are apt-get installed; otherwise the exact command
# is printed and the script fails, so `make` stops before compiling anything.
set -u
pkgs="build-essential pkg-config clang libclang-rt-14-dev libxen-dev xenstore-utils
check libsdl2-dev libnbd-dev liburing-dev libjson-c-dev zlib1g-dev libzstd-dev
libgnutls28-dev qemu-utils qemu-system-x86 nbdkit libnbd-bin python3-libnbd
xvfb util-linux procps python3 strace openssl busybox-static cpio"
missing=""
for p in $pkgs; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)
    case "$st" in
    *" installed") ;;
    *) missing="$missing $p" ;;
    esac
done
# The guest tests' kernel (tests/guest/): Debian's linux-image-cloud-amd64,
# fetched with apt-get download and unpacked into build/guest/kernel (not
# installed); quick when already there.
guest_kernel() {
    sh "$(dirname "$0")/../tests/guest/fetch-kernel.sh" \
        "$(dirname "$0")/../build/guest/kernel"
}
[ -z "$missing" ] && { guest_kernel; exit; }
if [ "$(id -u)" -ne 0 ]; then
    echo "diskdm: missing Debian packages; install them with:" >&2
    echo "  sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "diskdm: installing missing Debian packages:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2 || exit 1
# shellcheck disable=SC2086
apt-get install -y -qq $missing >&2 || exit 1
guest_kernel
