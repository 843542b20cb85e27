"""bdsnap map: the device as it was before the mount, as a read-only NBD device
while the file system keeps writing; a deleted file recovered from it."""
import filecmp
import os
from pathlib import Path

import pytest

from conftest import sessions, sh, sha256
from test_cli import (activate, cli, fill, json_out, mounted_session, new_session,
                      written_meanwhile)


@pytest.fixture
def views():
    """Unmount and unmap whatever a test left mapped."""
    yield
    for m in json_out("maps")["maps"]:
        sh(f"umount {m['device']} 2>/dev/null || true")
        cli("unmap", m["device"], check=False)


@pytest.mark.parametrize("mode", ["ordered", "plain"])
def test_map_while_written_then_recover_a_deleted_file(bdsnap, make_disk, views, mode):
    """Exact in both modes: ordered, a block changes on the device only once its
    pre-image is in the log; plain, each read of the view waits for the log
    to hold every pre-image queued so far (BDSNAP_IOC_SYNC_STORE)."""
    disk = make_disk(size_mb=64).mkfs_ext4()
    disk.attach()
    mnt = disk.mount()
    fill(mnt, "keep", mb=2)
    disk.umount()
    before = sha256(disk.loop)
    activate(disk, disk.image, *(["--ordered"] if mode == "ordered" else []))
    seen = set(sessions())
    mnt = disk.mount()
    saved_copy = Path("/tmp/keep0.orig")
    sh(f"cp {mnt / 'keep0'} {saved_copy}")
    os.unlink(mnt / "keep0")
    fill(mnt, "new", mb=2)
    session = new_session(seen)

    with written_meanwhile(mnt):
        dev = cli("map", session).stdout.strip()
        assert dev.startswith("/dev/nbd"), dev
        first = sha256(dev)
        second = sha256(dev)
    assert first == second == before, "the view differs from the pre-mount device"
    (row,) = json_out("maps")["maps"]
    assert row["device"] == dev and row["session"] == str(session)

    view = Path("/mnt/view")
    view.mkdir(exist_ok=True)
    sh(f"mount -t ext4 -o ro,noload {dev} {view}")
    try:
        assert filecmp.cmp(view / "keep0", saved_copy, shallow=False)
        assert not (view / "new0").exists()
        res = cli("unmap", dev, check=False)
        assert res.returncode == 4 and "mounted or in use" in res.stderr
    finally:
        sh(f"umount {view}")
    assert cli("unmap", dev).stdout == f"unmapped {dev}\n"
    assert json_out("maps")["maps"] == []
    assert not Path(f"/sys/block/{Path(dev).name}/pid").exists()
    disk.umount()


def test_map_of_a_closed_session_equals_its_export(bdsnap, make_disk, views):
    disk = make_disk(size_mb=32).mkfs_ext4()
    _, session = mounted_session(disk, "a", mb=1)
    disk.umount()
    dev = cli("map", session).stdout.strip()
    before = sha256(disk.image)
    export = Path("/tmp/plain-export.img")
    cli("export", session, "--to", export)
    assert sha256(dev) == sha256(export)
    assert sha256(disk.image) == before, "the view changed the device"
    cli("unmap", dev)


def test_unmap_of_something_else_is_an_error(bdsnap):
    res = cli("unmap", "/dev/loop0", check=False)
    assert res.returncode == 1 and "not a view mapped by bdsnap map" in res.stderr
