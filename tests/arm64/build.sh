#!/bin/bash
# Cross-build everything the arm64 guest runs, without touching the x86 build:
# the sources of module/ singlefile_fs/ usctm/ lib/ cli/ (plus include/ mk/) are
# mirrored to build/arm64/src/ and built there, so the work tree's .ko and .o
# files stay the amd64 ones the other tests load.
#
#   tests/arm64/build.sh        (needs tests/arm64/deps.sh to have run)
#
# Products, in build/arm64/out/:
#   bdsnap.ko singlefilefs.ko      against Debian's arm64 headers (vermagic checked)
#   mkfs.singlefilefs              a static aarch64 executable (busybox guest)
#   bdsnap                         a script running bdsnap.bin, the CLI, with
#                                  lib/ (the arm64 loader, libc, libsmartcols):
#                                  Debian has no static libsmartcols
#   bdsnap-ioctl-test              static; tests/arm64/ioctl_test.c
#   libbdsnap.a libbdsnap.so.0     the library, as the x86 build makes it
# usctm is x86-64 only: its Makefile skips it for ARCH=arm64 (checked below).
# Incremental: unchanged sources keep their mtime in the mirror.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=${BDSNAP_ARM64_BUILD:-$REPO/build/arm64}
SRC=$OUT/src
DIRS=(include mk module singlefile_fs usctm lib cli)
MAKE=(nice -n 10 make --no-print-directory)

# Variables given to a calling make (CC=, CFLAGS=, KDIR= for the x86 build)
# must not reach the cross builds through MAKEFLAGS.
unset MAKEFLAGS MAKEOVERRIDES MFLAGS MAKELEVEL

say() { echo "arm64-build: $*"; }
die() { echo "arm64-build: error: $*" >&2; exit 1; }

CACHE=$("$HERE/deps.sh" --path) || die "no arm64 toolchain/kernel cache: run 'make deps-arm64' (tests/arm64/deps.sh)"
# shellcheck disable=SC1091
. "$CACHE/env"
t0=$(date +%s.%N)

# --- mirror the sources -----------------------------------------------------------
# The files git would version (tracked, or new and not ignored): never a build
# product, whatever the work tree holds.
list_sources() {
	if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git -C "$REPO" ls-files -co --exclude-standard -- "${DIRS[@]}"
	else
		(cd "$REPO" && find "${DIRS[@]}" -type f ! -name '*.o' ! -name '*.ko' ! -name '*.mod' \
			! -name '*.mod.c' ! -name '*.cmd' ! -name '*.a' ! -name '*.so*' ! -name '*.d' \
			! -name Module.symvers ! -name modules.order ! -path '*/__pycache__/*')
	fi
}
mkdir -p "$SRC" "$OUT/out"
new_manifest=$SRC/.manifest.new
: >"$new_manifest"
while IFS= read -r f; do
	[ -f "$REPO/$f" ] || continue  # deleted in the work tree, still in the index
	head -c 4 "$REPO/$f" | grep -q $'^\x7fELF' && continue  # an amd64 binary
	echo "$f" >>"$new_manifest"
	if ! cmp -s "$REPO/$f" "$SRC/$f"; then
		mkdir -p "$(dirname "$SRC/$f")"
		cp "$REPO/$f" "$SRC/$f"
	fi
done < <(list_sources)
# Sources that vanished since the last mirror.
if [ -f "$SRC/.manifest" ]; then
	sort "$SRC/.manifest" | comm -23 - <(sort "$new_manifest") | while IFS= read -r f; do
		rm -f "$SRC/$f"
	done
fi
mv "$new_manifest" "$SRC/.manifest"

# --- kernel modules ---------------------------------------------------------------
KARGS=(KDIR="$KDIR" ARCH=arm64 CROSS_COMPILE="$CROSS_COMPILE")
LOG=$OUT/build.log
: >"$LOG"
run() {  # run a build step, its output to the log; show it and stop on failure
	if ! "$@" >>"$LOG" 2>&1; then
		tail -n 40 "$LOG"
		die "failed: $* (log: $LOG)"
	fi
}
run "${MAKE[@]}" -C "$SRC/module" "${KARGS[@]}" all
run "${MAKE[@]}" -C "$SRC/singlefile_fs" "${KARGS[@]}" module
run "${MAKE[@]}" -C "$SRC/usctm" "${KARGS[@]}" all
grep -q "usctm: x86-64 only" "$LOG" || die "usctm did not skip itself for ARCH=arm64"

