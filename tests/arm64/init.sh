#!/bin/busybox sh
# PID 1 of the arm64 test guest (booted by tests/arm64/run.py).
#
# Unlike the x86 guest (tests/vm/init.sh) there is no host root to switch to:
# the host's binaries are amd64. The guest stays in its initramfs (busybox-static
# arm64, which also answers the kernel's module autoload as /sbin/modprobe) and
# mounts three 9p shares:
#   repo     the repository, read-only, at its host path: the cross-built
#            products in build/arm64/out and the scenario scripts
#   results  build/arm64/results/<name>/, writable: vm.env and cmd.sh from the
#            runner; the command's output, exit status, taint and dmesg to it
#   kmods    the arm64 image package's /lib/modules/<release> (with the
#            modules.dep deps.sh made), read-only: `modprobe ext4` works
# /tmp and /snapshot (bdsnap's default store) are tmpfs.
#
# qemu's virt machine has no debug-exit port: the guest writes /results/exit,
# then powers off (qemu exit 0); a panic reboots, and -no-reboot makes that an
# exit 0 too. The runner trusts a result only if /results/exit exists, and
# scans the console log for a panic after it.
#
# Plain POSIX sh under busybox ash.

say() { echo "bdsnap-arm64: $*"; }

fail() {
	say "init failed: $*"
	echo "init failed: $*" >/results/init-failed 2>/dev/null
	sync
	poweroff -f
	sleep 5
}

/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
mkdir -p /proc /sys /dev /tmp /snapshot /results /mnt
mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "mount /dev"
# modules.list is in dependency order (computed by run.py from modules.dep).
for m in $(cat /modules.list); do
	insmod "/modules/$m" || fail "insmod $m"
done
mount -t 9p -o trans=virtio,version=9p2000.L,cache=none results /results ||
	fail "mount 9p results"
. /results/vm.env || fail "read /results/vm.env"
mkdir -p "$BDSNAP_REPO" "/lib/modules/$(uname -r)"
mount -t 9p -o ro,trans=virtio,version=9p2000.L,cache=loose,msize=262144 repo "$BDSNAP_REPO" ||
	fail "mount 9p repo"
mount -t 9p -o ro,trans=virtio,version=9p2000.L,cache=loose,msize=262144 kmods \
	"/lib/modules/$(uname -r)" || fail "mount 9p kmods"
mount -t tmpfs -o mode=1777 tmpfs /tmp || fail "mount /tmp"
mount -t tmpfs -o mode=0755 tmpfs /snapshot || fail "mount /snapshot"
echo /sbin/modprobe >/proc/sys/kernel/modprobe

taint0=$(cat /proc/sys/kernel/tainted)
cd "$BDSNAP_REPO" || fail "cd $BDSNAP_REPO"
say "running command at uptime $(cut -d' ' -f1 /proc/uptime) s" >/dev/kmsg
echo "uptime_at_command=$(cut -d' ' -f1 /proc/uptime)" >/results/boot
(
	exec env -i BDSNAP_GUEST=1 BDSNAP_ARCH=arm64 BDSNAP_RESULTS=/results \
		BDSNAP_REPO="$BDSNAP_REPO" PATH=/sbin:/usr/sbin:/bin:/usr/bin HOME=/tmp \
		LANG=C TERM=dumb /bin/sh /results/cmd.sh
) </dev/null >/results/output.txt 2>&1
rc=$?
taint1=$(cat /proc/sys/kernel/tainted)
dmesg >/results/dmesg.txt
echo "rc=$rc taint_boot=$taint0 taint_end=$taint1" >/results/exit
sync
say "done rc=$rc taint_boot=$taint0 taint_end=$taint1" >/dev/kmsg
umount /results
poweroff -f
sleep 5
