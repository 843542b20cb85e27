#!/bin/bash
# Build (once) and cache the debug kernel the test guest can boot with
# KERNEL=debug (tests/vm/run.py): Debian's linux-source-<series> configured with
# x86_64_defconfig + kvm_guest.config + tests/vm/debug.config (KASAN, lockdep,
# atomic-sleep, kmemleak, DEBUG_LIST), every option of the fragment checked.
#
#   tests/vm/debug_kernel.sh          build if needed; print the cache directory
#   tests/vm/debug_kernel.sh --path   print the cache directory if it is complete,
#                                     else exit 1 (never builds, installs nothing)
#
# Cache: $BDSNAP_CACHE (default /var/cache/bdsnap)/kernel-<source version>-<sha256
# of debug.config, 12 hex>/, outside the clone so that later runs and other clones
# on this machine reuse it; a config change or a new linux-source package makes a
# new directory. It holds
#   linux/          the built tree: arch/x86/boot/bzImage, vmlinux, Module.symvers,
#                   a KDIR for out-of-tree modules (make -C linux M=... modules)
#   modroot/lib/modules/<release>/   modules_install output (modules.builtin and
#                   the few =m modules), bind-mounted in the guest so modprobe works
#   release         `uname -r` of the guest;  build.log  the make output
#   complete        written last: its presence means the cache is usable
# A second run finds `complete` and does nothing. An interrupted build resumes
# (make is incremental). About 20-30 min on 2 shared cores, ~3 GB of disk.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FRAGMENT=$HERE/debug.config
CACHE_ROOT=${BDSNAP_CACHE:-/var/cache/bdsnap}
# The source of the release's own kernel: the series of the newest headers
# (6.1 on Debian 12, 6.12 on Debian 13), as mk/kernel.mk picks them.
SERIES=$(ls -d /lib/modules/*/build 2>/dev/null | sed 's|/lib/modules/||;s|/build||' | sort -V |
	tail -n 1 | cut -d. -f1-2)
[ -n "$SERIES" ] || SERIES=6.1
SRC_PKG=linux-source-$SERIES
TARBALL=/usr/src/linux-source-$SERIES.tar.xz
PACKAGES="$SRC_PKG build-essential bc bison flex libssl-dev libelf-dev dwarves cpio kmod xz-utils"
JOBS=${JOBS:-2}
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

say() { echo "debug_kernel: $*"; }
die() { echo "debug_kernel: error: $*" >&2; exit 1; }
# shellcheck source=../lib/cache.sh
. "$HERE/../lib/cache.sh"

HASH=$(sha256sum "$FRAGMENT" | cut -c1-12)

installed() { dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q '^install ok installed'; }

if [ "${1:-}" = --path ]; then
	if installed "$SRC_PKG"; then
		want=$CACHE_ROOT/kernel-$(dpkg-query -W -f='${Version}' "$SRC_PKG")-$HASH
		[ -e "$want/complete" ] && { echo "$want"; exit 0; }
	fi
	# any source version built with this fragment
	cache_newest_complete "$CACHE_ROOT"/kernel-*-"$HASH" || exit 1
	exit 0
elif [ $# -gt 0 ]; then
	die "usage: $0 [--path]"
fi

# --- packages: apt-get only when something is missing --------------------------
missing=""
for p in $PACKAGES; do installed "$p" || missing="$missing $p"; done
if [ -n "$missing" ]; then
	say "installing:$missing"
	$SUDO apt-get update -q -o DPkg::Lock::Timeout=600
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
		-o DPkg::Lock::Timeout=600 $missing
fi
[ -r "$TARBALL" ] || die "$TARBALL missing (package $SRC_PKG)"

VERSION=$(dpkg-query -W -f='${Version}' "$SRC_PKG")
CACHE=$CACHE_ROOT/kernel-$VERSION-$HASH
TREE=$CACHE/linux
# One builder per cache directory: a second caller waits, then finds it complete.
cache_enter "$CACHE"

t0=$(date +%s)
# --- source ----------------------------------------------------------------------
if [ ! -e "$TREE/Makefile" ]; then
	say "unpacking $TARBALL"
	rm -rf "$CACHE/linux.tmp"
	mkdir -p "$CACHE/linux.tmp"
	tar -xJf "$TARBALL" -C "$CACHE/linux.tmp" --strip-components=1
	mv "$CACHE/linux.tmp" "$TREE"
fi
cp "$FRAGMENT" "$CACHE/debug.config"

# --- configuration ---------------------------------------------------------------
cd "$TREE"
MAKE=(nice -n 10 make -j"$JOBS")
LOG=$CACHE/build.log
: >"$LOG"
say "configuring (log: $LOG)"
"${MAKE[@]}" x86_64_defconfig >>"$LOG" 2>&1 || { tail -n 30 "$LOG"; die "x86_64_defconfig failed"; }
"${MAKE[@]}" kvm_guest.config >>"$LOG" 2>&1 || { tail -n 30 "$LOG"; die "kvm_guest.config failed"; }

# Fragment lines as NAME<TAB>VALUE (NAME without CONFIG_).
parse_fragment() {
	sed -n 's/^[[:space:]]*CONFIG_\([A-Za-z0-9_]*\)=\(.*\)$/\1\t\2/p' "$FRAGMENT"
}
apply_fragment() {
	local name value
	while IFS=$'\t' read -r name value; do
		case $value in
		y) scripts/config --file .config --enable "$name" ;;
		m) scripts/config --file .config --module "$name" ;;
		n) scripts/config --file .config --disable "$name" ;;
		\"*\") value=${value#\"}; value=${value%\"}
		       scripts/config --file .config --set-str "$name" "$value" ;;
		*) scripts/config --file .config --set-val "$name" "$value" ;;
		esac
	done < <(parse_fragment)
}
# Twice around olddefconfig: an option whose dependency the first pass only
# enabled (e.g. a choice member) takes on the second.
apply_fragment
"${MAKE[@]}" olddefconfig >>"$LOG" 2>&1 || { tail -n 30 "$LOG"; die "olddefconfig failed"; }
apply_fragment
"${MAKE[@]}" olddefconfig >>"$LOG" 2>&1 || { tail -n 30 "$LOG"; die "olddefconfig failed"; }

# Every option of the fragment must hold in the final .config.
bad=()
while IFS=$'\t' read -r name value; do
	if [ "$value" = n ]; then
		if grep -q "^CONFIG_$name=" .config; then
			bad+=("CONFIG_$name: wanted n, got $(grep "^CONFIG_$name=" .config | cut -d= -f2-)")
		fi
	elif ! grep -qxF "CONFIG_$name=$value" .config; then
		got=$(grep "^CONFIG_$name=" .config | cut -d= -f2- || true)
		bad+=("CONFIG_$name: wanted $value, got ${got:-n (not set)}")
	fi
done < <(parse_fragment)
if [ ${#bad[@]} -gt 0 ]; then
	printf 'debug_kernel: option not set as requested: %s\n' "${bad[@]}" >&2
	die "${#bad[@]} option(s) of $FRAGMENT did not take (unmet dependency?)"
fi
say "configuration verified: $(parse_fragment | wc -l) options of $(basename "$FRAGMENT")"

# --- build -----------------------------------------------------------------------
say "building vmlinux bzImage modules (make -j$JOBS, niced; log: $LOG)"
"${MAKE[@]}" vmlinux bzImage modules modules_prepare >>"$LOG" 2>&1 ||
	{ tail -n 40 "$LOG"; die "kernel build failed (full log: $LOG)"; }
# Out-of-tree modules need Module.symvers. `make modules` writes it (vmlinux's
# symbols and the =m modules'); modules_prepare alone would leave only
# vmlinux.symvers, to be copied.
if [ ! -s Module.symvers ]; then
	[ -s vmlinux.symvers ] || die "neither Module.symvers nor vmlinux.symvers"
	cp vmlinux.symvers Module.symvers
fi
grep -q '	kmalloc_trace	vmlinux	' Module.symvers || die "Module.symvers lacks vmlinux symbols"
RELEASE=$(make -s kernelrelease)
rm -rf "$CACHE/modroot"
"${MAKE[@]}" INSTALL_MOD_PATH="$CACHE/modroot" modules_install >>"$LOG" 2>&1 ||
	{ tail -n 30 "$LOG"; die "modules_install failed"; }
# modules_install links build/source to this tree; the guest sees the host
# paths over 9p, so they stay valid there too.
echo "$RELEASE" >"$CACHE/release"
[ -s arch/x86/boot/bzImage ] || die "no bzImage"
date -u +%Y-%m-%dT%H:%M:%SZ >"$CACHE/complete"
say "built $RELEASE in $(( $(date +%s) - t0 )) s"
echo "$CACHE"
