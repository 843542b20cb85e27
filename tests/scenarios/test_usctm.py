"""usctm: x86-64 system call slot installer, exercised with its test client.

Runs INSIDE the test guest (tests/vm/run.py), as root:

    make -C usctm && make -C usctm test_client
    /usr/bin/python3 tests/vm/run.py --name usctm -- \
        /usr/bin/python3 -m pytest -p no:cacheprovider -v tests/scenarios/test_usctm.py

The client (usctm/test_client/usctm_test_client.c) installs `count` slots with
one handler: by its first argument a it returns orig_ax (TC_OP_NR), the sum of
the other five arguments (TC_OP_SUM6), sleeps b ms (TC_OP_SLEEP, returns
TC_SLEPT), or a + b.
"""

import ctypes
import errno
import os
import random
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import KO_ROOT, REPO, require_built

USCTM_KO = KO_ROOT / "usctm" / "usctm.ko"
CLIENT_KO = KO_ROOT / "usctm" / "test_client" / "usctm_test_client.ko"
CALL = REPO / "usctm" / "test_client" / "usctm_call"
USCTM_SYS = Path("/sys/module/usctm")
CLIENT_SYS = Path("/sys/module/usctm_test_client")

# Must match usctm/test_client/usctm_test_client.c.
TC_OP_NR = 0x7573637400000001
TC_OP_SUM6 = 0x7573637400000002
TC_OP_SLEEP = 0x7573637400000003
TC_SLEPT = 0x5EED
TC_MAGICS = (TC_OP_NR, TC_OP_SUM6, TC_OP_SLEEP)

MASK64 = (1 << 64) - 1

pytestmark = [
    pytest.mark.skipif(os.environ.get("BDSNAP_GUEST") != "1",
                       reason="loads kernel modules: runs only inside the test VM"),
    pytest.mark.usefixtures("usctm_built"),
]


@pytest.fixture(scope="module")
def usctm_built():
    require_built(USCTM_KO, CLIENT_KO, CALL)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def syscall(nr, *args):
    """Raw syscall(2) through libc: (return value, errno or 0)."""
    ctypes.set_errno(0)
    ret = _libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a & MASK64) for a in args])
    return ret, (ctypes.get_errno() if ret == -1 else 0)


def as_libc_result(value):
    """What libc's syscall() makes of a kernel return value."""
    value &= MASK64
    if value >= 1 << 63:
        value -= 1 << 64
    if -4095 <= value <= -1:
        return -1, -value
    return value, 0


def expected(nrs, nr, args):
    if nr not in nrs:
        return -1, errno.ENOSYS
    a, b, c, d, e, f = args
    if a == TC_OP_NR:
        return as_libc_result(nr)
    if a == TC_OP_SUM6:
        return as_libc_result(b + c + d + e + f)
    assert a != TC_OP_SLEEP
    return as_libc_result(a + b)


def run(*cmd):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True)


def loaded(name):
    return Path("/sys/module", name, "initstate").exists()


def param(mod, name):
    return Path("/sys/module", mod, "parameters", name).read_text().strip()


def refcnt(mod):
    return int(Path("/sys/module", mod, "refcnt").read_text())


def free_range():
    first, last = (int(x) for x in param("usctm", "free").split("-"))
    return range(first, last + 1)


def nr_syscalls():
    """NR_syscalls of the guest kernel: numbers from it on never reach ni_syscall."""
    return int(param("usctm", "nr_syscalls"))


def installed_slots():
    return [int(x) for x in param("usctm", "slots").split()]


def client_nrs():
    text = param("usctm_test_client", "nrs")
    return [int(x) for x in text.split(",")] if text else []


def delete_module(name):
    """delete_module(2) with O_NONBLOCK, as rmmod does: 0 or errno."""
    ret = _libc.syscall(ctypes.c_long(176), ctypes.c_char_p(name.encode()),
                        ctypes.c_long(os.O_NONBLOCK))
    return 0 if ret == 0 else ctypes.get_errno()


