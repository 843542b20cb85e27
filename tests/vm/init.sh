#!/bin/busybox sh
# PID 1 of the bdsnap test guest (booted by tests/vm/run.py), in two stages.
#
# Stage 1 runs from the initramfs under busybox: load the 9p/overlay modules
# (none is built into Debian's kernel), mount the host root read-only over 9p
# with a tmpfs overlay on top (so the guest can create /snapshot and the like),
# then switch_root into it. PID 1 itself must switch: the kernel's module
# autoload helper resolves /sbin/modprobe against PID 1's root, so if only a
# child chrooted, `mount -t ext4` would fail with "unknown filesystem type".
#
# Stage 2 runs in the new root under the host's /bin/sh: mount the scratch file
# systems and the results share, run the command with its output on ttyS1
# (streamed live by the runner; the kernel console is ttyS0), record exit status,
# taint and dmesg in /results, and report the status through isa-debug-exit.
# The runner trusts a result only if /results/exit exists: qemu's own errors
# also exit with an odd status.
#
# On the debug kernel (KERNEL=debug in run.py; vm.env then sets BDSNAP_MODDIR)
# nothing needs loading in stage 1 (the initramfs has no modules), the debug
# tree's modules_install output is bind-mounted at /lib/modules/$(uname -r) so
# `modprobe loop` works, and after the command kmemleak scans twice (an object
# younger than 5 s is never reported; the second scan drops transient false
# positives) into /results/kmemleak.txt, and lockdep's state goes to
# /results/checkers.txt; the runner fails on either. kmemleak names code only
# through kallsyms at report time, when a scenario's module is long unloaded:
# so while the command runs, modwatch records the symbols of every module it
# sees loaded in /results/modsyms.txt, and the runner names the raw addresses.
#
# Runs under both busybox ash and dash: plain POSIX sh only.

say() { echo "bdsnap-vm: $*"; }

# qemu exits with (byte << 1) | 1. 126 = setup failure of this script.
guest_exit() {
	printf "\\$(printf %o "$1")" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
	say "cannot write the exit port; powering off"
	echo o >/proc/sysrq-trigger
	sleep 5
}

fail() {
	say "init failed: $*"
	guest_exit 126
}

# Debug kernel: every second, for each module loaded at an address not seen
# before, append "NAME BASE SIZE" + its /proc/kallsyms lines to
# /results/modsyms.txt (the init section's symbols are gone by then).
modwatch() {
	seen=" "
	while :; do
		while read -r name size _ _ _ addr _; do
			case $seen in *" $name@$addr "*) continue ;; esac
			seen="$seen$name@$addr "
			grep "\[$name\]\$" /proc/kallsyms | sed "s/^/$name $addr $size /" \
				>>/results/modsyms.txt
		done </proc/modules
		sleep 1
	done
}

stage1() {
	/bin/busybox --install -s /bin
	export PATH=/bin
	mkdir -p /proc /sys /dev /lower /ovl /newroot
	mount -t proc proc /proc || fail "mount /proc"
	mount -t sysfs sysfs /sys || fail "mount /sys"
	mount -t devtmpfs devtmpfs /dev || fail "mount /dev"
	# modules.list is in dependency order (computed by run.py from modules.dep).
	for m in $(cat /modules.list); do
		insmod "/modules/$m" || fail "insmod $m"
	done
	mount -t 9p -o ro,trans=virtio,version=9p2000.L,cache=loose,msize=262144 \
		hostroot /lower || fail "mount 9p hostroot"
	mount -t tmpfs -o mode=0755 tmpfs /ovl || fail "mount /ovl"
	mkdir -p /ovl/upper /ovl/work
	mount -t overlay overlay -o lowerdir=/lower,upperdir=/ovl/upper,workdir=/ovl/work \
		/newroot || fail "mount overlay root"
	# The new root has no copy of this script: put one in the overlay's upper layer.
	cp /init /newroot/.bdsnap-init || fail "copy init"
	for d in dev proc sys; do
		mount --move "/$d" "/newroot/$d" || fail "move /$d"
	done
	# run.py --systemd: the root's systemd is PID 1 and runs stage 2 as a
	# service once sysinit.target (and the units it wants) is reached.
	case " $(cat /newroot/proc/cmdline) " in
	*" systemd.unit=bdsnap-vm.service "*)
		mkdir -p /newroot/etc/systemd/system
		cat >/newroot/etc/systemd/system/bdsnap-vm.service <<-EOF
			[Unit]
			Description=bdsnap test guest: the command of tests/vm/run.py
			AllowIsolate=yes
			[Service]
			Type=oneshot
			ExecStart=/bin/sh /.bdsnap-init stage2
			StandardOutput=journal+console
		EOF
		exec switch_root /newroot /lib/systemd/systemd
		;;
	esac
	exec switch_root /newroot /bin/sh /.bdsnap-init stage2
	fail "switch_root"
}

