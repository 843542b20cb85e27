"""export and changed on crafted sessions: images compared by sha256, extents exact."""
import json
import os
import pty
import stat
import subprocess

import pytest

import storegen as g
from conftest import CLI, DEVICE_SIZE, NBLOCKS, SAVED, pre_block, run, sha

BYTES_SAVED = sum(len(pre_block(n)) for n in SAVED)
LATER = [3, 5, 20, 33]        # blocks a second mount wrote: 3 and 20 again, 5 and 33 new


def mid_block(n):
    """A block after the first session's mount (the world's image)."""
    return b"\xee" * len(pre_block(n)) if n in SAVED else pre_block(n)


def two_sessions(world):
    """Session A (the world's) then B, which changed LATER; the image is after B."""
    a = world.session(name="loop0_a", start="2024-05-01T10:00:00.000000000Z")
    a.write()
    mid = world.image.read_bytes()
    b = g.Session(world.store, "loop1_b", DEVICE_SIZE, str(world.image), devname="loop1",
                  start="2024-05-02T10:00:00.000000000Z", uuid=bytes(range(1, 17)))
    after = bytearray(mid)
    for n in LATER:
        b.add(g.record(n, mid_block(n)))
        after[n * g.BS:n * g.BS + len(pre_block(n))] = b"\x77" * len(pre_block(n))
    world.image.write_bytes(after)
    b.write()
    return a, b, mid


def export(s, out, *extra):
    return run("export", s.dir, "--to", out, *extra)


def test_export_is_the_pre_mount_image(world):
    s = world.session()
    s.write()
    before = sha(world.image)
    out = world.tmp / "pre.img"
    res = export(s, out)
    assert res.returncode == 0, res.stderr
    assert sha(out) == world.pre_sha
    assert sha(world.image) == before, "export changed the device"
    assert res.stdout == ("exported %s: %d bytes to %s (%d pre-images applied)\n"
                          % (s.dir.name, DEVICE_SIZE, out, len(SAVED)))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_export_undoes_later_sessions_first(world):
    a, b, mid = two_sessions(world)
    out = world.tmp / "a.img"
    res = export(a, out)
    assert res.returncode == 0, res.stderr
    assert sha(out) == world.pre_sha
    assert "after %d from 1 later session)" % len(LATER) in res.stdout
    res = export(b, world.tmp / "b.img")
    assert res.returncode == 0, res.stderr
    assert (world.tmp / "b.img").read_bytes() == mid
    assert res.stdout.endswith("(%d pre-images applied)\n" % len(LATER))


def test_export_from_another_copy(world):
    s = world.session()
    s.write()
    copy = world.tmp / "copy.img"
    copy.write_bytes(world.image.read_bytes())
    out = world.tmp / "pre.img"
    assert export(s, out, "--from", copy).returncode == 0
    assert sha(out) == world.pre_sha


def test_export_from_a_larger_device_refused(world):
    """The source must hold what the newest session left: a larger one does not."""
    s = world.session()
    s.write()
    copy = world.tmp / "copy.img"
    copy.write_bytes(world.image.read_bytes() + b"longer device" * 100)
    out = world.tmp / "pre.img"
    res = export(s, out, "--from", copy)
    assert res.returncode == 4 and "%s: refused: " % copy in res.stderr
    assert not out.exists()
    assert export(s, out, "--from", copy, "--force").returncode == 0
    assert sha(out) == world.pre_sha


def test_export_replaces_existing_file_atomically(world):
    s = world.session()
    s.write()
    out = world.tmp / "old.img"
    out.write_bytes(b"previous export")
    out.chmod(0o640)
    assert export(s, out).returncode == 0
    assert sha(out) == world.pre_sha
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert not [p for p in world.tmp.iterdir() if ".bdsnap-" in p.name], "temporary left behind"


def test_export_through_a_symlink_replaces_its_file(world):
    s = world.session()
    s.write()
    (world.tmp / "images").mkdir()
    real = world.tmp / "images" / "real.img"
    real.write_bytes(b"old")
    link = world.tmp / "link.img"
    link.symlink_to(real)
    assert export(s, link).returncode == 0
    assert link.is_symlink() and sha(real) == world.pre_sha


