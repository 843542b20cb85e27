"""Restore's two passes (lib/chain.c): verify every log, then write from the same files.

The write pass trusts what the verify pass checked: it hands raw pre-images on
as read (from the log's mapping, or a buffer), zlib ones as verify kept them,
and checks again only what it has not seen.  These tests cover what that
trust rests on, and the ways the write pass gathers and reads.
"""
import ctypes
import os

import pytest

import storegen as g
from conftest import run, sha

SO = g.ROOT / "lib" / "libbdsnap.so.0"
R = g.RECORD


class Opts(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("flags", ctypes.c_uint),
                ("progress", ctypes.c_void_p), ("ctx", ctypes.c_void_p),
                ("confirm", ctypes.c_void_p)]


CONFIRM = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


@pytest.fixture(scope="module")
def lib():
    lib = ctypes.CDLL(str(SO))
    lib.bdsnap_session_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.bdsnap_session_close.argtypes = [ctypes.c_void_p]
    lib.bdsnap_chain_restore.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                         ctypes.c_char_p, ctypes.POINTER(Opts), ctypes.c_void_p]
    return lib


def restore(lib, session_dir, target, on_confirm):
    """bdsnap_chain_restore() of one session; @on_confirm runs between the passes."""
    s = ctypes.c_void_p()
    assert lib.bdsnap_session_open(str(session_dir).encode(), ctypes.byref(s)) == 0

    def confirm(ctx, plan):
        on_confirm()
        return 0

    cb = CONFIRM(confirm)
    opts = Opts(ctypes.sizeof(Opts), 0, None, None, ctypes.cast(cb, ctypes.c_void_p))
    try:
        return lib.bdsnap_chain_restore(s, None, 0, str(target).encode(), ctypes.byref(opts),
                                        None)
    finally:
        lib.bdsnap_session_close(s)


def raw(n):
    return n % 4 != 0


class Big:
    """A device of @nblocks (the last one partial) and a session that saved @saved of them:
    three in four random bytes, stored raw, the others text, stored as zlib streams."""

    def __init__(self, tmp, nblocks, saved, state="complete", ordered=0):
        self.size = (nblocks - 1) * g.BS + 1000
        self.image = tmp / "big.img"
        self.pre = bytearray(b"".join(g.block_content(n, noisy=raw(n))
                                      for n in range(nblocks)))[:self.size]
        self.after = bytearray(self.pre)
        self.session = g.Session(tmp / "store", "loop0_1", self.size, str(self.image),
                                 state=state, ordered=ordered)
        for n in saved:
            self.session.add(g.record(n, self.block(self.pre, n), compress=not raw(n)))
            lo, hi = n * g.BS, min((n + 1) * g.BS, self.size)
            self.after[lo:hi] = (b"after %d " % n * g.BS)[:hi - lo]
        self.image.write_bytes(self.after)

    def block(self, image, n):
        return bytes(image[n * g.BS:min((n + 1) * g.BS, self.size)])

    def write(self, blocks=None):
        return self.session.write(blocks=blocks, end=bytes(self.after))


@pytest.mark.parametrize("damage", ["raw-payload", "zlib-payload", "duplicate", "header"])
def test_damage_at_the_end_of_a_long_log_writes_nothing(tmp_path, damage):
    """Every record is verified before the first write, however far into the log the damage
    lies: over 3 MiB of records, the last one bad.  verify, which reads the log through a buffer
    where restore maps it, finds the same."""
    nblocks = 2000
    big = Big(tmp_path, nblocks, list(range(0, nblocks - 100, 2)) + list(range(1, nblocks, 6)))
    if damage.endswith("payload"):  # one more record, of a block not saved yet
        spare = next(n for n in range(nblocks - 99, nblocks - 1)
                     if n % 2 == 0 and raw(n) == (damage == "raw-payload"))
        big.session.add(g.record(spare, big.block(big.pre, spare), compress=not raw(spare)))
    elif damage == "duplicate":
        big.session.add(g.record(0, big.block(big.pre, 0)))
    last = big.session.offsets()[-1]
    data = bytearray(big.session.blocks_bytes())
    if damage == "raw-payload":
        data[last + R.size + 2000] ^= 1
    elif damage == "zlib-payload":
        assert data[last + R.offset("flags")] == g.C["BDSNAP_REC_ZLIB"]
        data[last + R.size + 5] ^= 0x10
    elif damage == "header":
        data[last + R.offset("block")] ^= 1
    assert len(data) > 3 << 20
    sdir = big.write(blocks=bytes(data))
    before = sha(big.image)
    for res in run("restore", sdir, "--to", big.image, "--force"), run("verify", sdir):
        assert res.returncode == 3, res.stderr
        assert "blocks: offset %d:" % last in res.stderr, res.stderr
    assert sha(big.image) == before