def unload(name):
    if loaded(name):
        r = run("rmmod", name)
        assert r.returncode == 0, f"rmmod {name}: {r.stderr}"


@pytest.fixture
def usctm():
    """usctm loaded; unloaded (and checked to unload) afterwards."""
    assert not loaded("usctm"), "usctm already loaded"
    r = run("insmod", USCTM_KO)
    assert r.returncode == 0, r.stderr
    yield
    unload("usctm_test_client")
    unload("usctm")


@pytest.fixture
def load_client(usctm):
    """Factory: load the client with `count` slots, return its numbers."""

    def load(count=1):
        r = run("insmod", CLIENT_KO, f"count={count}")
        assert r.returncode == 0, r.stderr
        return client_nrs()

    yield load
    unload("usctm_test_client")


@pytest.fixture
def client(load_client):
    return load_client(1)


def test_method_and_free_range(usctm):
    assert param("usctm", "method") == "kprobe"  # Debian 6.1 has x64_sys_call
    free = free_range()
    assert 0 < free.start <= free.stop - 1 < nr_syscalls()
    assert installed_slots() == []
    assert refcnt("usctm") == 0


def test_parameters_cannot_be_set():
    for p in ("method=table", "slots=335", "free=1-2", "nr_syscalls=1"):
        r = run("insmod", USCTM_KO, p)
        assert r.returncode != 0, p
        assert not loaded("usctm")


def test_client_needs_usctm():
    assert not loaded("usctm")
    r = run("insmod", CLIENT_KO)
    assert r.returncode != 0
    assert "No such device or address" in r.stderr  # -ENXIO from symbol_get()
    assert not loaded("usctm_test_client")


def test_free_slots_answer_enosys_before_install(usctm):
    free = free_range()
    for nr in {free.start, free.stop - 1, random.choice(free)}:
        assert syscall(nr, 1, 2) == (-1, errno.ENOSYS), nr


def test_installed_number_calls_handler(client):
    (nr,) = client
    assert nr in free_range()
    assert installed_slots() == [nr]
    assert syscall(nr, 2, 3) == (5, 0)
    assert syscall(nr, TC_OP_NR) == (nr, 0)
    assert syscall(nr, TC_OP_SUM6, 1, 2, 3, 4, 5) == (15, 0)
    assert syscall(nr, 1 << 62, 1 << 62) == as_libc_result(1 << 63)
    assert syscall(nr, -22, 0) == (-1, errno.EINVAL)  # -errno reaches errno
    # The C caller (no libc errno translation differences).
    out = run(CALL, nr, 40, 2)
    assert out.returncode == 0 and out.stdout.strip() == "ret=42 errno=0", out
    # Kprobes jump-optimise an int3 probe shortly after registration unless it
    # has a post-handler; an optimised probe would ignore the ip change.
    time.sleep(1.5)
    assert syscall(nr, 7, 8) == (15, 0)
    kprobes = Path("/sys/kernel/debug/kprobes/list")
    if kprobes.exists():
        # Listed under an alias of __x64_sys_ni_syscall (__do_sys_ni_syscall),
        # at +0x4 after the ENDBR64 on IBT kernels.
        lines = [ln for ln in kprobes.read_text().splitlines()
                 if re.search(r"_sys_ni_syscall\+0x[04]\b", ln)]
        assert len(lines) == 1 and "[OPTIMIZED]" not in lines[0], lines


def test_usctm_refuses_unload_while_slot_installed(client):
    (nr,) = client
    # Two symbol_get() references (install, uninstall) + one per slot.
    assert refcnt("usctm") == 3
    r = run("rmmod", "usctm")
    assert r.returncode != 0
    assert delete_module("usctm") == errno.EWOULDBLOCK
    assert loaded("usctm")
    assert syscall(nr, 20, 22) == (42, 0)


