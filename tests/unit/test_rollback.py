"""Rollback mode on the host: `bdsnap rollback` (bdsnap_rollback_finish) finishes
what a crash left undone, on image files standing for the devices.

A session of a device activated with --rollback has "rollback=yes" and
"keep=yes|no" in meta from its start; the kernel rolls it back at unmount and
then appends "rolled_back=<time>" (keep=yes) or deletes it.  Each test builds
the store a crash leaves at some point of that, and checks that the device
ends bit-exact as it was before the oldest unfinished session, and what
happened to the sessions.
"""
import ctypes
import json
import os
import re
import subprocess
import sys

import pytest

import storegen as g
from conftest import DEVICE_SIZE, SAVED, pre_block, run, sha
from test_chain import SHAPES, Chain

sys.path.insert(0, str(g.ROOT / "tests" / "lib"))
import bdsnap_uapi as uapi  # noqa: E402  (the enums of include/uapi/bdsnap.h)

SO = g.ROOT / "lib" / "libbdsnap.so.0"
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"    # as start= and end= say it


def meta_add(session, **keys):
    """Append lines to meta, as the kernel does (a later line overrides an earlier one)."""
    with open(session.dir / "meta", "a") as f:
        f.writelines("%s=%s\n" % kv for kv in keys.items())


def meta(session):
    out = {}
    for line in (session.dir / "meta").read_text().splitlines():
        k, v = line.split("=", 1)
        out[k] = v
    return out


def rollback_session(world, keep="no", state="open", **kw):
    """A session of rollback mode (so ordered) that a crash left as @state."""
    s = world.session(state=state, ordered=1, end_keys=False, **kw)
    s.meta += [("rollback", "yes"), ("keep", keep)]
    s.write()
    return s


def half_rolled_back(world):
    """The device after the kernel wrote back the pre-images of half the saved blocks."""
    data = bytearray(world.image.read_bytes())
    for n in SAVED[::2]:
        data[n * g.BS:n * g.BS + len(pre_block(n))] = pre_block(n)
    world.image.write_bytes(bytes(data))


def test_crash_while_mounted(world):
    """keep=no: the device as before the mount, the session deleted."""
    s = rollback_session(world)
    res = run("rollback", world.image, "-s", world.store)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "%s: rolled back session %s (%d blocks)\n" % (
        world.image, s.dir.name, len(SAVED))
    assert sha(world.image) == world.pre_sha
    assert not s.dir.exists()
    res = run("rollback", world.image, "-s", world.store)
    assert res.returncode == 0 and res.stdout == "nothing to roll back on %s\n" % world.image


def test_keep_marks_the_session(world):
    s = rollback_session(world, keep="yes")
    res = run("rollback", "-s", world.store)
    assert res.returncode == 0, res.stderr
    assert res.stdout.endswith("(%d blocks; kept)\n" % len(SAVED))
    assert sha(world.image) == world.pre_sha
    assert re.fullmatch(TIME, meta(s)["rolled_back"]), meta(s)
    listed = run("sessions", "-s", world.store, "-o", "NAME,ROLLBACK,ROLLED_BACK", "-J")
    (row,) = json.loads(listed.stdout)["sessions"]
    assert row["rollback"] == "rolled-back" and row["rolled_back"] == meta(s)["rolled_back"]
    assert run("rollback", "-s", world.store).stdout == "nothing to roll back\n"


@pytest.mark.parametrize("error", [None, "-5"])
def test_crash_during_the_kernels_rollback(world, error):
    """The session ended (state=complete, end fingerprint), and the kernel had
    written half the pre-images back (or failed to go on: rollback_error=)
    when the machine stopped.  restore refuses the device (it holds neither
    end nor start); rollback finishes it: a pre-image written twice is the same."""
    s = rollback_session(world, state="complete")
    s.end_keys = True
    s.write()
    half_rolled_back(world)
    if error:
        meta_add(s, rollback_error=error)
        row = json.loads(run("show", s.dir, "-J").stdout)["sessions"][0]
        assert row["rollback"] == "failed: Input/output error"
    before = sha(world.image)
    res = run("restore", s.dir)
    assert res.returncode == 4 and "does not hold what the newest session left" in res.stderr
    assert sha(world.image) == before
    res = run("rollback", world.image, "-s", world.store)
    assert res.returncode == 0, res.stderr
    assert sha(world.image) == world.pre_sha
    assert not s.dir.exists()


