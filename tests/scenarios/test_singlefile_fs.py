"""V1 (vfs_write + buffer heads) and V2 trackers on singlefilefs.

The seed project's flow: format an image, activate it, mount, write to
the-file, unmount, restore; the image's sha256 must equal the pre-mount one.
Every scenario runs with both trackers and must give the same result.
"""

import os
import threading

import pytest

from conftest import KO_ROOT, REPO, meta, restore, sessions, sh, sha256, uapi

pytestmark = pytest.mark.singlefile_fs

SFS = REPO / "singlefile_fs"
BS = 4096
TRACKERS = {"vfs": uapi.BDSNAP_TRACKER_VFS, "bio": uapi.BDSNAP_TRACKER_BIO}


@pytest.fixture
def sfs(guest):
    sh(f"insmod {KO_ROOT / 'singlefile_fs' / 'singlefilefs.ko'}")
    yield
    sh("rmmod singlefilefs")


@pytest.fixture(params=sorted(TRACKERS))
def tracker(request):
    return TRACKERS[request.param]


def make_sfs(make_disk, blocks=64, content=b""):
    disk = make_disk("sfs", size_mb=1)
    text = disk.image.with_suffix(".content")
    text.write_bytes(content)
    sh(f"{SFS / 'mkfs.singlefilefs'} -s {blocks * BS} -c {text} {disk.image}")
    return disk


def pattern(tag, n):
    """Self-describing bytes: every 16-byte record names its writer and offset."""
    return b"".join(b"%-7s%08x\n" % (tag.encode()[:7], i) for i in range(0, n, 16))[:n]


def cycle(disk, tracker, workload):
    seen = set(sessions())
    before = sha256(disk.image)
    if not disk.active:
        disk.activate(tracker=tracker)
    disk.attach()
    mnt = disk.mount(fstype="singlefilefs")
    workload(mnt / "the-file")
    disk.umount()
    disk.detach()
    (session,) = [s for s in sessions() if s not in seen]
    info = meta(session)
    assert info["state"] == "complete", info
    assert sha256(disk.image) != before, "the workload changed nothing"
    return before, session


def write_at(path, offset, data):
    fd = os.open(path, os.O_WRONLY)
    os.pwrite(fd, data, offset)
    os.close(fd)


def append(path, data):
    with open(path, "ab") as f:
        f.write(data)


WORKLOADS = {
    "middle": lambda f: write_at(f, 3 * BS + 100, pattern("mid", 2000)),
    "append": lambda f: append(f, pattern("app", 3 * BS + 77)),
    "same_block": lambda f: [write_at(f, 5 * BS + i * 8, b"%08d" % i) for i in range(300)],
    "across_blocks": lambda f: write_at(f, 2 * BS - 10, pattern("x", 2 * BS + 20)),
    "truncate": lambda f: (os.truncate(f, 3 * BS + 5), os.truncate(f, 9 * BS)),
}


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_roundtrip(bdsnap, sfs, make_disk, tracker, workload):
    disk = make_sfs(make_disk, content=pattern("init", 8 * BS + 123))
    before, session = cycle(disk, tracker, WORKLOADS[workload])
    restore(session, disk.image)
    assert sha256(disk.image) == before


def test_many_writes_to_one_block_save_it_once(bdsnap, sfs, make_disk, tracker):
    disk = make_sfs(make_disk, content=pattern("init", 8 * BS))
    before, session = cycle(disk, tracker, WORKLOADS["same_block"])
    assert int(meta(session)["blocks_saved"]) == 1
    restore(session, disk.image)
    assert sha256(disk.image) == before


def test_append_saves_the_inode_block(bdsnap, sfs, make_disk, tracker):
    """The seed project missed the inode (size) block on append."""
    disk = make_sfs(make_disk, content=pattern("init", 2 * BS))
    before, session = cycle(disk, tracker, lambda f: append(f, b"tail"))
    assert int(meta(session)["blocks_saved"]) == 2  # the data block and the inode block
    restore(session, disk.image)
    assert sha256(disk.image) == before


def test_three_cycles(bdsnap, sfs, make_disk, tracker):
    disk = make_sfs(make_disk, content=pattern("init", 4 * BS))
    hashes = []
    for i in range(3):
        before, session = cycle(disk, tracker, lambda f, i=i: append(f, pattern(f"c{i}", BS + i)))
        hashes.append((before, session))
    for before, session in reversed(hashes):
        restore(session, disk.image)
        assert sha256(disk.image) == before


def test_concurrent_writers(bdsnap, sfs, make_disk, tracker):
    disk = make_sfs(make_disk, blocks=128, content=pattern("init", 40 * BS))

    def writers(path):
        def work(n):
            for i in range(40):
                write_at(path, ((i * 7 + n * 13) % 40) * BS + n * 64, pattern(f"w{n}", 700))
        pids = []
        for n in (8, 9):  # two processes besides the threads
            pid = os.fork()
            if pid == 0:
                try:
                    work(n)
                finally:
                    os._exit(0)
            pids.append(pid)
        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for pid in pids:
            assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0

    before, session = cycle(disk, tracker, writers)
    restore(session, disk.image)
    assert sha256(disk.image) == before


@pytest.mark.parametrize("engine", ["io_uring", "libaio"])
def test_v1_async_writes_are_tracked(sfs, bdsnap, make_disk, engine):
    """Before: io_uring and Linux AIO reached the-file's write_iter with no V1
    window open: fio changed the image, the session said complete, and the
    restore gave a different image. Now io_write() and aio_write() open a
    window, and a buffer dirtied without its pre-image fails the session."""
    disk = make_sfs(make_disk, blocks=200, content=pattern("old", 150 * BS))
    seen = set(sessions())
    before = sha256(disk.image)
    disk.activate(tracker=uapi.BDSNAP_TRACKER_VFS)
    disk.attach()
    mnt = disk.mount(fstype="singlefilefs")
    sh(f"fio --name=w --filename={mnt}/the-file --rw=randwrite --bs=4k --size={120 * BS} "
       f"--ioengine={engine} --iodepth=8 --fallocate=none --randrepeat=0 --output=/dev/null")
    disk.umount()
    disk.detach()
    (session,) = [s for s in sessions() if s not in seen]
    assert sha256(disk.image) != before, "fio changed nothing"
    assert meta(session)["state"] == "complete", meta(session)
    restore(session, disk.image)
    assert sha256(disk.image) == before