def test_reference_per_slot(load_client):
    nrs = load_client(3)
    assert len(set(nrs)) == 3 and sorted(installed_slots()) == sorted(nrs)
    assert refcnt("usctm") == 2 + 3
    for nr in nrs:
        assert syscall(nr, TC_OP_NR) == (nr, 0)
    unload("usctm_test_client")
    assert refcnt("usctm") == 0 and installed_slots() == []


def test_all_slots_then_enospc(load_client):
    free = free_range()
    r = run("insmod", CLIENT_KO, f"count={len(free) + 1}")
    assert r.returncode != 0
    assert "No space left on device" in r.stderr
    assert not loaded("usctm_test_client")
    assert installed_slots() == [] and refcnt("usctm") == 0  # unwound
    nrs = load_client(len(free))
    assert sorted(nrs) == list(free)
    for nr in free:
        assert syscall(nr, TC_OP_NR) == (nr, 0)
    unload("usctm_test_client")
    for nr in free:
        assert syscall(nr, TC_OP_NR) == (-1, errno.ENOSYS)


def test_client_unload_restores_enosys_then_usctm_unloads(client):
    (nr,) = client
    assert syscall(nr, 1, 1) == (2, 0)
    unload("usctm_test_client")
    assert syscall(nr, 1, 1) == (-1, errno.ENOSYS)
    assert installed_slots() == [] and refcnt("usctm") == 0
    unload("usctm")
    assert not loaded("usctm")
    assert syscall(nr, 1, 1) == (-1, errno.ENOSYS)


def test_random_calls(load_client):
    nrs = set(load_client(4))
    free = free_range()
    rng = random.Random(0x75637473)
    hits = 0
    for _ in range(1000):
        nr = rng.choice(free)
        args = [rng.getrandbits(64) for _ in range(6)]
        if rng.random() < 0.2:
            args[0] = rng.choice((TC_OP_NR, TC_OP_SUM6))
        want = expected(nrs, nr, args)
        assert syscall(nr, *args) == want, (nr, args)
        hits += nr in nrs
    assert hits > 0
    assert syscall(nr_syscalls(), 1, 2) == (-1, errno.ENOSYS)


def test_unload_waits_for_running_handler(client):
    """rmmod of the client blocks in usctm_uninstall() until the call returns."""
    (nr,) = client
    sleep_ms = 2000
    proc = subprocess.Popen([str(CALL), str(nr), hex(TC_OP_SLEEP), str(sleep_ms)],
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.7)  # let it enter the handler
        assert proc.poll() is None
        t0 = time.monotonic()
        r = run("rmmod", "usctm_test_client")
        took = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.strip() == f"ret={TC_SLEPT} errno=0"
    assert took > 0.5, f"rmmod returned after {took:.2f} s, before the handler"
    assert syscall(nr, 1, 2) == (-1, errno.ENOSYS)


def test_calls_race_install_and_uninstall(usctm):
    """Client loads/unloads while a thread keeps calling every free number."""
    free = list(free_range())
    stop = threading.Event()
    bad = []
    counts = {"ok": 0, "enosys": 0}

    def hammer():
        while not stop.is_set():
            for nr in free:
                got = syscall(nr, TC_OP_NR)
                if got == (nr, 0):
                    counts["ok"] += 1
                elif got == (-1, errno.ENOSYS):
                    counts["enosys"] += 1
                else:
                    bad.append((nr, got))

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        for i in range(10):
            r = run("insmod", CLIENT_KO, f"count={1 + i % 4}")
            assert r.returncode == 0, r.stderr
            time.sleep(0.05)
            unload("usctm_test_client")
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert not bad, bad[:5]
    assert counts["ok"] > 0 and counts["enosys"] > 0, counts
    assert installed_slots() == [] and refcnt("usctm") == 0


def test_no_new_taint():
    tainted = int(Path("/proc/sys/kernel/tainted").read_text())
    allowed = (1 << 12) | (1 << 13)  # O (out-of-tree), E (unsigned)
    assert tainted & ~allowed == 0, hex(tainted)
    log = run("dmesg").stdout
    assert not re.search(r"WARNING:|BUG:|Call Trace|Oops", log)
