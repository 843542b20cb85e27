"""Chains and identity: `restore S` is the device as it was before S's mount.

Every chain is simulated on an image file: each session saves the pre-images
of the blocks it changes, then changes them; the image before each session
is kept, and restore and export of each session must give it back, bit-exact.
"""
import hashlib
import json
import os
import pty
import random
import struct
import subprocess

import pytest

import storegen as g
from conftest import CLI, DEVICE_SIZE, NBLOCKS, pre_block, run, sha

LAST = NBLOCKS - 1


class Chain:
    """Sessions of one device, each changing `blocks`; images[i] is the device before session i."""

    def __init__(self, world, *block_sets, states=None):
        self.world = world
        self.images = [bytearray(world.pre)]
        self.sessions = []
        for i, blocks in enumerate(block_sets):
            cur = self.images[-1]
            s = g.Session(world.store, "loop0_%d" % i, DEVICE_SIZE, str(world.image),
                          start="2024-05-%02dT10:00:00.000000000Z" % (i + 1),
                          uuid=bytes([i + 1] * 16), state=(states or {}).get(i, "complete"))
            after = bytearray(cur)
            for n in blocks:
                lo, hi = n * g.BS, min((n + 1) * g.BS, DEVICE_SIZE)
                s.add(g.record(n, bytes(cur[lo:hi]), compress=n % 3 != 0))
                # Self-describing new content: session i wrote block n.
                after[lo:hi] = (b"session %d block %d " % (i, n) * g.BS)[:hi - lo]
            s.write(end=bytes(after))
            self.sessions.append(s)
            self.images.append(after)
        world.image.write_bytes(self.images[-1])

    def sha_before(self, i):
        return hashlib.sha256(self.images[i]).hexdigest()


SHAPES = {
    "overlapping": [range(0, 10), range(5, 20)],
    "disjoint": [range(0, 5), range(10, 15)],
    "three": [range(0, 10), range(5, 20), [3, 15, *range(30, 36), LAST]],
    "same-blocks": [[1, 2, 3], [1, 2, 3], [1, 2, 3]],
}


@pytest.mark.parametrize("shape", SHAPES)
def test_restore_equals_export_equals_pre_image(world, shape):
    chain = Chain(world, *SHAPES[shape])
    final = world.image.read_bytes()
    for i, s in enumerate(chain.sessions):
        exported = world.tmp / ("export%d.img" % i)
        res = run("export", s.dir, "--to", exported)
        assert res.returncode == 0, res.stderr
        target = world.tmp / ("restore%d.img" % i)
        target.write_bytes(final)        # a copy of the device after the last session
        res = run("restore", s.dir, "--to", target)
        assert res.returncode == 0, res.stderr
        assert sha(target) == sha(exported) == chain.sha_before(i), (shape, i)
        later = len(chain.sessions) - 1 - i
        if later:
            assert ", after %d from %d later session" % (
                sum(len(c.records) for c in chain.sessions[i + 1:]), later) in res.stdout
    assert world.image.read_bytes() == final, "export or restore --to changed the device"


@pytest.mark.parametrize("shape", SHAPES)
def test_restore_one_by_one_newest_first(world, shape):
    """Restoring the newest session, then the one before, ...: the device then
    holds what the older session left, and the chain is cut there (before,
    the second restore was refused: the device no longer held what the
    newest session left)."""
    chain = Chain(world, *SHAPES[shape])
    for i in reversed(range(len(chain.sessions))):
        res = run("restore", chain.sessions[i].dir)
        assert res.returncode == 0, (i, res.stderr)
        assert sha(world.image) == chain.sha_before(i), (shape, i)
        later = len(chain.sessions) - 1 - i
        assert ("already undone" in res.stdout) == bool(later), res.stdout


def test_restore_of_the_device_itself(world):
    """Without --to: meta's path, the image the sessions were taken of."""
    chain = Chain(world, *SHAPES["three"])
    res = run("restore", chain.sessions[0].dir)
    assert res.returncode == 0, res.stderr
    assert sha(world.image) == chain.sha_before(0) == world.pre_sha


