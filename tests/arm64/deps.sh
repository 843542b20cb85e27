#!/bin/bash
# Fetch (once) what the arm64 cross-build and the emulated arm64 guest need:
# the cross compiler and qemu-system-aarch64 on the host, and Debian's arm64
# kernel (Image + modules), its headers, the amd64 kbuild tools of the same
# version, busybox-static:arm64, zlib:arm64 and libsmartcols:arm64, unpacked
# into a cache outside the clone.
#
#   tests/arm64/deps.sh          install/fetch if needed; print the cache directory
#   tests/arm64/deps.sh --path   print the cache directory if a complete one
#                                exists, else exit 1 (installs nothing)
#
# Cache: $BDSNAP_CACHE (default /var/cache/bdsnap)/arm64-v<LAYOUT>-<kernel ABI>/,
# e.g. arm64-v2-6.1.0-44 (LAYOUT grows when the cache gains packages, so an
# older cache is fetched again rather than found incomplete). The ABI is the one Debian's meta package linux-image-arm64
# depends on now (old ABIs leave the mirror when Debian bumps them). It holds
#   debs/        the downloaded packages
#   root/        all of them unpacked with dpkg -x (one tree):
#     boot/vmlinuz-<abi>-arm64              a raw arm64 Image: qemu -kernel boots it
#     lib/modules/<abi>-arm64/              modules, plus a modules.dep made by depmod
#     usr/src/linux-headers-<abi>-arm64/    KDIR for out-of-tree modules (its
#                                           Makefile rewritten to include the
#                                           -common tree of this cache)
#     usr/lib/linux-kbuild-<version>/       amd64 fixdep/modpost (same version)
#     bin/busybox                           busybox-static:arm64
#     usr/lib/aarch64-linux-gnu/libz.a, usr/include/zlib.h   zlib:arm64
#     usr/lib/aarch64-linux-gnu/libsmartcols.so*   libsmartcols:arm64 (Debian
#                  ships no static one: the arm64 CLI is linked dynamically)
#   env          shell-sourceable: ABI, RELEASE, KDIR, IMAGE, MODDIR, BUSYBOX,
#                ZLIB_CFLAGS, ZLIB_LDFLAGS, LIBDIR (the arm64 libraries),
#                CROSS_SYSROOT (the cross libc: loader and libc.so.6), CROSS_COMPILE
#   complete     written last: its presence means the cache is usable
# A second run finds `complete` and does nothing (no apt-get update, no download).
set -euo pipefail

CACHE_ROOT=${BDSNAP_CACHE:-/var/cache/bdsnap}
LAYOUT=2
# Host packages. qemu-system-arm ships qemu-system-aarch64; gcc-aarch64-linux-gnu
# brings aarch64-linux-gnu-gcc-12, the name Debian's arm64 headers ask for.
HOST_PACKAGES="gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu
	qemu-system-arm kmod e2fsprogs make"
CROSS_COMPILE=aarch64-linux-gnu-
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
APT_LOCK=(-o DPkg::Lock::Timeout=600)

say() { echo "deps-arm64: $*" >&2; }
die() { echo "deps-arm64: error: $*" >&2; exit 1; }
# shellcheck source=../lib/cache.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/cache.sh"

installed() { dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q '^install ok installed'; }

# The ABI (e.g. 6.1.0-44) the arm64 meta package points at in the apt lists.
current_abi() {
	apt-cache depends linux-image-arm64:arm64 2>/dev/null |
		sed -n 's/^ *Depends: linux-image-\([0-9][^ ]*\)-arm64\(-unsigned\)\?\(:arm64\)\?$/\1/p' |
		head -n 1
}

if [ "${1:-}" = --path ]; then
	abi=$(current_abi || true)
	if [ -n "$abi" ] && [ -e "$CACHE_ROOT/arm64-v$LAYOUT-$abi/complete" ]; then
		echo "$CACHE_ROOT/arm64-v$LAYOUT-$abi"
		exit 0
	fi
	cache_newest_complete "$CACHE_ROOT"/arm64-v$LAYOUT-* || exit 1
	exit 0
