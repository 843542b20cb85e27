"""verify and restore on crafted sessions: every reader rule of docs/format.md."""
import hashlib
import os
import pty
import random
import re
import stat
import subprocess
import zlib

import pytest

import storegen as g
from conftest import CLI, DEVICE_SIZE, NBLOCKS, SAVED, pre_block, run, sha

R = g.RECORD
BYTES_SAVED = sum(len(pre_block(n)) for n in SAVED)


def sha_of(data):
    return hashlib.sha256(data).hexdigest()


def flip(buf, off, bit=3):
    b = bytearray(buf)
    b[off] ^= 1 << bit
    return bytes(b)


def extra(s, blob):
    """Append a crafted record; it is the one that must be reported."""
    s.add(blob)
    return dict(at=("blocks", s.offsets()[-1]))


# Each builder damages a good session in one way and says where and why
# verification must stop: (file, byte offset) and a regex for the reason.
CORRUPT = {}


def corrupt(why):
    def register(fn):
        CORRUPT[fn.__name__] = (fn, why)
        return fn
    return register


@corrupt("zlib payload|data CRC")
def payload_flip_zlib(s):
    return dict(blocks=flip(s.blocks_bytes(), s.offsets()[0] + R.size + 20),
                at=("blocks", s.offsets()[0]))


@corrupt("data CRC mismatch")
def payload_flip_raw(s):
    return dict(blocks=flip(s.blocks_bytes(), s.offsets()[1] + R.size + 100),
                at=("blocks", s.offsets()[1]))


@corrupt("record header CRC mismatch")
def header_flip(s):
    return dict(blocks=flip(s.blocks_bytes(), s.offsets()[2] + R.offset("block")),
                at=("blocks", s.offsets()[2]))


@corrupt("bad record magic")
def record_magic(s):
    return extra(s, g.record(5, pre_block(5), magic=0x12345678))


@corrupt("bad store magic")
def store_magic(s):
    s.header = g.store_header(DEVICE_SIZE, magic=0)
    return dict(at=("blocks", 0))


@corrupt("unsupported store version")
def store_version(s):
    s.header = g.store_header(DEVICE_SIZE, version=g.C["BDSNAP_STORE_VERSION"] + 1)
    return dict(at=("blocks", g.HEADER.offset("version")))


@corrupt("store header CRC mismatch")
def store_header_crc(s):
    s.header = flip(s.header, g.HEADER.offset("device_size"))
    return dict(at=("blocks", g.HEADER.offset("header_crc")))


@corrupt("block beyond device_size")
def block_beyond(s):
    return extra(s, g.record(NBLOCKS, g.block_content(NBLOCKS)))


@corrupt("raw_len is not the size of the block")
def zero_raw_len(s):
    return extra(s, g.record(5, b"", compress=False))


@corrupt("stored_len out of range")
def zero_stored_len(s):
    return extra(s, g.record(5, pre_block(5), payload=b""))


@corrupt("stored_len out of range")
def huge_stored_len(s):
    return extra(s, g.record(5, pre_block(5), stored_len=0x7FFFFFFF))


@corrupt("duplicate block")
def duplicate_block(s):
    return extra(s, g.record(SAVED[1], pre_block(SAVED[1]), compress=False))


@corrupt("unknown record flag")
def unknown_flag(s):
    return extra(s, g.record(5, pre_block(5), flags=g.C["BDSNAP_REC_ZLIB"] | 0x80))


@corrupt("raw_len is not the size of the block")
def short_middle_block(s):
    return extra(s, g.record(5, pre_block(5)[:1000]))


@corrupt("raw payload length differs")
def raw_payload_short(s):
    return extra(s, g.record(5, pre_block(5), compress=False, payload=pre_block(5)[:-1]))


@corrupt("does not inflate to raw_len")
def zlib_trailing_garbage(s):
    return extra(s, g.record(5, pre_block(5), payload=zlib.compress(pre_block(5)) + b"\0"))


@corrupt("does not inflate to raw_len")
def zlib_inflates_too_long(s):
    last = NBLOCKS - 1  # raw_len 1000, but the stream holds a whole block
    s.records[-1] = g.record(last, pre_block(last), payload=zlib.compress(g.block_content(last)))
    return dict(at=("blocks", s.offsets()[-1]))


@corrupt("uuid differs from meta")
def uuid_mismatch(s):
    s.header = g.store_header(DEVICE_SIZE, uuid=b"\x01" * 16)
    return dict(at=("blocks", g.HEADER.offset("uuid")))


@corrupt("device_size differs from meta")
def device_size_mismatch(s):
    s.header = g.store_header(DEVICE_SIZE + g.BS)
    return dict(at=("blocks", g.HEADER.offset("device_size")))


@corrupt("shorter than its header")
def truncated_header(s):
    return dict(blocks=s.header[:30], at=("blocks", 0))


@corrupt("torn record in a complete session")
def complete_but_torn(s):
    good = s.blocks_bytes()
    return dict(blocks=good + g.record(5, pre_block(5))[:40], at=("blocks", len(good)))