def test_dry_run_lists_the_chain_newest_first(world):
    chain = Chain(world, *SHAPES["three"])
    before = sha(world.image)
    res = run("restore", chain.sessions[0].dir, "--dry-run")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["ORDER", "SESSION", "START", "STATE", "BLOCKS_SAVED"]
    assert [l.split()[:2] for l in lines[1:4]] == [["1", "loop0_2"], ["2", "loop0_1"],
                                                   ["3", "loop0_0"]]
    assert lines[-1].startswith("would restore 10 blocks")
    assert sha(world.image) == before
    out = json.loads(run("restore", chain.sessions[0].dir, "--dry-run", "-J").stdout)
    assert [c["session"] for c in out["chain"]] == ["loop0_2", "loop0_1", "loop0_0"]
    (result,) = out["restore"]
    assert result["result"] == "checked" and result["dry_run"] is True
    assert result["sessions"] == 3 and result["fingerprint"] == "matches"


@pytest.mark.parametrize("state,why", [("incomplete:ENOSPC", "incomplete"),
                                       ("open", "open and not ordered")])
def test_later_session_not_restorable_refuses_the_chain(world, state, why):
    chain = Chain(world, *SHAPES["three"], states={1: state})
    before = sha(world.image)
    for cmd in (["restore", chain.sessions[0].dir],
                ["export", chain.sessions[0].dir, "--to", world.tmp / "x.img"]):
        res = run(*cmd)
        assert res.returncode == 4, res.stderr
        assert res.stderr.startswith("bdsnap: %s: refused: session is %s"
                                     % (chain.sessions[1].dir, why)), res.stderr
        assert sha(world.image) == before
    assert not (world.tmp / "x.img").exists()


def test_corrupt_later_session_writes_nothing(world):
    chain = Chain(world, *SHAPES["three"])
    s = chain.sessions[2]
    blocks = bytearray(s.blocks_bytes())
    blocks[s.offsets()[1] + g.RECORD.size + 5] ^= 1
    (s.dir / "blocks").write_bytes(bytes(blocks))
    before = sha(world.image)
    res = run("restore", chain.sessions[0].dir)
    assert res.returncode == 3, res.stderr
    assert "%s/blocks: offset %d: " % (s.dir, s.offsets()[1]) in res.stderr
    assert sha(world.image) == before


# ---- identity ----

def unrelated(world, name="other.img"):
    """A file of the device's size that holds something else."""
    other = world.tmp / name
    other.write_bytes(bytes((i * 7) & 0xff for i in range(DEVICE_SIZE)))
    return other


def test_unrelated_same_size_target_refused_untouched(world):
    chain = Chain(world, *SHAPES["overlapping"])
    other = unrelated(world)
    before = sha(other)
    res = run("restore", chain.sessions[0].dir, "--to", other)
    assert res.returncode == 4, res.stderr
    assert res.stderr.startswith("bdsnap: %s: refused: the device does not hold what the newest "
                                 "session left (loop0_1); content of the 15 sampled blocks "
                                 "differs" % other), res.stderr
    assert sha(other) == before
    res = run("restore", chain.sessions[0].dir, "--to", other, "--json")
    assert res.returncode == 4
    (result,) = json.loads(res.stdout)["restore"]
    assert result["result"] == "refused" and result["fingerprint"] == "differs"
    assert result["end_sha256"] != result["found_sha256"]
    assert sha(other) == before


def test_force_overrides_identity(world):
    chain = Chain(world, *SHAPES["overlapping"])
    other = unrelated(world)
    res = run("restore", chain.sessions[1].dir, "--to", other, "--force")
    assert res.returncode == 0, res.stderr
    assert "warning: not proven to hold what loop0_1 left" in res.stderr
    data = other.read_bytes()
    for n in range(5, 20):      # the pre-images were written, nothing else
        assert data[n * g.BS:(n + 1) * g.BS] == chain.images[1][n * g.BS:(n + 1) * g.BS]


def test_post_session_copy_passes(world):
    chain = Chain(world, *SHAPES["three"])
    copy = world.tmp / "copy.img"
    copy.write_bytes(world.image.read_bytes())
    res = run("restore", chain.sessions[1].dir, "--to", copy)
    assert res.returncode == 0, res.stderr
    assert sha(copy) == chain.sha_before(1)


def test_target_changed_after_the_session_refused(world):
    """One saved block rewritten since the unmount: the chain would restore a mix."""
    chain = Chain(world, *SHAPES["overlapping"])
    data = bytearray(world.image.read_bytes())
    data[7 * g.BS] ^= 0xff
    world.image.write_bytes(data)
    before = sha(world.image)
    res = run("restore", chain.sessions[0].dir)
    assert res.returncode == 4 and "content of the 15 sampled blocks differs" in res.stderr
    assert sha(world.image) == before


