"""The guest runner (tests/vm/run.py) must be able to fail.

Each test boots a guest (~5-15 s under TCG) and checks that run.py reports
what happened: failure for a WARN, an oops, a hung or spinning module, a
hang past the timeout, a new taint bit and a failing command; success for a
well-behaved module and for the features other tests rely on (modprobe,
ext4 on loop, /snapshot, virtio disks, expected crashes, live output).

Run on the host: /usr/bin/python3 -m pytest tests/host/test_harness.py
"""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODS = REPO / "tests/host/harness_modules"
RUN_PY = REPO / "tests/vm/run.py"
sys.path.insert(0, str(RUN_PY.parent))
import run  # noqa: E402  (tests/vm/run.py)

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                                reason="qemu-system-x86_64 not installed")

REL = MODS.relative_to(REPO)  # the guest's cwd is the repository root


@pytest.fixture(scope="module", autouse=True)
def modules():
    """Build the throwaway modules once; they must build without a warning."""
    p = subprocess.run(["make", "-C", str(MODS)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "warning" not in (p.stdout + p.stderr).lower(), p.stdout + p.stderr
    for m in ("warn", "oops", "hang", "clean"):
        assert (MODS / f"{m}.ko").exists()


def guest(cmd, name, **kw):
    kw.setdefault("timeout", 120)
    return run.run_guest(cmd, name=f"harness-{name}", quiet=True, **kw)


def test_clean_module_and_guest_features():
    """A quiet module passes; modprobe, ext4 on loop, /snapshot and the env work."""
    script = f"""
        set -ex
        test "$BDSNAP_GUEST" = 1 && test "$BDSNAP_RESULTS" = /results
        test "$(pwd)" = {REPO} && test "$HOME" = /root
        insmod {REL}/clean.ko && rmmod clean
        modprobe loop && test -d /sys/module/loop
        mkdir -p /snapshot && echo data > /snapshot/file && grep -q data /snapshot/file
        truncate -s 32M /tmp/img && mkfs.ext4 -q /tmp/img
        mkdir -p /mnt/t && mount -o loop /tmp/img /mnt/t && echo x > /mnt/t/f && umount /mnt/t
        echo from-guest > /results/note
    """
    r = guest(script, "clean")
    assert r.ok, r.reason
    assert r.returncode == 0 and not r.problems
    assert (r.results_dir / "note").read_text() == "from-guest\n"
    assert (r.results_dir / "dmesg.txt").exists()
    log = r.log_path.read_text()
    assert "clean: loaded" in log and "clean: unloaded" in log
    assert r.taint_end & ~run.TAINT_ALLOWED == 0 and r.taint_end & (1 << 12)  # O


def test_warn_crashes_guest():
    r = guest(f"insmod {REL}/warn.ko", "warn")
    assert not r.ok and r.crashed, r.reason
    assert "WARNING:" in r.reason


def test_warn_without_panic_is_caught_in_log_and_taint():
    """With panic_on_warn=0 the command succeeds; log scan and taint must catch it."""
    r = guest(f"insmod {REL}/warn.ko", "warn-nopanic", append="panic_on_warn=0")
    assert not r.ok and not r.crashed and r.returncode == 0, r.reason
    assert "kernel log: WARNING:" in r.reason
    assert "tainted W (512)" in r.reason


def test_oops_crashes_guest():
    r = guest(f"insmod {REL}/oops.ko", "oops")
    assert not r.ok and r.crashed, r.reason
    assert "NULL pointer dereference" in r.reason


def test_hung_task_is_caught():
    r = guest(f"insmod {REL}/hang.ko", "hang", timeout=90,
              append="sysctl.kernel.hung_task_timeout_secs=5")
    assert not r.ok and r.crashed, r.reason
    assert "blocked for more than" in r.reason


def test_soft_lockup_is_caught():
    r = guest(f"insmod {REL}/hang.ko spin=1", "spin", timeout=90, append="watchdog_thresh=2")
    assert not r.ok and r.crashed, r.reason
    assert "soft lockup" in r.reason


def test_timeout_kills_guest():
    t0 = time.monotonic()
    r = guest("sleep 1000", "timeout", timeout=15)
    assert not r.ok and r.timed_out and r.returncode is None, r.reason
    assert "timeout" in r.reason
    assert time.monotonic() - t0 < 30


def test_new_taint_bit_fails():
    r = guest("echo 64 > /proc/sys/kernel/tainted", "taint")  # 64 = U
    assert not r.ok and r.returncode == 0, r.reason
    assert "tainted U (64)" in r.reason


def test_cli_streams_output_and_reports_exit_status():
    """Output arrives while the guest still runs; CMD's status is the CLI's."""
    p = subprocess.Popen(
        [sys.executable, str(RUN_PY), "--name", "harness-cli", "--timeout", "120",
         "--", "echo first-line; sleep 3; echo second-line; exit 3"],
        stdout=subprocess.PIPE, text=True)
    first = p.stdout.readline()
    assert first == "first-line\n"
    assert p.poll() is None, "output was not streamed live"
    rest = p.stdout.read()
    assert p.wait() == 3
    assert rest.startswith("second-line\n")
    assert "FAIL: command exited 3" in rest


def test_expect_crash_keeps_disk_writes(tmp_path):
    """--expect-crash: a panic is success; data flushed to a virtio disk survives."""
    disks = [tmp_path / "a.img", tmp_path / "b.img"]
    for d in disks:
        d.write_bytes(bytes(1 << 20))
    script = ("printf disk-a | dd of=/dev/vda conv=fsync 2>/dev/null && "
              "printf disk-b | dd of=/dev/vdb conv=fsync 2>/dev/null && "
              "echo c > /proc/sysrq-trigger; sleep 10")
    r = guest(script, "crash", disks=disks, expect_crash=True)
    assert r.ok and r.crashed, r.reason
    assert disks[0].read_bytes()[:6] == b"disk-a"
    assert disks[1].read_bytes()[:6] == b"disk-b"


def test_expect_crash_fails_without_crash():
    r = guest("true", "nocrash", expect_crash=True)
    assert not r.ok and not r.crashed and r.returncode == 0
    assert "expected a crash" in r.reason
