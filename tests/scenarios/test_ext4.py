"""V2 (block-layer) tracker on ext4: every scenario restores bit-exact.

Each test records the sha256 of the device before the mount, lets a workload
change it through the file system, and asserts that restoring the session
brings back exactly that hash.
"""

import mmap
import os
import random
from pathlib import Path

import pytest

from conftest import PASSWORD, meta, restore, sessions, sh, sha256, uapi

pytestmark = pytest.mark.ext4


def write_file(path, size, compressible):
    rnd = random.Random(size)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            if compressible:
                f.write((b"bdsnap text-like line %08d\n" % rnd.randrange(10 ** 8)) * (n // 31) + b"x" * (n % 31))
            else:
                f.write(os.urandom(n))
            left -= n


def cycle(disk, workload, **activate):
    """Activate, mount, run the workload, unmount; return (pre-mount hash, session)."""
    before_sessions = set(sessions())
    before = sha256(disk.image)
    if not disk.active:
        disk.activate(**activate)
    if not disk.loop:
        disk.attach()
    mnt = disk.mount()
    workload(mnt)
    disk.umount()
    new = [s for s in sessions() if s not in before_sessions]
    assert len(new) == 1, f"expected one new session, got {new}"
    info = meta(new[0])
    assert info["state"] == "complete", info
    return before, new[0]


def assert_restores(disk, before, session):
    assert sha256(disk.image) != before, "the workload changed nothing: the test proves nothing"
    disk.detach()
    restore(session, disk.image)
    assert sha256(disk.image) == before


def files_small_large(mnt):
    for i in range(50):
        write_file(mnt / f"small{i}", 100 + i * 37, compressible=i % 2)
    write_file(mnt / "large-text", 8 << 20, compressible=True)
    write_file(mnt / "large-random", 8 << 20, compressible=False)


def overwrite_delete_truncate_fsync(mnt):
    write_file(mnt / "a", 3 << 20, compressible=False)
    os.sync()
    with open(mnt / "a", "r+b") as f:
        f.seek(12345)
        f.write(os.urandom(70000))
        os.fsync(f.fileno())
    os.truncate(mnt / "a", 1 << 20)
    write_file(mnt / "b", 1 << 20, compressible=True)
    os.unlink(mnt / "b")
    (mnt / "dir").mkdir()
    os.rename(mnt / "a", mnt / "dir" / "a")


def direct_and_mmap(mnt):
    fd = os.open(mnt / "direct", os.O_CREAT | os.O_WRONLY | os.O_DIRECT, 0o644)
    buf = mmap.mmap(-1, 1 << 20)
    buf.write(os.urandom(1 << 20))
    for i in range(4):
        os.pwrite(fd, buf, i << 20)
    os.close(fd)
    write_file(mnt / "mapped", 2 << 20, compressible=True)
    with open(mnt / "mapped", "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        for off in range(0, len(m), 8192):
            m[off:off + 16] = os.urandom(16)
        m.flush()


def fill_and_trim(mnt):
    write_file(mnt / "big", 16 << 20, compressible=False)
    os.sync()
    os.unlink(mnt / "big")
    os.sync()
    sh(f"fstrim -v {mnt}")


@pytest.mark.parametrize("ordered", [0, 1], ids=["plain", "ordered"])
@pytest.mark.parametrize("workload", [files_small_large, overwrite_delete_truncate_fsync,
                                      direct_and_mmap, fill_and_trim])
def test_roundtrip(bdsnap, make_disk, workload, ordered):
    disk = make_disk(size_mb=96).mkfs_ext4()
    before, session = cycle(disk, workload, flags=ordered * uapi.BDSNAP_ACT_ORDERED)
    info = meta(session)
    assert int(info["blocks_saved"]) > 0 and info["ordered"] == str(ordered)
    assert_restores(disk, before, session)


def test_sub_block_writes_save_whole_block(bdsnap, make_disk):
    """1 KiB ext4 blocks: every write is smaller than a bdsnap block."""
    disk = make_disk().mkfs_ext4("-b", "1024")

    def scattered(mnt):
        with open(mnt / "f", "wb") as f:
            for i in range(200):
                f.seek(i * 5000 + 4093)
                f.write(b"straddles a 4 KiB boundary")

    before, session = cycle(disk, scattered)
    assert_restores(disk, before, session)


def test_mount_time_writes_unclean_journal(bdsnap, make_disk):
    """An image whose journal needs recovery is written by mount itself."""
    src = make_disk("src").mkfs_ext4()
    src.attach()
    mnt = src.mount()
    write_file(mnt / "journalled", 2 << 20, compressible=True)
    os.sync()
    dirty = make_disk("dirty")
    sh(f"cp {src.image} {dirty.image}")  # copy of a mounted fs: needs_recovery set
    src.umount()
    src.detach()
    assert "needs_recovery" in sh(f"dumpe2fs -h {dirty.image} 2>/dev/null").stdout

    before, session = cycle(dirty, lambda m: None)
    assert sha256(dirty.image) != before, "mount did not replay the journal"
    dirty.detach()
    restore(session, dirty.image)
    assert sha256(dirty.image) == before


def test_three_cycles_restore_newest_first(bdsnap, make_disk):
    disk = make_disk().mkfs_ext4()
    hashes, cycles = [], []
    for i in range(3):
        before, session = cycle(disk, lambda m, i=i: write_file(m / f"gen{i}", (i + 1) << 20, i % 2))
        disk.detach()
        hashes.append(before)
        cycles.append(session)
    final = sha256(disk.image)
    for before, session in reversed(list(zip(hashes, cycles))):
        restore(session, disk.image)
        assert sha256(disk.image) == before
    assert final != hashes[0]


def test_two_devices_at_once(bdsnap, make_disk):
    a, b = make_disk("a").mkfs_ext4(), make_disk("b").mkfs_ext4()
    before = {d: sha256(d.image) for d in (a, b)}
    for d in (a, b):
        d.activate()
        d.attach()
        d.mount()
    write_file(a.mnt / "x", 3 << 20, compressible=False)
    write_file(b.mnt / "y", 3 << 20, compressible=True)
    seen = set(sessions())
    a.umount()
    b.umount()
    by_dev = {meta(s)["path"]: s for s in sessions() if s in seen}
    for d in (a, b):
        d.detach()
        restore(by_dev[str(d.image)], d.image)
        assert sha256(d.image) == before[d]


def test_partition_of_partitioned_loop(bdsnap, make_disk):
    disk = make_disk(size_mb=128)
    sh(f"printf 'label: dos\\nstart=2048, size=100000\\nstart=104448\\n' | sfdisk -q {disk.image}")
    loop = disk.attach(partscan=True)
    part = f"{loop}p1"
    sh(f"mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 {part}")
    before_part, before_img = sha256(part), sha256(disk.image)
    disk.activate(part)
    seen = set(sessions())
    disk.mount(part)
    write_file(disk.mnt / "p", 6 << 20, compressible=False)
    disk.umount()
    (session,) = [s for s in sessions() if s not in seen]
    assert meta(session)["devname"] == Path(part).name
    assert sha256(part) != before_part
    restore(session, part)
    assert sha256(part) == before_part
    disk.deactivate()
    disk.detach()
    assert sha256(disk.image) == before_img


def test_loop_number_changes_between_activation_and_mount(bdsnap, make_disk):
    disk = make_disk().mkfs_ext4()
    disk.activate()
    blocker = make_disk("blocker", size_mb=1)
    blocker.attach()  # takes the lowest free loop number
    before, session = cycle(disk, lambda m: write_file(m / "f", 1 << 20, False))
    blocker.detach()
    assert meta(session)["path"] == str(disk.image)
    assert_restores(disk, before, session)


def test_activated_never_mounted_has_no_session(bdsnap, make_disk):
    disk = make_disk().mkfs_ext4()
    seen = set(sessions())
    disk.activate()
    disk.attach()
    sh(f"dd if={disk.loop} of=/dev/null bs=1M count=4 status=none")
    disk.detach()
    assert set(sessions()) == seen
    (info,) = uapi.list_devices()
    assert info.sessions == 0 and info.session_state == uapi.BDSNAP_SESSION_NONE


def test_list_reports_open_session(bdsnap, make_disk):
    disk = make_disk().mkfs_ext4()
    disk.activate()
    disk.attach()
    disk.mount()
    write_file(disk.mnt / "f", 2 << 20, False)
    os.sync()
    (info,) = uapi.list_devices()
    assert info.session_state == uapi.BDSNAP_SESSION_OPEN
    assert info.devname.decode() == Path(disk.loop).name
    assert info.blocks_saved > 0 and info.bytes_raw >= info.blocks_saved * 512
    assert (Path("/snapshot") / info.session.decode() / "meta").exists()
    with pytest.raises(OSError) as exc:  # deactivate while mounted: documented EBUSY
        uapi.deactivate(str(disk.image), PASSWORD)
    assert exc.value.errno == 16


def test_store_compresses_what_compresses_and_never_grows(bdsnap, make_disk):
    """Pre-images of text are stored deflated; pre-images of random data raw,
    so the store costs no more than the data plus record headers."""
    disk = make_disk().mkfs_ext4("-b", "4096")
    disk.attach()
    mnt = disk.mount()
    write_file(mnt / "text", 8 << 20, compressible=True)
    write_file(mnt / "random", 8 << 20, compressible=False)
    disk.umount()

    def overwrite(name):
        def workload(m):
            with open(m / name, "r+b") as f:
                f.write(os.urandom(8 << 20))
        return workload

    stats = {}
    for name in ("text", "random"):
        before, session = cycle(disk, overwrite(name))
        info = meta(session)
        stats[name] = (before, session, int(info["blocks_saved"]),
                       int(info["bytes_raw"]), int(info["bytes_stored"]))
        print(f"{name}: {stats[name][2:]}")
    _, _, saved, raw, stored = stats["text"]
    assert raw >= 8 << 20 and stored < raw // 3, stats["text"]
    _, _, saved, raw, stored = stats["random"]
    assert raw >= 8 << 20 and stored <= raw + 32 * saved + 64, stats["random"]
    disk.detach()
    for name in ("random", "text"):
        before, session = stats[name][:2]
        restore(session, disk.image)
        assert sha256(disk.image) == before