def test_no_fingerprint_recorded(world):
    """An older module's session: the content cannot be proven; --force goes ahead."""
    s = world.session(end_keys=False)
    s.write()
    before = sha(world.image)
    res = run("restore", s.dir)
    assert res.returncode == 4
    assert "refused: fingerprint unavailable: the newest session recorded no end_sha256" \
        in res.stderr
    assert sha(world.image) == before
    res = run("restore", s.dir, "--force")
    assert res.returncode == 0, res.stderr
    assert "no end fingerprint recorded" in res.stderr
    assert sha(world.image) == world.pre_sha


def test_open_ordered_session_without_fingerprint_restores(world):
    """A crash left an ordered session open: its documented restore needs no --force."""
    s = world.session(state="open", ordered=1)
    s.write()
    res = run("restore", s.dir)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert sha(world.image) == world.pre_sha


def ext_superblock(uuid):
    """Block 0 of an ext4 file system, as far as the UUID check reads it."""
    block = bytearray(pre_block(0))
    block[1024 + 56:1024 + 58] = struct.pack("<H", 0xEF53)
    block[1024 + 104:1024 + 120] = uuid
    return bytes(block)


@pytest.mark.parametrize("same", [True, False], ids=["same-uuid", "other-uuid"])
def test_fs_uuid_compared(world, same):
    recorded = bytes(range(0x10, 0x20))
    image = bytearray(world.image.read_bytes())
    image[:g.BS] = ext_superblock(recorded if same else bytes(range(0x30, 0x40)))
    world.image.write_bytes(image)
    s = world.session(blocks=[3, 8], identity={"fs_type": "ext4", "fs_uuid": recorded.hex()})
    s.write()       # block 0 is not saved: the fingerprint alone would pass
    res = run("restore", s.dir, "--dry-run", "-J")
    (result,) = json.loads(res.stdout)["restore"]
    assert result["found_fs_uuid"] == (recorded if same else bytes(range(0x30, 0x40))).hex()
    if same:
        assert res.returncode == 0, res.stderr
        return
    assert res.returncode == 4
    assert "file system UUID %s, the session's %s" % (bytes(range(0x30, 0x40)).hex(),
                                                      recorded.hex()) in res.stderr


