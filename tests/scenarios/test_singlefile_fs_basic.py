"""singlefilefs: mkfs, mount, read, write, append, truncate, fsync, remount.

Runs inside the test guest (tests/vm/run.py), as root:

    make -C singlefile_fs
    /usr/bin/python3 tests/vm/run.py --name sfs -- /usr/bin/python3 -m pytest \
        -p no:cacheprovider -v tests/scenarios/test_singlefile_fs_basic.py

The file content is self-describing: every 16-byte record holds its own file
offset, so a block read from or written to the wrong place shows up as a
wrong offset rather than just a differing hash. Corrupt images must fail the
mount with a "singlefilefs:" message in the kernel log; the runner fails the
run on any kernel warning.
"""

import errno
import os
import re
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import KO_ROOT, REPO, klog_since, kmsg_mark, require_built

SFS_DIR = REPO / "singlefile_fs"
MODULE = KO_ROOT / "singlefile_fs" / "singlefilefs.ko"
MKFS = SFS_DIR / "mkfs.singlefilefs"
HEADER = SFS_DIR / "singlefilefs.h"

pytestmark = [
    pytest.mark.skipif(os.environ.get("BDSNAP_GUEST") != "1",
                       reason="loads a kernel module: run inside tests/vm/run.py"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]


def _header_constants():
    """#define NAME <number> from singlefilefs.h: one definition of the format."""
    consts = {}
    for m in re.finditer(r"^#define\s+(SFS_\w+)\s+(.+?)\s*$",
                         HEADER.read_text(), re.M):
        value = m.group(2).replace("U", "")
        value = re.sub(r"SFS_\w+", lambda n: str(consts.get(n.group(0), n.group(0))), value)
        try:
            consts[m.group(1)] = int(eval(value, {"__builtins__": {}}))  # noqa: S307
        except Exception:  # strings such as SFS_FILE_NAME
            pass
    return consts


C = _header_constants()
BS = C["SFS_BLOCK_SIZE"]
MAGIC = C["SFS_MAGIC"]
VERSION = C["SFS_VERSION"]
SUPER_FMT = "<IIIIQ"     # magic, version, block_size, flags, nr_blocks
INODE_FMT = "<Q"         # size
FILE_NAME = "the-file"

IMAGE_SIZE = 16 * BS                 # 16 blocks: capacity 14 blocks
CAPACITY = IMAGE_SIZE - C["SFS_DATA_BLOCK"] * BS
CONTENT_LEN = 2 * BS + 1808          # three data blocks, the last partial


def pattern(start, length, tag=b"I"):
    """Self-describing bytes for file offsets [start, start + length)."""
    first = start - start % 16
    out = bytearray()
    for off in range(first, start + length, 16):
        out += b"%s%014x\n" % (tag, off)
    return bytes(out[start - first:start - first + length])


def run(*cmd, check=True):
    res = subprocess.run([str(c) for c in cmd], text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and res.returncode:
        raise AssertionError("%s: exit %d: %s" % (" ".join(map(str, cmd)),
                                                  res.returncode, res.stderr.strip()))
    return res


def read_super(image):
    with open(image, "rb") as f:
        sb = struct.unpack_from(SUPER_FMT, f.read(BS))
        f.seek(C["SFS_INODE_BLOCK"] * BS)
        (size,) = struct.unpack_from(INODE_FMT, f.read(BS))
    return sb, size


def patch(image, offset, fmt, value):
    with open(image, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, value))


@pytest.fixture(scope="module")
def sfs_module():
    require_built(MODULE, MKFS)
    if not Path("/dev/loop-control").exists():
        run("modprobe", "loop")    # the guest's Debian kernel has loop as a module
    loaded = Path("/sys/module/singlefilefs").exists()
    if not loaded:
        run("insmod", MODULE)
    yield
    if not loaded:
        run("rmmod", "singlefilefs")


class Env:
    """Images, loop devices and mounts of one test, undone in reverse order."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.undo = []

    def image(self, name="sfs.img", size=IMAGE_SIZE, content=None):
        path = self.tmp / name
        args = [MKFS, "--size", size]
        if content is not None:
            src = self.tmp / (name + ".content")
            src.write_bytes(content)
            args += ["--content", src]
        run(*args, path)
        return path

    def loop(self, image):
        dev = run("losetup", "-f", "--show", image).stdout.strip()
        self.undo.append(lambda: run("losetup", "-d", dev, check=False))
        return dev

    def mount(self, dev, name="mnt"):
        mnt = self.tmp / name
        mnt.mkdir(exist_ok=True)
        run("mount", "-t", "singlefilefs", dev, mnt)
        self.undo.append(lambda: self.umount(mnt))
        return mnt

    @staticmethod
    def umount(mnt):
        if os.path.ismount(mnt):
            run("umount", mnt)

    def cleanup(self):
        while self.undo:
            self.undo.pop()()


@pytest.fixture
def env(sfs_module, tmp_path):
    e = Env(tmp_path)
    yield e
    e.cleanup()


@pytest.fixture
def mounted(env):
    """A mounted singlefilefs with CONTENT_LEN bytes of pattern()."""
    image = env.image(content=pattern(0, CONTENT_LEN))
    dev = env.loop(image)
    mnt = env.mount(dev)
    return image, dev, mnt, mnt / FILE_NAME


def test_mkfs_layout(env):
    image = env.image(content=pattern(0, CONTENT_LEN))
    (magic, version, bsize, flags, nr_blocks), size = read_super(image)
    assert (magic, version, bsize, flags) == (MAGIC, VERSION, BS, 0)
    assert nr_blocks == IMAGE_SIZE // BS
    assert size == CONTENT_LEN
    data = image.read_bytes()[C["SFS_DATA_BLOCK"] * BS:]
    assert data[:CONTENT_LEN] == pattern(0, CONTENT_LEN)


def test_mkfs_block_device(env):
    image = env.tmp / "raw.img"
    image.write_bytes(bytes(IMAGE_SIZE))
    dev = env.loop(image)
    run(MKFS, "--text", "on a device\n", dev)
    (_, _, _, _, nr_blocks), size = read_super(dev)
    assert nr_blocks == IMAGE_SIZE // BS and size == 12
    mnt = env.mount(dev)
    assert (mnt / FILE_NAME).read_bytes() == b"on a device\n"
    res = run(MKFS, "--text", "x", dev, check=False)   # mounted: O_EXCL fails
    assert res.returncode == 1 and res.stderr.startswith("mkfs.singlefilefs: ")
    assert (mnt / FILE_NAME).read_bytes() == b"on a device\n"


def test_read_back(mounted):
    _, _, mnt, f = mounted
    assert os.listdir(mnt) == [FILE_NAME]
    assert not (mnt / "other").exists()
    assert f.stat().st_size == CONTENT_LEN
    assert f.read_bytes() == pattern(0, CONTENT_LEN)
    with open(f, "rb") as fh:
        fh.seek(BS - 5)
        assert fh.read(20) == pattern(BS - 5, 20)
        assert fh.seek(0, os.SEEK_END) == CONTENT_LEN
        assert fh.read(10) == b""
    st = os.statvfs(mnt)
    assert st.f_bsize == BS and st.f_blocks == IMAGE_SIZE // BS


def test_no_other_files(mounted):
    _, _, mnt, _ = mounted
    with pytest.raises(OSError) as e:
        open(mnt / "new", "w")
    assert e.value.errno in (errno.EACCES, errno.EPERM, errno.EROFS)


def test_write_middle(mounted):
    _, _, _, f = mounted
    off, data = BS - 100, pattern(BS - 100, 300, b"W")   # crosses a block boundary
    with open(f, "r+b") as fh:
        fh.seek(off)
        assert fh.write(data) == len(data)
    expect = bytearray(pattern(0, CONTENT_LEN))
    expect[off:off + len(data)] = data
    assert f.stat().st_size == CONTENT_LEN
    assert f.read_bytes() == bytes(expect)


def test_large_unaligned_write(mounted):
    _, _, _, f = mounted
    off, length = 1234, 5 * BS + 777     # one write call over seven blocks
    data = pattern(off, length, b"L")
    fd = os.open(f, os.O_RDWR)
    try:
        assert os.pwrite(fd, data, off) == length
        assert os.pread(fd, length + 100, off) == data    # stops at EOF
        assert os.pread(fd, 3333, off + 4000) == data[4000:7333]
    finally:
        os.close(fd)
    assert f.stat().st_size == off + length
    assert f.read_bytes() == pattern(0, off) + data


def test_append(mounted):
    _, _, _, f = mounted
    extra = pattern(CONTENT_LEN, 3000, b"A")   # fills block 3, spills into 4
    fd = os.open(f, os.O_WRONLY | os.O_APPEND)
    try:
        os.lseek(fd, 0, os.SEEK_SET)   # O_APPEND ignores the position
        assert os.write(fd, extra) == len(extra)
    finally:
        os.close(fd)
    assert f.stat().st_size == CONTENT_LEN + len(extra)
    subprocess.run(["sh", "-c", 'printf tail >> "$1"', "sh", str(f)], check=True)
    out = subprocess.run(["cat", str(f)], check=True, stdout=subprocess.PIPE).stdout
    assert out == pattern(0, CONTENT_LEN) + extra + b"tail"


def test_write_past_eof_zero_fills(mounted):
    _, _, _, f = mounted
    off = CONTENT_LEN + BS + 10
    with open(f, "r+b") as fh:
        fh.seek(off)
        fh.write(b"Z" * 5)
    assert f.read_bytes() == pattern(0, CONTENT_LEN) + bytes(off - CONTENT_LEN) + b"Z" * 5


def test_truncate(mounted):
    _, _, _, f = mounted
    os.truncate(f, 100)
    assert f.stat().st_size == 100
    assert f.read_bytes() == pattern(0, 100)
    os.truncate(f, 2 * BS + 50)        # grow: zero-filled, not the old data
    assert f.read_bytes() == pattern(0, 100) + bytes(2 * BS + 50 - 100)
    os.truncate(f, CAPACITY)
    assert f.stat().st_size == CAPACITY
    with pytest.raises(OSError) as e:
        os.truncate(f, CAPACITY + 1)
    assert e.value.errno == errno.EFBIG
    os.truncate(f, 0)
    assert f.read_bytes() == b""


def test_enospc(mounted):
    _, _, _, f = mounted
    fd = os.open(f, os.O_WRONLY)
    try:
        os.lseek(fd, CAPACITY - 4, os.SEEK_SET)
        assert os.write(fd, b"0123456789") == 4   # partial write
        with pytest.raises(OSError) as e:
            os.write(fd, b"x")
        assert e.value.errno == errno.ENOSPC
        with pytest.raises(OSError) as e:
            os.pwrite(fd, b"x", CAPACITY + BS)
        assert e.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
    assert f.stat().st_size == CAPACITY
    with open(f, "rb") as fh:
        fh.seek(CAPACITY - 4)
        assert fh.read() == b"0123"


def test_fsync_umount_remount(env):
    content = pattern(0, CONTENT_LEN)
    image = env.image(content=content)
    dev = env.loop(image)
    mnt = env.mount(dev)
    f = mnt / FILE_NAME

    with open(f, "r+b") as fh:
        fh.seek(BS - 6)
        fh.write(b"M" * 10)
        fh.seek(0, os.SEEK_END)
        fh.write(b"appended")
        fh.flush()
        os.fsync(fh.fileno())
    expect = bytearray(content + b"appended")
    expect[BS - 6:BS + 4] = b"M" * 10

    # fsync wrote the dirty buffers through the loop device: the backing
    # image file already holds the new data and size while still mounted.
    (magic, *_), size = read_super(image)
    assert magic == MAGIC and size == len(expect)
    data = image.read_bytes()[C["SFS_DATA_BLOCK"] * BS:]
    assert data[:len(expect)] == bytes(expect)

    Env.umount(mnt)
    env.mount(dev)
    assert f.stat().st_size == len(expect)
    assert f.read_bytes() == bytes(expect)

    # A fresh loop device on the image sees the same.
    Env.umount(mnt)
    run("losetup", "-d", dev)
    env.mount(env.loop(image))
    assert f.read_bytes() == bytes(expect)


def _corrupt_magic(image):
    patch(image, 0, "<I", 0xDEADBEEF)


def _corrupt_version(image):
    patch(image, 4, "<I", VERSION + 1)


def _corrupt_block_size(image):
    patch(image, 8, "<I", 1024)


def _corrupt_nr_blocks(image):
    patch(image, 16, "<Q", IMAGE_SIZE // BS + 1)


def _corrupt_file_size(image):
    patch(image, C["SFS_INODE_BLOCK"] * BS, "<Q", CAPACITY + 1)


def _corrupt_huge_file_size(image):
    patch(image, C["SFS_INODE_BLOCK"] * BS, "<Q", 2**64 - 1)


def _too_small_device(image):
    with open(image, "r+b") as f:
        f.truncate(2 * BS)


@pytest.mark.parametrize("corrupt, message", [
    (_corrupt_magic, "bad magic"),
    (_corrupt_version, "unsupported version"),
    (_corrupt_block_size, "unsupported block size"),
    (_corrupt_nr_blocks, "exceeds the device"),
    (_corrupt_file_size, "exceeds the capacity"),
    (_corrupt_huge_file_size, "exceeds the capacity"),
    (_too_small_device, "too small"),
])
def test_bad_image_refused(env, corrupt, message):
    image = env.image(content=pattern(0, CONTENT_LEN))
    corrupt(image)
    dev = env.loop(image)
    mnt = env.tmp / "mnt"
    mnt.mkdir()
    mark = kmsg_mark("bad singlefilefs image")
    res = run("mount", "-t", "singlefilefs", dev, mnt, check=False)
    if res.returncode == 0:
        Env.umount(mnt)
        pytest.fail("corrupt image mounted")
    assert not os.path.ismount(mnt)
    new = "\n".join(klog_since(mark))
    assert "singlefilefs: " in new and message in new, new
