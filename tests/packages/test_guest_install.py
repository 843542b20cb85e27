"""The Debian packages as an admin uses them, on each supported release.

    make test-packages        (make deb, the roots, then this file: 5-8 min a release)
    /usr/bin/python3 -m pytest -v -s tests/packages [-k trixie]

For each release (bookworm, trixie, sid), on an overlay of its cached root
(tests/vm/kernel_root.sh; the cache is never written):

1. host, in a chroot of the overlay: `apt-get install ./<the four .debs>` from
   build/deb/ (DKMS builds and installs the modules for the root's kernel), the
   store directory created 0700, /dev/vda listed in /etc/bdsnap/bdsnap.conf, the
   password in /etc/bdsnap/password (0600), `systemctl enable bdsnap.service`;
2. guest: the root's kernel boots the overlay as its root file system with
   systemd as PID 1 (tests/vm/run.py --root --systemd), so bdsnap.service loads
   the modules and activates /dev/vda at boot; then tests/packages/guest.sh:
   mount, write, unmount, `/usr/sbin/bdsnap restore` bit-exact (sha256 of the
   device before the mount == after the restore), unload, `apt-get remove
   --purge` leaves no module, unit or file behind, keeps the store and says so.
   Rollback mode on the same boot: /dev/vdb (rollback=yes in bdsnap.conf) is
   what a crash in the middle of its rollback leaves (an unfinished session in
   the store, other bytes on the disk): the hardened unit must finish that
   rollback before it activates the device; then a mount cycle of /dev/vdb is
   rolled back at its unmount by the DKMS-built module.

The run.py checks hold as for every guest (no WARNING/BUG/oops, no hang, no
taint but O and E). One guest at a time. Not part of `make test` (CI's time).
"""
import ctypes
import hashlib
import os
import random
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEBS = REPO / "build" / "deb"
WORK = REPO / "build" / "pkgtest"
GUEST_SH = Path(__file__).resolve().parent / "guest.sh"
sys.path.insert(0, str(REPO / "tests" / "vm"))
import run  # noqa: E402
sys.path.insert(0, str(REPO / "tests" / "unit"))
import storegen  # noqa: E402

RELEASES = ("bookworm", "trixie", "sid")
PACKAGES = ("bdsnap", "libbdsnap0", "libbdsnap-dev", "bdsnap-dkms")
PASSWORD = "pkgtest-secret"
DISK_MB = 64
APT = ["-o", "Acquire::Check-Valid-Until=false", "-o", "DPkg::Lock::Timeout=600"]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount, chroot)")


@pytest.fixture(scope="module", autouse=True)
def private_mounts():
    """Our own mount namespace: the overlays vanish with this process, whatever happens."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x00020000):  # CLONE_NEWNS
        pytest.fail("unshare(CLONE_NEWNS): %s" % os.strerror(ctypes.get_errno()))
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)


def debs():
    found = [next(iter(DEBS.glob(p + "_*.deb")), None) for p in PACKAGES]
    if None in found:
        pytest.fail("no packages in %s: make deb" % DEBS)
    return found


def chroot(root, script, log):
    """Run shell text in the root as an admin would (apt, dkms, systemctl offline)."""
    cmd = ["chroot", str(root), "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
           "DEBIAN_FRONTEND=noninteractive", "LANG=C", "HOME=/root", "sh", "-ec", script]
    with open(log, "a") as f:
        f.write("$ %s\n" % script)
        f.flush()
        res = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if res.returncode:
        sys.stdout.write(Path(log).read_text()[-5000:])
        pytest.fail("in the %s chroot: %s: exit %d (log %s)" % (root, script.splitlines()[0],
                                                                res.returncode, log))


def overlay(release):
    """The release's cached root under a writable overlay, with /proc for apt and dkms."""
    rk = run.root_kernel(release)
    base = WORK / release
    if base.exists():
        subprocess.run(["umount", "-R", str(base / "root")], stderr=subprocess.DEVNULL)
        shutil.rmtree(base)
    for d in ("upper", "work", "root"):
        (base / d).mkdir(parents=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    "lowerdir=%s,upperdir=%s,workdir=%s" % (rk.root, base / "upper",
                                                            base / "work"),
                    str(base / "root")], check=True)
    return rk, base


def install(root, log):
    """Step 1: what the README's install section says, in a chroot of the root."""
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    stage = root / "var/tmp/debs"
    stage.mkdir()
    for d in debs():
        shutil.copy(d, stage)
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    try:
        apt = " ".join(APT)
        # A machine an admin installs on has systemd and udev (the minimal
        # bookworm root has neither).
        chroot(root, "apt-get update -q %s\n"
               "dpkg-query -W systemd udev >/dev/null 2>&1 || "
               "apt-get install -y -q %s systemd udev" % (apt, apt), log)
        chroot(root, "apt-get install -y -q %s %s" % (
            apt, " ".join("./var/tmp/debs/" + d.name for d in debs())) + "\n"
               "cd / && rm -r /var/tmp/debs", log)
        chroot(root, "dkms status bdsnap\n"
               "for m in bdsnap usctm singlefilefs; do modinfo -k %s -n $m; "
               "modinfo -k %s -F signer $m || true; done" % ((rk_release(root),) * 2), log)
        chroot(root, "umask 077\n"
               "printf '%%s\\n' %s > /etc/bdsnap/password\n"
               "echo /dev/vda >> /etc/bdsnap/bdsnap.conf\n"
               "echo '/dev/vdb rollback=yes' >> /etc/bdsnap/bdsnap.conf\n"
               "systemctl enable bdsnap.service\n"
               "systemd-machine-id-setup\n"
               "ls -ld /snapshot /etc/bdsnap/password" % shlex.quote(PASSWORD), log)
    finally:
        subprocess.run(["umount", str(root / "proc")], check=True)


