"""Store faults and concurrency: a session restores bit-exact, or says clearly
that it cannot.

Runs inside the test guest (tests/vm/run.py). The store (/snapshot) is, where
a test needs it, a small ext4 image mounted before bdsnap is loaded, so that
it fills in the middle of a session:

- not ordered: the session ends `incomplete:ENOSPC`, the kernel says so in
  exactly one line, the tracked file system keeps working, and restore
  refuses without --force (exit 4);
- ordered: a write to a block whose pre-image could not be stored fails with
  EIO and the block on the device keeps its old content; writes to blocks
  already saved still succeed; so even the incomplete session restores the
  pre-mount image exactly (with --force).

The store's device can also fail (dm-linear swapped for dm-error mid-session):
plain sessions go on and cannot be restored without --force; ordered ones
fail unsaved writes with EIO and still restore the pre-mount image.

The concurrency test runs 8 writers (buffered+fsync, O_DIRECT, metadata) on
overlapping blocks for BDSNAP_STRESS_SECONDS (default 20; `make stress`
sets 120) on an ordered and a plain session and restores bit-exact.
"""

import errno
import mmap
import os
import random
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import CLI, STORE, Disk, klog_since, kmsg_mark, meta, sessions, sh, sha256, uapi

pytestmark = pytest.mark.ext4

BLOCK = 4096
STORE_MB = 4
STRESS_SECONDS = float(os.environ.get("BDSNAP_STRESS_SECONDS", "20"))
# A kernel log line of bdsnap that reports a failure (paths scrubbed first:
# a test's tmp directory is named after the test).
FAILURE_LINE = re.compile(r"\bbdsnap[-\w]*: .*(error|fail|incomplete|ENOSPC|EIO)", re.I)


# ------------------------------------------------------------------ helpers


def failure_lines(mark, *scrub):
    """bdsnap's kernel log lines about a failure since mark; paths in scrub are
    replaced first so that a file name cannot look like a failure."""
    out = []
    for line in klog_since(mark):
        clean = line
        for path in scrub:
            clean = clean.replace(str(path), "<path>")
        if FAILURE_LINE.search(clean):
            out.append(line)
    return out


def cli(*args):
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True)


def extents(path):
    """[(logical byte, physical byte, length)] of a file, from filefrag -v."""
    out = sh(f"filefrag -v -b{BLOCK} {path}").stdout
    ext = []
    for m in re.finditer(r"^\s*\d+:\s+(\d+)\.\.\s*(\d+):\s+(\d+)\.\.\s*(\d+):", out, re.M):
        lstart, lend, pstart = int(m.group(1)), int(m.group(2)), int(m.group(3))
        ext.append((lstart * BLOCK, pstart * BLOCK, (lend - lstart + 1) * BLOCK))
    assert ext, out
    return ext


def physical(exts, offset):
    for lstart, pstart, length in exts:
        if lstart <= offset < lstart + length:
            return pstart + offset - lstart
    raise AssertionError(f"offset {offset} not mapped")


def new_sessions(seen):
    return [s for s in sessions() if s not in seen and (s / "meta").exists()]


@pytest.fixture
def small_store(guest, tmp_path):
    """A STORE_MB MiB ext4 mounted at /snapshot (before bdsnap is loaded)."""
    img = tmp_path / "store.img"
    sh(f"truncate -s {STORE_MB}M {img}")
    sh(f"mkfs.ext4 -q -F {img}")
    STORE.mkdir(exist_ok=True)
    loop = sh(f"losetup -f --show {img}").stdout.strip()
    sh(f"mount -t ext4 {loop} {STORE}")
    yield STORE
    sh(f"umount {STORE}")
    sh(f"losetup -d {loop}")


