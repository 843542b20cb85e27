"""The bdsnap CLI against the real module: activate, status, sessions, show,
changed, verify, export (also while mounted, in ordered mode) and restore.

Every image is compared by sha256 with the device's content before the mount.
"""

import contextlib
import json
import os
import random
import threading
from pathlib import Path

import pytest

from conftest import PASSWORD, bdsnap_cli, meta, sessions, sh, sha256

BS = 4096


def cli(*args, check=True, password=None):
    return bdsnap_cli(*args, check=check, password=password)


def activate(disk, path=None, *opts):
    """Activate through the CLI (password on a pipe); cleanup deactivates."""
    path = str(path or disk.image)
    cli("activate", path, *opts, password=PASSWORD)
    disk.active = path


def new_session(before):
    new = [s for s in sessions() if s not in before]
    assert len(new) == 1, new
    return new[0]


def fill(mnt, tag, mb=4):
    """Files of mixed content, synced: the session has pre-images to show."""
    rnd = random.Random(tag)
    for i in range(4):
        with open(mnt / f"{tag}{i}", "wb") as f:
            f.write(rnd.randbytes(mb << 18) + (b"text %d\n" % i) * (mb << 15))
    os.sync()


def mounted_session(disk, tag, mb):
    """Activate (plain), attach, mount, fill: the mount point and its open session."""
    activate(disk)
    seen = set(sessions())
    disk.attach()
    mnt = disk.mount()
    fill(mnt, tag, mb=mb)
    return mnt, new_session(seen)


def busy_writer(mnt, stop, written, errors):
    """Rewrite files of 256 KiB, fsync'ed, until @stop; count in written[0];
    an exception goes to @errors, for the test to report."""
    rnd = random.Random(7)
    try:
        while not stop.is_set():
            with open(mnt / f"busy{written[0] % 64}", "wb") as f:
                f.write(rnd.randbytes(256 << 10))
                os.fsync(f.fileno())
            written[0] += 1
    except Exception as exc:
        errors.append(exc)


@contextlib.contextmanager
def written_meanwhile(mnt):
    """The block runs while files under @mnt are rewritten; fails unless at
    least one write completed during the block and none failed."""
    stop, written, errors = threading.Event(), [0], []
    thread = threading.Thread(target=busy_writer, args=(mnt, stop, written, errors))
    thread.start()
    try:
        start = written[0]
        yield
        during = written[0] - start
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert during > 0, "no write happened meanwhile: the test proves nothing"


def json_out(*args):
    """-J output: an object whose members are arrays of rows (bdsnap(8), OUTPUT)."""
    return json.loads(cli(*args, "--json").stdout)


def status_of(path):
    (dev,) = [d for d in json_out("status")["devices"] if d["path"] == str(path)]
    return dev


def changed_blocks(before, after):
    """Block numbers whose content differs between two images."""
    out = []
    with open(before, "rb") as a, open(after, "rb") as b:
        n = 0
        while True:
            x, y = a.read(BS), b.read(BS)
            if not x and not y:
                return out
            if x != y:
                out.append(n)
            n += 1


def test_activate_with_password_fd_and_passfile(bdsnap, make_disk, tmp_path):
    disk = make_disk(size_mb=32).mkfs_ext4()
    activate(disk)
    dev = status_of(disk.image)
    assert dev["state"] == "none" and dev["key"] == "file" and dev["ordered"] is False
    assert cli("activate", disk.image, check=False, password=PASSWORD).returncode == 1

    loose = tmp_path / "pw-loose"
    loose.write_text(PASSWORD + "\n")
    loose.chmod(0o644)
    res = cli("deactivate", disk.image, "--passfile", loose, check=False)
    assert res.returncode == 1 and "chmod 600" in res.stderr
    private = tmp_path / "pw"
    private.write_text(PASSWORD + "\n")
    private.chmod(0o600)
    cli("deactivate", disk.image, "--passfile", private)
    disk.active = None
    assert json_out("status")["devices"] == []
    res = cli("activate", disk.image, check=False, password="wrong")
    assert res.returncode == 1 and "wrong password" in res.stderr