def test_oldest_unfinished_session_takes_the_later_ones(world):
    """0 plain; 1 rollback, ended, unfinished; 2 plain (activated so after the
    crash); 3 rollback, open at a crash.  The chain of 1 undoes 3, 2 and 1:
    the device holds what 0 left.  3 is deleted; 1 is kept (keep=no or not),
    since 2 stays and carries what 1 changed: 0's chain needs 1."""
    chain = Chain(world, range(0, 10), range(5, 20), [3, 15, 30, 31], [1, 2, 3, 25],
                  states={3: "open"})
    s = chain.sessions
    meta_add(s[1], rollback="yes", keep="no")
    meta_add(s[3], ordered=1, rollback="yes", keep="no")
    res = run("rollback", "-s", world.store)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ("%s: rolled back session loop0_1 (15 blocks; kept)\n"
                          "%s: rolled back session loop0_3 (4 blocks)\n"
                          % (world.image, world.image))
    assert sha(world.image) == chain.sha_before(1)
    assert not s[3].dir.exists() and "rolled_back" in meta(s[1])
    assert "rolled_back" not in meta(s[0]) and "rolled_back" not in meta(s[2])
    # 0's chain holds (0, 1, 2): the device holds what 0 left, so it is cut to 0.
    res = run("restore", s[0].dir)
    assert res.returncode == 0, res.stderr
    assert sha(world.image) == chain.sha_before(0) == world.pre_sha


def test_newest_first_a_crash_while_marking(world):
    """Two unfinished sessions; a crash after the newer was deleted, before the
    older was marked: the older's chain no longer has the newer, and still
    gives the device before the older (what only the newer saved is back)."""
    chain = Chain(world, range(0, 10), range(5, 20), states={0: "open", 1: "open"})
    for s in chain.sessions:
        meta_add(s, ordered=1, rollback="yes", keep="no")
    res = run("rollback", world.image, "-s", world.store, "--dry-run")
    assert res.returncode == 0 and "would roll back session loop0_0" in res.stdout
    # What the crash leaves: the whole chain written back, the newer session deleted.
    assert run("restore", chain.sessions[0].dir).returncode == 0
    for f in ("blocks", "meta"):
        (chain.sessions[1].dir / f).unlink()
    chain.sessions[1].dir.rmdir()
    res = run("rollback", "-s", world.store)
    assert res.returncode == 0, res.stderr
    assert sha(world.image) == world.pre_sha and not chain.sessions[0].dir.exists()


def test_dry_run_writes_and_marks_nothing(world):
    s = rollback_session(world)
    before = sha(world.image)
    res = run("rollback", "--dry-run", "-s", world.store)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "%s: would roll back session %s (%d blocks)\n" % (
        world.image, s.dir.name, len(SAVED))
    assert sha(world.image) == before and "rolled_back" not in meta(s)


def test_json(world):
    s = rollback_session(world, keep="yes")
    res = run("rollback", "-J", "-s", world.store)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["rollback"] == [{
        "device": str(world.image), "session": s.dir.name, "result": "rolled-back",
        "blocks": len(SAVED), "kept": True, "reason": None}]


def test_another_size_is_refused(world):
    """Size and file system UUID are still compared: an image of another size is
    not the device the session was taken of."""
    s = rollback_session(world)
    with open(world.image, "ab") as f:
        f.write(b"\0" * g.BS)
    before = sha(world.image)
    res = run("rollback", "-J", "-s", world.store)
    assert res.returncode == 4
    assert res.stderr == ("bdsnap: rollback: %s: refused: the device does not hold what the "
                          "newest session left (size %d bytes, the session's device %d)\n"
                          % (world.image, DEVICE_SIZE + g.BS, DEVICE_SIZE))
    (row,) = json.loads(res.stdout)["rollback"]
    assert row["result"] == "refused" and row["blocks"] is None
    assert sha(world.image) == before and "rolled_back" not in meta(s)


