"""Output through libsmartcols: columns and flags as lsblk has them, and JSON that
always parses, also for names no one should give a session."""
import json
import os
import subprocess

import pytest

import storegen as g
from conftest import CLI, DEVICE_SIZE, SAVED, run

# Directory names and a meta path with what breaks hand-written JSON: a byte
# that is not UTF-8, quotes, backslashes, a newline, control characters.
HOSTILE_NAMES = [b'loop0_"quoted"\\back', b"loop0_\xff\xfe not utf-8", b"loop0_new\nline\x01\x1f",
                 "loop0_caf\u00e9 \u2603".encode()]
HOSTILE_PATH = b'/tmp/dev "\xff\\\t\x02.img'


def hostile_store(world):
    """Three sessions of the world's device with hostile directory names."""
    made = []
    for i, raw in enumerate(HOSTILE_NAMES):
        name = os.fsdecode(raw)
        s = world.session(name=name, start="2024-05-0%dT10:00:00.000000000Z" % (i + 1),
                          blocks=SAVED if i == len(HOSTILE_NAMES) - 1 else [])
        s.write()
        made.append(s)
    return made


def hostile_meta_path(world):
    """A session whose meta path has the hostile bytes (written as bytes)."""
    s = world.session(name="loop9_path")
    s.write()
    meta = (s.dir / "meta").read_bytes().replace(os.fsencode(str(world.image)), HOSTILE_PATH)
    (s.dir / "meta").write_bytes(meta)
    return s


def jrun(*args):
    """The CLI with its output as bytes: stderr may name hostile paths."""
    return subprocess.run([str(CLI), *map(os.fsencode, map(str, args))], capture_output=True)


def parse(res):
    """stdout as strict UTF-8 JSON: json.loads of bytes refuses anything else."""
    assert res.returncode in (0, 1, 3, 4), res.stderr
    return json.loads(res.stdout)


def test_every_json_output_parses_with_hostile_names(world):
    sessions = hostile_store(world)
    odd = hostile_meta_path(world)
    listing = parse(jrun("sessions", "--store", world.store, "-J"))["sessions"]
    assert len(listing) == len(HOSTILE_NAMES) + 1
    names = {s["name"] for s in listing}
    # Valid UTF-8 stays as it is; other bytes become the text \xHH.
    assert 'loop0_"quoted"\\back' in names and "loop0_caf\u00e9 \u2603" in names
    assert "loop0_\\xff\\xfe not utf-8" in names and "loop0_new\nline\x01\x1f" in names
    (shown,) = [s for s in listing if s["name"] == "loop9_path"]
    assert shown["path"] == '/tmp/dev "\\xff\\\t\x02.img'

    for s in sessions + [odd]:
        d = os.fsdecode(s.dir)
        assert parse(jrun("show", d, "-J"))["sessions"][0]["dir"] == \
            os.fsencode(d).decode("utf-8", "backslashreplace")
        assert parse(jrun("verify", d, "-J"))["verify"][0]["ok"] is True
        out = parse(jrun("changed", d, "-J"))
        assert set(out) == {"extents", "changed"}
        out = parse(jrun("restore", d, "--dry-run", "-J"))
        assert set(out) == {"restore", "chain"}
        out = parse(jrun("export", d, "--to", world.tmp / "x.img", "--dry-run", "-J"))
        assert set(out) == {"export", "chain"}
    out = parse(jrun("delete", os.fsdecode(sessions[0].dir), "--dry-run", "-J"))
    assert out["delete"][0]["result"] == "would-remove"
    out = parse(jrun("prune", "--store", world.store, "--keep", "1", "--dry-run", "-J"))
    assert len(out["prune"]) == len(HOSTILE_NAMES) - 1     # the newest is kept