@corrupt("blocks_saved differs")
def counters_mismatch(s):
    meta = s.meta_text().replace("blocks_saved=%d" % len(s.records), "blocks_saved=99")
    return dict(meta=meta, at=("meta", meta.index("blocks_saved=")))


@corrupt("meta has no state")
def meta_without_state(s):
    meta = "".join(l for l in s.meta_text().splitlines(True) if not l.startswith("state="))
    return dict(meta=meta, at=("meta", len(meta)))


@corrupt("malformed number in meta")
def meta_bad_number(s):
    meta = s.meta_text().replace("device_size=%d" % DEVICE_SIZE, "device_size=12x")
    return dict(meta=meta, at=("meta", meta.index("device_size=")))


@corrupt("unsupported format version in meta")
def meta_format(s):
    meta = s.meta_text().replace("format=1\n", "format=2\n")
    return dict(meta=meta, at=("meta", 0))


@corrupt("not key=value")
def meta_garbage_line(s):
    meta = s.meta_text()
    at = meta.index("devname=")
    return dict(meta=meta[:at] + "garbage\n" + meta[at:], at=("meta", at))


@corrupt("uuid in meta is not 32 hex")
def meta_bad_uuid(s):
    meta = s.meta_text().replace("uuid=" + g.UUID.hex(), "uuid=" + "g" * 32)
    return dict(meta=meta, at=("meta", meta.index("uuid=")))


@pytest.fixture(params=sorted(CORRUPT))
def damaged(request, world):
    build, why = CORRUPT[request.param]
    s = world.session()
    d = build(s)
    s.write(blocks=d.get("blocks"), meta=d.get("meta"))
    return s, d["at"], why


def assert_reports(res, s, at, why):
    assert res.returncode == 3, res.stderr
    file, off = at
    assert "%s/%s: offset %d: " % (s.dir, file, off) in res.stderr, res.stderr
    assert re.search(why, res.stderr), res.stderr


def test_verify_reports_offset_and_reason(damaged):
    s, at, why = damaged
    assert_reports(run("verify", s.dir), s, at, why)


def test_restore_of_corrupt_session_writes_nothing(damaged, world):
    s, at, why = damaged
    before = sha(world.image)
    assert_reports(run("restore", s.dir, "--force"), s, at, why)
    assert sha(world.image) == before


def test_good_session_verifies(world):
    s = world.session()
    s.write()
    res = run("verify", s.dir)
    assert res.returncode == 0, res.stderr
    assert "ok: %d blocks (%d bytes), state complete" % (len(SAVED), BYTES_SAVED) in res.stdout
    assert res.stderr == ""


def test_restore_good_session_is_bit_exact(world):
    s = world.session()
    s.write()
    assert sha(world.image) != world.pre_sha
    res = run("restore", s.dir, "--to", world.image)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "restored %d blocks (%d bytes) to %s\n" % (len(SAVED), BYTES_SAVED,
                                                                      world.image)
    assert sha(world.image) == world.pre_sha


def test_restore_defaults_to_meta_path(world):
    s = world.session()
    s.write()
    assert run("restore", s.dir).returncode == 0
    assert sha(world.image) == world.pre_sha


def test_restore_by_name_under_store(world):
    s = world.session()
    s.write()
    assert run("restore", s.dir.name, "--store", world.store).returncode == 0
    assert sha(world.image) == world.pre_sha


def test_restore_onto_larger_copy_needs_force(world):
    """The device had device_size bytes: a larger target is another device, or a grown one."""
    s = world.session()
    s.write()
    copy = world.tmp / "bigger.img"
    copy.write_bytes(world.image.read_bytes() + b"tail" * 1000)
    before = sha(copy)
    res = run("restore", s.dir, "--to", copy)
    assert res.returncode == 4, res.stderr
    assert "size %d bytes, the session's device %d" % (DEVICE_SIZE + 4000, DEVICE_SIZE) \
        in res.stderr
    assert sha(copy) == before
    assert run("restore", s.dir, "--to", copy, "--force").returncode == 0
    assert copy.read_bytes()[:DEVICE_SIZE] == world.pre
    assert copy.read_bytes()[DEVICE_SIZE:] == b"tail" * 1000


def test_zero_records(world):
    s = world.session(blocks=[])
    s.write()
    before = sha(world.image)
    assert "ok: 0 blocks" in run("verify", s.dir).stdout
    res = run("restore", s.dir)
    assert res.returncode == 0 and res.stdout.startswith("restored 0 blocks (0 bytes)")
    assert sha(world.image) == before


def test_longer_header_is_skipped(world):
    """header_size says where records start: a newer, longer header is fine."""
    s = world.session()
    s.header = g.store_header(DEVICE_SIZE, header_size=128) + bytes(64)
    s.write()
    assert run("restore", s.dir).returncode == 0
    assert sha(world.image) == world.pre_sha


