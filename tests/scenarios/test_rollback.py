"""Rollback mode (issue 22): a device activated with BDSNAP_ACT_ROLLBACK is
written back to its pre-mount content at every unmount, by the kernel,
before umount returns. Each test compares the device's sha256 before the
first mount with the one after each unmount.
"""

import errno
import os
import subprocess
import threading
import time

import pytest

from conftest import PASSWORD, bdsnap_cli, klog_since, kmsg_mark, meta, sessions, sh, sha256, uapi

pytestmark = pytest.mark.ext4

ROLLBACK = uapi.BDSNAP_ACT_ROLLBACK | uapi.BDSNAP_ACT_ORDERED
# file system: (image MiB, mkfs command)
FILE_SYSTEMS = {"ext4": (64, "mkfs.ext4 -q -F"), "xfs": (320, "mkfs.xfs -q -f")}


def listing(mnt):
    """What `ls -lR` and `stat` show of the tree, access times left out (a
    read-only look at the tree updates them)."""
    return sh(f"cd {mnt} && find . -printf '%p %y %s %m %U %G %T@ %C@\\n' | sort").stdout


def state(path):
    (info,) = [d for d in uapi.list_devices() if d.path.decode() == str(path)]
    return info.session_state, info.session.decode()


def change_everything(mnt, cycle):
    """New files, an overwrite in place, a delete and a rename."""
    for i in range(8):
        with open(mnt / f"new{cycle}_{i}", "wb") as f:
            f.write(os.urandom(40000 + i * 5003))
    with open(mnt / "keep0", "r+b") as f:
        f.seek(1000)
        f.write(os.urandom(9000))
    os.unlink(mnt / "keep1")
    os.rename(mnt / "keep2", mnt / f"moved{cycle}")
    os.sync()


@pytest.mark.parametrize("fs", sorted(FILE_SYSTEMS))
def test_ten_cycles_each_come_back_bit_exact(bdsnap, make_disk, fs):
    size, mkfs = FILE_SYSTEMS[fs]
    sh(f"modprobe {fs}")
    disk = make_disk(size_mb=size)
    sh(f"{mkfs} {disk.image}")
    disk.attach()
    mnt = disk.mount(fstype=fs)
    for i in range(3):
        with open(mnt / f"keep{i}", "wb") as f:
            f.write(os.urandom(30000))
    disk.umount()
    before = sha256(disk.image)
    seen = set(sessions())
    disk.activate(flags=ROLLBACK)
    first = None
    for cycle in range(10):
        mnt = disk.mount(fstype=fs)
        now = listing(mnt)
        first = first or now
        # the previous cycle's changes left no trace inside the file system
        assert now == first, f"cycle {cycle}: the tree differs from the first mount's"
        change_everything(mnt, cycle)
        assert listing(mnt) != first
        disk.umount()
        assert state(disk.image)[0] == uapi.BDSNAP_SESSION_NONE
        assert sha256(disk.image) == before, f"cycle {cycle}: not rolled back"
    # without --keep, every rolled-back session is deleted
    assert set(sessions()) == seen


def test_keep_marks_the_rolled_back_sessions(bdsnap, make_disk):
    disk = make_disk().mkfs_ext4()
    before = sha256(disk.image)
    seen = set(sessions())
    disk.activate(flags=ROLLBACK | uapi.BDSNAP_ACT_KEEP)
    disk.attach()
    for cycle in range(2):
        mnt = disk.mount()
        with open(mnt / "f", "wb") as f:
            f.write(os.urandom(100000))
        disk.umount()
        assert sha256(disk.image) == before
    kept = [s for s in sessions() if s not in seen]
    assert len(kept) == 2, kept
    for s in kept:
        m = meta(s)
        assert m["rollback"] == "yes" and m["keep"] == "yes" and m["state"] == "complete", m
        assert m["rolled_back"] >= m["end"], m
        # what is kept is still a valid session: it restores what it rolled back
        bdsnap_cli("verify", s)


