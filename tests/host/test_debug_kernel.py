"""The debug kernel's checkers must fail a guest run (tests/vm/run.py --kernel debug).

Each test boots the cached debug kernel (tests/vm/debug_kernel.sh; ~20 s to
boot under TCG, plus ~30 s of kmemleak scanning at the end) and loads one
throwaway module from tests/host/harness_modules with a deliberate bug:
a use-after-free (KASAN), a lock-order inversion (lockdep), a sleeping
allocation under a spinlock (DEBUG_ATOMIC_SLEEP), a leak (kmemleak), a list
corruption (DEBUG_LIST). The run must fail and name the checker. A clean module
must pass, with the guest features the scenarios rely on working.

Skipped when no debug kernel is cached (build it with `make debug-kernel`).
Run on the host:
    /usr/bin/python3 -m pytest -p no:cacheprovider -v tests/host/test_debug_kernel.py
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODS = REPO / "tests/host/harness_modules"
RUN_PY = REPO / "tests/vm/run.py"
sys.path.insert(0, str(RUN_PY.parent))
import run  # noqa: E402  (tests/vm/run.py)

HAVE_DEBUG_KERNEL = subprocess.run(
    [str(run.DEBUG_KERNEL_SH), "--path"], capture_output=True).returncode == 0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                       reason="qemu-system-x86_64 not installed"),
    pytest.mark.skipif(not HAVE_DEBUG_KERNEL,
                       reason="no cached debug kernel: make debug-kernel"),
]

BUGGY = ("uaf", "lockinv", "atomicsleep", "leak", "listcorrupt")
# Built out of the work tree: harness_modules/ keeps its Debian-built .ko files.
OUT = run.BUILD / "debug-harness"


@pytest.fixture(scope="module")
def dk():
    return run.debug_kernel()


@pytest.fixture(scope="module")
def mods(dk):
    """The harness modules built against the debug tree, without a warning."""
    OUT.mkdir(parents=True, exist_ok=True)
    for src in [*MODS.glob("*.c"), MODS / "Makefile"]:
        dst = OUT / src.name
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            shutil.copy(src, dst)
    # Kbuild reads only the obj-m part of the Makefile: kernel.mk is not needed.
    p = subprocess.run(["make", "-C", str(dk.tree), f"M={OUT}", "KCFLAGS=-g", "modules"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "warning" not in (p.stdout + p.stderr).lower(), p.stdout + p.stderr
    for m in ("clean", *BUGGY):
        assert (OUT / f"{m}.ko").exists()
    return OUT


def guest(cmd, name, **kw):
    kw.setdefault("timeout", 300)
    # ko_root: these tests do not need the project's modules built.
    return run.run_guest(cmd, name=f"debug-{name}", kernel="debug", quiet=True,
                         ko_root=OUT, **kw)


def test_clean_module_passes_and_guest_works(dk, mods):
    """No false alarm: boot, modprobe (built-in and =m), ext4 on loop, clean.ko."""
    script = f"""
        set -ex
        test "$(uname -r)" = {dk.release}
        test "$BDSNAP_KERNEL" = debug && test "$BDSNAP_KO_ROOT" = {OUT}
        zcat /proc/config.gz | grep -qx CONFIG_KASAN=y
        test -e /sys/kernel/debug/kmemleak
        insmod {mods}/clean.ko && rmmod clean
        modprobe loop && modprobe ext4 && modprobe dm_snapshot
        modprobe brd rd_nr=1 rd_size=4096 && test -b /dev/ram0 && rmmod brd
        mkdir -p /snapshot && echo data > /snapshot/file
        truncate -s 32M /tmp/img && mkfs.ext4 -q /tmp/img
        mkdir -p /mnt/t && mount -o loop /tmp/img /mnt/t && echo x > /mnt/t/f && umount /mnt/t
    """
    r = guest(script, "clean")
    assert r.ok, r.reason
    assert not r.problems
    assert (r.results_dir / "kmemleak.txt").read_text() == ""
    assert (r.results_dir / "checkers.txt").read_text().strip() == "debug_locks=1"
    assert "clean: loaded" in r.log_path.read_text()


def test_use_after_free_is_reported(mods):
    r = guest(f"insmod {mods}/uaf.ko", "uaf")
    assert not r.ok, r.reason
    assert "BUG: KASAN: use-after-free in harness_uaf_init" in r.reason
    assert "tainted B" in r.reason  # KASAN taints "bad page"


def test_lock_inversion_is_reported(mods):
    r = guest(f"insmod {mods}/lockinv.ko", "lockinv")
    assert not r.ok and r.returncode == 0, r.reason
    assert "possible circular locking dependency" in r.reason
    log = r.log_path.read_text()
    assert "harness_lock_a" in log and "harness_lock_b" in log


def test_sleep_in_atomic_is_reported(mods):
    r = guest(f"insmod {mods}/atomicsleep.ko", "atomicsleep")
    assert not r.ok and r.returncode == 0, r.reason
    assert "sleeping function called from invalid context" in r.reason
    assert "harness_atomicsleep_init" in r.log_path.read_text()


def test_leak_is_reported(mods):
    """Leaked, then unloaded (as every scenario does): the report still names it."""
    r = guest(f"insmod {mods}/leak.ko && sleep 3 && rmmod leak", "leak")
    assert not r.ok and r.returncode == 0, r.reason
    assert "suspected memory leak" in r.reason
    leaks = (r.results_dir / "kmemleak.txt").read_text()
    assert "unreferenced object" in leaks and "(size 128)" in leaks
    named = (r.results_dir / "kmemleak.sym.txt").read_text()
    assert re.search(r"0x[0-9a-f]{16} = harness_leak_alloc\+0x[0-9a-f]+ \[leak\]", named), named
    assert any("first allocated in harness_leak_alloc+0x" in p for p in r.problems), r.problems


def test_list_corruption_is_reported(mods):
    r = guest(f"insmod {mods}/listcorrupt.ko", "listcorrupt")
    assert not r.ok and r.crashed, r.reason  # a WARN: panic_on_warn
    assert "list_add corruption" in r.reason