def test_corrupt_log_writes_nothing(world):
    s = rollback_session(world)
    blocks = bytearray(s.blocks_bytes())
    blocks[s.offsets()[2] + g.RECORD.size + 3] ^= 1
    (s.dir / "blocks").write_bytes(bytes(blocks))
    before = sha(world.image)
    res = run("rollback", world.image, "-s", world.store)
    assert res.returncode == 3, res.stderr
    assert "%s/blocks: offset %d: " % (s.dir, s.offsets()[2]) in res.stderr
    assert sha(world.image) == before and s.dir.exists()


def test_incomplete_session_is_refused(world):
    s = rollback_session(world, state="incomplete:EDQUOT")
    res = run("rollback", "-s", world.store)
    assert res.returncode == 4
    assert "refused: session is incomplete (pre-images were lost): %s" % s.dir in res.stderr
    assert s.dir.exists()


def test_session_without_its_log(world):
    """A crash while the kernel deleted a keep=no session can leave meta alone:
    no log, no pre-image, so no write reached the device.  It is deleted."""
    s = rollback_session(world)
    (s.dir / "blocks").unlink()
    before = sha(world.image)
    res = run("rollback", "-s", world.store)
    assert res.returncode == 0, res.stderr
    assert res.stdout.endswith("rolled back session %s (0 blocks)\n" % s.dir.name)
    assert sha(world.image) == before and not s.dir.exists()


@pytest.mark.parametrize("extra", [{"rolled_back": "2024-05-01T10:06:00.000000000Z"},
                                   {"rollback": "no"}, None])
def test_other_sessions_are_left_alone(world, extra):
    s = world.session()
    s.meta += list((extra or {}).items())
    s.write()
    before = sha(world.image)
    res = run("rollback", "-s", world.store)
    assert res.returncode == 0 and res.stdout == "nothing to roll back\n"
    assert sha(world.image) == before and meta(s).get("rolled_back") == (extra or {}).get(
        "rolled_back")


def test_device_by_another_name(world, tmp_path):
    """DEV may be a link to the device (/dev/disk/by-uuid/...); the sessions of
    other devices are left for a rollback of their own."""
    s = rollback_session(world)
    other = tmp_path / "other.img"
    other.write_bytes(world.image.read_bytes())
    o = g.Session(world.store, "loop1_20240501T110000.000000000Z", DEVICE_SIZE, str(other),
                  state="open", ordered=1, start="2024-05-01T11:00:00.000000000Z")
    for n in SAVED:
        o.add(g.record(n, pre_block(n)))
    o.meta += [("rollback", "yes"), ("keep", "no")]
    o.write()
    alias = tmp_path / "by-uuid"
    alias.symlink_to(world.image)
    res = run("rollback", alias, "-s", world.store)
    assert res.returncode == 0, res.stderr
    assert sha(world.image) == world.pre_sha and not s.dir.exists()
    assert o.dir.exists() and sha(other) != world.pre_sha
    assert run("rollback", "-s", world.store).returncode == 0
    assert sha(other) == world.pre_sha and not o.dir.exists()


@pytest.mark.parametrize("args", [["rollback", "a", "b"], ["rollback", "--force"],
                                  ["rollback", "--keep", "3"], ["activate", "d", "--keep"],
                                  ["activate", "d", "--rollback", "--tracker", "vfs"],
                                  ["activate", "d", "--rollback", "--keep", "3"]],
                         ids=" ".join)
def test_usage_errors_exit_2(args):
    res = run(*args)
    assert res.returncode == 2, res
    assert res.stderr.splitlines()[-1] == "Try 'bdsnap --help' for more information."


def test_usage_messages():
    assert run("activate", "d", "--keep").stderr.startswith(
        "bdsnap: activate: --keep needs --rollback")
    assert run("activate", "d", "--rollback", "--tracker", "vfs").stderr.startswith(
        "bdsnap: activate: --rollback needs the bio tracker\n")


# ---- the library itself ----

