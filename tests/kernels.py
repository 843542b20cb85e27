#!/usr/bin/python3
"""Run the guest scenarios on every supported kernel, two guests at a time.

    /usr/bin/python3 tests/kernels.py [--all] [--only KERNEL[,KERNEL]] [--timeout S]

Kernels (docs/kernels.md): debian, the host's own Debian kernel (6.1 on
Debian 12, 6.12 on Debian 13), and the kernels of the other supported
releases from their cached roots: bookworm (6.1) or trixie (6.12), whichever
the host is not, and sid (7.x); each with modules built for it by
tests/vm/run.py. Every scenario runs on each kernel, but for the benchmark's
smoke run (a check that `make bench` still works, not of the kernel: on the
host's kernel only, unless --all). The guests are single-CPU emulations, so
two workers take them from one queue, one per core; sid's scenarios are cut
in two halves so that both cores stay busy to the end:

    debian (all) | other stable release | sid, first half | sid, second half

Before the guests start, the other releases' roots are made (or found cached)
by tests/vm/kernel_root.sh and the modules are built for each kernel, so a
build error is reported once, up front. While they run, a progress line is
printed every minute; at the end, one line per kernel: how many scenarios ran
and passed. The exit status is 0 only if every guest passed its command and
the runner's checks (no WARNING/BUG/oops, no hang, no new taint).
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
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
# sid's two halves, of about equal duration on 6.1 (by test file).
FIRST_HALF = ("test_ext4.py", "test_faults.py", "test_filesystems.py", "test_lifecycle.py",
              "test_hostile.py", "test_badinput.py", "test_cli.py")


class Job:
    """One guest: a kernel and the scenario files it runs."""

    def __init__(self, kernel, files, part=""):
        self.kernel = kernel
        self.files = files
        self.name = f"scenarios-{kernel}{part}"
        self.result = None
        self.release = ""
        self.counts = {}

    @property
    def command(self):
        return f"{PYTEST} " + " ".join(f"tests/scenarios/{f}" for f in self.files)

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


def worker(queue, lock, timeout):
    while True:
        with lock:
            if not queue:
                return
            job = queue.pop(0)
        job.result = run.run_guest(f"echo \"bdsnap-vm: guest kernel $(uname -r)\"; {job.command}",
                                   name=job.name, timeout=timeout, kernel=job.kernel, quiet=True)
        summarize(job)


def plan(kernels, everything):
    """The jobs, longest first."""
    files = sorted(p.name for p in SCENARIOS.glob("test_*.py"))
    no_bench = [f for f in files if f != "test_bench_smoke.py"]
    jobs = []
    for k in kernels:
        mine = files if everything or k == "debian" else no_bench
        if k == "sid":
            jobs.append(Job(k, [f for f in mine if f in FIRST_HALF], "-1"))
            jobs.append(Job(k, [f for f in mine if f not in FIRST_HALF], "-2"))
        else:
            jobs.append(Job(k, mine))
    return jobs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--all", action="store_true",
                    help="the benchmark's smoke run on every kernel too")
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
    jobs = plan(wanted, a.all)
    queue, lock = list(jobs), threading.Lock()
    threads = [threading.Thread(target=worker, args=(queue, lock, a.timeout)) for _ in range(2)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        deadline = time.monotonic() + 60
        for t in threads:
            t.join(max(0, deadline - time.monotonic()))
        done = ", ".join(f"{j.name.removeprefix('scenarios-')} {j.progress()}" for j in jobs)
        print(f"kernels.py: {time.monotonic() - t0:.0f} s: scenarios done: {done}", flush=True)

    ok = True
    print("kernels.py: results")
    for k in wanted:
        mine = [j for j in jobs if j.kernel == k]
        c = {w: sum(j.counts[w] for j in mine) for w in mine[0].counts}
        ran = c["passed"] + c["failed"] + c["error"]
        good = all(j.result.ok for j in mine)
        print(f"  {k:8} {mine[0].release:24} {ran:4} scenarios ran, {c['passed']:4} passed, "
              f"{c['failed']} failed, {c['error']} errors, {c['skipped']} skipped "
              f"[{sum(j.result.duration for j in mine):.0f} s] {'PASS' if good else 'FAIL'}")
        for j in mine:
            r = j.result
            if r.ok:
                continue
            ok = False
            print(f"    {j.name}: {r.reason}")
            text = r.output_path.read_text(errors="replace") if r.output_path else ""
            for ln in [ln for ln in text.splitlines() if ln.startswith(("FAILED", "ERROR"))]:
                print(f"    {ln}")
            print(f"    guest output: {r.output_path}, kernel log: {r.log_path}")
    print(f"kernels.py: {'PASS' if ok else 'FAIL'} in {time.monotonic() - t0:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