elif [ $# -gt 0 ]; then
	die "usage: $0 [--path]"
fi

updated=0
apt_update() {
	[ $updated = 1 ] && return 0
	say "apt-get update"
	$SUDO apt-get "${APT_LOCK[@]}" update -q >&2
	updated=1
}

# --- host side: foreign architecture and packages, only when missing -------------
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
	say "dpkg --add-architecture arm64"
	$SUDO dpkg --add-architecture arm64
	apt_update
fi
missing=""
for p in $HOST_PACKAGES; do installed "$p" || missing="$missing $p"; done
if [ -n "$missing" ]; then
	say "installing:$missing"
	apt_update
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${APT_LOCK[@]}" install -y -q \
		--no-install-recommends $missing >&2
fi

# --- which arm64 kernel ------------------------------------------------------------
ABI=$(current_abi)
if [ -z "$ABI" ]; then
	apt_update
	ABI=$(current_abi)
fi
[ -n "$ABI" ] || die "apt-cache knows no linux-image-arm64:arm64 (arm64 apt lists missing?)"
CACHE=$CACHE_ROOT/arm64-v$LAYOUT-$ABI
# One fetcher per cache directory: a second caller waits, then finds it complete.
cache_enter "$CACHE"

t0=$(date +%s)
RELEASE=$ABI-arm64
candidate() {  # candidate version of a package, empty if apt knows none
	apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p' | grep -v '^(none)$' || true
}
KVERSION=$(candidate "linux-headers-$RELEASE:arm64")
[ -n "$KVERSION" ] || die "no candidate for linux-headers-$RELEASE:arm64"
# The amd64 build of the kbuild package the arm64 headers depend on has host
# fixdep/modpost (the arm64 one's would be arm64 binaries): linux-kbuild-6.1
# on Debian 12, linux-kbuild-<ABI> from Debian 13 on. Same version if the
# mirror has it.
KBUILD_PKG=$(apt-cache depends "linux-headers-$RELEASE:arm64" 2>/dev/null |
	sed -n 's/^ *Depends: \(linux-kbuild-[^ :]*\)\(:arm64\)\?$/\1/p' | head -n 1)
[ -n "$KBUILD_PKG" ] || die "linux-headers-$RELEASE:arm64 names no linux-kbuild package"
KBUILD=$KBUILD_PKG:amd64
if apt-cache madison "$KBUILD_PKG" 2>/dev/null | awk '{print $3}' | grep -qxF "$KVERSION"; then
	KBUILD="$KBUILD=$KVERSION"
fi
DEBS=(
	"linux-image-$RELEASE-unsigned:arm64"
	"linux-headers-$RELEASE:arm64"
	"linux-headers-$ABI-common"
	"$KBUILD"
	busybox-static:arm64
	zlib1g-dev:arm64
	zlib1g:arm64
	libsmartcols-dev:arm64
	libsmartcols1:arm64
)

download() {
	rm -rf "$CACHE/debs.tmp"
	mkdir -p "$CACHE/debs.tmp"
	# apt-get download as root warns that it cannot drop privileges: harmless.
	(cd "$CACHE/debs.tmp" && apt-get "${APT_LOCK[@]}" download -q "${DEBS[@]}") >&2
}
if [ ! -d "$CACHE/debs" ]; then
	say "downloading ${DEBS[*]}"
	if ! download; then
		# Stale lists (Debian bumped a version since the last update): once more.
		updated=0
		apt_update
		download || die "apt-get download failed"
	fi
	mv "$CACHE/debs.tmp" "$CACHE/debs"
fi

# --- unpack into one tree --------------------------------------------------------
ROOT=$CACHE/root
rm -rf "$ROOT" "$CACHE/root.tmp"
mkdir -p "$CACHE/root.tmp"
for deb in "$CACHE"/debs/*.deb; do
	dpkg -x "$deb" "$CACHE/root.tmp"
done
# Debian 13's packages ship /usr/lib/modules and /usr/bin/busybox (merged
# /usr): the tree gets a merged-/usr system's aliases, so one layout serves.
for d in bin lib; do
	if [ -d "$CACHE/root.tmp/usr/$d" ] && [ ! -e "$CACHE/root.tmp/$d" ]; then
		ln -s "usr/$d" "$CACHE/root.tmp/$d"
	fi
done
mv "$CACHE/root.tmp" "$ROOT"

KDIR=$ROOT/usr/src/linux-headers-$RELEASE
COMMON=/usr/src/linux-headers-$ABI-common
[ -f "$KDIR/Makefile" ] || die "$KDIR/Makefile missing"
# The arm64 headers include the -common tree by absolute path: point it here.
sed -i "s|^include $COMMON/Makefile\$|include $ROOT$COMMON/Makefile|" "$KDIR/Makefile"
grep -qxF "include $ROOT$COMMON/Makefile" "$KDIR/Makefile" ||
	die "$KDIR/Makefile: no 'include $COMMON/Makefile' line to rewrite"
# Any other absolute link into /usr/src or /usr/lib would reach the host's own
# (possibly other-version) files: make them relative to the tree.
find "$ROOT/usr/src" "$ROOT/lib/modules" -type l | while read -r l; do
	t=$(readlink "$l")
	case $t in
	/*) ln -sfn "$ROOT$t" "$l" ;;
	esac
done

MODDIR=$ROOT/lib/modules/$RELEASE
[ -d "$MODDIR" ] || die "$MODDIR missing"
# The image package ships no modules.dep: make one (host depmod reads arm64 ELF).
depmod -b "$ROOT" "$RELEASE" || die "depmod -b $ROOT $RELEASE failed"
IMAGE=$ROOT/boot/vmlinuz-$RELEASE
[ -f "$IMAGE" ] || die "$IMAGE missing"
BUSYBOX=$ROOT/bin/busybox
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing"
ZLIB_LIB=$ROOT/usr/lib/aarch64-linux-gnu
[ -f "$ZLIB_LIB/libz.a" ] && [ -f "$ROOT/usr/include/zlib.h" ] || die "zlib:arm64 incomplete"
[ -e "$ZLIB_LIB/libsmartcols.so" ] && [ -e "$ZLIB_LIB/libsmartcols.so.1" ] ||
	die "libsmartcols:arm64 incomplete"
CROSS_SYSROOT=/usr/aarch64-linux-gnu
[ -e "$CROSS_SYSROOT/lib/ld-linux-aarch64.so.1" ] && [ -e "$CROSS_SYSROOT/lib/libc.so.6" ] ||
	die "$CROSS_SYSROOT/lib: no arm64 loader and libc (libc6-dev-arm64-cross)"
command -v "${CROSS_COMPILE}gcc" >/dev/null || die "${CROSS_COMPILE}gcc not found"
command -v qemu-system-aarch64 >/dev/null || die "qemu-system-aarch64 not found"

cat >"$CACHE/env" <<EOF
# written by tests/arm64/deps.sh
ABI=$ABI
RELEASE=$RELEASE
KVERSION=$KVERSION
KDIR=$KDIR
IMAGE=$IMAGE
MODDIR=$MODDIR
BUSYBOX=$BUSYBOX
ZLIB_CFLAGS=-I$ROOT/usr/include
ZLIB_LDFLAGS=-L$ZLIB_LIB
LIBDIR=$ZLIB_LIB
CROSS_SYSROOT=$CROSS_SYSROOT
CROSS_COMPILE=$CROSS_COMPILE
EOF
date -u +%Y-%m-%dT%H:%M:%SZ >"$CACHE/complete"
say "arm64 kernel $RELEASE ($KVERSION) ready in $(( $(date +%s) - t0 )) s"
# Caches of ABIs the mirror has moved on from (~0.5 GB each): drop those no
# other run holds.
for old in "$CACHE_ROOT"/arm64-*; do
	[ "$old" = "$CACHE" ] || [ ! -d "$old" ] && continue
	if ( exec 8>"$old/.lock" && flock -n 8 ); then
		say "removing the outdated $old"
		rm -rf "$old"
	fi
done
echo "$CACHE"
