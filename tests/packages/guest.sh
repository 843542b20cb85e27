#!/bin/sh
# The guest half of tests/packages/test_guest_install.py, run by the root's
# systemd as bdsnap-vm.service (tests/vm/run.py --root --systemd), after
# sysinit.target: bdsnap.service (enabled in the root, /dev/vda in
# /etc/bdsnap/bdsnap.conf) has run.  What an admin does next, with the
# installed /usr/sbin/bdsnap: a session of /dev/vda, a bit-exact restore, then
# unload and `apt-get remove --purge`, which must leave nothing of bdsnap but
# the store.  Each check prints "check: <what>: ok" or fails the run.
set -eu

say() { echo "guest: $*"; }
ok() { echo "check: $*: ok"; }
die() { echo "check: $*: FAILED"; exit 1; }

say "kernel $(uname -r), PID 1 $(cat /proc/1/comm)"
[ "$(cat /proc/1/comm)" = systemd ] || die "systemd is PID 1"

# ---- the unit did its job at boot ----
systemctl status --no-pager bdsnap.service || true
[ "$(systemctl is-active bdsnap.service)" = active ] || die "bdsnap.service is active"
ok "bdsnap.service is active"
journalctl -b -u bdsnap.service --no-pager -o cat | tee /tmp/unit.log
grep -q '^activated /dev/vda ' /tmp/unit.log || die "the unit activated /dev/vda"
ok "the unit loaded the DKMS modules and activated /dev/vda"
for m in bdsnap usctm; do
	[ -d /sys/module/$m ] || die "$m is loaded"
	path=$(modinfo -n $m)
	case $path in
	*/updates/dkms/*) ;;
	*) die "$m comes from DKMS ($path)" ;;
	esac
done
ok "bdsnap and usctm loaded from updates/dkms"
# The credential is the only place the unit reads the password from.
systemctl cat bdsnap.service | grep -q '^LoadCredential=password:/etc/bdsnap/password$' ||
	die "the unit loads the password as a credential"
ls -l /run/credentials/bdsnap.service 2>&1 || true
bdsnap status

# ---- rollback mode: /dev/vdb, left by a crash in the middle of its rollback ----
grep -q '^bdsnap: load: /dev/vdb: rolled back session vdb_' /tmp/unit.log ||
	die "the unit finished the crashed rollback of /dev/vdb"
[ "$(sha256sum </dev/vdb | cut -d' ' -f1)" = "$VDB_PRISTINE" ] ||
	die "/dev/vdb is back as before the crashed session"
! ls /snapshot | grep -q '^vdb_' || die "the finished session is deleted"
grep -q '^activated /dev/vdb (.*rollback' /tmp/unit.log || die "the unit activated /dev/vdb"
ok "the unit finished the crashed rollback of /dev/vdb bit-exact"
mkdir -p /mnt/vdb
mount /dev/vdb /mnt/vdb
head -c 1048576 /dev/urandom >/mnt/vdb/gone
umount /mnt/vdb
[ "$(sha256sum </dev/vdb | cut -d' ' -f1)" = "$VDB_PRISTINE" ] ||
	die "a mount cycle of /dev/vdb is rolled back at its unmount"
! ls /snapshot | grep -q '^vdb_' || die "the rolled-back session is deleted"
ok "a mount cycle of /dev/vdb is rolled back at its unmount"

# ---- a session, then a bit-exact restore ----
before=$(sha256sum </dev/vda)
mkdir -p /mnt/vda
mount /dev/vda /mnt/vda
i=0
while [ $i -lt 64 ]; do
	head -c 65536 /dev/urandom >"/mnt/vda/file$i"
	i=$((i + 1))
done
rm /mnt/vda/file3
umount /mnt/vda
[ "$(sha256sum </dev/vda)" != "$before" ] || die "the mount changed the device"
bdsnap sessions
session=$(bdsnap sessions -n -r -o NAME | tail -n 1)
[ -n "$session" ] || die "a session was recorded"
bdsnap verify "$session"
/usr/sbin/bdsnap restore -y "$session"
after=$(sha256sum </dev/vda)
say "sha256 before mount ${before%% *}, after restore ${after%% *}"
[ "$after" = "$before" ] || die "restore is bit-exact"
ok "restore of $session is bit-exact"

# ---- unload, purge: nothing of bdsnap is left but the store ----
bdsnap unload --force --passfile /etc/bdsnap/password
ok "unload"
kver=$(uname -r)
DEBIAN_FRONTEND=noninteractive apt-get remove --purge -y bdsnap bdsnap-dkms libbdsnap0 \
	libbdsnap-dev 2>&1 | tee /tmp/purge.log
grep -q 'bdsnap: the session store /snapshot is kept (1 session(s))' /tmp/purge.log ||
	die "the purge says the store is kept"
[ -d "/snapshot/$session" ] || die "the store is kept"
ok "the purge keeps the store and says so"
dpkg-query -W -f '${Package} ${Status}\n' bdsnap bdsnap-dkms libbdsnap0 libbdsnap-dev \
	2>/dev/null | grep -v 'not-installed$' && die "no package left, not even its config"
[ ! -e /var/lib/dkms/bdsnap ] || die "dkms forgot bdsnap"
! grep -Eq '(bdsnap|usctm|singlefilefs)\.ko' "/lib/modules/$kver/modules.dep" ||
	die "modules.dep names no bdsnap module"
! systemctl cat bdsnap.service >/dev/null 2>&1 || die "no bdsnap.service unit"
# Every file or link whose name says bdsnap, but the store, this harness's own
# and those the root had before the install ($BEFORE, set by the host side).
left=$(find / -xdev \( -path /snapshot -o -path /results -o -path /proc -o -path /sys \
	-o -path /.bdsnap-init -o -path /etc/systemd/system/bdsnap-vm.service \) -prune -o \
	\( -name '*bdsnap*' -o -name '*usctm*' -o -name '*singlefilefs*' \) -print |
	grep -vxF "${BEFORE:-/nothing}" || true)
[ -z "$left" ] || die "nothing left: $left"
ok "purge leaves no module, unit or file behind"