stage2() {
	export PATH=/usr/sbin:/usr/bin:/sbin:/bin
	mount -t tmpfs -o mode=1777 tmpfs /tmp || fail "mount /tmp"
	# Not PID 1: a service of systemd (run.py --systemd), which owns /run.
	if [ $$ = 1 ]; then
		mount -t tmpfs -o mode=0755 tmpfs /run || fail "mount /run"
	fi
	mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
	mkdir -p /results
	# cache=none: every write reaches the host at once, even if we crash later.
	mount -t 9p -o trans=virtio,version=9p2000.L,cache=none results /results ||
		fail "mount 9p results"
	# vm.env sets BDSNAP_REPO and BDSNAP_NDISKS (written by run.py).
	. /results/vm.env || fail "read /results/vm.env"
	# An empty home, not the host's dotfiles; but a clone in /root (as on a
	# fresh machine, tests/fresh.sh) must stay visible.
	case $BDSNAP_REPO/ in
	/root/*) ;;
	*) mount -t tmpfs -o mode=0700 tmpfs /root || fail "mount /root" ;;
	esac
	if [ -n "${BDSNAP_MODDIR:-}" ]; then
		kmods=/lib/modules/$(uname -r)
		mkdir -p "$kmods" && mount --bind "$BDSNAP_MODDIR" "$kmods" ||
			fail "bind-mount $BDSNAP_MODDIR"
	fi
	taint0=$(cat /proc/sys/kernel/tainted)
	if [ "$BDSNAP_NDISKS" -gt 0 ]; then
		modprobe virtio_blk || fail "modprobe virtio_blk"
		# No udev: devtmpfs creates the nodes once the disks are probed.
		n=0
		while [ "$(ls /dev | grep -c '^vd[a-z]*$')" -lt "$BDSNAP_NDISKS" ]; do
			n=$((n + 1))
			[ $n -gt 100 ] && fail "virtio disks did not appear"
			sleep 0.1
		done
	fi
	# Raw: no \n -> \r\n translation, no echo. The settings outlive this open.
	stty -F /dev/ttyS1 raw -echo || fail "stty ttyS1"
	cd "$BDSNAP_REPO" || fail "cd $BDSNAP_REPO"
	watcher=""
	if [ -w /sys/kernel/debug/kmemleak ]; then
		modwatch &
		watcher=$!
	fi
	say "running command"
	# The subshell is the only opener of ttyS1, so its exit (last close) waits
	# until the UART has sent everything: no output is lost to the poweroff.
	(
		exec env -i BDSNAP_GUEST=1 BDSNAP_RESULTS=/results \
			BDSNAP_KERNEL="${BDSNAP_KERNEL:-debian}" \
			${BDSNAP_KO_ROOT:+"BDSNAP_KO_ROOT=$BDSNAP_KO_ROOT"} \
			PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
			PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8 TERM=dumb \
			/bin/sh /results/cmd.sh
	) </dev/null >/dev/ttyS1 2>&1
	rc=$?
	[ -n "$watcher" ] && kill "$watcher" 2>/dev/null
	if [ -w /sys/kernel/debug/kmemleak ]; then
		say "kmemleak: scanning" >/dev/kmsg
		echo scan >/sys/kernel/debug/kmemleak
		sleep 5
		echo scan >/sys/kernel/debug/kmemleak
		cat /sys/kernel/debug/kmemleak >/results/kmemleak.txt
	fi
	if [ -r /proc/lockdep_stats ]; then
		grep -o 'debug_locks: *[0-9]*' /proc/lockdep_stats | tr -d ' ' |
			sed 's/:/=/' >/results/checkers.txt
	fi
	taint1=$(cat /proc/sys/kernel/tainted)
	dmesg >/results/dmesg.txt
	echo "rc=$rc taint_boot=$taint0 taint_end=$taint1" >/results/exit
	sync
	say "done rc=$rc taint_boot=$taint0 taint_end=$taint1" >/dev/kmsg
	[ "$rc" -gt 127 ] && rc=127
	guest_exit "$rc"
}

if [ "$1" = stage2 ]; then
	stage2
else
	stage1
fi
