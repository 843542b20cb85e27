#!/bin/bash
# The README's two commands on a fresh machine of a Debian release: a minimal
# debootstrapped root (what a fresh machine has: gcc, make, git, python3,
# e2fsprogs, xz-utils), a clone of the committed tree in it, then `make demo`
# and `make test` run there as root, each timed.
#
#   tests/fresh.sh RELEASE [demo|test|both]     RELEASE: bookworm or trixie
#
# The root is unpacked anew for every run from a tarball cached in
# $BDSNAP_CACHE (default /var/cache/bdsnap)/fresh-RELEASE.tar; the clone is
# of HEAD (uncommitted changes are not in it). Logs: build/fresh-RELEASE/
# demo.log and test.log. Prints how long `make demo` took to its first line
# of output and in all, and the same for `make test`.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
CACHE_ROOT=${BDSNAP_CACHE:-/var/cache/bdsnap}
MIRROR=${BDSNAP_MIRROR:-http://deb.debian.org/debian}
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

say() { echo "fresh: $*"; }
die() { echo "fresh: error: $*" >&2; exit 1; }
# shellcheck source=lib/cache.sh
. "$HERE/lib/cache.sh"

RELEASE=${1:-}
WHAT=${2:-both}
case $RELEASE in bookworm | trixie) ;; *) die "usage: $0 bookworm|trixie [demo|test|both]" ;; esac
case $WHAT in demo | test | both) ;; *) die "usage: $0 bookworm|trixie [demo|test|both]" ;; esac
command -v debootstrap >/dev/null || die "debootstrap is missing (make deps)"

TARBALL=$CACHE_ROOT/fresh-$RELEASE.tar
if [ ! -e "$TARBALL" ]; then
	(
		cache_enter "$CACHE_ROOT/fresh-$RELEASE.d"
		say "debootstrap a minimal $RELEASE root (once; cached as $TARBALL)"
		tmp=$CACHE_ROOT/fresh-$RELEASE.d/root
		rm -rf "$tmp"
		debootstrap --variant=minbase \
			--include=gcc,make,git,python3,e2fsprogs,xz-utils,ca-certificates \
			"$RELEASE" "$tmp" "$MIRROR" >"$CACHE_ROOT/fresh-$RELEASE.d/debootstrap.log"
		tar -C "$tmp" -cf "$TARBALL.tmp" .
		mv "$TARBALL.tmp" "$TARBALL"
		rm -rf "$tmp"
		touch "$CACHE_ROOT/fresh-$RELEASE.d/complete"
	) >&2
fi

OUT=$REPO/build/fresh-$RELEASE
ROOT=$OUT/root
umount_all() {
	for m in dev/pts dev sys proc ""; do
		mountpoint -q "$ROOT/$m" && umount -l "$ROOT/$m"
	done
	return 0
}
umount_all 2>/dev/null || true
rm -rf "$ROOT"
mkdir -p "$ROOT"
tar -C "$ROOT" -xf "$TARBALL"
trap umount_all EXIT
# A machine's / is a mount point; a chroot's is not unless bound onto itself,
# and `unshare -m` (run.py's builds in the other releases' roots) fails there.
mount --bind "$ROOT" "$ROOT"
mount -t proc proc "$ROOT/proc"
mount -t sysfs sysfs "$ROOT/sys"
mount --bind /dev "$ROOT/dev"
mount --bind /dev/pts "$ROOT/dev/pts"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
git clone -q --no-local "$REPO" "$ROOT/root/bdsnap"
say "$RELEASE root at $ROOT, clone of $(git -C "$REPO" rev-parse --short HEAD)"

# run GOAL: `make GOAL` in the clone, as root, with the environment of a login.
run() {
	local goal=$1 log=$OUT/$1.log t0 first="" rc
	t0=$(date +%s.%N)
	set +e
	chroot "$ROOT" env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
		sh -c "cd /root/bdsnap && make $goal" 2>&1 |
		while IFS= read -r line; do
			if [ -z "$first" ]; then
				first=$(date +%s.%N)
				echo "$first" >"$OUT/$goal.first"
			fi
			printf '%s\n' "$line"
		done >"$log"
	rc=${PIPESTATUS[0]}
	set -e
	local t1
	t1=$(date +%s.%N)
	first=$(cat "$OUT/$goal.first" 2>/dev/null || echo "$t1")
	awk -v r="$RELEASE" -v g="$goal" -v rc="$rc" -v t0="$t0" -v f="$first" -v t1="$t1" \
		-v logfile="$log" 'BEGIN { printf "fresh: %s: make %s: exit %d; first line after %.1f s, all in %.0f s (log %s)\n", r, g, rc, f - t0, t1 - t0, logfile }' 
	tail -n 15 "$log"
	return "$rc"
}

rc=0
if [ "$WHAT" != test ]; then run demo || rc=1; fi
if [ "$WHAT" != demo ]; then run test || rc=1; fi
exit $rc