def test_rollback_needs_ordered_mode_and_keep_needs_rollback(bdsnap, make_disk):
    disk = make_disk().mkfs_ext4()
    for flags in (uapi.BDSNAP_ACT_ROLLBACK, uapi.BDSNAP_ACT_KEEP | uapi.BDSNAP_ACT_ORDERED):
        with pytest.raises(OSError) as exc:
            disk.activate(flags=flags)
        assert exc.value.errno == errno.EINVAL
    with pytest.raises(OSError) as exc:
        uapi.activate(str(disk.image), PASSWORD, tracker=uapi.BDSNAP_TRACKER_VFS, flags=ROLLBACK)
    assert exc.value.errno == errno.EINVAL
    disk.active = None


def test_mount_and_writes_during_the_rollback_are_refused(bdsnap, make_disk):
    """A rollback of ~60 MiB of changed blocks takes seconds in the guest:
    meanwhile a mount is refused with EBUSY and a raw write to the device
    fails; neither changes what the rollback leaves."""
    disk = make_disk(size_mb=128).mkfs_ext4()
    before = sha256(disk.image)
    disk.activate(flags=ROLLBACK)
    loop = disk.attach()
    mnt = disk.mount()
    sh(f"dd if=/dev/urandom of={mnt}/big bs=1M count=60 conv=fsync status=none")
    mark = kmsg_mark("rollback window")
    umount = threading.Thread(target=disk.umount)
    umount.start()
    deadline = time.monotonic() + 60
    while state(disk.image)[0] != uapi.BDSNAP_SESSION_ROLLING_BACK:
        assert umount.is_alive(), "the rollback ended before it was seen running"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    other = "/mnt/during-rollback"
    os.makedirs(other, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "ext4", loop, other], capture_output=True, text=True)
    raw = subprocess.run(["dd", "if=/dev/zero", f"of={loop}", "bs=4096", "count=1", "seek=5",
                          "oflag=direct", "conv=notrunc", "status=none"],
                         capture_output=True, text=True)
    still = state(disk.image)[0] == uapi.BDSNAP_SESSION_ROLLING_BACK
    umount.join(120)
    assert not umount.is_alive()
    assert mounted.returncode != 0, "a mount during the rollback succeeded"
    assert raw.returncode != 0, "a raw write during the rollback succeeded"
    log = klog_since(mark)
    assert any("is being rolled back: mount refused" in ln for ln in log), log
    assert any("write refused" in ln for ln in log), log
    assert still, "the rollback ended before the refusals were checked"
    assert sha256(disk.image) == before


def test_failed_rollback_refuses_mounts_until_finished_by_hand(bdsnap, make_disk):
    """A device that turned read-only cannot be written back: the session
    is kept with its error, mounts are refused; `bdsnap rollback` finishes it
    once the device is writable, and deactivating lets the device go."""
    disk = make_disk().mkfs_ext4()
    before = sha256(disk.image)
    seen = set(sessions())
    disk.activate(flags=ROLLBACK)
    loop = disk.attach()
    mnt = disk.mount()
    with open(mnt / "f", "wb") as f:
        f.write(os.urandom(200000))
    os.sync()
    sh(f"blockdev --setro {loop}")
    mark = kmsg_mark("failed rollback")
    disk.umount()
    sh(f"blockdev --setrw {loop}")
    (session,) = [s for s in sessions() if s not in seen]
    assert state(disk.image) == (uapi.BDSNAP_SESSION_ROLLBACK_FAILED, session.name)
    assert meta(session)["rollback_error"] == str(-errno.EROFS)
    assert "rolled_back" not in meta(session)
    assert any("is not rolled back" in ln for ln in klog_since(mark))
    assert sha256(disk.image) != before
    refused = subprocess.run(["mount", loop, str(mnt)], capture_output=True, text=True)
    assert refused.returncode != 0
    bdsnap_cli("rollback", disk.image)
    assert sha256(disk.image) == before
    assert session not in sessions()
    disk.deactivate()
    disk.activate(flags=ROLLBACK)
    disk.mount()
    disk.umount()
    assert sha256(disk.image) == before