def test_export_of_mostly_zero_device_is_sparse(tmp_path):
    size = 8 << 20
    image = tmp_path / "zero.img"
    with open(image, "wb") as f:
        f.truncate(size)
        f.seek(5 * g.BS)
        f.write(b"\x55" * g.BS)
    s = g.Session(tmp_path / "store", "loop0_z", size, str(image))
    s.add(g.record(5, pre_block(5)))
    s.write()
    out = tmp_path / "out.img"
    assert export(s, out).returncode == 0
    data = out.read_bytes()
    assert len(data) == size and data[5 * g.BS:6 * g.BS] == pre_block(5)
    assert data.count(0) == size - g.BS
    assert out.stat().st_blocks * 512 < size // 4, "zero chunks were written"


@pytest.mark.parametrize("state,ordered,code", [("open", 1, 0), ("open", 0, 4),
                                               ("incomplete:ENOSPC", 1, 4)],
                         ids=["ordered-open", "plain-open", "incomplete"])
def test_export_session_states(world, state, ordered, code):
    s = world.session(state=state, ordered=ordered)
    s.write()
    out = world.tmp / "pre.img"
    res = export(s, out)
    assert res.returncode == code, res.stderr
    if code:
        assert "refused" in res.stderr and "use --force" in res.stderr
        assert not out.exists()
        res = export(s, out, "--force")
        assert res.returncode == 0, res.stderr
    assert sha(out) == world.pre_sha


def test_export_open_ordered_with_torn_tail(world):
    """A crash (or a live append) left half a record: its write never reached the device."""
    s = world.session(state="open", ordered=1)
    s.write(blocks=s.blocks_bytes() + g.record(5, pre_block(5))[:40])
    out = world.tmp / "pre.img"
    res = export(s, out)
    assert res.returncode == 0, res.stderr
    assert "torn record at the end ignored" in res.stderr
    assert sha(out) == world.pre_sha


def test_export_corrupt_session_writes_nothing(world):
    s = world.session()
    blocks = bytearray(s.blocks_bytes())
    blocks[s.offsets()[1] + g.RECORD.size + 100] ^= 8
    s.write(blocks=bytes(blocks))
    out = world.tmp / "pre.img"
    out.write_bytes(b"keep me")
    res = export(s, out)
    assert res.returncode == 3, res.stderr
    assert "%s/blocks: offset %d: data CRC mismatch" % (s.dir, s.offsets()[1]) in res.stderr
    assert out.read_bytes() == b"keep me"
    assert not [p for p in world.tmp.iterdir() if ".bdsnap-" in p.name]


def test_export_corrupt_later_session_is_named(world):
    a, b, _ = two_sessions(world)
    (b.dir / "blocks").write_bytes(b.blocks_bytes()[:-1] + b"\x00")
    res = export(a, world.tmp / "a.img")
    assert res.returncode == 3, res.stderr
    assert "bdsnap: %s/blocks: offset " % b.dir in res.stderr
    assert not (world.tmp / "a.img").exists()


def test_export_onto_the_device_itself_refused(world):
    s = world.session()
    s.write()
    before = sha(world.image)
    res = export(s, world.image)
    assert res.returncode == 4, res.stderr
    assert "%s: refused: target is the device being exported" % world.image in res.stderr
    assert sha(world.image) == before


def test_export_source_too_small_refused(world):
    s = world.session()
    s.write()
    short = world.tmp / "short.img"
    short.write_bytes(world.image.read_bytes()[:DEVICE_SIZE - 1])
    res = export(s, world.tmp / "pre.img", "--from", short)
    assert res.returncode == 4
    assert "%s: refused: the device does not hold what the newest session left" % short \
        in res.stderr
    assert "size %d bytes, the session's device %d" % (DEVICE_SIZE - 1, DEVICE_SIZE) in res.stderr


@pytest.mark.parametrize("what", ["missing-source", "target-dir", "target-in-missing-dir"])
def test_export_errors_name_the_file(world, what):
    s = world.session()
    s.write()
    args, named = [], None
    out = world.tmp / "pre.img"
    if what == "missing-source":
        named = world.tmp / "gone.img"
        args = ["--from", named]
    elif what == "target-dir":
        out = named = world.tmp
    else:
        out = named = world.tmp / "nodir" / "pre.img"
    res = export(s, out, *args)
    assert res.returncode == 1, res.stderr
    assert res.stderr.startswith("bdsnap: %s: " % named), res.stderr


