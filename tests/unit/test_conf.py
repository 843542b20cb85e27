"""The boot-time configuration parser of libbdsnap (bdsnap_conf_*), via ctypes."""
import ctypes
import errno
import os
import stat

import pytest

import storegen as g

SO = g.ROOT / "lib" / "libbdsnap.so.0"
BIO, VFS = 1, 2                     # enum bdsnap_tracker
ORDERED = g.C["BDSNAP_ACT_ORDERED"]
ROLLBACK, KEEP = g.C["BDSNAP_ACT_ROLLBACK"], g.C["BDSNAP_ACT_KEEP"]


class Dev(ctypes.Structure):
    _fields_ = [("path", ctypes.c_char_p), ("tracker", ctypes.c_uint),
                ("flags", ctypes.c_uint), ("line", ctypes.c_uint)]


class Err(ctypes.Structure):
    _fields_ = [("line", ctypes.c_uint), ("what", ctypes.c_char * 128),
                ("reason", ctypes.c_char_p)]


def load_lib():
    lib = ctypes.CDLL(str(SO))
    lib.bdsnap_conf_parse.argtypes = [ctypes.c_char_p, ctypes.c_size_t,
                                      ctypes.POINTER(ctypes.POINTER(Dev)),
                                      ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(Err)]
    lib.bdsnap_conf_read.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.POINTER(Dev)),
                                     ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(Err)]
    lib.bdsnap_conf_check.argtypes = [ctypes.POINTER(Dev), ctypes.c_size_t, ctypes.POINTER(Err)]
    lib.bdsnap_conf_free.argtypes = [ctypes.POINTER(Dev), ctypes.c_size_t]
    return lib


@pytest.fixture(scope="module")
def lib():
    return load_lib()


class Conf:
    """What one parse returned: rc, the devices as tuples, the error."""

    def __init__(self, lib, text=None, file=None):
        self.lib, self.out, self.n, self.err = lib, ctypes.POINTER(Dev)(), ctypes.c_size_t(), Err()
        if file is not None:
            self.rc = lib.bdsnap_conf_read(str(file).encode(), ctypes.byref(self.out),
                                           ctypes.byref(self.n), ctypes.byref(self.err))
        else:
            raw = text.encode() if isinstance(text, str) else text
            self.rc = lib.bdsnap_conf_parse(raw, len(raw), ctypes.byref(self.out),
                                            ctypes.byref(self.n), ctypes.byref(self.err))
        self.devs = [(d.path.decode(), d.tracker, d.flags, d.line)
                     for d in self.out[:self.n.value]] if self.rc == 0 else []

    def check(self):
        return self.lib.bdsnap_conf_check(self.out, self.n, ctypes.byref(self.err))

    def error(self):
        return self.err.line, self.err.what.decode(), (self.err.reason or b"").decode()

    def free(self):
        if self.rc == 0:
            self.lib.bdsnap_conf_free(self.out, self.n)


def parse(lib, text):
    c = Conf(lib, text)
    c.free()
    return c


def test_good_config(lib):
    text = ("# devices\n"
            "\n"
            "   # indented comment\n"
            "/dev/sdb1\n"
            "/dev/disk/by-uuid/abc\ttracker=vfs   ordered=yes  # trailing comment\n"
            "/srv/img.img ordered=no tracker=bio\r\n"
            "/a#b")
    c = parse(lib, text)
    assert c.rc == 0
    assert c.devs == [("/dev/sdb1", 0, 0, 4), ("/dev/disk/by-uuid/abc", VFS, ORDERED, 5),
                      ("/srv/img.img", BIO, 0, 6), ("/a#b", 0, 0, 7)]


def test_empty_config(lib):
    assert parse(lib, "").rc == 0 and parse(lib, "# nothing\n\n  \t\n").devs == []


