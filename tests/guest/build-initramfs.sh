#!/bin/sh
# Build the guest-test initramfs (busybox-static, the virtio modules of the
# fetched kernel decompressed on the host, tests/guest/init) as a gzipped
# newc cpio. Usage: build-initramfs.sh KERNEL_DIR OUT
set -eu
kdir=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "diskdm: guest initramfs: $*" >&2; exit 1; }
[ -x /bin/busybox ] || die "/bin/busybox missing (Debian busybox-static)"
command -v cpio >/dev/null || die "cpio missing"
if [ -f "$out" ] && [ "$out" -nt "$here/init" ] && [ "$out" -nt "$0" ]; then
    exit 0
fi
mkdir -p "$(dirname "$out")"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/lib/modules"
cp /bin/busybox "$root/bin/busybox"
cp "$here/init" "$root/init"
chmod 755 "$root/init"
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
    f=$(find "$kdir/modules/kernel" -name "$m.ko*" | head -1)
    [ -n "$f" ] || die "module $m not in $kdir"
    case "$f" in
    *.xz) xz -dc "$f" >"$root/lib/modules/$m.ko" ;;
    *.zst) zstd -qdc "$f" >"$root/lib/modules/$m.ko" ;;
    *) cp "$f" "$root/lib/modules/$m.ko" ;;
    esac
done
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out.tmp"
mv "$out.tmp" "$out"
