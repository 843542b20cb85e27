#!/bin/sh
# The bdsnap cycle end to end, run inside the test guest by `make demo`:
# activate an ext4 image, mount it, change it, unmount, restore, and compare
# the image's sha256 before the mount with the one after the restore.
set -eu
cd "$(dirname "$0")/.."
BDSNAP=cli/bdsnap
PASSWORD=demo-password
IMG=/tmp/demo.img
MNT=/mnt/demo

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "load bdsnap.ko (the password is kept only as a salted SHA-256)"
modprobe loop
insmod module/bdsnap.ko password="$PASSWORD"
$BDSNAP --version

step "create a 64 MiB ext4 image with some files"
truncate -s 64M "$IMG"
mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 "$IMG"
LOOP=$(losetup -f --show "$IMG")
mkdir -p "$MNT"
mount "$LOOP" "$MNT"
seq 1 20000 > "$MNT/numbers.txt"
cp -r module "$MNT/sources"
umount "$MNT"
losetup -d "$LOOP"
BEFORE=$(sha256sum "$IMG" | cut -d' ' -f1)

step "activate the image (password on a pipe, never on the command line)"
echo "$PASSWORD" | $BDSNAP activate "$IMG" --password-fd 0

step "mount, write, delete, unmount: one session"
LOOP=$(losetup -f --show "$IMG")
mount "$LOOP" "$MNT"
$BDSNAP status
dd if=/dev/urandom of="$MNT/random.bin" bs=1M count=8 status=none
rm -r "$MNT/sources"
echo "changed" >> "$MNT/numbers.txt"
umount "$MNT"
losetup -d "$LOOP"
AFTER_WRITES=$(sha256sum "$IMG" | cut -d' ' -f1)

step "the session"
$BDSNAP sessions
SESSION=$(ls -d /snapshot/*/ | tail -n 1)
$BDSNAP show "$SESSION"
$BDSNAP verify "$SESSION"

step "restore the pre-mount state"
$BDSNAP restore "$SESSION"
AFTER=$(sha256sum "$IMG" | cut -d' ' -f1)
echo "$PASSWORD" | $BDSNAP deactivate "$IMG" --password-fd 0
rmmod bdsnap

step "sha256 of the image"
printf '  before mount   %s\n  after writes   %s\n  after restore  %s\n' \
	"$BEFORE" "$AFTER_WRITES" "$AFTER"
if [ "$BEFORE" = "$AFTER" ] && [ "$BEFORE" != "$AFTER_WRITES" ]; then
	echo "  => restored bit-exact"
else
	echo "  => MISMATCH"
	exit 1
fi
