"""tests/vm/run.py with another root (--root) booted by its systemd (--systemd), as
tests/packages/ uses it: the command runs as a service after sysinit.target, and
the runner's verdict is the same as with the host's root (exit status, results
share, kernel-log scan). One boot of the cached trixie root (~45 s under TCG);
the root is made first when it is not cached yet (tests/vm/kernel_root.sh).

Run on the host: /usr/bin/python3 -m pytest tests/host/test_harness_root.py
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests/vm"))
import run  # noqa: E402  (tests/vm/run.py)

RELEASE = "trixie"


def cached_root():
    """The root, made now or waited for (make test makes it in the background)."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 not installed")
    subprocess.run([str(run.KERNEL_ROOT_SH), RELEASE], check=True, stdout=subprocess.DEVNULL)
    return run.root_kernel(RELEASE).root


def test_systemd_needs_another_root():
    with pytest.raises(ValueError):
        run.run_guest("true", name="harness-systemd-noroot", systemd=True)


def test_root_must_be_a_root(tmp_path):
    with pytest.raises(FileNotFoundError):
        run.run_guest("true", name="harness-notaroot", root=tmp_path)


def test_systemd_root_runs_the_command_and_keeps_the_checks():
    """PID 1 is the root's systemd, the command runs in / of that root, its exit
    status and a WARNING: it puts in the kernel log both fail the run."""
    root = cached_root()
    script = """
        test "$(cat /proc/1/comm)" = systemd && test "$(pwd)" = / && test -e /etc/debian_version
        echo from-guest > /results/note
        echo "WARNING: made by the harness test" > /dev/kmsg
        exit 3
    """
    r = run.run_guest(script, name="harness-systemd", kernel=RELEASE, root=root, systemd=True,
                      quiet=True, timeout=300)
    assert not r.ok and not r.crashed and r.returncode == 3, r.reason
    assert "command exited 3" in r.reason and "kernel log: WARNING: made by" in r.reason
    assert (r.results_dir / "note").read_text() == "from-guest\n"
