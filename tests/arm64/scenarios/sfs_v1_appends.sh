# V1 tracker (kretprobes on vfs_write & co and __bread_gfp) on singlefilefs:
# two mount cycles of appends and an in-place write, restored newest first;
# each restore must give back the sha256 the image had before that mount.
. tests/arm64/lib.sh
BS=4096
load_bdsnap
insmod "$OUT/singlefilefs.ko"
on_exit "rmmod singlefilefs"

pattern() {  # TAG BYTES: self-describing 16-byte records
	awk -v tag="$1" -v n="$2" 'BEGIN { for (i = 0; i < n; i += 16) printf "%-7s%08x\n", tag, i }' |
		head -c "$2"
}
img=/tmp/sfs.img
pattern init $((8 * BS + 123)) >/tmp/sfs.content
"$OUT/mkfs.singlefilefs" -s $((64 * BS)) -c /tmp/sfs.content "$img"
activate "$img" --tracker vfs
mkdir -p /mnt/sfs

cycle() {  # N: one mount cycle; sets S<N> and B<N> (pre-mount sha256)
	seen=$(sessions)
	eval "B$1=\$(sha \"\$img\")"
	loop=$(attach "$img")
	mount -t singlefilefs "$loop" /mnt/sfs
	size0=$(wc -c </mnt/sfs/the-file)
	pattern "c$1-a" $((3 * BS + 77)) >>/mnt/sfs/the-file
	printf 'tail of cycle %s\n' "$1" >>/mnt/sfs/the-file
	pattern "c$1-mid" 2000 | dd of=/mnt/sfs/the-file bs=1 seek=$((3 * BS + 100)) conv=notrunc 2>/dev/null
	size1=$(wc -c </mnt/sfs/the-file)
	echo "cycle $1: the-file grew from $size0 to $size1 bytes"
	[ "$size1" -gt "$size0" ] || fail "append did not grow the file"
	umount /mnt/sfs
	losetup -d "$loop"
	s=$(new_session "$seen")
	eval "S$1=\$s"
	cat "$s/meta"
	[ "$(meta "$s" state)" = complete ] || fail "state is not complete"
	[ "$(meta "$s" tracker)" = vfs ] || fail "tracker is not vfs"
	# data blocks of the append and of the middle write, and the inode (size) block
	[ "$(meta "$s" blocks_saved)" -ge 2 ] || fail "fewer than 2 blocks saved"
	"$BDSNAP" verify "$s"
}
step "cycle 1"
cycle 1
step "cycle 2"
cycle 2
[ "$(sha "$img")" != "$B2" ] || fail "cycle 2 changed nothing"
BEFORE=$B2
assert_restores "$S2" "$img"
BEFORE=$B1
assert_restores "$S1" "$img"
deactivate "$img"