@pytest.mark.parametrize("cut", [20, g.RECORD.size + 10], ids=["in-header", "in-payload"])
def test_torn_tail_of_open_session(world, cut):
    s = world.session(state="open")
    good = s.blocks_bytes()
    s.write(blocks=good + g.record(5, pre_block(5))[:cut])
    res = run("verify", s.dir)
    assert res.returncode == 0, res.stderr
    assert "offset %d: torn record at the end ignored" % len(good) in res.stderr
    assert "state open" in res.stdout

    before = sha(world.image)
    res = run("restore", s.dir)
    assert res.returncode == 4 and "use --force" in res.stderr
    assert sha(world.image) == before
    res = run("restore", s.dir, "--force")
    assert res.returncode == 0, res.stderr
    assert sha(world.image) == world.pre_sha


def test_incomplete_session_needs_force(world):
    s = world.session(state="incomplete:ENOSPC")
    s.write()
    before = sha(world.image)
    res = run("restore", s.dir)
    assert res.returncode == 4 and "incomplete" in res.stderr
    assert sha(world.image) == before
    assert run("restore", s.dir, "--force").returncode == 0
    assert sha(world.image) == world.pre_sha


def test_meta_torn_line_and_unknown_keys(world):
    s = world.session()
    s.write(meta=s.meta_text() + "future_key=x\nstate=comp")
    res = run("verify", s.dir)
    assert res.returncode == 0, res.stderr
    assert "torn last line ignored" in res.stderr and "state complete" in res.stdout


def test_too_small_target_refused(world):
    s = world.session()
    s.write()
    small = world.tmp / "small.img"
    small.write_bytes(world.image.read_bytes()[:DEVICE_SIZE - 1])
    before = sha(small)
    res = run("restore", s.dir, "--to", small)
    assert res.returncode == 4
    assert "size %d bytes, the session's device %d" % (DEVICE_SIZE - 1, DEVICE_SIZE) in res.stderr
    assert "partly restored" not in res.stderr
    assert sha(small) == before


def test_dry_run_writes_nothing(world):
    s = world.session()
    s.write()
    before = sha(world.image)
    res = run("restore", s.dir, "--dry-run")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-1].startswith("would restore %d blocks (%d bytes)"
                                                  % (len(SAVED), BYTES_SAVED))
    assert "nothing written" in res.stdout
    assert sha(world.image) == before


@pytest.mark.parametrize("target", ["missing.img", "."])
def test_bad_target_is_an_error(world, target):
    s = world.session()
    s.write()
    res = run("restore", s.dir, "--to", world.tmp / target)
    assert res.returncode == 1 and res.stderr.startswith("bdsnap: ")


def mounted_block_device():
    """A block device mounted here (the root fs, usually), or None."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            source = fields[fields.index("-") + 2]
            try:
                st = os.stat(source)
            except OSError:
                continue
            majmin = "%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
            if stat.S_ISBLK(st.st_mode) and majmin == fields[2]:
                return source
    return None


def test_mounted_block_device_refused(world):
    dev = mounted_block_device()
    if not dev:
        pytest.skip("no mounted block device visible")
    # Belt and braces: no records and a dry run, so nothing could be written anyway.
    s = world.session(blocks=[])
    s.write()
    res = run("restore", s.dir, "--to", dev, "--dry-run")
    assert res.returncode == 4, res.stderr
    assert "refused: target is mounted" in res.stderr


def test_progress_on_a_terminal(world):
    s = world.session()
    s.write()
    master, slave = pty.openpty()
    try:
        res = subprocess.run([str(CLI), "restore", str(s.dir)], stderr=slave,
                             stdout=subprocess.PIPE, text=True)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
    assert res.returncode == 0
    assert b"restoring: 100%" in out


def test_random_damage_never_restores_wrong_data(world):
    """Seeded random damage: restore either refuses as corrupt (3) or is bit-exact."""
    s = world.session()
    s.write()
    blocks, meta = (s.dir / "blocks").read_bytes(), (s.dir / "meta").read_bytes()
    after = world.image.read_bytes()
    rnd = random.Random(20240501)
    for _ in range(150):
        b, m = bytearray(blocks), bytearray(meta)
        kind = rnd.randrange(4)
        if kind == 0:
            b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
        elif kind == 1:
            del b[rnd.randrange(len(b)):]
        elif kind == 2:
            at = rnd.randrange(len(b))
            b[at:at] = rnd.randbytes(rnd.randint(1, 40))
        else:
            m[rnd.randrange(len(m))] = rnd.randrange(256)
        (s.dir / "blocks").write_bytes(b)
        (s.dir / "meta").write_bytes(m)
        world.image.write_bytes(after)
        res = subprocess.run([str(CLI), "restore", str(s.dir), "--force", "--to", str(world.image)],
                             capture_output=True)
        assert res.returncode in (0, 3), res.stderr
        if res.returncode == 0:
            assert sha(world.image) == world.pre_sha, (kind, res.stdout)
        else:
            assert sha(world.image) == sha_of(after)