def test_json_of_refusals_and_corruption(world):
    s = world.session()
    s.write()
    # The target is not there (the path is hostile): restore fails, JSON still parses.
    odd = hostile_meta_path(world)
    out = parse(jrun("restore", odd.dir, "-J"))["restore"][0]
    assert out["result"] == "failed" and out["target"] == '/tmp/dev "\\xff\\\t\x02.img'
    blocks = bytearray(s.blocks_bytes())
    blocks[s.offsets()[0] + 3] ^= 1
    (s.dir / "blocks").write_bytes(bytes(blocks))
    res = jrun("verify", s.dir, "-J")
    assert res.returncode == 3
    v = parse(res)["verify"][0]
    assert v["ok"] is False and v["reason"] == "bad record magic"
    assert v["bad_file"] == "blocks" and v["bad_offset"] == s.offsets()[0]
    res = jrun("restore", s.dir, "-J")
    assert res.returncode == 3 and parse(res)["restore"][0]["result"] == "corrupt"


def table(*args):
    res = run(*args)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def test_columns_and_flags_as_lsblk(world):
    s = world.session()
    s.write()
    st = ["--store", world.store]
    rows = table("sessions", *st, "-o", "NAME,STATE,BYTES_STORED")
    assert rows[0].split() == ["NAME", "STATE", "BYTES_STORED"]
    stored = len(s.blocks_bytes())
    assert rows[1].split() == [s.dir.name, "complete", "%.1fK" % (stored / 1024)
                               if stored < 10240 else "%dK" % round(stored / 1024)]
    # -b: sizes in bytes; -n: no headings; -r: raw, one separator, nothing padded.
    assert [r.split() for r in table("sessions", *st, "-o", "name,bytes_stored", "-b", "-n")] \
        == [[s.dir.name, str(stored)]]
    assert table("sessions", *st, "-o", "STATE,DEVICE_SIZE", "-r", "-b") == \
        ["STATE DEVICE_SIZE", "complete %d" % DEVICE_SIZE]
    # +COLUMNS: the defaults, then these.
    assert table("sessions", *st, "-o", "+UUID")[0].split() == \
        ["NAME", "DEVNAME", "START", "STATE", "BLOCKS_SAVED", "BYTES_STORED", "UUID"]
    # -J with -o: only those keys, in that order.
    out = json.loads(run("sessions", *st, "-J", "-o", "STATE,NAME,DEVICE_SIZE").stdout)
    assert list(out["sessions"][0].items()) == [("state", "complete"), ("name", s.dir.name),
                                                ("device_size", DEVICE_SIZE)]
    # Long options are the same as short ones.
    assert table("sessions", *st, "--output", "NAME", "--noheadings", "--raw") == [s.dir.name]


def test_empty_values_are_null_in_json_and_blank_in_tables(world):
    s = world.session(state="open")
    s.write()
    info = json.loads(run("show", s.dir, "-J").stdout)["sessions"][0]
    assert info["end"] is None and info["blocks_saved"] is None and info["end_sha256"] is None
    assert info["ordered"] is False and info["restorable"] is False
    rows = table("sessions", "--store", world.store, "-o", "NAME,END,STATE", "-r")
    assert rows[1].split(" ") == [s.dir.name, "", "open"]


def test_unknown_column_is_a_usage_error(world):
    res = run("sessions", "--store", world.store, "-o", "NAME,COLOUR")
    assert res.returncode == 2
    assert res.stderr == ("bdsnap: unknown column: COLOUR\n"
                          "Try 'bdsnap --help' for more information.\n")


@pytest.mark.parametrize("cmd,cols", [("sessions", ["NAME", "BYTES_STORED", "END_SHA256"]),
                                      ("show", ["FS_UUID", "RESTORABLE"]),
                                      ("changed", ["OFFSET", "RANGE"]),
                                      ("status", ["PATH", "WRITES_HELD", "STORE_DIR"])])
def test_help_lists_columns(cmd, cols):
    res = run(cmd, "--help")
    assert res.returncode == 0 and "Available output columns (-o):" in res.stdout
    for c in cols:
        assert "\n %14s  " % c in res.stdout, c


def test_show_is_field_value_lines(world):
    s = world.session()
    s.write()
    rows = table("show", s.dir, "-o", "NAME,STATE,END_SAMPLE")
    assert [r.split() for r in rows] == [["NAME", s.dir.name], ["STATE", "complete"],
                                         ["END_SAMPLE", str(len(SAVED))]]
    assert "\nEND_SHA256 " in "\n" + "\n".join(table("show", s.dir))
    assert g.fingerprint(world.image.read_bytes(), SAVED, DEVICE_SIZE)[1] in \
        (s.dir / "meta").read_text()
