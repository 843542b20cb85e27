#!/usr/bin/python3
"""Run the guest scenarios on every supported kernel, two guests at a time.

    /usr/bin/python3 tests/kernels.py [--all] [--only KERNEL[,KERNEL]] [--timeout S]

Kernels (docs/kernels.md): debian, the host's own Debian kernel (6.1 on
Debian 12, 6.12 on Debian 13), and the kernels of the other supported
releases from their cached roots: bookworm (6.1) or trixie (6.12), whichever
the host is not, and sid (7.x); each with modules built for it by
tests/vm/run.py. The guests run in two lanes, one per core (guests are
single-CPU emulations, so two at once use the machine fully):

    lane 1: debian, every scenario
    lane 2: the other stable release, every scenario but the benchmark's
            smoke run (a check that `make bench` still works, not of the
            kernel); then sid, the SID_SUBSET (with --all: every scenario)

Before the lanes start, the other releases' roots are made (or found cached)
by tests/vm/kernel_root.sh and the modules are built for each kernel, so a
build error is reported once, up front. While the lanes run, a progress line
is printed every minute; at the end, one line per kernel: how many scenarios
ran and passed. The exit status is 0 only if every guest passed its command
and the runner's checks (no WARNING/BUG/oops, no hang, no new taint).
"""

import argparse
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "vm"))
import run  # noqa: E402

PYTEST = "/usr/bin/python3 -m pytest -p no:cacheprovider -v --durations=10"

# On 7.x in `make test`: the round trips and boundaries most likely to differ
# between kernels (mount paths, block layer, probes, syscall dispatch, the CLI).
SID_SUBSET = " or ".join([
    "test_ext4.py and (test_roundtrip or test_mount_time_writes or test_partition)",
    "test_filesystems.py", "test_lifecycle.py", "test_singlefile_fs.py",
    "test_usctm.py", "test_syscalls.py", "test_cli.py", "test_restore_chain.py",
    "test_teardown.py",
])


class Job:
    """One guest: a kernel and the scenarios it runs."""

    def __init__(self, kernel, select=None):
        self.kernel = kernel
        self.select = select
        self.name = f"scenarios-{kernel}"
        self.result = None
        self.release = ""
        self.counts = {}

    @property
    def command(self):
        sel = f" -k {subprocess.list2cmdline([self.select])}" if self.select else ""
        return f"{PYTEST}{sel} tests/scenarios"

    def outputs(self):
        return sorted((run.BUILD / "vm-logs").glob(f"{self.name}-*.out"))

    def progress(self):
        outs = self.outputs()
        text = outs[-1].read_text(errors="replace") if outs else ""
        return len(re.findall(r" (PASSED|FAILED|ERROR)\s", text))


def summarize(job):
    text = job.result.output_path.read_text(errors="replace") if job.result.output_path else ""
    last = [ln for ln in text.splitlines() if re.search(r"=+ .*(passed|failed|error).* in ", ln)]
    for word in ("passed", "failed", "error", "skipped", "deselected"):
        m = re.search(rf"(\d+) {word}", last[-1]) if last else None
        job.counts[word] = int(m.group(1)) if m else 0
    m = re.search(r"^bdsnap-vm: guest kernel (\S+)", text, re.M)
    job.release = m.group(1) if m else "?"


def lane(jobs, timeout):
    for job in jobs:
        job.result = run.run_guest(f"echo \"bdsnap-vm: guest kernel $(uname -r)\"; {job.command}",
                                   name=job.name, timeout=timeout, kernel=job.kernel, quiet=True)
        summarize(job)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--all", action="store_true", help="every scenario on sid too")
    ap.add_argument("--only", default="", help="comma-separated kernels (default: all three)")
    ap.add_argument("--timeout", type=int, default=3600, help="per guest, seconds")
    a = ap.parse_args(argv)
    host = run.host_release()
    others = [k for k in run.ROOT_KERNELS if k != host]
    wanted = [k for k in a.only.split(",") if k] or ["debian", *others]
    bad = [k for k in wanted if k not in ("debian", *run.ROOT_KERNELS)]
    if bad:
        sys.exit(f"kernels.py: unknown kernel {bad[0]}")

    t0 = time.monotonic()
    for k in wanted:
        if k in run.ROOT_KERNELS:
            subprocess.run([str(run.KERNEL_ROOT_SH), k], check=True, stdout=subprocess.DEVNULL)
            run.build_modules(k)
    subsets = {} if a.all else {"bookworm": "not test_bench_smoke",
                                "trixie": "not test_bench_smoke", "sid": SID_SUBSET}
    lanes = [[Job("debian")] if "debian" in wanted else [],
             [Job(k, subsets.get(k)) for k in run.ROOT_KERNELS if k in wanted]]
    jobs = [j for ln in lanes for j in ln]
    threads = [threading.Thread(target=lane, args=(ln, a.timeout)) for ln in lanes if ln]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(60)
        done = ", ".join(f"{j.kernel} {j.progress()}" for j in jobs)
        print(f"kernels.py: {time.monotonic() - t0:.0f} s: scenarios done: {done}", flush=True)

    ok = True
    print("kernels.py: results")
    for j in jobs:
        c, r = j.counts, j.result
        ran = c["passed"] + c["failed"] + c["error"]
        print(f"  {j.kernel:7} {j.release:24} {ran:4} scenarios ran, {c['passed']:4} passed, "
              f"{c['failed']} failed, {c['error']} errors, {c['skipped']} skipped "
              f"[{r.duration:.0f} s] {'PASS' if r.ok else 'FAIL: ' + r.reason}")
        if not r.ok:
            ok = False
            text = r.output_path.read_text(errors="replace") if r.output_path else ""
            for ln in [ln for ln in text.splitlines() if ln.startswith(("FAILED", "ERROR"))]:
                print(f"    {ln}")
            print(f"    guest output: {r.output_path}, kernel log: {r.log_path}")
    print(f"kernels.py: {'PASS' if ok else 'FAIL'} in {time.monotonic() - t0:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