@pytest.mark.parametrize("text,line,what,reason", [
    ("dev/sdb1\n", 1, "dev/sdb1", "not an absolute path"),
    ("# x\n/dev/a trackr=bio\n", 2, "trackr", "unknown key (known: tracker, ordered, rollback)"),
    ("/dev/a =bio\n", 1, "", "unknown key (known: tracker, ordered, rollback)"),
    ("/dev/a tracker=zfs\n", 1, "tracker=zfs", "unknown value (bio or vfs)"),
    ("/dev/a tracker=\n", 1, "tracker=", "unknown value (bio or vfs)"),
    ("/dev/a ordered=maybe\n", 1, "ordered=maybe", "unknown value (yes or no)"),
    ("/dev/a ordered=YES\n", 1, "ordered=YES", "unknown value (yes or no)"),
    ("/dev/a ordered\n", 1, "ordered", "missing '=value'"),
    ("/dev/a tracker=bio ordered=no tracker=vfs\n", 1, "tracker", "key given twice"),
    ("/dev/a\n\n/dev/b\n/dev/a ordered=yes\n", 4, "/dev/a", "device listed twice"),
    ("/dev/a /dev/b\n", 1, "/dev/b", "unknown key (known: tracker, ordered, rollback)"),
    ("/dev/a rollback=maybe\n", 1, "rollback=maybe", "unknown value (no, yes or keep)"),
    ("/dev/a rollback=KEEP\n", 1, "rollback=KEEP", "unknown value (no, yes or keep)"),
    ("/dev/a rollback\n", 1, "rollback", "missing '=value'"),
    ("/dev/a rollback=yes rollback=no\n", 1, "rollback", "key given twice"),
    ("/dev/a\n/dev/b tracker=bio\x00\n", 2, "", "NUL byte in the line"),
    ("/" + "x" * 5000 + "\n", 1, "/" + "x" * 126, "path too long"),
], ids=lambda v: repr(v)[:40] if isinstance(v, str) else None)
def test_bad_lines(lib, text, line, what, reason):
    c = parse(lib, text)
    assert c.rc == -errno.EINVAL
    assert c.error() == (line, what, reason)


@pytest.mark.parametrize("keys,tracker,flags", [
    ("rollback=no", 0, 0),
    ("rollback=yes", 0, ROLLBACK | ORDERED),
    ("rollback=keep", 0, ROLLBACK | ORDERED | KEEP),
    ("ordered=yes rollback=yes", 0, ROLLBACK | ORDERED),
    ("rollback=keep ordered=yes tracker=bio", BIO, ROLLBACK | ORDERED | KEEP),
    ("rollback=no ordered=no tracker=vfs", VFS, 0),
    ("ordered=yes rollback=no", 0, ORDERED),
])
def test_rollback_key(lib, keys, tracker, flags):
    """rollback=yes and keep imply ordered mode; no is the default."""
    c = parse(lib, "/dev/sdz %s\n" % keys)
    assert c.rc == 0, c.error()
    assert c.devs == [("/dev/sdz", tracker, flags, 1)]


@pytest.mark.parametrize("keys,what,reason", [
    ("rollback=yes ordered=no", "ordered=no", "rollback needs ordered"),
    ("ordered=no rollback=keep", "ordered=no", "rollback needs ordered"),
    ("rollback=yes tracker=vfs", "tracker=vfs", "rollback needs the bio tracker"),
    ("tracker=vfs ordered=yes rollback=keep", "tracker=vfs", "rollback needs the bio tracker"),
])
def test_rollback_conflicts(lib, keys, what, reason):
    """Whatever the order of the keys, the line is refused as a whole."""
    c = parse(lib, "# c\n/dev/sdz %s\n" % keys)
    assert c.rc == -errno.EINVAL
    assert c.error() == (2, what, reason)


def test_rollback_is_not_the_retention_keep(lib):
    """keep=N (sessions kept by prune) and rollback=keep share a word, not a meaning."""
    c = parse(lib, "keep=3\n/dev/sdz rollback=keep\n/dev/sdy keep=3\n")
    assert c.rc == -errno.EINVAL
    assert c.error() == (3, "keep", "unknown key (known: tracker, ordered, rollback)")
    c = parse(lib, "keep=3\n/dev/sdz rollback=keep\n")
    assert c.rc == 0 and c.devs == [("/dev/sdz", 0, ROLLBACK | ORDERED | KEEP, 2)]


