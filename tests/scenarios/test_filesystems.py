"""V2 on file systems other than ext4, each through its own mount path.

vfat mounts through mount_bdev() on 6.1 and get_tree_bdev() later; XFS
through get_tree_bdev(); btrfs through neither (its own get_tree, its super
block is killed by kill_anon_super()). Before the session moved to
vfs_get_tree(), btrfs on an activated image mounted with no session and no
error. Every test restores the device bit-exact.
"""

import os

import pytest

from conftest import meta, restore, sessions, sh, sha256, uapi

pytestmark = pytest.mark.ext4

# file system: (image MiB, mkfs command, mount type)
FILE_SYSTEMS = {
    "vfat": (64, "mkfs.vfat -F 32", "vfat"),
    "xfs": (320, "mkfs.xfs -q -f", "xfs"),
    "btrfs": (256, "mkfs.btrfs -q -f", "btrfs"),
}


@pytest.mark.parametrize("ordered", [0, 1], ids=["plain", "ordered"])
@pytest.mark.parametrize("fs", sorted(FILE_SYSTEMS))
def test_roundtrip(bdsnap, make_disk, fs, ordered):
    size, mkfs, fstype = FILE_SYSTEMS[fs]
    sh(f"modprobe {fstype}")
    disk = make_disk(size_mb=size)
    sh(f"{mkfs} {disk.image}")
    before = sha256(disk.image)
    disk.activate(flags=ordered * uapi.BDSNAP_ACT_ORDERED)
    disk.attach()
    seen = set(sessions())
    mnt = disk.mount(fstype=fstype)
    for i in range(20):
        with open(mnt / f"f{i}", "wb") as f:
            f.write(os.urandom(50000 + i * 4099))
    os.sync()
    with open(mnt / "f3", "r+b") as f:
        f.seek(777)
        f.write(os.urandom(30000))
    os.unlink(mnt / "f5")
    disk.umount()
    (session,) = [s for s in sessions() if s not in seen]
    info = meta(session)
    assert info["state"] == "complete" and int(info["blocks_saved"]) > 0, info
    disk.deactivate()
    disk.detach()
    assert sha256(disk.image) != before
    restore(session, disk.image)
    assert sha256(disk.image) == before
