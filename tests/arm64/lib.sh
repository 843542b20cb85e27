# Helpers for the arm64 guest scenarios (sourced; plain POSIX sh, busybox ash).
# A scenario runs with `set -eu`; its cleanup trap (ours, see cleanup())
# unmounts, detaches, deactivates and unloads whatever it set up, so a failed
# scenario leaves the next one a clean kernel.
set -eu
OUT=$BDSNAP_REPO/build/arm64/out
BDSNAP=$OUT/bdsnap
PASSWORD=bdsnap-arm64-password
STORE=/snapshot
RESULTS=${BDSNAP_RESULTS:-/results}

step() { echo "--- $*"; }
fail() { echo "FAIL: $*"; exit 1; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

# Cleanup actions, run in reverse order at exit.
_cleanup=""
on_exit() { _cleanup="$*; $_cleanup"; }
cleanup() {
	rc=$?
	set +e
	# Quiet: an action may undo what the scenario already undid itself.
	eval "$_cleanup" >/dev/null 2>&1
	exit $rc
}
trap cleanup EXIT

load_bdsnap() {
	insmod "$OUT/bdsnap.ko" password="$PASSWORD" auth_fail_delay_ms=20 "$@"
	on_exit "rmmod bdsnap"
}

activate() {  # PATH [bdsnap activate options]
	dev=$1
	shift
	echo "$PASSWORD" | "$BDSNAP" activate "$dev" --password-fd 0 "$@"
	on_exit "echo '$PASSWORD' | '$BDSNAP' deactivate '$dev' --password-fd 0"
}

deactivate() {
	echo "$PASSWORD" | "$BDSNAP" deactivate "$1" --password-fd 0
}

attach() {  # IMAGE: print the loop device
	losetup -f "$1"
	dev=$(losetup -a | grep -F "$1" | head -n 1 | cut -d: -f1)
	[ -b "$dev" ] || fail "no loop device for $1"
	echo "$dev"
}

# The sessions in the store, oldest first (the name ends in a UTC time stamp).
sessions() {
	for d in "$STORE"/*/; do
		[ -d "$d" ] && echo "${d%/}"
	done | awk -F_ '{ print $NF " " $0 }' | sort | cut -d' ' -f2-
}

# meta KEY of a session: the last line for KEY wins (docs/format.md).
meta() {
	grep "^$2=" "$1/meta" | tail -n 1 | cut -d= -f2-
}

# The one session that is not in the list $1 (newline-separated).
new_session() {
	new=$(sessions | grep -vxF "$1" || true)
	[ "$(echo "$new" | grep -c .)" = 1 ] || fail "expected one new session, got: $new"
	echo "$new"
}

# The V2 round trip on ext4, with the assertion of every bdsnap scenario: the
# sha256 of the image before the mount equals the one after `bdsnap restore`.
#   ext4_roundtrip IMAGE [activate options]     sets SESSION and BEFORE
ext4_roundtrip() {
	img=$1
	shift
	modprobe loop
	modprobe ext4
	cp "$RESULTS/input/ext4.img" "$img"  # made on the host: mkfs.ext4 -d
	BEFORE=$(sha "$img")
	seen=$(sessions)
	step "activate $img $*"
	activate "$img" "$@"
	loop=$(attach "$img")
	on_exit "losetup -d $loop"
	mnt=/mnt/$(basename "$img" .img)
	mkdir -p "$mnt"
	mount -t ext4 "$loop" "$mnt"
	on_exit "umount $mnt"
	"$BDSNAP" status
	step "workload: new, overwritten, appended, truncated, deleted, renamed, O_DIRECT"
	dd if=/dev/urandom of="$mnt/new-random" bs=64k count=48 2>/dev/null
	seq 1 100000 >"$mnt/numbers"
	dd if=/dev/urandom of="$mnt/random.bin" bs=4096 seek=100 count=50 conv=notrunc 2>/dev/null
	echo "appended on arm64" >>"$mnt/text.txt"
	truncate -s 1M "$mnt/random.bin"
	rm -r "$mnt/src"
	mkdir "$mnt/dir"
	mv "$mnt/numbers" "$mnt/dir/"
	dd if=/dev/urandom of="$mnt/direct" bs=4096 count=256 oflag=direct 2>/dev/null
	sync
	umount "$mnt"
	losetup -d "$loop"
	SESSION=$(new_session "$seen")
	step "session $SESSION"
	cat "$SESSION/meta"
	[ "$(meta "$SESSION" state)" = complete ] || fail "state is not complete"
	[ "$(meta "$SESSION" blocks_saved)" -gt 0 ] || fail "no block saved"
	"$BDSNAP" verify "$SESSION"
	AFTER=$(sha "$img")
	[ "$AFTER" != "$BEFORE" ] || fail "the workload changed nothing: the test proves nothing"
}

assert_restores() {  # SESSION IMAGE: restore and compare with $BEFORE
	step "restore $1 to $2"
	"$BDSNAP" restore "$1" --to "$2"
	got=$(sha "$2")
	echo "sha256 before mount $BEFORE"
	echo "sha256 after restore $got"
	[ "$got" = "$BEFORE" ] || fail "restored image differs from the pre-mount one"
}