def test_listings_changed_verify_export_restore(bdsnap, make_disk, tmp_path):
    disk = make_disk(size_mb=32).mkfs_ext4()
    pre = tmp_path / "pre.img"
    sh(f"cp {disk.image} {pre}")
    before_sha = sha256(disk.image)
    mnt, session = mounted_session(disk, "a", mb=2)
    live = status_of(disk.image)
    assert live["state"] == "open" and live["session"] == session.name
    assert live["blocks_saved"] > 0 and live["queue_depth"] >= 0 and "ratio" in live
    assert live["devname"] == Path(disk.loop).name and live["errors"] == 0
    text = cli("status", "-o", "PATH,SESSION,RATIO").stdout
    assert session.name in text and "RATIO" in text
    shown = cli("show", session).stdout
    assert "not restorable unless --force: a crash may have lost pre-images" in shown
    res = cli("export", session, "--to", tmp_path / "live.img", check=False)
    assert res.returncode == 4 and "use --force" in res.stderr

    disk.umount()
    disk.detach()
    after = tmp_path / "after.img"
    sh(f"cp {disk.image} {after}")
    info = meta(session)
    assert info["state"] == "complete"

    listed = json_out("sessions", disk.image)["sessions"]
    assert [s["name"] for s in listed] == [session.name]
    assert listed[0]["blocks_saved"] == int(info["blocks_saved"])
    assert json_out("show", session.name)["sessions"][0]["restorable"] is True
    out = cli("verify", session).stdout
    assert f"ok: {info['blocks_saved']} blocks" in out

    ext = json_out("changed", session)
    assert ext["changed"][0]["blocks"] == int(info["blocks_saved"]) and ext["extents"]
    covered = set()
    for e in ext["extents"]:
        assert e["offset"] == e["block"] * BS and e["length"] == e["blocks"] * BS
        covered.update(range(e["block"], e["block"] + e["blocks"]))
    differ = changed_blocks(pre, after)
    assert differ and set(differ) <= covered, "a changed block is missing from the extents"

    res = cli("export", session, "--to", tmp_path / "export.img")
    assert res.stdout.startswith(f"exported {session.name}: ")
    assert sha256(tmp_path / "export.img") == before_sha
    assert sha256(disk.image) == sha256(after), "export changed the device"

    res = cli("restore", session)
    assert res.stdout.startswith(f"restored {info['blocks_saved']} blocks (")
    assert sha256(disk.image) == before_sha


@pytest.mark.parametrize("via", ["image", "loopdev"])
def test_export_while_mounted_ordered(bdsnap, make_disk, tmp_path, via):
    """An ordered session exports exactly while the file system keeps writing."""
    disk = make_disk(size_mb=32).mkfs_ext4()
    disk.attach()
    before_sha = sha256(disk.loop)
    activate(disk, disk.image if via == "image" else disk.loop, "--ordered")
    seen = set(sessions())
    mnt = disk.mount()
    fill(mnt, "first", mb=2)
    session = new_session(seen)
    assert "ordered: restorable after a crash" in cli("show", session).stdout
    assert meta(session)["path"] == str(disk.image if via == "image" else disk.loop)

    sh("sync")
    assert sha256(disk.image) != before_sha, "nothing changed: the test proves nothing"
    with written_meanwhile(mnt):
        cli("export", session, "--to", tmp_path / "live.img")
    assert sha256(tmp_path / "live.img") == before_sha, "export while mounted differs"
    assert status_of(disk.active)["state"] == "open"

    disk.umount()
    cli("export", session, "--to", tmp_path / "after.img")
    assert sha256(tmp_path / "after.img") == before_sha


def test_export_after_later_sessions(bdsnap, make_disk, tmp_path):
    disk = make_disk(size_mb=32).mkfs_ext4()
    activate(disk)
    hashes, cycle = [], []
    for tag in ("one", "two"):
        hashes.append(sha256(disk.image))
        seen = set(sessions())
        disk.attach()
        fill(disk.mount(), tag, mb=1)
        disk.umount()
        disk.detach()
        cycle.append(new_session(seen))
    for h, s in zip(hashes, cycle):
        out = tmp_path / f"{s.name}.img"
        cli("export", s, "--to", out)
        assert sha256(out) == h
    assert "from 1 later session" in cli("export", cycle[0], "--to", tmp_path / "x.img").stdout


def test_restore_refuses_mounted_target(bdsnap, make_disk):
    disk = make_disk(size_mb=32).mkfs_ext4()
    activate(disk)
    seen = set(sessions())
    disk.attach()
    fill(disk.mount(), "r", mb=1)
    disk.umount()
    first = new_session(seen)
    disk.mount()  # a second session is open now
    try:
        for target in (disk.loop, disk.image):
            # The open later session is part of the first one's chain: refused first.
            res = cli("restore", first, "--to", target, check=False)
            assert res.returncode == 4, res.stderr
            assert "refused: session is open and not ordered" in res.stderr
            res = cli("restore", first, "--to", target, "--force", check=False)
            assert res.returncode == 4, "--force must not override a mounted target"
            assert "refused: target" in res.stderr
    finally:
        disk.umount()
