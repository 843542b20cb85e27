"""bdsnap map: the device as it was before the mount, as a read-only NBD device
while the file system keeps writing; a deleted file recovered from it."""
import ctypes
import filecmp
import os
from pathlib import Path

import pytest

from conftest import meta, sessions, sh, sha256, uapi
from test_cli import (activate, cli, fill, json_out, mounted_session, new_session,
                      written_meanwhile)


@pytest.fixture
def views():
    """Unmount and unmap whatever a test left mapped."""
    yield
    for m in json_out("maps")["maps"]:
        sh(f"umount {m['device']} 2>/dev/null || true")
        cli("unmap", m["device"], check=False)


# mkfs, its image size, and how a view of it mounts: no journal replay (it
# would write), and XFS refuses a second mount of the same UUID without nouuid
FILE_SYSTEMS = {
    "ext4": ("mkfs.ext4 -q -F", 64, "ro,noload"),
    "xfs": ("mkfs.xfs -q -f", 320, "ro,norecovery,nouuid"),
}


@pytest.mark.parametrize("mode", ["ordered", "plain"])
@pytest.mark.parametrize("fs", FILE_SYSTEMS)
def test_map_while_written_then_recover_a_deleted_file(bdsnap, make_disk, views, fs, mode):
    """Exact in both modes: ordered, a block changes on the device only once its
    pre-image is in the log; plain, each read of the view waits for the log
    to hold every pre-image queued so far (BDSNAP_IOC_SYNC_STORE)."""
    mkfs, size_mb, view_opts = FILE_SYSTEMS[fs]
    disk = make_disk(size_mb=size_mb)
    sh(f"{mkfs} {disk.image}")
    disk.attach()
    mnt = disk.mount(fstype=fs)
    fill(mnt, "keep", mb=2)
    disk.umount()
    before = sha256(disk.loop)
    activate(disk, disk.image, *(["--ordered"] if mode == "ordered" else []))
    seen = set(sessions())
    mnt = disk.mount(fstype=fs)
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
    sh(f"mount -t {fs} -o {view_opts} {dev} {view}")
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


def test_map_of_an_older_session_of_a_chain_equals_its_export(bdsnap, make_disk, views):
    """The view of the first of two sessions applies the second's pre-images
    first, as export does; the device itself is not changed."""
    disk = make_disk(size_mb=32).mkfs_ext4()
    before = sha256(disk.image)
    mnt, first = mounted_session(disk, "a", mb=1)
    disk.umount()
    seen = set(sessions())
    mnt = disk.mount()
    fill(mnt, "b", mb=1)
    second = new_session(seen)
    disk.umount()
    after = sha256(disk.image)
    dev = cli("map", first).stdout.strip()
    export = Path("/tmp/chain-export.img")
    cli("export", first, "--to", export)
    assert sha256(dev) == sha256(export) == before
    cli("unmap", dev)
    dev = cli("map", second).stdout.strip()
    assert sha256(dev) != before
    cli("unmap", dev)
    assert sha256(disk.image) == after, "a view changed the device"


def test_view_of_a_plain_session_outlives_its_mount_and_the_module(bdsnap, make_disk, views):
    """Mapped while open, the plain session then ends (unmount) and bdsnap is
    unloaded: the view no longer needs the module, its log is final, and it
    still reads as the pre-mount device."""
    disk = make_disk(size_mb=32).mkfs_ext4()
    before = sha256(disk.image)
    mnt, session = mounted_session(disk, "a", mb=1)
    dev = cli("map", session).stdout.strip()
    fill(mnt, "b", mb=1)
    disk.umount()
    disk.deactivate()
    bdsnap.unload()
    assert sha256(dev) == before
    cli("unmap", dev)


def test_mount_and_umount_a_view(bdsnap, make_disk, views, tmp_path):
    """The README's recipe: bdsnap mount, copy the file back, bdsnap umount."""
    disk = make_disk(size_mb=32).mkfs_ext4()
    disk.attach()
    mnt = disk.mount()
    Path(mnt / "thesis.txt").write_text("chapter one\n" * 1000)
    disk.umount()
    mnt, session = mounted_session(disk, "a", mb=1)
    Path(mnt / "thesis.txt").write_text("overwritten by mistake\n")
    os.sync()
    view = tmp_path / "before"
    view.mkdir()
    res = cli("mount", session, view)
    assert res.stdout.startswith("mounted /dev/nbd") and str(view) in res.stdout, res.stdout
    assert (view / "thesis.txt").read_text() == "chapter one\n" * 1000
    assert "ro" in sh(f"findmnt -no OPTIONS {view}").stdout.split(",")
    res = cli("umount", view)
    assert res.stdout.startswith(f"unmounted {view}, unmapped /dev/nbd"), res.stdout
    assert json_out("maps")["maps"] == []
    assert cli("umount", view, check=False).returncode == 1