def fill_to_the_last_block(fs_dir):
    """Fill the file system at fs_dir (root may use the reserved blocks). A
    write that found no room is not enough: ext4 reserves delayed allocations
    at their worst case and gives the rest back at writeback, so fill again
    after each sync until a synced 1 KiB write finds no room."""
    for i in range(8):
        sh(f"dd if=/dev/zero of={fs_dir}/filler{i} bs=1k status=none; sync -f {fs_dir}",
           check=False)
        probe = sh(f"dd if=/dev/zero of={fs_dir}/probe bs=1k count=1 conv=fsync status=none",
                   check=False)
        sh(f"rm -f {fs_dir}/probe; sync -f {fs_dir}")
        if "No space" in probe.stdout:
            return
    raise AssertionError(f"{fs_dir} still has room after 8 fills: "
                         + sh(f"df -k {fs_dir}").stdout)


def mount_lazytime(disk):
    """Mount at /mnt/tracked with lazytime: an O_DIRECT overwrite of written
    extents journals nothing, so each pwrite is exactly one data bio."""
    mnt = Path("/mnt/tracked")
    mnt.mkdir(parents=True, exist_ok=True)
    sh(f"mount -t ext4 -o lazytime {disk.loop} {mnt}")
    disk.mnt = mnt
    return mnt


def prepare(make_disk, data_mb=16):
    """A 64 MiB ext4 (4 KiB blocks) holding `data`: data_mb MiB of random bytes,
    written before any session. Returns (disk, old content, data's extents)."""
    disk = make_disk("tracked", size_mb=64).mkfs_ext4("-b", str(BLOCK))
    disk.attach()
    mnt = disk.mount()
    old = os.urandom(data_mb << 20)
    (mnt / "data").write_bytes(old)
    os.sync()
    exts = extents(mnt / "data")
    disk.umount()
    disk.detach()
    return disk, old, exts


def read_image(image, offset, length):
    with open(image, "rb") as f:
        f.seek(offset)
        return f.read(length)


# ------------------------------------------------------------------ full store


def test_full_store_plain_session_ends_incomplete(small_store, load_bdsnap, make_disk):
    load_bdsnap()
    disk, old, _ = prepare(make_disk)
    before = sha256(disk.image)
    seen = set(sessions())
    mark = kmsg_mark("full store, plain session")
    disk.activate()
    disk.attach()
    mnt = disk.mount()

    # 16 MiB of incompressible pre-images into a 4 MiB store: it fills.
    with open(mnt / "data", "r+b") as f:
        for off in range(0, len(old), 1 << 20):
            f.seek(off)
            f.write(os.urandom(1 << 20))
            f.flush()
            os.fsync(f.fileno())
    # Up to store_queue_max pre-images wait in memory: the store worker hits
    # ENOSPC only while it drains them.
    deadline = time.monotonic() + 60
    while True:
        (info,) = uapi.list_devices()
        if info.session_state == uapi.BDSNAP_SESSION_INCOMPLETE or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert info.session_state == uapi.BDSNAP_SESSION_INCOMPLETE, "store full but session not incomplete"
    assert info.errors > 0

    # The tracked file system keeps working.
    payload = os.urandom(3 << 20)
    (mnt / "after").write_bytes(payload)
    os.sync()
    sh("echo 3 > /proc/sys/vm/drop_caches")
    assert (mnt / "after").read_bytes() == payload
    os.unlink(mnt / "data")
    (mnt / "dir").mkdir()
    disk.umount()

    (session,) = new_sessions(seen)
    assert meta(session)["state"] == "incomplete:ENOSPC", meta(session)
    loopname = Path(disk.loop).name
    disk.detach()
    after = sha256(disk.image)
    res = cli("restore", session, "--to", disk.image)
    assert res.returncode == 4, (res.returncode, res.stdout, res.stderr)
    assert "incomplete" in res.stderr and "--force" in res.stderr, res.stderr
    assert sha256(disk.image) == after, "a refused restore wrote to the target"
    res = cli("restore", session, "--to", disk.image, "--force")
    assert res.returncode == 0, (res.stdout, res.stderr)
    print(f"plain full store: forced restore {'matches' if sha256(disk.image) == before else 'differs from'} "
          f"the pre-mount image (not asserted: pre-images were lost)")
    assert_one_log_line(mark, session, loopname, disk.image)