# --- user space -------------------------------------------------------------------
# WITH_KMOD=0: Debian has no static libkmod (bdsnap load/unload are tested on
# x86-64). The busybox guest has no libc: the CLI, which needs libsmartcols
# (shared only), runs through the arm64 loader with the libraries in out/lib.
UARGS=(CC="${CROSS_COMPILE}gcc" AR="${CROSS_COMPILE}ar" WITH_KMOD=0)
UCFLAGS="-O2 -g $ZLIB_CFLAGS"
run "${MAKE[@]}" -C "$SRC/lib" "${UARGS[@]}" CFLAGS="$UCFLAGS" LDFLAGS="$ZLIB_LDFLAGS" all
run "${MAKE[@]}" -C "$SRC/cli" "${UARGS[@]}" CFLAGS="$UCFLAGS" LDFLAGS="$ZLIB_LDFLAGS" \
	ZLIB_LIBS="$LIBDIR/libz.a" bdsnap
run "${MAKE[@]}" -C "$SRC/singlefile_fs" "${UARGS[@]}" LDFLAGS=-static mkfs.singlefilefs
TEST_SRC=$HERE/ioctl_test.c
if [ ! -x "$OUT/out/bdsnap-ioctl-test" ] || [ "$TEST_SRC" -nt "$OUT/out/bdsnap-ioctl-test" ] ||
   [ "$REPO/include/uapi/bdsnap.h" -nt "$OUT/out/bdsnap-ioctl-test" ]; then
	run nice -n 10 "${CROSS_COMPILE}gcc" -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror \
		-I"$REPO/include" -static -o "$OUT/out/bdsnap-ioctl-test" "$TEST_SRC"
fi
# Warning-free, like the x86 build (-Werror covers the compilers; this catches
# kbuild's and the linker's own warnings).
if grep -i "warning" "$LOG" | grep -v "^Skipping BTF generation"; then
	die "the arm64 build printed warnings (log: $LOG)"
fi

# --- collect and check ------------------------------------------------------------
for p in module/bdsnap.ko singlefile_fs/singlefilefs.ko singlefile_fs/mkfs.singlefilefs \
	 lib/libbdsnap.a lib/libbdsnap.so.0; do
	cmp -s "$SRC/$p" "$OUT/out/$(basename "$p")" || cp "$SRC/$p" "$OUT/out/"
done
cmp -s "$SRC/cli/bdsnap" "$OUT/out/bdsnap.bin" || cp "$SRC/cli/bdsnap" "$OUT/out/bdsnap.bin"
mkdir -p "$OUT/out/lib"
for f in "$CROSS_SYSROOT/lib/ld-linux-aarch64.so.1" "$CROSS_SYSROOT/lib/libc.so.6" \
	 "$LIBDIR/libsmartcols.so.1"; do
	cmp -s "$f" "$OUT/out/lib/$(basename "$f")" || cp -L "$f" "$OUT/out/lib/"
done
cat >"$OUT/out/bdsnap.new" <<'EOF'
#!/bin/sh
# The arm64 bdsnap, with the loader and libraries beside it (tests/arm64/build.sh).
here=${0%/*}
exec "$here/lib/ld-linux-aarch64.so.1" --library-path "$here/lib" "$here/bdsnap.bin" "$@"
EOF
chmod 755 "$OUT/out/bdsnap.new"
mv "$OUT/out/bdsnap.new" "$OUT/out/bdsnap"
for ko in bdsnap.ko singlefilefs.ko; do
	vm=$(modinfo -F vermagic "$OUT/out/$ko")
	case $vm in
	"$RELEASE "*aarch64*) ;;
	*) die "$ko: vermagic '$vm' is not for $RELEASE aarch64" ;;
	esac
done
for exe in bdsnap.bin mkfs.singlefilefs bdsnap-ioctl-test libbdsnap.so.0 lib/libsmartcols.so.1 \
	   lib/libc.so.6; do
	machine=$(LC_ALL=C readelf -h "$OUT/out/$exe" | sed -n 's/^ *Machine: *//p')
	[ "$machine" = AArch64 ] || die "$exe: machine '$machine', not AArch64"
done
for exe in mkfs.singlefilefs bdsnap-ioctl-test; do
	LC_ALL=C readelf -l "$OUT/out/$exe" | grep -q "Requesting program interpreter" &&
		die "$exe is not static: the busybox guest has no libc"
done
# bdsnap.bin needs only what out/lib holds (libz is linked in).
needed=$(LC_ALL=C readelf -d "$OUT/out/bdsnap.bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | xargs)
want="ld-linux-aarch64.so.1 libc.so.6 libsmartcols.so.1"
[ "$needed" = "$want" ] || die "bdsnap.bin needs '$needed', not '$want' (out/lib)"
say "built for arm64 ($RELEASE) in $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $t0 }") s: $OUT/out"