def test_read_refuses_writable_and_missing(lib, tmp_path):
    f = tmp_path / "bdsnap.conf"
    c = Conf(lib, file=f)
    assert c.rc == -errno.ENOENT and c.error()[0] == 0
    f.write_text("/dev/sda1 ordered=yes\n")
    f.chmod(0o664)
    c = Conf(lib, file=f)
    assert c.rc == -errno.EPERM and c.error() == (0, "", "writable by group or others: chmod go-w it")
    f.chmod(0o644)
    c = Conf(lib, file=f)
    assert c.rc == 0 and c.devs == [("/dev/sda1", 0, ORDERED, 1)]
    c.free()
    c = Conf(lib, file=tmp_path)
    assert c.rc == -errno.EINVAL and c.error()[2] == "not a regular file"


def test_read_reports_the_line(lib, tmp_path):
    f = tmp_path / "bdsnap.conf"
    f.write_text("# one\n/dev/sda1\n/dev/sdb1 tracker=ext4\n")
    c = Conf(lib, file=f)
    assert c.rc == -errno.EINVAL and c.error() == (3, "tracker=ext4", "unknown value (bio or vfs)")


def checked(lib, text):
    c = Conf(lib, text)
    assert c.rc == 0
    rc = c.check()
    c.free()
    return rc, c.error()


def test_check_devices(lib, tmp_path):
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * 4096)
    (tmp_path / "alias.img").symlink_to(img)
    assert checked(lib, f"{img}\n")[0] == 0
    assert checked(lib, f"{img}\n{tmp_path}/gone.img\n") == (
        -errno.ENOENT, (2, f"{tmp_path}/gone.img", "no such device or file"))
    assert checked(lib, f"{img}\n/dev/null\n") == (
        -errno.ENOTBLK, (2, "/dev/null", "neither a block device nor a regular file"))
    assert checked(lib, f"{tmp_path}\n")[0] == -errno.ENOTBLK
    assert checked(lib, f"{img}\n# same file\n{tmp_path}/alias.img tracker=vfs\n") == (
        -errno.EINVAL, (3, f"{tmp_path}/alias.img", "the same device as an earlier line"))


def test_check_block_devices_by_number(lib, tmp_path):
    blk = [f"/dev/{d}" for d in sorted(os.listdir("/dev"))
           if os.path.exists(f"/dev/{d}") and stat.S_ISBLK(os.stat(f"/dev/{d}").st_mode)]
    if not blk:
        pytest.skip("no block device node on this host")
    (tmp_path / "alias").symlink_to(blk[0])
    assert checked(lib, f"{blk[0]}\n")[0] == 0
    rc, (line, _, reason) = checked(lib, f"{blk[0]}\n{tmp_path}/alias\n")
    assert (rc, line, reason) == (-errno.EINVAL, 2, "the same device as an earlier line")


def test_retention_settings_are_not_devices(lib):
    """keep= and max_size= (bdsnap prune) may share the file with the devices."""
    c = Conf(lib, "keep=5 max_size=20G\n/dev/sdz ordered=yes\n")
    assert c.rc == 0 and c.devs == [("/dev/sdz", 0, ORDERED, 2)]
    c = Conf(lib, "/dev/sdz\nkeep=5\nmax_size=1T\n")
    assert c.rc == 0 and [d[0] for d in c.devs] == ["/dev/sdz"]


@pytest.mark.parametrize("text,line,what,reason", [
    ("keep=5\nkeep=6\n", 2, b"keep", b"setting given twice"),
    ("keep=\n", 1, b"keep=", b"not a number"),
    ("max_size=20Q\n", 1, b"max_size=20Q", b"not a size (e.g. 20G)"),
    ("keep=1 /dev/sdz\n", 1, b"/dev/sdz", b"missing '=value'"),
    ("speed=fast\n", 1, b"speed", b"unknown setting (known: keep, max_size)"),
])
def test_bad_retention_settings(lib, text, line, what, reason):
    c = Conf(lib, text)
    assert c.rc == -errno.EINVAL
    assert (c.err.line, c.err.what, c.err.reason) == (line, what, reason)