def assert_one_log_line(mark, session, devname, *scrub):
    """Exactly one kernel log line says the session is incomplete, and which."""
    lines = failure_lines(mark, *scrub)
    assert len(lines) == 1, "expected exactly one kernel log line about the failure, got:\n" + \
        "\n".join(lines)
    assert session.name in lines[0] or devname in lines[0], f"names no session: {lines[0]}"
    assert "incomplete" in lines[0], lines[0]


def test_full_store_records_the_end_when_meta_needs_room(small_store, load_bdsnap, guest,
                                                        tmp_path):
    """Before: when the store filled up and the end of meta needed a new block
    of the store (here a long image path on a 1 KiB-block store), the final
    meta lines were lost and the session stayed "open" instead of
    "incomplete:ENOSPC". meta's room is reserved when the session starts."""
    load_bdsnap()
    deep = tmp_path / ("d" * 205) / ("e" * 205) / ("f" * 205)
    deep.mkdir(parents=True)
    disk = Disk(deep / "tracked.img", 64)
    try:
        disk.mkfs_ext4("-b", str(BLOCK))
        disk.attach()
        mnt = disk.mount()
        (mnt / "data").write_bytes(os.urandom(16 << 20))  # old content that does not compress
        disk.umount()
        disk.activate()
        seen = set(sessions())
        mnt = disk.mount()
        (session,) = new_sessions(seen)
        # the end lines (~140 bytes) must need a second 1 KiB block of the store
        assert 900 < len((session / "meta").read_text()) < 1024, "meta does not cross a block"
        fill_to_the_last_block(small_store)
        with open(mnt / "data", "r+b") as f:
            for _ in range(16):
                f.write(os.urandom(1 << 20))
                f.flush()
                os.fsync(f.fileno())
        disk.umount()
        assert meta(session)["state"] == "incomplete:ENOSPC", meta(session)
    finally:
        disk.cleanup()


@pytest.mark.parametrize("ordered", [0, 1], ids=["plain", "ordered"])
def test_store_size_cap(load_bdsnap, make_disk, tmp_path, ordered):
    """store_max_mb caps the store: the session goes incomplete:EDQUOT with one
    log line; a plain session's writes go on, an ordered one's fail with EIO.
    An ordered session cannot start in a store already over the cap."""
    store = tmp_path / "capped"
    load_bdsnap(store_max_mb=2, store_dir=store)
    disk, old, _ = prepare(make_disk)
    mark = kmsg_mark(f"store cap, ordered={ordered}")
    disk.activate(flags=ordered * uapi.BDSNAP_ACT_ORDERED)
    disk.attach()
    mnt = mount_lazytime(disk)
    buf = mmap.mmap(-1, 1 << 20)
    fd = os.open(mnt / "data", os.O_RDWR | os.O_DIRECT)
    errors = set()
    try:
        for off in range(0, 8 << 20, 1 << 20):  # 8 MiB of incompressible pre-images
            buf.seek(0)
            buf.write(os.urandom(1 << 20))
            try:
                os.pwrite(fd, buf, off)
            except OSError as exc:
                errors.add(exc.errno)
    finally:
        os.close(fd)
    assert errors == ({errno.EIO} if ordered else set()), errors
    disk.umount()
    (session,) = [p for p in store.iterdir() if p.is_dir()]
    info = meta(session)
    assert info["state"] == "incomplete:EDQUOT", info
    assert int(info["bytes_stored"]) <= 2 << 20, info
    assert_one_log_line(mark, session, Path(disk.loop).name, disk.image)
    if ordered:
        # the admin lowers the cap under what the store holds
        Path("/sys/module/bdsnap/parameters/store_max_mb").write_text("1\n")
        res = sh(f"mount -t ext4 {disk.loop} {mnt}", check=False)
        if res.returncode == 0:
            sh(f"umount {mnt}")
        assert res.returncode != 0, "an ordered session started in a store over its cap"
        assert "over its cap" in sh("dmesg | tail -n 5").stdout


