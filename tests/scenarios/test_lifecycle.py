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
