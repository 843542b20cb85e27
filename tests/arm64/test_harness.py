"""The arm64 runner fails when it must: a failing scenario, a kernel warning in
the log, a crash, a hang, a new taint bit. Each guest case is one boot of the
arm64 guest (~7 s under TCG here); the summary cases boot nothing.

    /usr/bin/python3 -m pytest -p no:cacheprovider tests/arm64/test_harness.py
"""

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402


def _ready():
    if subprocess.run([str(run.DEPS), "--path"], capture_output=True).returncode:
        return "no arm64 cache: make deps-arm64"
    missing = [p for p in run.PRODUCTS if not (run.OUT / p).exists()]
    return f"not built: {missing}: make arm64" if missing else ""


guest = pytest.mark.skipif(bool(_ready()), reason=_ready() or "ready")


@guest
def test_failing_scenario_is_a_failure_and_the_kernel_stays_clean():
    res = run.run_guest("sh tests/arm64/guest.sh no_such_scenario", "harness-fail",
                        timeout=300, quiet=True)
    assert not res.ok and res.returncode == 1, res.reason
    verdicts = run.collect_verdicts(res, ["no_such_scenario"])
    assert [(n, ok) for n, ok, _ in verdicts] == [("arm64/no_such_scenario", False)]
    assert run.kernel_verdict(res)[1], res.reason  # a scenario failure is not a kernel one


@guest
def test_kernel_warning_and_new_taint_fail_the_run():
    # Taint bit 10 (C, staging driver): any bit other than O and E is a failure.
    res = run.run_guest("echo 'WARNING: CPU: 0 PID: 1 at fake.c:1 harness_selftest' >/dev/kmsg"
                        " && echo 1024 >/proc/sys/kernel/tainted",
                        "harness-warn", timeout=300, quiet=True)
    assert res.returncode == 0
    assert not res.ok and "kernel log: WARNING" in res.reason, res.reason
    assert "tainted C" in res.reason, res.reason
    assert not run.kernel_verdict(res)[1]


@guest
def test_guest_crash_fails_the_run():
    res = run.run_guest("echo c >/proc/sysrq-trigger", "harness-crash", timeout=300, quiet=True)
    assert not res.ok and res.returncode is None, res.reason
    assert "crashed" in res.reason and "Kernel panic" in res.reason, res.reason
    assert not run.kernel_verdict(res)[1]


@guest
def test_hang_is_killed_at_the_timeout():
    res = run.run_guest("sleep 600", "harness-hang", timeout=25, quiet=True)
    assert not res.ok and "hung" in res.reason, res.reason
    assert res.duration < 45
    assert not run.kernel_verdict(res)[1]


def _res(tmp_path, **kw):
    base = dict(ok=True, reason="ok", returncode=0, log_path=tmp_path / "log",
                results=tmp_path, duration=1.0)
    base.update(kw)
    return run.GuestResult(**base)


def test_summary_counts_and_exit_status(tmp_path, capsys):
    (tmp_path / "verdicts").write_text("PASS arm64/a\nFAIL arm64/b exited 1\n")
    res = _res(tmp_path, ok=False, reason="command exited 1", returncode=1)
    verdicts = run.collect_verdicts(res, ["a", "b", "c"])
    assert [(n, ok) for n, ok, _ in verdicts] == [
        ("arm64/a", True), ("arm64/b", False), ("arm64/c", False)]
    assert run.summarize(verdicts + [run.kernel_verdict(res)]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "2 passed, 2 failed"
    assert run.summarize([("arm64/a", True, "")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 passed, 0 failed"


def test_kernel_problem_fails_even_when_every_scenario_passed(tmp_path):
    res = _res(tmp_path, ok=False, reason="kernel log: WARNING: x", returncode=0,
               problems=["WARNING: x"])
    assert not run.kernel_verdict(res)[1]
    res = _res(tmp_path, ok=False, reason="command exited 1; kernel log: Oops", returncode=1,
               problems=["Oops"])
    assert not run.kernel_verdict(res)[1]


def test_scan_matches_arm64_reports():
    log = """[    1.0] Kernel command line: console=ttyAMA0 oops=panic panic_on_warn=1
[    2.0] Unable to handle kernel NULL pointer dereference at virtual address 0000000000000000
[    2.1] Internal error: Oops: 0000000096000005 [#1] SMP
[    2.2] Call trace:
[    3.0] ------------[ cut here ]------------
[    3.1] WARNING: CPU: 0 PID: 1 at fs/x.c:1 f+0x1/0x2
[    4.0] bdsnap: session started
"""
    found = run.scan(log)
    assert len(found) == 4 and not any("command line" in f for f in found), found