def test_export_dry_run_writes_nothing(world):
    s = world.session()
    s.write()
    out = world.tmp / "pre.img"
    res = export(s, out, "--dry-run")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-1].startswith("would export %s: %d bytes"
                                                  % (s.dir.name, DEVICE_SIZE))
    assert "nothing written" in res.stdout
    assert not out.exists()
    assert not [p for p in world.tmp.iterdir() if ".bdsnap-" in p.name]


def test_export_progress_on_a_terminal(world):
    s = world.session()
    s.write()
    master, slave = pty.openpty()
    try:
        res = subprocess.run([str(CLI), "export", str(s.dir), "--to", str(world.tmp / "p.img")],
                             stderr=slave, stdout=subprocess.PIPE)
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
    assert b"exporting: 100% [" + b"#" * 30 + b"]" in out


# ---- changed ----

def expected_extents():
    runs = []
    for n in sorted(SAVED):
        if runs and runs[-1][0] + runs[-1][1] == n:
            runs[-1][1] += 1
        else:
            runs.append([n, 1])
    out = []
    for block, count in runs:
        end = min((block + count) * g.BS, DEVICE_SIZE)
        out.append({"offset": block * g.BS, "length": end - block * g.BS, "block": block,
                    "blocks": count})
    return out


def changed_json(s):
    res = run("changed", s.dir, "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert list(out) == ["extents", "changed"]
    for e in out["extents"]:
        first, _, last = e.pop("range").partition("-")
        assert (int(first), int(last or first)) == (e["block"], e["block"] + e["blocks"] - 1)
    return out["extents"], out["changed"][0]


def test_changed_json(world):
    s = world.session()
    s.write()
    extents, info = changed_json(s)
    assert extents == expected_extents()
    assert extents[-1]["length"] == DEVICE_SIZE - (NBLOCKS - 1) * g.BS  # partial
    assert info["blocks"] == len(SAVED) and info["bytes"] == BYTES_SAVED
    assert info["session"] == s.dir.name and info["block_size"] == g.BS
    assert info["device_size"] == DEVICE_SIZE and info["extents"] == len(extents)


def test_changed_text(world):
    s = world.session()
    s.write()
    res = run("changed", s.dir)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["OFFSET", "LENGTH", "RANGE"]
    rows = [l.split() for l in lines[1:-1]]
    assert rows == [[str(e["offset"]), str(e["length"]),
                     str(e["block"]) if e["blocks"] == 1 else
                     "%d-%d" % (e["block"], e["block"] + e["blocks"] - 1)]
                    for e in expected_extents()]
    assert lines[-1] == "%d extents, %d blocks, %d bytes changed" % (
        len(expected_extents()), len(SAVED), BYTES_SAVED)


def test_changed_zero_records(world):
    s = world.session(blocks=[])
    s.write()
    extents, info = changed_json(s)
    assert extents == [] and info["blocks"] == 0


def test_changed_open_session_warns(world):
    s = world.session(state="open")
    s.write()
    res = run("changed", s.dir, "--json")
    assert res.returncode == 0
    assert "session is open" in res.stderr
    assert changed_json(s)[0] == expected_extents()


def test_changed_corrupt_session(world):
    s = world.session()
    s.add(g.record(3, pre_block(3)))      # saved twice
    s.write()
    res = run("changed", s.dir, "--json")
    assert res.returncode == 3 and "duplicate block" in res.stderr
    assert res.stdout == ""


@pytest.mark.parametrize("state,ordered", [("open", 0), ("incomplete:ENOSPC", 0)],
                         ids=["plain-open", "incomplete"])
def test_export_refusal_names_the_later_session(world, state, ordered):
    """The session whose state refuses the chain is named, not the one exported."""
    a, b, _ = two_sessions(world)
    b.end_state = state
    b.write()
    res = export(a, world.tmp / "a.img")
    assert res.returncode == 4, res.stderr
    assert res.stderr.startswith("bdsnap: %s: refused: " % b.dir), res.stderr
    assert not (world.tmp / "a.img").exists()
