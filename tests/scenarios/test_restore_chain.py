"""Restore of an older session on real ext4 images (issue 18).

`bdsnap restore S` is the device as it was before S's mount: the later
sessions of the device are undone first. On three chain shapes, for every
session S, the restore onto a copy of the device after the last session, the
export of S and the sha256 of the image taken before S's mount are equal. A
restore onto another ext4 image of the same size is refused and leaves it as
it was.

These tests need the module's identity keys (fs_uuid, end_sample,
end_sha256; docs/format.md): without end_sha256 every restore and export of
a complete session is refused with "fingerprint unavailable".
"""

import os
import random
import shutil

import pytest

from conftest import bdsnap_cli, meta, sessions, sh, sha256


def cli(*args, check=True):
    return bdsnap_cli(*args, check=check)


def fill(mnt, tag, mb):
    rnd = random.Random(tag)
    for i in range(3):
        with open(mnt / f"{tag}{i}", "wb") as f:
            f.write(rnd.randbytes(mb << 18) + (b"%s %d\n" % (tag.encode(), i)) * (mb << 15))
    os.sync()


def overwrite_first(mnt, tag, mb):
    """Rewrite and remove what the first session wrote: the chain overlaps."""
    rnd = random.Random(tag)
    for name in sorted(p.name for p in mnt.iterdir() if p.name.startswith("one")):
        with open(mnt / name, "r+b") as f:
            f.write(rnd.randbytes(mb << 19))
    (mnt / "one0").unlink()
    os.sync()


def remount_only(mnt, tag, mb):
    """A mount cycle that writes nothing itself: the file system's own writes."""
    del mnt, tag, mb


SHAPES = {
    "disjoint-files": [(fill, "one"), (fill, "two")],
    "overlapping": [(fill, "one"), (overwrite_first, "two")],
    "three-with-remount": [(fill, "one"), (remount_only, "two"), (overwrite_first, "three")],
}


def run_chain(disk, steps):
    """One mount cycle per step; the sha256 before each, and its session."""
    before, cycle = [], []
    for fn, tag in steps:
        before.append(sha256(disk.image))
        seen = set(sessions())
        disk.attach()
        fn(disk.mount(), tag, 1)
        disk.umount()
        disk.detach()
        (new,) = [s for s in sessions() if s not in seen]
        assert meta(new)["state"] == "complete"
        cycle.append(new)
    return before, cycle


def fingerprint_note(session):
    """Why a refusal may be the missing kernel keys, for the assertion message."""
    m = meta(session)
    return "" if "end_sha256" in m else f" ({session.name} has no end_sha256: kernel keys missing)"


@pytest.mark.ext4
@pytest.mark.parametrize("shape", SHAPES)
def test_restore_of_older_session_equals_export_and_pre_image(bdsnap, make_disk, tmp_path,
                                                              shape):
    disk = make_disk(size_mb=32).mkfs_ext4()
    disk.activate()
    before, cycle = run_chain(disk, SHAPES[shape])
    final = tmp_path / "final.img"
    shutil.copyfile(disk.image, final)
    newest = cycle[-1]

    for i, s in enumerate(cycle):
        exported = tmp_path / f"export{i}.img"
        res = cli("export", s, "--to", exported, check=False)
        assert res.returncode == 0, res.stderr + fingerprint_note(newest)
        copy = tmp_path / f"copy{i}.img"
        shutil.copyfile(final, copy)
        res = cli("restore", s, "--to", copy, check=False)
        assert res.returncode == 0, res.stderr + fingerprint_note(newest)
        if i < len(cycle) - 1:
            assert f"from {len(cycle) - 1 - i} later session" in res.stdout
        assert sha256(exported) == before[i], f"export of session {i} differs"
        assert sha256(copy) == before[i], f"restore of session {i} differs"
        copy.unlink()
        exported.unlink()
    assert sha256(disk.image) == sha256(final), "export changed the device"

    # And the device itself, back to before the first mount.
    res = cli("restore", cycle[0], check=False)
    assert res.returncode == 0, res.stderr + fingerprint_note(newest)
    assert sha256(disk.image) == before[0]


@pytest.mark.ext4
def test_restore_onto_another_ext4_image_is_refused(bdsnap, make_disk, tmp_path):
    disk = make_disk(size_mb=32).mkfs_ext4()
    disk.activate()
    _, cycle = run_chain(disk, SHAPES["disjoint-files"])
    other = make_disk("other", size_mb=32).mkfs_ext4()
    other.attach()
    fill(other.mount(), "unrelated", 1)
    other.umount()
    other.detach()
    before = sha256(other.image)

    res = cli("restore", cycle[0], "--to", other.image, check=False)
    assert res.returncode == 4, res.stderr
    assert sha256(other.image) == before, "a refused restore wrote to the target"
    assert "does not hold what the newest session left" in res.stderr, \
        res.stderr + fingerprint_note(cycle[-1])
    if meta(cycle[-1]).get("fs_uuid"):
        assert "file system UUID" in res.stderr
    res = cli("restore", cycle[0], "--to", other.image, "--dry-run", "--json", check=False)
    assert res.returncode == 4
    assert sha256(other.image) == before


@pytest.mark.ext4
def test_ext4_session_records_identity(bdsnap, make_disk):
    """What the reader relies on: the module's keys, as docs/format.md defines them."""
    disk = make_disk(size_mb=32).mkfs_ext4()
    disk.activate()
    _, (s,) = run_chain(disk, [(fill, "one")])
    m = meta(s)
    uuid = sh(f"blkid -s UUID -o value {disk.image}").stdout.strip().replace("-", "")
    assert m.get("fs_type") == "ext4", m
    assert m.get("fs_uuid") == uuid, m
    assert int(m.get("end_sample", -1)) == min(256, int(m["blocks_saved"])), m
    assert len(m.get("end_sha256", "")) == 64, m
    assert "image_dev" in m and int(m.get("image_ino", 0)) == os.stat(disk.image).st_ino, m
    assert cli("restore", s, "--to", disk.image, "--dry-run").returncode == 0


@pytest.mark.ext4
def test_prune_keeps_what_it_promises(bdsnap, make_disk):
    """prune --keep N removes a device's oldest sessions only, so every session
    kept still restores (its chain is whole); an open session is never removed."""
    disk = make_disk(size_mb=32).mkfs_ext4()
    disk.activate()
    before, cycle = run_chain(disk, SHAPES["three-with-remount"])
    cli("prune", "--keep", "2")
    kept = [s for s in cycle if s.exists()]
    assert kept == cycle[1:], (cycle, kept)
    res = cli("restore", cycle[1], check=False)
    assert res.returncode == 0, res.stderr
    assert sha256(disk.image) == before[1]

    disk.attach()
    seen = set(sessions())
    disk.mount()  # an open session: now the device's newest
    (open_session,) = [s for s in sessions() if s not in seen]
    cli("prune", "--keep", "1")
    assert open_session.exists() and meta(open_session)["state"] == "open"
    assert not any(s.exists() for s in cycle), "prune kept more than the newest"
    disk.umount()
    disk.detach()