def test_long_runs_are_gathered_and_exact(tmp_path):
    """Adjacent blocks go out in gathered writes (up to 256 a write, across zlib and raw
    records and the partial last block): the image is the pre-session one."""
    nblocks = 1300
    big = Big(tmp_path, nblocks, list(range(nblocks - 700, nblocks)) + list(range(0, 600)))
    sdir = big.write()
    assert run("restore", sdir, "--to", big.image).returncode == 0
    assert big.image.read_bytes() == bytes(big.pre)


@pytest.mark.parametrize("change", ["payload", "append", "touch"])
def test_a_log_changed_between_the_passes_writes_nothing(tmp_path, lib, change):
    """The write pass trusts the closed logs the verify pass read only if they are the same
    files, unchanged: a raw payload rewritten, a record appended, or a mere touch between
    the passes is -EIO, with the target untouched."""
    big = Big(tmp_path, 300, range(0, 300, 3))
    sdir = big.write()
    log = sdir / "blocks"
    first_raw = next(i for i, n in enumerate(big.session.blocks()) if raw(n))
    raw_at = big.session.offsets()[first_raw] + R.size

    def meddle():
        if change == "payload":
            with open(log, "r+b") as f:
                f.seek(raw_at + 100)
                f.write(b"X")
        elif change == "append":
            with open(log, "ab") as f:
                f.write(g.record(1, big.block(big.pre, 1)))
        else:
            st = os.stat(log)
            os.utime(log, ns=(st.st_atime_ns, st.st_mtime_ns + 1))

    before = sha(big.image)
    assert restore(lib, sdir, big.image, meddle) == -5
    assert sha(big.image) == before


def test_an_open_log_is_followed_past_what_verify_read(tmp_path, lib):
    """An open ordered session's log may grow between the passes (the export of a mounted
    device): its write pass reads every record there is then, checking the new ones, well
    past the part verify mapped, gathering adjacent blocks across the reads."""
    nblocks = 900
    big = Big(tmp_path, nblocks, range(0, 200, 2), state="open", ordered=1)
    sdir = big.write()
    grown = b"".join(g.record(n, big.block(big.pre, n), compress=not raw(n))
                     for n in range(300, nblocks))
    assert len(grown) > 6 * (256 << 10)  # several of its read buffers

    def grow():
        with open(sdir / "blocks", "ab") as f:
            f.write(grown)

    assert restore(lib, sdir, big.image, grow) == 0
    want = bytearray(big.after)
    for n in list(range(0, 200, 2)) + list(range(300, nblocks)):
        want[n * g.BS:min((n + 1) * g.BS, big.size)] = big.block(big.pre, n)
    assert big.image.read_bytes() == bytes(want)


def test_a_duplicate_appended_to_an_open_log_is_caught(tmp_path, lib):
    """What the write pass reads past verify's end is checked as verify checks: a block the
    session saved already is corruption (-EBADMSG)."""
    big = Big(tmp_path, 100, range(10, 20), state="open", ordered=1)
    sdir = big.write()

    def grow():
        with open(sdir / "blocks", "ab") as f:
            f.write(g.record(12, big.block(big.pre, 12)))

    assert restore(lib, sdir, big.image, grow) == -74