def test_full_store_ordered_fails_unsaved_writes_with_eio(small_store, load_bdsnap, make_disk):
    """Ordered policy: no block changes without its durable pre-image."""
    load_bdsnap()
    disk, old, exts = prepare(make_disk)
    before = sha256(disk.image)
    seen = set(sessions())
    mark = kmsg_mark("full store, ordered session")
    disk.activate(flags=uapi.BDSNAP_ACT_ORDERED)
    disk.attach()
    mnt = mount_lazytime(disk)  # each 4 KiB pwrite below is one bio of one block

    buf = mmap.mmap(-1, BLOCK)
    fd = os.open(mnt / "data", os.O_RDWR | os.O_DIRECT)
    written, failed, first_error = [], {}, None
    try:
        for blk in range(len(old) // BLOCK):
            buf.seek(0)
            buf.write(os.urandom(BLOCK))
            try:
                os.pwrite(fd, buf, blk * BLOCK)
            except OSError as exc:
                failed[blk] = exc.errno
                first_error = first_error or exc.errno
                if len(failed) >= 64:
                    break
                continue
            try:
                os.fdatasync(fd)
            except OSError as exc:
                first_error = first_error or exc.errno
            written.append(blk)
        assert failed, "the store never filled: the test proves nothing"
        assert first_error == errno.EIO, f"first failure {errno.errorcode[first_error]}, not EIO"
        assert set(failed.values()) <= {errno.EIO}, failed
        # A block saved before the store filled may still be written.
        buf.seek(0)
        buf.write(os.urandom(BLOCK))
        assert os.pwrite(fd, buf, written[0] * BLOCK) == BLOCK
        os.fdatasync(fd)
    finally:
        os.close(fd)
    (info,) = uapi.list_devices()
    assert info.session_state == uapi.BDSNAP_SESSION_INCOMPLETE
    sh(f"umount {mnt}")
    disk.mnt = None
    loopname = Path(disk.loop).name
    disk.detach()

    # The blocks whose write failed kept their old content on the device.
    for blk in failed:
        on_disk = read_image(disk.image, physical(exts, blk * BLOCK), BLOCK)
        assert on_disk == old[blk * BLOCK:(blk + 1) * BLOCK], f"block {blk} of data changed"
    print(f"ordered full store: {len(written)} block writes succeeded, then "
          f"{len(failed)} failed with EIO and left the device unchanged")

    (session,) = new_sessions(seen)
    state = meta(session)["state"]
    assert state.startswith("incomplete:"), state
    res = cli("restore", session, "--to", disk.image)
    assert res.returncode == 4, (res.returncode, res.stdout, res.stderr)
    # Every block that changed had its pre-image stored first: even this
    # incomplete session brings back the pre-mount image exactly.
    res = cli("restore", session, "--to", disk.image, "--force")
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert sha256(disk.image) == before
    assert_one_log_line(mark, session, loopname, disk.image)


# ------------------------------------------------------------------ concurrency


def _writer(k, mnt, files, size, deadline, seed):
    """One writer process; returns an exit status (0 ok)."""
    rnd = random.Random(seed)
    mode = k % 4
    buf = mmap.mmap(-1, 64 << 10)
    ops = 0
    fds = {}
    for name in files:
        flags = os.O_RDWR | (os.O_DIRECT if mode in (1, 3) else 0)
        fds[name] = os.open(mnt / name, flags)
    while time.monotonic() < deadline:
        name = rnd.choice(files)
        fd = fds[name]
        # 70 % of writes land in the first 1 MiB of a file: overlaps guaranteed
        span = (1 << 20) if rnd.random() < 0.7 else size
        if mode in (1, 3):  # O_DIRECT: aligned, 4-64 KiB
            n = BLOCK * rnd.randint(1, 16)
            off = BLOCK * rnd.randrange((span - n) // BLOCK + 1)
            buf.seek(0)
            buf.write(rnd.randbytes(n))
            os.pwrite(fd, memoryview(buf)[:n], off)
            if mode == 3 and rnd.random() < 0.1:
                os.fdatasync(fd)
        elif mode == 0:  # buffered, unaligned, fsync every write
            n = rnd.randint(1, 20000)
            off = rnd.randrange(span - n)
            os.pwrite(fd, rnd.randbytes(n), off)
            os.fsync(fd)
        else:  # buffered, metadata churn: own files created, extended, deleted
            own = mnt / f"w{k}-{rnd.randrange(8)}"
            if own.exists() and rnd.random() < 0.3:
                own.unlink()
            else:
                with open(own, "ab") as f:
                    f.write(rnd.randbytes(rnd.randint(1, 200000)))
                    if rnd.random() < 0.5:
                        os.fsync(f.fileno())
            n = rnd.randint(1, 9000)
            os.pwrite(fd, rnd.randbytes(n), rnd.randrange(span - n))
            if rnd.random() < 0.2:
                os.fdatasync(fd)
        ops += 1
    for fd in fds.values():
        os.close(fd)
    return ops


@pytest.mark.parametrize("ordered", [1, 0], ids=["ordered", "plain"])
def test_concurrent_writers_restore_exact(bdsnap, make_disk, ordered):
    disk = make_disk("conc", size_mb=128).mkfs_ext4("-b", str(BLOCK))
    disk.attach()
    mnt = disk.mount()
    files, size = ["shared0", "shared1"], 8 << 20
    for name in files:
        (mnt / name).write_bytes(os.urandom(size))
    disk.umount()
    disk.detach()
    before = sha256(disk.image)
    seen = set(sessions())
    disk.activate(flags=ordered * uapi.BDSNAP_ACT_ORDERED)
    disk.attach()
    mnt = disk.mount()

    deadline = time.monotonic() + STRESS_SECONDS
    pids = {}
    for k in range(8):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            code = 1
            try:
                ops = _writer(k, mnt, files, size, deadline, seed=k * 1000 + ordered)
                os.write(w, str(ops).encode())
                code = 0
            except BaseException as exc:  # report, never return into pytest
                os.write(w, f"writer {k}: {exc!r}".encode())
            finally:
                os._exit(code)
        os.close(w)
        pids[pid] = (k, r)
    results = {}
    for pid, (k, r) in pids.items():
        _, status = os.waitpid(pid, 0)
        msg = os.read(r, 4096).decode()
        os.close(r)
        assert os.waitstatus_to_exitcode(status) == 0, msg
        results[k] = int(msg)
    (info,) = uapi.list_devices()
    assert info.session_state == uapi.BDSNAP_SESSION_OPEN and info.errors == 0
    disk.umount()
    (session,) = new_sessions(seen)
    m = meta(session)
    assert m["state"] == "complete", m
    print(f"{'ordered' if ordered else 'plain'}: 8 writers, {STRESS_SECONDS:.0f} s, "
          f"{sum(results.values())} writes, {m['blocks_saved']} blocks saved")
    disk.detach()
    assert sha256(disk.image) != before
    res = cli("restore", session, "--to", disk.image)
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert sha256(disk.image) == before


# ------------------------------------------------------------------ failing store


@pytest.fixture
def failing_store(guest, tmp_path):
    """/snapshot on ext4 over a dm-linear device that a test can turn into
    dm-error (every I/O fails with EIO) and back. Yields (fail, heal)."""
    img = tmp_path / "store.img"
    sh(f"truncate -s 64M {img}")
    loop = sh(f"losetup -f --show {img}").stdout.strip()
    sectors = (64 << 20) // 512
    name = "bdsnap-test-store"
    sh("modprobe dm-mod")
    sh(f"dmsetup create {name} --table '0 {sectors} linear {loop} 0' && dmsetup mknodes")
    dev = f"/dev/mapper/{name}"
    sh(f"mkfs.ext4 -q -F {dev}")
    STORE.mkdir(exist_ok=True)
    sh(f"mount -t ext4 {dev} {STORE}")

    def swap(table):
        sh(f"dmsetup suspend --nolockfs {name} && dmsetup load {name} --table '{table}' && "
           f"dmsetup resume {name}")

    def fail():
        swap(f"0 {sectors} error")

    def heal():
        """Back to the real device; remount the store (its journal replays)."""
        sh(f"umount {STORE}")
        swap(f"0 {sectors} linear {loop} 0")
        sh(f"mount -t ext4 {dev} {STORE}")

    yield fail, heal
    sh(f"umount {STORE}", check=False)
    sh(f"dmsetup remove {name}", check=False)
    sh(f"losetup -d {loop}")


@pytest.mark.parametrize("ordered", [1, 0], ids=["ordered", "plain"])
def test_store_eio_mid_session(failing_store, load_bdsnap, make_disk, ordered):
    """The store's device fails (EIO) in the middle of a session. Plain: the
    file system goes on, the session cannot be restored without --force.
    Ordered: writes to blocks not yet saved fail with EIO and leave the
    device unchanged, so the session still restores the pre-mount image."""
    fail, heal = failing_store
    load_bdsnap()
    disk, old, exts = prepare(make_disk)
    before = sha256(disk.image)
    seen = set(sessions())
    mark = kmsg_mark(f"store EIO, ordered={ordered}")
    disk.activate(flags=ordered * uapi.BDSNAP_ACT_ORDERED)
    disk.attach()
    mnt = mount_lazytime(disk)

    buf = mmap.mmap(-1, BLOCK)
    fd = os.open(mnt / "data", os.O_RDWR | os.O_DIRECT)
    failed, fsync_errors = {}, {}

    def write(blk):
        """pwrite one block (O_DIRECT), then fdatasync; errors are recorded.
        (fdatasync, not fsync: fsync also journals the lazytime timestamps,
        and a journal block not yet saved then fails, as it must, with EIO.)"""
        buf.seek(0)
        buf.write(os.urandom(BLOCK))
        try:
            os.pwrite(fd, buf, blk * BLOCK)
        except OSError as exc:
            failed[blk] = exc.errno
            return
        try:
            os.fdatasync(fd)
        except OSError as exc:
            fsync_errors[blk] = exc.errno

    try:
        for blk in range(256):          # saved while the store works
            write(blk)
        assert not failed and not fsync_errors, (failed, fsync_errors)
        fail()
        for blk in range(256, 512):     # pre-images cannot be stored any more
            write(blk)
        if ordered:
            assert failed, "ordered: writes of unsaved blocks succeeded with a dead store"
            assert set(failed.values()) == {errno.EIO}, failed
            write(7)  # a block saved before the failure may still change
            assert 7 not in failed and 7 not in fsync_errors, \
                "ordered: a write of a saved block failed"
        else:
            assert not failed, f"plain: writes failed: {failed}"
        # The store's file system notices the dead device before the unmount,
        # as its next journal commit does on a slow machine. Before: on 6.12
        # the end of the session then failed to write meta and logged a second
        # line ("cannot record the device's end fingerprint") for one failure.
        sh(f"sync -f {STORE}", check=False)
    finally:
        os.close(fd)
    print(f"store EIO, ordered={ordered}: pwrite failed for {len(failed)} blocks "
          f"({sorted(failed)[:3]}...), fdatasync failed after {len(fsync_errors)} successful "
          f"pwrites: {dict(list(fsync_errors.items())[:5])}")
    (info,) = uapi.list_devices()
    if ordered:
        assert info.session_state == uapi.BDSNAP_SESSION_INCOMPLETE
    sh(f"umount {mnt}")
    disk.mnt = None
    loopname = Path(disk.loop).name
    disk.detach()
    for blk in failed:
        on_disk = read_image(disk.image, physical(exts, blk * BLOCK), BLOCK)
        assert on_disk == old[blk * BLOCK:(blk + 1) * BLOCK], f"block {blk} of data changed"

    heal()
    (session,) = new_sessions(seen)
    state = meta(session)["state"]
    refused = cli("restore", session, "--to", disk.image)
    forced = cli("restore", session, "--to", disk.image, "--force")
    exact = sha256(disk.image) == before
    print(f"store EIO, ordered={ordered}: {len(failed)} writes failed with EIO; meta on the "
          f"healed store says state={state}; restore without --force exited "
          f"{refused.returncode}; forced restore {'exact' if exact else 'not exact'}")
    if ordered:
        assert forced.returncode == 0, forced.stderr
        assert exact, "ordered session with a failed store did not restore the pre-mount image"
    else:
        # the store died before "incomplete" could be written: meta says open
        assert refused.returncode == 4, (refused.returncode, refused.stderr, forced.returncode, forced.stderr)
    assert_one_log_line(mark, session, loopname, disk.image)