def test_fingerprint_samples_256_of_many_blocks(tmp_path):
    """300 saved blocks: those at floor(i * 300 / 256) are hashed, exactly those."""
    nblocks = 400
    size = nblocks * g.BS
    image = tmp_path / "big.img"
    pre = b"".join(g.block_content(n) for n in range(nblocks))
    after = bytearray(pre)
    s = g.Session(tmp_path / "store", "loop0_big", size, str(image))
    saved = list(range(50, 350))
    for n in saved:
        s.add(g.record(n, g.block_content(n)))
        after[n * g.BS:(n + 1) * g.BS] = b"\x42" * g.BS
    image.write_bytes(after)
    s.write()
    meta = (s.dir / "meta").read_text()
    assert "end_sample=256\n" in meta
    sampled = {saved[i * len(saved) // 256] for i in range(256)}
    unsampled = sorted(set(saved) - sampled)
    assert unsampled and saved[6] in unsampled

    for n, refused in [(unsampled[0], False), (saved[7], True)]:
        copy = tmp_path / "copy.img"
        data = bytearray(after)
        data[n * g.BS + 10] ^= 1
        copy.write_bytes(data)
        res = run("restore", s.dir, "--to", copy, "--dry-run")
        assert res.returncode == (4 if refused else 0), (n, res.stderr)


def test_fingerprint_of_blocks_far_apart(tmp_path):
    """The fingerprint hashes the sampled blocks in ascending order, however they lie in the
    log and however large their numbers: 600 blocks of a 32 GiB device (sparse), saved in
    random order; restore proves the image (identity) and gives the blocks back."""
    nblocks = 1 << 23
    size = nblocks * g.BS
    image = tmp_path / "sparse.img"
    saved = random.Random(7).sample(range(nblocks), 600)
    after = {n: (b"after %d " % n * g.BS)[:g.BS] for n in saved}

    class Sparse:
        def __getitem__(self, at):
            return after[at.start // g.BS]

    s = g.Session(tmp_path / "store", "loop0_sparse", size, str(image))
    for n in saved:
        s.add(g.record(n, g.block_content(n), compress=n % 2 == 0))
    with open(image, "wb") as f:
        f.truncate(size)
        for n in saved:
            f.seek(n * g.BS)
            f.write(after[n])
    s.write(end=Sparse())
    assert "end_sample=256\n" in (s.dir / "meta").read_text()
    res = run("restore", s.dir, "--to", image)
    assert res.returncode == 0, res.stderr
    with open(image, "rb") as f:
        for n in saved:
            f.seek(n * g.BS)
            assert f.read(g.BS) == g.block_content(n), n


@pytest.mark.parametrize("counters", [True, False], ids=["meta-counts", "uncounted"])
def test_chain_over_the_memory_budget_restores_bounded(tmp_path, counters):
    """Pre-images verified are kept in memory for the write (lib/preimages.c),
    but at most 256 MiB: a chain of 351 MiB of pre-images is read a second
    time instead (known from meta's bytes_raw up front, or found while
    verifying a log that meta does not count). Restore and export are still
    the pre-session image, and the restore's peak memory stays well below
    what the chain holds."""
    nblocks = 70000
    size = nblocks * g.BS
    image = tmp_path / "big.img"
    images = [bytearray(b"".join(g.block_content(n) for n in range(nblocks)))]
    sessions = []
    for i, saved in enumerate([range(0, 40000), range(20000, 70000)]):
        cur = images[-1]
        after = bytearray(cur)
        s = g.Session(tmp_path / "store", "loop0_%d" % i, size, str(image),
                      start="2024-05-%02dT10:00:00.000000000Z" % (i + 1), uuid=bytes([i + 1] * 16))
        for n in saved:
            s.add(g.record(n, bytes(cur[n * g.BS:(n + 1) * g.BS])))
            after[n * g.BS:n * g.BS + 16] = (b"session %d" % i).ljust(16)
        s.write(end=bytes(after),
                meta=None if counters else s.meta_text(counters=False, end=bytes(after)))
        sessions.append(s)
        images.append(after)
    image.write_bytes(images[-1])
    del images[1:]
    want = hashlib.sha256(images[0]).hexdigest()

    exported = tmp_path / "export.img"
    assert run("export", sessions[0].dir, "--to", exported).returncode == 0
    # Started from a small process: a child forked from pytest, which holds
    # the images, would count their pages until its exec.
    res = subprocess.run(
        ["/usr/bin/python3", "-c", "import resource, subprocess, sys; "
         "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)",
         str(CLI), "restore", str(sessions[0].dir), "-y"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert sha(image) == sha(exported) == want
    assert int(res.stdout) < (64 if counters else 300) * 1024, "peak %s KiB" % res.stdout


# ---- confirmation ----

def on_a_terminal(args, answer):
    """Run the CLI with stdin on a terminal; type @answer when it asks."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([str(CLI), *map(str, args)], stdin=slave,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.close(slave)
        os.write(master, answer)
        out, err = proc.communicate(timeout=30)
    finally:
        os.close(master)
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("answer,code", [(b"n\n", 1), (b"\n", 1), (b"y\n", 0)],
                         ids=["no", "default-no", "yes"])
def test_restore_asks_on_a_terminal(world, answer, code):
    chain = Chain(world, *SHAPES["three"])
    before = sha(world.image)
    rc, out, err = on_a_terminal(["restore", chain.sessions[0].dir], answer)
    assert rc == code, err
    assert "restore loop0_0 overwrites %s (161K):" % world.image in err
    assert "3 sessions of %s, newest first: loop0_2 loop0_1 loop0_0" % world.image in err
    assert "Proceed? [y/N]" in err
    if code:
        assert "restore cancelled: nothing written" in err
        assert sha(world.image) == before
    else:
        assert sha(world.image) == world.pre_sha


def test_yes_does_not_ask(world):
    chain = Chain(world, *SHAPES["overlapping"])
    rc, out, err = on_a_terminal(["restore", chain.sessions[0].dir, "-y"], b"n\n")
    assert rc == 0 and "Proceed?" not in err, err
    assert sha(world.image) == world.pre_sha


def test_export_asks_only_over_an_existing_file(world):
    chain = Chain(world, *SHAPES["overlapping"])
    out_file = world.tmp / "pre.img"
    rc, out, err = on_a_terminal(["export", chain.sessions[0].dir, "--to", out_file], b"n\n")
    assert rc == 0 and "Proceed?" not in err, err
    assert sha(out_file) == world.pre_sha
    out_file.write_bytes(b"keep me")
    rc, out, err = on_a_terminal(["export", chain.sessions[0].dir, "--to", out_file], b"n\n")
    assert rc == 1 and "export loop0_0 overwrites %s" % out_file in err
    assert out_file.read_bytes() == b"keep me"
    assert not [p for p in world.tmp.iterdir() if ".bdsnap-" in p.name]
