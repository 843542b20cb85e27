"""Teardown and mount topology: however a mount goes away, an activated device
has exactly one session per mount cycle, it ends when the file system's last
reference goes, and it restores the pre-mount image bit-exact.

Runs inside the test guest (tests/vm/run.py). Covered: rmmod while mounted
(refused, the session survives), umount -l with a file still open, remount
ro<->rw, a bind mount, a second mount of the same device in another mount
namespace (and a namespace keeping the mount after the original is gone),
deactivate while mounted (EBUSY), and a second loop device over the same
image mounted while the first is.
"""

import ctypes
import errno
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PASSWORD, bdsnap_cli, meta, restore, sessions, sh, sha256, uapi

pytestmark = pytest.mark.ext4

_libc = ctypes.CDLL(None, use_errno=True)
NR_DELETE_MODULE = 176  # x86-64


def new_sessions(seen):
    return [s for s in sessions() if s not in seen and (s / "meta").exists()]


def state():
    """session_state and sessions count of the one activated device."""
    (info,) = uapi.list_devices()
    return info.session_state, info.sessions


def wait_state(session, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        got = meta(session).get("state")
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def scribble(path, size=1 << 20, fsync=True):
    with open(path, "wb") as f:
        f.write(os.urandom(size))
        f.flush()
        if fsync:
            os.fsync(f.fileno())


def start(disk, **activate):
    """A populated ext4 image, activated and mounted: (pre-mount hash, seen sessions)."""
    disk.mkfs_ext4()
    disk.attach()
    mnt = disk.mount()
    for i in range(4):
        scribble(mnt / f"old{i}", 256 << 10)
    disk.umount()
    disk.detach()
    before = sha256(disk.image)
    seen = set(sessions())
    disk.activate(**activate)
    disk.attach()
    disk.mount()
    return before, seen


def finish(disk, before, seen):
    """After the last unmount: one complete session, and it restores exactly."""
    new = new_sessions(seen)
    assert len(new) == 1, f"expected one session, got {[s.name for s in new]}"
    (session,) = new
    assert wait_state(session, "complete") == "complete", meta(session)
    assert state() == (uapi.BDSNAP_SESSION_NONE, 1)
    disk.detach()
    assert sha256(disk.image) != before, "nothing changed: the test proves nothing"
    restore(session, disk.image)
    assert sha256(disk.image) == before
    return session


def open_session():
    (info,) = uapi.list_devices()
    assert info.session_state == uapi.BDSNAP_SESSION_OPEN, info.session_state
    return Path("/snapshot") / info.session.decode()


def test_rmmod_while_mounted_is_refused(bdsnap, make_disk):
    disk = make_disk()
    before, seen = start(disk, flags=uapi.BDSNAP_ACT_ORDERED)
    scribble(disk.mnt / "a")
    res = sh("rmmod bdsnap", check=False)
    assert res.returncode != 0 and "in use" in res.stdout, res.stdout
    ret = _libc.syscall(ctypes.c_long(NR_DELETE_MODULE), ctypes.c_char_p(b"bdsnap"),
                        ctypes.c_long(os.O_NONBLOCK))
    assert ret == -1 and ctypes.get_errno() in (errno.EBUSY, errno.EWOULDBLOCK), ctypes.get_errno()
    assert Path("/sys/module/bdsnap").exists()
    # the session is intact and still tracking
    session = open_session()
    assert meta(session)["state"] == "open"
    scribble(disk.mnt / "b", 2 << 20)
    disk.umount()
    finish(disk, before, seen)
    # and once unmounted, rmmod works (the fixture's rmmod checks it)


def test_lazy_umount_with_open_file(bdsnap, make_disk):
    disk = make_disk()
    before, seen = start(disk)
    mnt = disk.mnt
    f = open(mnt / "held", "wb")
    f.write(os.urandom(1 << 20))
    sh(f"umount -l {mnt}")
    disk.mnt = None
    assert not os.path.ismount(mnt)
    session = open_session()  # the file system lives on through the open file
    f.write(os.urandom(3 << 20))
    f.flush()
    os.fsync(f.fileno())
    assert meta(session)["state"] == "open"
    f.close()  # the last reference: the file system and the session end
    finish(disk, before, seen)


def test_remount_ro_rw_keeps_one_session(bdsnap, make_disk):
    disk = make_disk()
    before, seen = start(disk)
    mnt = disk.mnt
    scribble(mnt / "a")
    sh(f"mount -o remount,ro {mnt}")
    session = open_session()
    with pytest.raises(OSError) as exc:
        scribble(mnt / "b")
    assert exc.value.errno == errno.EROFS
    sh(f"mount -o remount,rw {mnt}")
    assert open_session() == session
    scribble(mnt / "c", 2 << 20)
    sh(f"mount -o remount,ro {mnt}")
    sh(f"mount -o remount,rw {mnt}")
    scribble(mnt / "d")
    disk.umount()
    assert finish(disk, before, seen) == session


def test_bind_mount_keeps_one_session(bdsnap, make_disk):
    disk = make_disk()
    before, seen = start(disk)
    bind = Path("/mnt/bind")
    bind.mkdir(parents=True, exist_ok=True)
    sh(f"mount --bind {disk.mnt} {bind}")
    try:
        scribble(bind / "via-bind")
        session = open_session()
        disk.umount()  # the bind mount still holds the file system
        assert open_session() == session
        scribble(bind / "after-umount", 2 << 20)
    finally:
        sh(f"umount {bind}")
    assert finish(disk, before, seen) == session


def test_second_mount_in_other_namespace(bdsnap, make_disk):
    disk = make_disk()
    before, seen = start(disk)
    session = open_session()
    other = "/mnt/otherns"
    res = sh(f"unshare -m --propagation private sh -c 'mkdir -p {other} && "
             f"mount -t ext4 {disk.loop} {other} && "
             f"dd if=/dev/urandom of={other}/from-ns bs=64k count=32 conv=fsync status=none && "
             f"umount {other}'", check=False)
    assert res.returncode == 0, res.stdout
    assert open_session() == session  # same super block: same session
    scribble(disk.mnt / "main")
    disk.umount()
    assert finish(disk, before, seen) == session


def test_namespace_keeps_mount_after_original_umount(bdsnap, make_disk):
    disk = make_disk()
    before, seen = start(disk)
    session = open_session()
    mnt = disk.mnt
    # A namespace copied while mounted holds its own reference to the mount.
    ns = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         f"echo ready; read go; dd if=/dev/urandom of={mnt}/from-ns bs=64k count=32 "
         f"conv=fsync status=none; echo written; read end"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert ns.stdout.readline().strip() == "ready"
        disk.umount()
        assert open_session() == session, "session ended while another namespace still mounts it"
        ns.stdin.write("go\n")
        ns.stdin.flush()
        assert ns.stdout.readline().strip() == "written"
        assert open_session() == session
        assert meta(session)["state"] == "open"
        ns.stdin.write("end\n")
        ns.stdin.flush()
        assert ns.wait(30) == 0
    finally:
        if ns.poll() is None:
            ns.kill()
            ns.wait()
    assert finish(disk, before, seen) == session


def test_deactivate_while_mounted_is_ebusy(bdsnap, make_disk):
    disk = make_disk()
    before, seen = start(disk)
    scribble(disk.mnt / "a")
    with pytest.raises(OSError) as exc:
        uapi.deactivate(str(disk.image), PASSWORD)
    assert exc.value.errno == errno.EBUSY, exc.value
    res = bdsnap_cli("deactivate", disk.image, password=PASSWORD, check=False)
    assert res.returncode != 0 and "busy" in res.stderr.lower(), res.stderr
    session = open_session()
    scribble(disk.mnt / "b", 2 << 20)
    disk.umount()
    finish(disk, before, seen)
    uapi.deactivate(str(disk.image), PASSWORD)  # allowed once unmounted
    disk.active = None
    assert uapi.list_devices() == []
    assert meta(session)["state"] == "complete"


def test_second_loop_over_same_image_is_refused_or_tracked(bdsnap, make_disk):
    """A second loop device over the activated image, mounted while the first
    is: either the mount is refused, or its writes are tracked too. A silent
    untracked mount would change the image behind the session's back."""
    disk = make_disk()
    before, seen = start(disk)
    scribble(disk.mnt / "a")
    loop2 = sh(f"losetup -f --show {disk.image}").stdout.strip()
    mnt2 = Path("/mnt/second-loop")
    mnt2.mkdir(parents=True, exist_ok=True)
    try:
        res = sh(f"mount -t ext4 {loop2} {mnt2}", check=False)
        mounted2 = res.returncode == 0
        if mounted2:
            scribble(mnt2 / "second", 1 << 20)
            sh(f"umount {mnt2}")
        print(f"second loop mount: {'allowed' if mounted2 else 'refused: ' + res.stdout.strip()}")
    finally:
        sh(f"losetup -d {loop2}")
    disk.umount()
    new = new_sessions(seen)
    assert new, "no session"
    disk.detach()
    # restore every session of this cycle, newest first: the image must come back
    for session in sorted(new, key=lambda s: s.name, reverse=True):
        bdsnap_cli("restore", session, "--to", disk.image, "--force")
    assert sha256(disk.image) == before, \
        "writes through a second loop device over the activated image were not tracked"
