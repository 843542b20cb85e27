"""The bdsnap command line: usage, passwords, listings (no module on this host)."""
import json
import os

import pytest

from conftest import DEVICE_SIZE, run, sha

NO_MODULE = not os.path.exists("/dev/snap")
needs_no_module = pytest.mark.skipif(not NO_MODULE, reason="/dev/snap exists on this host")


def test_help_is_stdout_exit_0():
    res = run("--help")
    assert res.returncode == 0 and res.stderr == ""
    assert res.stdout.startswith("Usage: bdsnap")
    for cmd in ("activate", "deactivate", "status", "sessions", "show", "verify", "changed",
                "restore", "export"):
        assert "\n  %s " % cmd in res.stdout
    assert "4 refused" in res.stdout


def test_command_help():
    res = run("restore", "-h")
    assert res.returncode == 0 and "--dry-run" in res.stdout
    res = run("export", "--help")
    assert res.returncode == 0 and res.stdout.startswith("Usage: bdsnap export SESSION -t|--to FILE")
    assert "--from DEV" in res.stdout


def test_version():
    res = run("-V")
    assert res.returncode == 0 and res.stdout.startswith("bdsnap ")


@pytest.mark.parametrize("args", [
    [], ["frobnicate"], ["-x"], ["--json", "status"], ["restore"], ["restore", "a", "b"],
    ["restore", "a", "--bogus"], ["restore", "a", "--to"], ["status", "--to", "x"],
    ["activate", "d", "--tracker", "zfs"], ["activate", "d", "--via", "carrier-pigeon"],
    ["activate", "d", "--password-fd", "x"], ["activate", "d", "--passfile", "f", "--password-fd", "0"],
    ["deactivate", "d", "--ordered"], ["sessions", "a", "b"],
    ["export", "a"], ["export", "--to", "f"], ["export", "a", "b", "--to", "f"],
    ["restore", "a", "--from", "x"], ["changed"], ["changed", "a", "b"], ["changed", "a", "--to", "x"],
    ["show", "a", "--force"], ["verify", "a", "-o", "NAME"], ["status", "extra"],
    ["sessions", "-o", "NAME,BOGUS"], ["show", "a", "-o", ""], ["delete"],
    ["prune", "--keep", "0"], ["prune", "--max-size", "12Q"], ["restore", "a", "--keep", "1"],
    ["verify", "a", "-y"], ["sessions", "-x"],
], ids=lambda a: " ".join(a) or "no-args")
def test_usage_errors_exit_2(args, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "meta").write_text("format=1\n")
    res = run(*args, cwd=tmp_path)
    assert res.returncode == 2, res
    lines = res.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("bdsnap: "), res.stderr
    assert lines[1] == "Try 'bdsnap --help' for more information."
    assert res.stdout == ""


@needs_no_module
def test_status_without_module():
    res = run("status")
    assert res.returncode == 1
    assert "bdsnap: /dev/snap: No such file or directory (is the bdsnap module loaded?)" in res.stderr


@needs_no_module
def test_activate_without_module_is_a_clear_error(tmp_path):
    res = run("activate", tmp_path, "--password-fd", "0", input="secret\n")
    assert res.returncode == 1
    assert res.stderr == ("bdsnap: /dev/snap: No such file or directory "
                          "(is the bdsnap module loaded?)\n")


@needs_no_module
def test_syscall_path_not_published():
    res = run("deactivate", "/dev/null", "--via", "syscall", "--password-fd", "0", input="pw\n")
    assert res.returncode == 1 and "usctm not loaded" in res.stderr


