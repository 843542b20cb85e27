"""activate_snapshot()/deactivate_snapshot(): bdsnap's system calls through usctm.

Runs INSIDE the test guest (tests/vm/run.py), as root:

    make -C usctm && make -C module
    /usr/bin/python3 tests/vm/run.py --name syscalls -- \
        /usr/bin/python3 -m pytest -p no:cacheprovider -v tests/scenarios/test_syscalls.py

bdsnap installs the two calls at load when usctm is already loaded, and
publishes their numbers in /sys/module/bdsnap/parameters/sys_{activate,
deactivate}_nr (-1 otherwise).  The calls are a second front-end of the
ioctls: every error case here is issued through both and must give the same
errno (module/syscalls.c has the table).
"""

import ctypes
import errno
import json
import mmap
import os
import random
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import (CLI, KO_ROOT, MODULE, PASSWORD, bdsnap_cli, meta, require_built,
                      restore, sessions, sha256, uapi)

USCTM_KO = KO_ROOT / "usctm" / "usctm.ko"
PARAMS = Path("/sys/module/bdsnap/parameters")
KERNEL_PTR = 0xffffffff81000000
MASK64 = (1 << 64) - 1
PATH_MAX = uapi.BDSNAP_PATH_MAX
PASSWORD_MAX = uapi.BDSNAP_PASSWORD_MAX

pytestmark = [
    pytest.mark.usctm,
    pytest.mark.skipif(os.uname().machine != "x86_64", reason="usctm is x86-64 only"),
    pytest.mark.usefixtures("syscalls_built"),
]


@pytest.fixture(scope="module")
def syscalls_built(guest):
    require_built(USCTM_KO, MODULE)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.ioctl.restype = ctypes.c_int
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong]
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
PAGE = mmap.PAGESIZE
PROT_NONE = 0  # <sys/mman.h>; the mmap module has no constant for it


def syscall(nr, *args):
    """Raw syscall(2): (return value, errno or 0)."""
    ctypes.set_errno(0)
    ret = _libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a & MASK64) for a in args])
    return ret, (ctypes.get_errno() if ret == -1 else 0)


def ioctl_raw(fd, cmd, arg):
    """ioctl(2) with a raw argument (any pointer value): errno or 0."""
    ctypes.set_errno(0)
    return ctypes.get_errno() if _libc.ioctl(fd, cmd, arg & MASK64) else 0


def run(*cmd):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True)


def loaded(name):
    return Path("/sys/module", name, "initstate").exists()


def refcnt(mod):
    return int(Path("/sys/module", mod, "refcnt").read_text())


def nrs():
    """(activate, deactivate) as published by bdsnap."""
    return tuple(int((PARAMS / p).read_text()) for p in ("sys_activate_nr", "sys_deactivate_nr"))


def usctm_param(name):
    return Path("/sys/module/usctm/parameters", name).read_text().strip()


def usctm_slots():
    return sorted(int(x) for x in usctm_param("slots").split())


def usctm_free():
    first, last = (int(x) for x in usctm_param("free").split("-"))
    return range(first, last + 1)


def delete_module(name):
    """delete_module(2) with O_NONBLOCK, as rmmod does: 0 or errno."""
    ret = _libc.syscall(ctypes.c_long(176), ctypes.c_char_p(name.encode()),
                        ctypes.c_long(os.O_NONBLOCK))
    return 0 if ret == 0 else ctypes.get_errno()


class Modules:
    """Loads usctm and bdsnap in the order a test asks; unloads what is left."""

    def usctm(self):
        r = run("insmod", USCTM_KO)
        assert r.returncode == 0, r.stderr

    def bdsnap(self, *extra, delay_ms=20):
        r = run("insmod", MODULE, f"password={PASSWORD}", f"auth_fail_delay_ms={delay_ms}", *extra)
        assert r.returncode == 0, r.stderr

    def unload(self, name):
        r = run("rmmod", name)
        assert r.returncode == 0, f"rmmod {name}: {r.stderr}"
        assert not loaded(name)