def test_mount_of_a_view_without_ext4_or_xfs_is_refused_and_detached(bdsnap, make_disk, views,
                                                                    tmp_path):
    disk = make_disk(size_mb=32)
    sh(f"mkfs.vfat {disk.image}")
    activate(disk)
    seen = set(sessions())
    disk.attach()
    disk.mount(fstype="vfat")
    (disk.mnt / "f").write_bytes(b"x" * 4096)
    os.sync()
    session = new_session(seen)
    res = cli("mount", session, tmp_path, check=False)
    assert res.returncode == 4 and "no ext2/3/4 or XFS file system" in res.stderr, res.stderr
    assert json_out("maps")["maps"] == []
    disk.umount()


def test_map_when_every_nbd_device_is_busy_is_refused(bdsnap, make_disk, views):
    disk = make_disk(size_mb=32).mkfs_ext4()
    _, session = mounted_session(disk, "a", mb=1)
    disk.umount()
    sh("rmmod nbd 2>/dev/null; modprobe nbd nbds_max=1")
    try:
        dev = cli("map", session).stdout.strip()
        res = cli("map", session, check=False)
        assert res.returncode == 4 and "every NBD device is in use" in res.stderr, res.stderr
        assert [m["device"] for m in json_out("maps")["maps"]] == [dev]
        cli("unmap", dev)
    finally:
        sh("rmmod nbd")


def test_map_without_the_nbd_driver_is_refused(bdsnap, make_disk, views):
    disk = make_disk(size_mb=32).mkfs_ext4()
    _, session = mounted_session(disk, "a", mb=1)
    disk.umount()
    blocker = Path("/etc/modprobe.d/zz-bdsnap-test-no-nbd.conf")
    sh("rmmod nbd 2>/dev/null || true")
    assert not Path("/sys/module/nbd").exists(), "nbd is still loaded (in use?)"
    blocker.write_text("install nbd /bin/false\n")
    try:
        res = cli("map", session, check=False)
        assert res.returncode == 4 and "the nbd driver is missing" in res.stderr, res.stderr
        assert json_out("maps")["maps"] == []
    finally:
        blocker.unlink()


def damage_first_record(session):
    """Flip a byte in the payload of the first record of session's log; its block."""
    log = Path(session) / "blocks"
    data = log.read_bytes()
    header = uapi.STRUCT["bdsnap_store_header"].from_buffer_copy(data)
    record_type = uapi.STRUCT["bdsnap_record"]
    record = record_type.from_buffer_copy(data, header.header_size)
    at = header.header_size + ctypes.sizeof(record_type) + record.stored_len // 2
    with open(log, "r+b") as f:
        f.seek(at)
        f.write(bytes([data[at] ^ 0xff]))
    return record.block


def test_a_record_damaged_after_map_fails_its_block_only_and_is_listed(bdsnap, make_disk,
                                                                       views):
    """map verified every record; one damaged later fails the reads of its own
    block with EIO, its neighbours still read, and bdsnap maps names it."""
    disk = make_disk(size_mb=32).mkfs_ext4()
    _, session = mounted_session(disk, "a", mb=1)
    disk.umount()
    dev = cli("map", session).stdout.strip()
    block = damage_first_record(session)
    bs = int(meta(Path(session))["block_size"])
    nblocks = int(meta(Path(session))["device_size"]) // bs
    bad = sh(f"dd if={dev} of=/dev/null bs={bs} skip={block} count=1 iflag=direct status=none",
             check=False)
    assert bad.returncode != 0 and "Input/output error" in bad.stdout, bad.stdout
    for other in (block - 1, block + 1):
        if 0 <= other < nblocks:
            sh(f"dd if={dev} of=/dev/null bs={bs} skip={other} count=1 iflag=direct status=none")
    (row,) = json_out("maps")["maps"]
    assert row["damaged"] == str(block), row
    cli("unmap", dev)
    assert not Path(f"/run/bdsnap/maps/{Path(dev).name}.damaged").exists()


def test_unmap_of_something_else_is_an_error(bdsnap):
    res = cli("unmap", "/dev/loop0", check=False)
    assert res.returncode == 1 and "not a view mapped by bdsnap map" in res.stderr
