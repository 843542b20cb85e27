#!/bin/bash
# Build (once) and cache the root of another Debian release whose kernel the
# test guest can boot (tests/vm/run.py --kernel trixie|sid) and whose compiler
# builds the project's modules for that kernel (a module is built with the
# compiler that built its kernel).
#
#   tests/vm/kernel_root.sh RELEASE          fill the cache if needed; print its directory
#   tests/vm/kernel_root.sh RELEASE --path   print the directory if it is complete,
#                                            else exit 1 (never builds, installs nothing)
#
# RELEASE: bookworm (Debian 12, 6.1), trixie (Debian 13, 6.12) or sid (7.x).
# The host's own release needs no root: its kernel is the host's
# linux-image-amd64 (tests/kernels.py skips it).
#
# Cache: $BDSNAP_CACHE (default /var/cache/bdsnap)/root-RELEASE/, outside the
# clone so later runs and other clones reuse it. It holds
#   root/       a `debootstrap --variant=minbase` root with linux-image-amd64,
#               linux-headers-amd64, make, gcc and libc6-dev; its
#               /lib/modules/<release> has a modules.dep
#   release     `uname -r` of its kernel;  build.log  what the fill printed
#   complete    written last: its presence means the cache is usable
# About 3-6 min and ~1.5 GB per release. Delete the directory to take a newer
# kernel of that release.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=${BDSNAP_CACHE:-/var/cache/bdsnap}
MIRROR=${BDSNAP_MIRROR:-http://deb.debian.org/debian}
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

say() { echo "kernel_root: $*"; }
die() { echo "kernel_root: error: $*" >&2; exit 1; }
# shellcheck source=../lib/cache.sh
. "$HERE/../lib/cache.sh"

usage() { die "usage: $0 bookworm|trixie|sid [--path]"; }
[ $# -ge 1 ] || usage
RELEASE=$1
case $RELEASE in
bookworm | trixie | sid) ;;
*) usage ;;
esac
CACHE=$CACHE_ROOT/root-$RELEASE
ROOT=$CACHE/root

if [ "${2:-}" = --path ]; then
	[ -e "$CACHE/complete" ] || exit 1
	echo "$CACHE"
	exit 0
elif [ $# -gt 1 ]; then
	usage
fi

command -v debootstrap >/dev/null || {
	say "installing debootstrap"
	$SUDO apt-get update -q -o DPkg::Lock::Timeout=600
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
		-o DPkg::Lock::Timeout=600 debootstrap
}

cache_enter "$CACHE"
exec > >(tee -a "$CACHE/build.log") 2>&1
t0=$(date +%s)

# The served snapshot of sid carries an expired Release file.
APT_OPTS=(-o Acquire::Check-Valid-Until=false -o DPkg::Lock::Timeout=600
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

if [ ! -e "$ROOT/.debootstrap-done" ]; then
	say "debootstrap $RELEASE into $ROOT"
	rm -rf "$ROOT"
	debootstrap --variant=minbase --include=ca-certificates "$RELEASE" "$ROOT" "$MIRROR"
	touch "$ROOT/.debootstrap-done"
fi
echo 'Acquire::Check-Valid-Until "false";' >"$ROOT/etc/apt/apt.conf.d/99bdsnap-valid-until"
# No daemons in a build root; the kernel's postinst must not build an initrd
# we never boot (the guest has its own initramfs).
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
mkdir -p "$ROOT/etc/initramfs-tools"
echo 'update_initramfs=no' >"$ROOT/etc/initramfs-tools/update-initramfs.conf"

in_root() {
	mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
	chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
		LANG=C "$@"
}
trap 'umount "$ROOT/proc" 2>/dev/null || true' EXIT

say "installing the kernel, its headers and its compiler"
in_root apt-get update -q "${APT_OPTS[@]}"
in_root apt-get install -y -q --no-install-recommends "${APT_OPTS[@]}" \
	linux-image-amd64 linux-headers-amd64 make gcc libc6-dev kmod
in_root apt-get clean

# The kernel the headers and the image agree on.
release=""
for d in "$ROOT"/lib/modules/*/; do
	v=$(basename "$d")
	[ -e "$ROOT/usr/src/linux-headers-$v/Makefile" ] && [ -e "$ROOT/boot/vmlinuz-$v" ] && release=$v
done
[ -n "$release" ] || die "no kernel with both image and headers in $ROOT"
in_root depmod "$release"
gcc_ver=$(in_root gcc -dumpfullversion)
echo "$release" >"$CACHE/release"
touch "$CACHE/complete"
say "$RELEASE: kernel $release, gcc $gcc_ver, ready in $(($(date +%s) - t0)) s"
echo "$CACHE"