@pytest.fixture
def mods(guest):
    for name in ("bdsnap", "usctm"):
        assert not loaded(name), f"{name} already loaded"
    m = Modules()
    yield m
    for name in ("bdsnap", "usctm"):  # bdsnap first: it holds usctm
        if loaded(name):
            m.unload(name)


@pytest.fixture
def both(mods):
    """usctm, then bdsnap: the system calls are installed."""
    mods.usctm()
    mods.bdsnap()
    return nrs()


def cstr(data):
    """A NUL-terminated user buffer; returns (keepalive, address)."""
    buf = ctypes.create_string_buffer(data if isinstance(data, bytes) else data.encode())
    return buf, ctypes.addressof(buf)


class GuardedPage:
    """Two pages, the second PROT_NONE: data placed to end at or across the boundary."""

    def __init__(self, pages=2):
        self.size = pages * PAGE
        self.base = _libc.mmap(None, self.size, mmap.PROT_READ | mmap.PROT_WRITE,
                               mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        assert self.base not in (None, ctypes.c_void_p(-1).value)
        self.guard = self.base + self.size - PAGE
        assert _libc.mprotect(self.guard, PAGE, PROT_NONE) == 0

    def before_guard(self, data):
        """Copy data to end exactly at the guard page; its address."""
        addr = self.guard - len(data)
        ctypes.memmove(addr, data, len(data))
        return addr

    def close(self):
        _libc.munmap(self.base, self.size)


@pytest.fixture
def guarded():
    g = GuardedPage(pages=3)
    yield g
    g.close()


def activate_sys(nr_pair, path, password):
    _b1, p = cstr(path)
    _b2, w = cstr(password)
    return syscall(nr_pair[0], p, w)


def deactivate_sys(nr_pair, path, password):
    _b1, p = cstr(path)
    _b2, w = cstr(password)
    return syscall(nr_pair[1], p, w)


# ---------------------------------------------------------------- publishing


def test_numbers_published_when_usctm_first(both):
    act, deact = both
    assert act >= 0 and deact >= 0 and act != deact
    assert act in usctm_free() and deact in usctm_free()
    assert usctm_slots() == sorted((act, deact))
    # usctm pinned: two symbol_get() references + one per slot.
    assert refcnt("usctm") == 2 + 2
    assert oct((PARAMS / "sys_activate_nr").stat().st_mode & 0o777) == "0o444"
    with pytest.raises(OSError):
        (PARAMS / "sys_activate_nr").write_text("1\n")
    assert nrs() == both


def test_numbers_cannot_be_set_at_load(mods):
    mods.usctm()
    for param in ("sys_activate_nr=335", "sys_deactivate_nr=-1"):
        r = run("insmod", MODULE, f"password={PASSWORD}", param)
        assert r.returncode != 0, param
        assert not loaded("bdsnap")
    assert usctm_slots() == [] and refcnt("usctm") == 0


def test_bdsnap_without_usctm_then_late_usctm(mods, make_disk):
    """bdsnap first: -1, ioctl only; a later usctm is not picked up (documented)."""
    mods.bdsnap()
    assert nrs() == (-1, -1)
    mods.usctm()
    assert nrs() == (-1, -1)
    assert usctm_slots() == [] and refcnt("usctm") == 0
    disk = make_disk("late", 16)
    disk.activate()
    assert [d.path.decode() for d in uapi.list_devices()] == [str(disk.image)]
    disk.deactivate()
    assert uapi.list_devices() == []
    # Reloading bdsnap picks usctm up.
    mods.unload("bdsnap")
    mods.bdsnap()
    assert min(nrs()) >= 0 and usctm_slots() == sorted(nrs())


# ---------------------------------------------------------------- the cycle


def test_activate_mount_write_restore_through_syscall(both, make_disk):
    disk = make_disk("sys", 64).mkfs_ext4()
    before = sha256(disk.image)
    before_sessions = set(sessions())
    assert activate_sys(both, str(disk.image), PASSWORD) == (0, 0)
    disk.active = str(disk.image)  # cleanup deactivates through the ioctl if we fail
    listed = uapi.list_devices()
    assert [d.path.decode() for d in listed] == [str(disk.image)]
    assert listed[0].tracker == uapi.BDSNAP_TRACKER_BIO and listed[0].flags == 0

    disk.attach()
    mnt = disk.mount()
    for i in range(20):
        (mnt / f"f{i}").write_bytes(os.urandom(4096 * (i + 1)))
    (mnt / "big").write_bytes(os.urandom(3 << 20))
    os.sync()
    # Mounted: both front-ends refuse to deactivate.
    assert deactivate_sys(both, str(disk.image), PASSWORD) == (-1, errno.EBUSY)
    with pytest.raises(OSError) as exc:
        uapi.deactivate(str(disk.image), PASSWORD)
    assert exc.value.errno == errno.EBUSY
    disk.umount()

    new = [s for s in sessions() if s not in before_sessions]
    assert len(new) == 1, new
    assert meta(new[0])["state"] == "complete"
    assert sha256(disk.image) != before
    disk.detach()
    restore(new[0], disk.image)
    assert sha256(disk.image) == before

    assert deactivate_sys(both, str(disk.image), PASSWORD) == (0, 0)
    disk.active = None
    assert uapi.list_devices() == []
    # Deactivated: the next one is ENODEV through both.
    assert deactivate_sys(both, str(disk.image), PASSWORD) == (-1, errno.ENODEV)


# ---------------------------------------------------------------- errors


def ioctl_struct_errno(fd, cmd, path, password):
    req = uapi.new("bdsnap_activate")
    # Assigning raw bytes lets a test fill an array with no NUL in it.
    ctypes.memmove(ctypes.addressof(req) + type(req).path.offset, path, len(path))
    ctypes.memmove(ctypes.addressof(req) + type(req).password.offset, password, len(password))
    return ioctl_raw(fd, cmd, ctypes.addressof(req))


def string_cases(image):
    """(name, path bytes, password bytes, errno); the same bytes go to both fronts.

    For the syscall the bytes are followed by a NUL beyond the maximum, so
    "unterminated" means "no NUL within BDSNAP_PATH_MAX/PASSWORD_MAX".
    """
    good, pw = str(image).encode(), PASSWORD.encode()
    return [
        ("wrong password", good, b"not-the-password", errno.EACCES),
        ("empty password", good, b"", errno.EACCES),
        ("empty path", b"", pw, errno.EINVAL),
        ("empty path, wrong password", b"", b"x", errno.EINVAL),
        ("unterminated path", b"a" * PATH_MAX, pw, errno.EINVAL),
        ("unterminated password", good, b"p" * PASSWORD_MAX, errno.EINVAL),
        ("longest password, wrong", good, b"p" * (PASSWORD_MAX - 1), errno.EACCES),
        ("longest path", b"a" * (PATH_MAX - 1), pw, None),  # lookup error, same for both
        ("no such path", b"/nonexistent/x.img", pw, errno.ENOENT),
        ("character device", b"/dev/null", pw, errno.ENOTBLK),
    ]


def sys_with_bytes(nr, path, password):
    # NUL placed after the maximum so an "unterminated" string stays in bounds.
    _b1, p = cstr(path + b"b" * (PATH_MAX + 16 - len(path)) if len(path) >= PATH_MAX else path)
    _b2, w = cstr(password + b"q" * 16 if len(password) >= PASSWORD_MAX else password)
    return syscall(nr, p, w)[1]


@pytest.mark.parametrize("activate", [True, False], ids=["activate", "deactivate"])
def test_string_errors_match_ioctl(both, make_disk, activate):
    disk = make_disk("err", 16)
    nr = both[0] if activate else both[1]
    cmd = uapi.IOC_ACTIVATE if activate else uapi.IOC_DEACTIVATE
    fd = os.open(uapi.CTL, os.O_RDWR)
    try:
        for name, path, pw, want in string_cases(disk.image):
            if not activate and want in (errno.ENOENT, errno.ENOTBLK):
                want = errno.ENODEV  # deactivating something not active
            got_sys = sys_with_bytes(nr, path, pw)
            got_ioctl = ioctl_struct_errno(fd, cmd, path, pw)
            assert got_sys == got_ioctl, (name, errno.errorcode.get(got_sys),
                                          errno.errorcode.get(got_ioctl))
            if want is not None:
                assert got_sys == want, (name, errno.errorcode.get(got_sys))
            else:
                assert got_sys not in (0, errno.EINVAL, errno.EFAULT), name
        if activate:
            assert sys_with_bytes(nr, str(disk.image).encode(), PASSWORD.encode()) == 0
            disk.active = str(disk.image)
            # Already active, whichever front-end activated it.
            assert sys_with_bytes(nr, str(disk.image).encode(), PASSWORD.encode()) == errno.EEXIST
            assert ioctl_struct_errno(fd, cmd, str(disk.image).encode(),
                                      PASSWORD.encode()) == errno.EEXIST
    finally:
        os.close(fd)


@pytest.mark.parametrize("activate", [True, False], ids=["activate", "deactivate"])
def test_bad_pointers_efault_like_ioctl(both, make_disk, guarded, activate):
    disk = make_disk("ptr", 16)
    nr = both[0] if activate else both[1]
    cmd = uapi.IOC_ACTIVATE if activate else uapi.IOC_DEACTIVATE
    _b1, path = cstr(str(disk.image))
    _b2, pw = cstr(PASSWORD)
    _b3, wrong = cstr("wrong")
    fd = os.open(uapi.CTL, os.O_RDWR)
    try:
        # The ioctl's request running one byte into the PROT_NONE page.
        req = bytes(uapi.new("bdsnap_activate", path=str(disk.image), password=PASSWORD))
        assert ioctl_raw(fd, cmd, guarded.before_guard(req[:-1])) == errno.EFAULT
        # A string running into the PROT_NONE page before any NUL (overwrites req).
        runaway = guarded.before_guard(b"/" + b"a" * 99)
        for bad in (0, 0x10, KERNEL_PTR, runaway, guarded.guard, MASK64, 1 << 63):
            for args in ((bad, pw), (path, bad), (bad, bad), (bad, wrong)):
                assert syscall(nr, *args) == (-1, errno.EFAULT), (hex(args[0]), hex(args[1]))
            if bad != runaway:
                assert ioctl_raw(fd, cmd, bad) == errno.EFAULT, hex(bad)
        # A fault is reported before a malformed string (the ioctl copies first).
        _b4, empty = cstr(b"")
        assert syscall(nr, empty, 0) == (-1, errno.EFAULT)
    finally:
        os.close(fd)
    assert uapi.list_devices() == []


def test_non_root_eperm_like_ioctl(both, make_disk):
    """CAP_SYS_ADMIN is checked before anything is read: EPERM even for bad pointers."""
    disk = make_disk("nonroot", 16)
    act, deact = both
    fd = os.open(uapi.CTL, os.O_RDWR)  # opened as root: the ioctl itself must refuse
    _b1, path = cstr(str(disk.image))
    _b2, pw = cstr(PASSWORD)
    req = uapi.new("bdsnap_activate", path=str(disk.image), password=PASSWORD)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop to nobody, report, never return into pytest
        try:
            os.close(rfd)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            out = {}
            for name, nr, cmd in (("activate", act, uapi.IOC_ACTIVATE),
                                  ("deactivate", deact, uapi.IOC_DEACTIVATE)):
                out[name] = {
                    "sys": syscall(nr, path, pw)[1],
                    "sys_null": syscall(nr, 0, 0)[1],
                    "sys_kernel": syscall(nr, KERNEL_PTR, KERNEL_PTR)[1],
                    "ioctl": ioctl_raw(fd, cmd, ctypes.addressof(req)),
                    "ioctl_null": ioctl_raw(fd, cmd, 0),
                }
            os.write(wfd, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd) as f:
        data = f.read()
    os.waitpid(pid, 0)
    os.close(fd)
    out = json.loads(data)
    for name, res in out.items():
        assert res == dict.fromkeys(res, errno.EPERM), (name, res)
    assert uapi.list_devices() == []


# ---------------------------------------------------------------- lifetime


def test_usctm_pinned_then_enosys_after_rmmod_bdsnap(both, mods):
    act, deact = both
    r = run("rmmod", "usctm")
    assert r.returncode != 0
    assert delete_module("usctm") == errno.EWOULDBLOCK
    assert loaded("usctm") and usctm_slots() == sorted(both)
    assert syscall(act, 0, 0) == (-1, errno.EFAULT)  # still ours
    mods.unload("bdsnap")
    for nr in both:
        assert syscall(nr, 0, 0) == (-1, errno.ENOSYS)
    assert usctm_slots() == [] and refcnt("usctm") == 0
    mods.unload("usctm")
    for nr in both:
        assert syscall(nr, 0, 0) == (-1, errno.ENOSYS)


def test_rmmod_bdsnap_waits_for_running_call(mods):
    """A call sleeping in the wrong-password delay finishes before bdsnap goes."""
    mods.usctm()
    mods.bdsnap(delay_ms=1500)
    act, _ = nrs()
    result = []
    _b1, path = cstr("/dev/null")
    _b2, wrong = cstr("wrong")
    caller = threading.Thread(target=lambda: result.append(syscall(act, path, wrong)))
    caller.start()
    time.sleep(0.5)  # inside the handler, sleeping
    t0 = time.monotonic()
    mods.unload("bdsnap")
    took = time.monotonic() - t0
    caller.join(timeout=30)
    assert result == [(-1, errno.EACCES)]
    assert took > 0.5, f"rmmod returned after {took:.2f} s, before the call"
    assert syscall(act, path, wrong) == (-1, errno.ENOSYS)


@pytest.mark.skipif(not os.access(CLI, os.X_OK), reason="bdsnap CLI not built")
def test_cli_via_syscall(mods, make_disk):
    """libbdsnap takes the published numbers; --via syscall needs them."""
    disk = make_disk("cli", 16)
    mods.bdsnap()
    r = bdsnap_cli("activate", disk.image, "--via", "syscall", password=PASSWORD, check=False)
    assert r.returncode != 0  # not published: no silent fall-back to the ioctl
    assert uapi.list_devices() == []
    mods.unload("bdsnap")
    mods.usctm()
    mods.bdsnap()
    bdsnap_cli("activate", disk.image, "--via", "syscall", password=PASSWORD)
    disk.active = str(disk.image)
    assert [d.path.decode() for d in uapi.list_devices()] == [str(disk.image)]
    r = bdsnap_cli("deactivate", disk.image, "--via", "syscall", password="wrong", check=False)
    assert r.returncode != 0
    bdsnap_cli("deactivate", disk.image, "--via", "syscall", password=PASSWORD)
    disk.active = None
    assert uapi.list_devices() == []


def test_random_calls(both):
    act, deact = both
    free = usctm_free()
    rng = random.Random(0x62647378)
    strings = [cstr(s) for s in (b"", b"/dev/null", b"/", PASSWORD.encode()[:-1],
                                  os.urandom(64).replace(b"\0", b"x"))]
    blob = ctypes.create_string_buffer(os.urandom(3 * PATH_MAX))

    def pointer():
        kind = rng.randrange(6)
        if kind == 0:
            return rng.getrandbits(64)
        if kind == 1:
            return rng.choice((0, 0x10, KERNEL_PTR, MASK64, 1 << 47))
        if kind == 2:
            return rng.choice(strings)[1]
        if kind == 3:
            return ctypes.addressof(blob) + rng.randrange(2 * PATH_MAX)
        return rng.getrandbits(rng.choice((12, 32, 47)))

    hits = 0
    for _ in range(1000):
        if rng.random() < 0.4:
            nr = rng.choice(both)
            args = [pointer(), pointer()] + [rng.getrandbits(64) for _ in range(4)]
        else:
            nr = rng.choice(free)
            args = [rng.getrandbits(64) for _ in range(6)]
        ret, err = syscall(nr, *args)
        if nr in both:
            hits += 1
            # Never the password, so never success; EACCES needs two readable strings.
            assert ret == -1 and err in (errno.EFAULT, errno.EINVAL, errno.EACCES), (nr, args, err)
        else:
            assert (ret, err) == (-1, errno.ENOSYS), (nr, args)
    assert hits > 300
    assert uapi.list_devices() == []
    log = run("dmesg").stdout
    assert not re.search(r"WARNING:|BUG:|Call Trace|Oops", log)
