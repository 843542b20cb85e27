"""Kernel lifecycle defects of issue 17, each reproduced as a user would meet it.

Every test states what a user saw before its fix; each round trip asserts the
sha256 of the device before the mount equals the one after the restore.
"""

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import PASSWORD, meta, restore, sessions, sh, sha256, uapi

pytestmark = pytest.mark.ext4


def write_random(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(os.urandom(n))
            left -= n


def new_sessions(store, seen=()):
    store = Path(store)
    if not store.exists():
        return []
    return sorted((p for p in store.iterdir() if p.is_dir() and p not in seen),
                  key=lambda p: p.name.split("_")[-1])


def test_activate_block_device_before_the_store_exists(load_bdsnap, make_disk):
    """Before: on a machine with no store directory yet, activating a block
    device answered ENOENT (the store check gave up at '/' without checking it)."""
    store = Path(f"/bdsnap-fresh-{uuid.uuid4().hex[:8]}")
    assert not store.exists()
    load_bdsnap(store_dir=store)
    disk = make_disk().mkfs_ext4()
    loop = disk.attach()
    before = sha256(loop)
    disk.activate(loop)
    disk.mount()
    write_random(disk.mnt / "f", 2 << 20)
    disk.umount()
    (session,) = new_sessions(store)
    assert meta(session)["state"] == "complete"
    disk.deactivate()
    disk.detach()
    restore(session, disk.image)
    assert sha256(disk.image) == before


def test_rmmod_under_io_never_returns_into_freed_text(load_bdsnap, guest):
    """Before: rmmod succeeded while fio's writes slept in submit_bio_noacct()
    under a bdsnap frame, then `BUG: unable to handle page fault` (instruction
    fetch) in fio's pwrite path, [last unloaded: bdsnap]."""
    sh("modprobe null_blk queue_mode=2 hw_queue_depth=1 irqmode=2 completion_nsec=300000000")
    try:
        for _ in range(2):
            mod = load_bdsnap()
            fio = subprocess.Popen(
                ["fio", "--name=w", "--filename=/dev/nullb0", "--rw=randwrite", "--bs=4k",
                 "--direct=1", "--ioengine=psync", "--numjobs=16", "--time_based",
                 "--runtime=8", "--size=64m", "--group_reporting"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(3)
            mod.unload()
            assert fio.wait(timeout=120) == 0
    finally:
        sh("rmmod null_blk")


def test_mount_racing_umount_keeps_its_writes_tracked(bdsnap, make_disk):
    """Before: a mount of the device while the previous super block was still
    being killed (umount writing back) joined the old session, whose end then
    left the new mount's writes untracked: restoring every session newest
    first did not give back the original image."""
    disk = make_disk(size_mb=256).mkfs_ext4()
    before = sha256(disk.image)
    disk.activate()
    disk.attach()
    seen = set(sessions())
    a = disk.mount(mnt="/mnt/race-a")
    write_random(a / "big", 128 << 20)  # dirty: the umount writes it back
    umount = subprocess.Popen(["umount", str(a)])
    # The mount leaves the namespace before its super block is killed.
    while str(a) in Path("/proc/mounts").read_text():
        time.sleep(0.05)
    b = Path("/mnt/race-b")
    b.mkdir(parents=True, exist_ok=True)
    raced = umount.poll() is None
    sh(f"mount -t ext4 {disk.loop} {b}")
    write_random(b / "after", 4 << 20)
    sh(f"umount {b}")
    assert umount.wait() == 0
    disk.mnt = None
    print(f"second mount started while the first umount ran: {raced}")
    assert raced, "the umount finished before the second mount: the race was not run"
    new = [s for s in sessions() if s not in seen]
    assert new and all(meta(s)["state"] == "complete" for s in new), new
    disk.detach()
    for s in reversed(new):
        restore(s, disk.image)
    assert sha256(disk.image) == before


@pytest.mark.parametrize("by", ["image", "loop"])
def test_partitions_of_an_activated_disk_are_tracked(bdsnap, make_disk, by):
    """Before: activating a disk (loop0, or its image) and mounting loop0p1
    mounted with no session and no error (matching was by exact device)."""
    disk = make_disk(size_mb=128)
    sh(f"printf 'label: dos\\nstart=2048, size=100000\\nstart=104448\\n' | sfdisk -q {disk.image}")
    loop = disk.attach(partscan=True)
    for p in ("p1", "p2"):
        sh(f"mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 {loop}{p}")
    before = sha256(disk.image)
    disk.activate(disk.image if by == "image" else loop)
    seen = set(sessions())
    mounts = []
    for p in ("p1", "p2"):
        mnt = Path(f"/mnt/part-{p}")
        mnt.mkdir(parents=True, exist_ok=True)
        sh(f"mount -t ext4 {loop}{p} {mnt}")
        mounts.append(mnt)
        write_random(mnt / "f", 3 << 20)
    for mnt in mounts:
        sh(f"umount {mnt}")
    (session,) = [s for s in sessions() if s not in seen]
    info = meta(session)
    assert info["state"] == "complete" and info["devname"] == Path(loop).name, info
    disk.deactivate()
    disk.detach()
    assert sha256(disk.image) != before
    restore(session, disk.image)
    assert sha256(disk.image) == before