def rk_release(root):
    """The kernel the root's headers and image agree on (what DKMS built for)."""
    vers = [p.name for p in (root / "lib/modules").iterdir()
            if (root / "boot" / ("vmlinuz-" + p.name)).exists()]
    assert len(vers) == 1, vers
    return vers[0]


NAMES = ("bdsnap", "usctm", "singlefilefs")


def named_like_us(root):
    """Paths in the root whose name says bdsnap (the cached roots have a few of their own)."""
    found = []
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            if any(w in n for w in NAMES):
                found.append("/" + os.path.relpath(os.path.join(d, n), root))
    return found


def check_installed(root):
    kver = rk_release(root)
    mods = root / "lib/modules" / kver / "updates/dkms"
    for m in ("bdsnap", "usctm", "singlefilefs"):
        assert list(mods.glob(m + ".ko*")), "DKMS did not install %s for %s" % (m, kver)
    assert (root / "usr/sbin/bdsnap").exists()
    st = os.stat(root / "snapshot")
    assert st.st_mode & 0o7777 == 0o700, oct(st.st_mode)
    assert os.stat(root / "etc/bdsnap/password").st_mode & 0o777 == 0o600
    wants = root / "etc/systemd/system/sysinit.target.wants/bdsnap.service"
    assert wants.is_symlink(), "bdsnap.service is not enabled"


def crashed_rollback(root, base):
    """/dev/vdb as a crash in the middle of the rollback of its session leaves
    it: the session open in the store, rollback=yes, its pre-images those of
    the pristine disk, and 200 of those blocks overwritten on the disk.
    Returns the disk and the sha256 of its pristine content."""
    disk = base / "vdb.img"
    with open(disk, "wb") as f:
        f.truncate(DISK_MB << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(disk)], check=True)
    pristine = disk.read_bytes()
    rnd = random.Random(22)
    session = storegen.Session(root / "snapshot", "vdb_20261207T000000.000000000Z",
                               len(pristine), "/dev/vdb", state="open", devname="vdb",
                               ordered=1, end_keys=False)
    session.meta += [("rollback", "yes"), ("keep", "no")]
    changed = bytearray(pristine)
    for b in sorted(rnd.sample(range(len(pristine) // storegen.BS), 200)):
        at = slice(b * storegen.BS, (b + 1) * storegen.BS)
        session.add(storegen.record(b, pristine[at]))
        changed[at] = rnd.randbytes(storegen.BS)
    disk.write_bytes(changed)
    session.write(end=bytes(changed))
    return disk, hashlib.sha256(pristine).hexdigest()


@pytest.mark.parametrize("release", RELEASES)
def test_packages_install_work_and_purge(release):
    if subprocess.run([str(run.KERNEL_ROOT_SH), release, "--path"],
                      capture_output=True).returncode:
        pytest.skip("no cached %s root (tests/vm/kernel_root.sh %s)" % (release, release))
    t0 = time.monotonic()
    rk, base = overlay(release)
    root = base / "root"
    log = base / "install.log"
    try:
        before = named_like_us(root)
        install(root, log)
        check_installed(root)
        t_install = time.monotonic() - t0
        disk = base / "vda.img"
        with open(disk, "wb") as f:
            f.truncate(DISK_MB << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(disk)], check=True)
        vdb, pristine = crashed_rollback(root, base)
        script = "BEFORE=%s\nVDB_PRISTINE=%s\n%s" % (shlex.quote("\n".join(before)), pristine,
                                                    GUEST_SH.read_text())
        res = run.run_guest(script, name="packages-%s" % release, kernel=release,
                            root=root, systemd=True, disks=[disk, vdb], timeout=1200)
        out = res.output_path.read_text(errors="replace") if res.output_path else ""
        assert res.ok, "%s (install log %s)" % (res.reason, log)
        for what in ("bdsnap.service is active", "is bit-exact", "the purge keeps the store "
                     "and says so", "purge leaves no module, unit or file behind",
                     "the unit finished the crashed rollback of /dev/vdb bit-exact",
                     "a mount cycle of /dev/vdb is rolled back at its unmount"):
            assert "%s: ok" % what in out, what
        print("\npackages on %s (%s): install %.0f s, guest %.0f s" % (
            release, rk.release, t_install, res.duration))
    finally:
        subprocess.run(["umount", "-R", str(root)], stderr=subprocess.DEVNULL)
