#!/bin/sh
# Fetch Debian's cloud kernel for the guest tests into a cache directory
# (default build/guest/kernel): apt-get download + dpkg-deb -x, nothing
# installed. Idempotent: returns at once when the kernel is already there.
set -u
dir=${1:-build/guest/kernel}
if [ -f "$dir/vmlinuz" ] && [ -d "$dir/modules" ]; then
    exit 0
fi
die() { echo "diskdm: guest kernel: $*" >&2; exit 1; }
for t in apt-get apt-cache dpkg-deb; do
    command -v $t >/dev/null 2>&1 || die "$t not found (a Debian host is needed)"
done
# The meta package depends on the versioned image package; fetch that.
pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
      sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -1)
[ -n "$pkg" ] || die "no linux-image-cloud-amd64 in the apt lists (run apt-get update)"
mkdir -p "$dir.tmp" || die "cannot create $dir.tmp"
trap 'rm -rf "$dir.tmp"' EXIT
(cd "$dir.tmp" && apt-get download "$pkg" >/dev/null 2>&1) ||
    die "apt-get download $pkg failed"
dpkg-deb -x "$dir.tmp"/*.deb "$dir.tmp/root" || die "dpkg-deb -x failed"
rm -rf "$dir"
mkdir -p "$dir"
mv "$dir.tmp"/root/boot/vmlinuz-* "$dir/vmlinuz" || die "no vmlinuz in $pkg"
mv "$dir.tmp"/root/lib/modules/* "$dir/modules" || die "no modules in $pkg"
echo "$pkg" > "$dir/package"