class Opts(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("flags", ctypes.c_uint),
                ("progress", ctypes.c_void_p), ("result", ctypes.c_void_p),
                ("ctx", ctypes.c_void_p)]


@pytest.fixture(scope="module")
def lib():
    lib = ctypes.CDLL(str(SO))
    lib.bdsnap_rollback_finish.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
    return lib


def test_library_returns_the_count(world, lib):
    chain = Chain(world, *SHAPES["three"], states={0: "open", 1: "open", 2: "open"})
    for s in chain.sessions:
        meta_add(s, ordered=1, rollback="yes", keep="no")
    dry = Opts(ctypes.sizeof(Opts), 1)
    assert lib.bdsnap_rollback_finish(str(world.store).encode(), None, ctypes.byref(dry)) == 3
    assert lib.bdsnap_rollback_finish(str(world.store).encode(), None, None) == 3
    assert sha(world.image) == world.pre_sha
    assert lib.bdsnap_rollback_finish(str(world.store).encode(), None, None) == 0
    assert lib.bdsnap_rollback_finish(str(world.tmp / "none").encode(), None, None) == -2
    assert lib.bdsnap_rollback_finish(None, None, None) == -22
    small = Opts(4)
    assert lib.bdsnap_rollback_finish(str(world.store).encode(), None, ctypes.byref(small)) == -22


# ---- with the module's LIST, as an LD_PRELOAD shim answers it ----

# /dev/snap opens /dev/null, whose LIST ioctl reports the devices of
# $FAKE_LIST: "path,flags,state,session;..." (flags BDSNAP_ACT_*, state enum
# bdsnap_session_state).  Nothing reaches a kernel.
FAKE_LIST = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "uapi/bdsnap.h"

static int fake = -1;