def test_world_readable_passfile_refused(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    pw.chmod(0o644)
    res = run("activate", tmp_path, "--passfile", pw)
    assert res.returncode == 1
    assert "%s: readable or writable by group or others (mode 0644)" % pw in res.stderr
    assert "chmod 600" in res.stderr


@needs_no_module
def test_private_passfile_is_accepted(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    pw.chmod(0o600)
    res = run("activate", tmp_path, "--passfile", pw)
    assert res.returncode == 1 and "/dev/snap" in res.stderr  # got past the password


@pytest.mark.parametrize("data,why", [("\n", "empty password"), ("", "empty password"),
                                      ("x" * 300 + "\n", "longer than 255 bytes"),
                                      ("a\0b\n", "NUL byte")],
                         ids=["newline", "eof", "too-long", "nul"])
def test_bad_password_on_fd(tmp_path, data, why):
    res = run("activate", tmp_path, "--password-fd", "0", input=data)
    assert res.returncode == 1
    assert res.stderr.startswith("bdsnap: password fd 0: ") and why in res.stderr


def sessions(world):
    """Three sessions whose start order differs from their name order."""
    made = []
    for name, dev, start, state in [
            ("sdb1_a", "sdb1", "2024-05-03T00:00:00.000000000Z", "complete"),
            ("loop0_b", "loop0", "2024-05-01T00:00:00.000000000Z", "complete"),
            ("loop0_c", "loop0", "2024-05-02T00:00:00.000000000Z", "open")]:
        s = world.session(name=name, devname=dev, start=start, state=state)
        s.write()
        made.append(s)
    (world.store / "not-a-session").mkdir()
    (world.store / "stray-file").write_text("x")
    return made


def test_sessions_sorted_by_start(world):
    sessions(world)
    res = run("sessions", "--store", world.store)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["NAME", "DEVNAME", "START", "STATE", "BLOCKS_SAVED",
                                "BYTES_STORED"]
    assert [l.split()[0] for l in lines[1:]] == ["loop0_b", "loop0_c", "sdb1_a"]
    assert lines[2].split()[3:] == ["open"]           # an open session has no counters
    assert lines[1].split()[3:5] == ["complete", "6"]


@pytest.mark.parametrize("dev,expect", [("loop0", ["loop0_b", "loop0_c"]),
                                        ("/dev/sdb1", ["sdb1_a"]), ("nothing", [])])
def test_sessions_filter(world, dev, expect):
    sessions(world)
    res = run("sessions", dev, "--store", world.store, "--json")
    assert res.returncode == 0, res.stderr
    assert [s["name"] for s in json.loads(res.stdout)["sessions"]] == expect


def test_sessions_filter_by_meta_path(world):
    sessions(world)
    res = run("sessions", world.image, "--store", world.store, "--json")
    assert len(json.loads(res.stdout)["sessions"]) == 3


def test_sessions_missing_store(tmp_path):
    res = run("sessions", "--store", tmp_path / "nope")
    assert res.returncode == 1 and "No such file or directory" in res.stderr


def test_show_json_and_text(world):
    s = world.session()
    s.write()
    info = show_json(s.dir.name, "--store", world.store)
    assert info["state"] == "complete"          # the later state= line wins
    assert info["device_size"] == DEVICE_SIZE and info["path"] == str(world.image)
    assert info["blocks_saved"] == len(s.records) and info["devname"] == "loop0"
    text = run("show", s.dir).stdout
    assert "\nSTATE " in text and "complete" in text


def show_json(*args):
    out = json.loads(run("show", *args, "--json").stdout)
    assert list(out) == ["sessions"] and len(out["sessions"]) == 1
    return out["sessions"][0]


def test_show_open_session_has_null_counters(world):
    s = world.session(state="open")
    s.write()
    info = show_json(s.dir)
    assert info["state"] == "open" and info["blocks_saved"] is None and info["end"] is None


def test_show_missing_session(world):
    res = run("show", "nope", "--store", world.store)
    assert res.returncode == 1 and "no such session" in res.stderr


@pytest.mark.parametrize("state,ordered,text,ok", [
    ("open", 1, "ordered: restorable after a crash", True),
    ("open", 0, "not restorable unless --force: a crash may have lost pre-images", False),
    ("incomplete:EIO", 0, "not restorable unless --force: pre-images were lost", False),
    ("complete", 0, None, True),
], ids=["ordered-open", "plain-open", "incomplete", "complete"])
def test_show_says_whether_restorable(world, state, ordered, text, ok):
    s = world.session(state=state, ordered=ordered)
    s.write()
    res = run("show", s.dir, "-o", "STATE,RESTORABLE,NOTE", "-r", "-n")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["STATE " + state, "RESTORABLE " + ("yes" if ok else "no")] \
        + (["NOTE " + text.replace(" ", "\\x20")] if text else [])
    info = show_json(s.dir)
    assert info["state"] == state and info["restorable"] is ok
    assert info["ordered"] is bool(ordered)
    assert (info["note"] is None) == (state == "complete")


def test_show_sizes_and_ratio(world):
    s = world.session()
    s.write()
    info = show_json(s.dir)
    assert info["ratio"] == round(info["bytes_raw"] / info["bytes_stored"], 2)
    text = run("show", s.dir, "-o", "DEVICE_SIZE,ORDERED", "-n").stdout
    assert text.split() == ["DEVICE_SIZE", "161K", "ORDERED", "no"]
    text = run("show", s.dir, "-o", "DEVICE_SIZE", "-n", "-b").stdout
    assert text.split() == ["DEVICE_SIZE", str(DEVICE_SIZE)]


def test_restore_ordered_open_session_without_force(world):
    """Ordered: every write waited for a durable pre-image, so a crash loses nothing."""
    s = world.session(state="open", ordered=1)
    s.write()
    res = run("restore", s.dir)
    assert res.returncode == 0, res.stderr
    assert sha(world.image) == world.pre_sha


def test_json_listings_parse(world):
    sessions(world)
    listing = json.loads(run("sessions", "--store", world.store, "--json").stdout)["sessions"]
    assert [s["name"] for s in listing] == ["loop0_b", "loop0_c", "sdb1_a"]
    for s in listing:
        assert show_json(s["dir"]) == s
        changed = json.loads(run("changed", s["dir"], "--json").stdout)
        assert changed["changed"][0]["session"] == s["name"]


def test_sessions_json_of_empty_store(tmp_path):
    res = run("sessions", "--store", tmp_path, "--json")
    assert res.returncode == 0 and json.loads(res.stdout) == {"sessions": []}