int open(const char *path, int flags, ...)
{
	int (*real)(const char *, int, ...) =
		(int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
	mode_t mode = 0;
	va_list ap;

	va_start(ap, flags);
	if (flags & O_CREAT)
		mode = va_arg(ap, mode_t);
	va_end(ap);
	if (!strcmp(path, "/dev/snap"))
		return fake = real("/dev/null", O_RDONLY | O_CLOEXEC);
	return real(path, flags, mode);
}

int ioctl(int fd, unsigned long req, ...)
{
	int (*real)(int, unsigned long, ...) =
		(int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
	struct bdsnap_list *l;
	struct bdsnap_dev_info *v;
	char *spec, *save, *dev;
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (fd != fake)
		return real(fd, req, arg);
	if (req != BDSNAP_IOC_LIST) {
		errno = ENOTTY;
		return -1;
	}
	l = arg;
	v = (struct bdsnap_dev_info *)(uintptr_t)l->entries;
	spec = strdup(getenv("FAKE_LIST"));
	l->count = 0;
	for (dev = strtok_r(spec, ";", &save); dev; dev = strtok_r(NULL, ";", &save), l->count++) {
		if (l->count >= l->capacity)
			continue;
		memset(&v[l->count], 0, sizeof(*v));
		v[l->count].size = sizeof(*v);
		v[l->count].key_type = BDSNAP_KEY_FILE;
		v[l->count].tracker = BDSNAP_TRACKER_BIO;
		sscanf(dev, "%4095[^,],%u,%u,%255s", v[l->count].path, &v[l->count].flags,
		       &v[l->count].session_state, v[l->count].session);
	}
	free(spec);
	return 0;
}
"""


@pytest.fixture(scope="module")
def listed(tmp_path_factory):
    """run() with the module's LIST answered from the devices given."""
    d = tmp_path_factory.mktemp("shim")
    (d / "fake_list.c").write_text(FAKE_LIST)
    subprocess.run(["cc", "-shared", "-fPIC", "-I", str(g.ROOT / "include"), "-o",
                    str(d / "fake_list.so"), str(d / "fake_list.c"), "-ldl"], check=True)

    def run_listed(devices, *args):
        spec = ";".join("%s,%d,%d,%s" % dev for dev in devices)
        return run(*args, env=dict(os.environ, LD_PRELOAD=str(d / "fake_list.so"),
                                   FAKE_LIST=spec))
    return run_listed


OPEN, ROLLING_BACK, ROLLBACK_FAILED = (uapi.CONST["BDSNAP_SESSION_%s" % s] for s in
                                       ("OPEN", "ROLLING_BACK", "ROLLBACK_FAILED"))
ORDERED, ROLLBACK, KEEP = (uapi.CONST["BDSNAP_ACT_%s" % f]
                           for f in ("ORDERED", "ROLLBACK", "KEEP"))


def test_status_shows_mode_and_state(listed):
    devices = [("/srv/plain.img", 0, 0, ""), ("/srv/ordered.img", ORDERED, OPEN, "loop1_a"),
               ("/srv/lab.img", ROLLBACK | ORDERED, ROLLING_BACK, "loop2_b"),
               ("/srv/kiosk.img", ROLLBACK | ORDERED | KEEP, ROLLBACK_FAILED, "loop3_c")]
    res = listed(devices, "status", "-J")
    assert res.returncode == 0, res.stderr
    rows = [(d["path"], d["mode"], d["state"], d["session"])
            for d in json.loads(res.stdout)["devices"]]
    assert rows == [("/srv/plain.img", "plain", "none", None),
                    ("/srv/ordered.img", "ordered", "open", "loop1_a"),
                    ("/srv/lab.img", "rollback", "rolling-back", "loop2_b"),
                    ("/srv/kiosk.img", "rollback+keep", "rollback-failed", "loop3_c")]
    text = listed(devices, "status").stdout.splitlines()
    head = text.index(next(l for l in text if l.startswith("PATH")))
    assert text[head].split()[:5] == ["PATH", "TRACKER", "MODE", "STATE", "SESSION"]
    assert text[head + 3].split()[:5] == ["/srv/lab.img", "bio", "rollback", "rolling-back",
                                          "loop2_b"]


@pytest.mark.parametrize("state,why", [
    (OPEN, "it is mounted (session loop0_now is open): unmount it first"),
    (ROLLING_BACK, "the module is rolling it back: wait for it")])
def test_rollback_refuses_a_busy_device(world, listed, state, why):
    s = rollback_session(world)
    before = sha(world.image)
    res = listed([(world.image, ROLLBACK | ORDERED, state, "loop0_now")], "rollback",
                 world.image, "-s", world.store)
    assert res.returncode == 4
    assert res.stderr == "bdsnap: rollback: %s: refused: %s\n" % (world.image, why)
    assert sha(world.image) == before and s.dir.exists()


def test_the_live_session_is_not_unfinished(world, listed):
    """The session the module lists as open is under way; an older unfinished
    one of the same device cannot be rolled back while the device is mounted."""
    s = rollback_session(world)
    before = sha(world.image)
    live = [(world.image, ROLLBACK | ORDERED, OPEN, s.dir.name)]
    res = listed(live, "rollback", "-s", world.store)
    assert res.returncode == 0 and res.stdout == "nothing to roll back\n"
    live[0] = (world.image, ROLLBACK | ORDERED, OPEN, "loop0_20250101T000000.000000000Z")
    res = listed(live, "rollback", "-s", world.store)
    assert res.returncode == 4
    assert res.stderr == ("bdsnap: rollback: %s: refused: the device is mounted, or the kernel "
                          "is rolling it back\n" % world.image)
    assert sha(world.image) == before and s.dir.exists()


def test_after_a_failed_rollback_at_unmount(world, listed):
    """The module kept the session (rollback_error=) and refuses mounts until
    the device is deactivated: rollback finishes it, and says so."""
    s = rollback_session(world, state="complete")
    meta_add(s, rollback_error=-5)
    res = listed([(world.image, ROLLBACK | ORDERED, ROLLBACK_FAILED, s.dir.name)],
                 "rollback", "-s", world.store)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "%s: rolled back session %s (%d blocks)" % (world.image, s.dir.name, len(SAVED)),
        "%s: the module refuses its mounts since its rollback failed: deactivate it, then "
        "activate it again" % world.image]
    assert sha(world.image) == world.pre_sha and not s.dir.exists()
