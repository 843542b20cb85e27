#!/usr/bin/python3
"""Where does a bdsnap configuration spend its time? ftrace function_graph around one bench run.

In the guest (perf does not work under TCG):
    /usr/bin/python3 tests/vm/run.py --name bench-profile --mem 2048 -- \\
        /usr/bin/python3 bench/profile.py run --configs v2-ordered --jobs rand-first
On the host, or in the guest right after:
    /usr/bin/python3 bench/profile.py summary build/vm-results/bench-profile/trace.txt

`run` traces the two bdsnap workers (bdsnap_bio_read_work: gather, read the
old blocks, hand them to the store, wait; bdsnap_store_work: compress, append,
fsync) with function_graph, hooking only the functions in FUNCS, runs bench/bench.py with the given
arguments (profile "smoke" sizes unless --profile is given), and leaves
trace.txt (saved by bench.py before it unloads the module: module symbols
resolve only while it is loaded), vmstat deltas and bench.json in
$BDSNAP_RESULTS. `summary` adds up
the time per function and nesting depth: the first column is inclusive time.
"""

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRACING = Path("/sys/kernel/tracing")
ROOTS = ["bdsnap_bio_read_work", "bdsnap_store_work"]
# Only these are hooked (tracing every function costs 10x under TCG); the bio
# worker's gather/save/release are inlined into bdsnap_bio_read_work.
FUNCS = ROOTS + ["bdsnap_store_drain", "bdsnap_store_write_batch", "bdsnap_deflate",
                 "bdsnap_store_add", "bdsnap_store_wait_durable", "bdsnap_blockmap_set",
                 "bdsnap_store_page", "bdsnap_store_recycle", "alloc_pages", "__free_pages",
                 "crc32_le", "vfs_iter_write", "vfs_fsync_range", "ext4_sync_file",
                 "file_write_and_wait_range", "jbd2_complete_transaction",
                 "jbd2_log_wait_commit", "ext4_buffered_write_iter", "wait_for_completion",
                 "submit_bio", "submit_bio_noacct", "bio_alloc_bioset", "schedule"]


def vmstat():
    return {k: int(v) for k, v in (l.split() for l in Path("/proc/vmstat").read_text().splitlines())}


def run(args):
    import os
    out = Path(os.environ.get("BDSNAP_RESULTS", "."))
    if not (TRACING / "trace").exists():
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACING)], check=True)
    w = lambda name, value: (TRACING / name).write_text(value)
    w("tracing_on", "0")
    w("current_tracer", "nop")
    w("trace", "")
    w("buffer_size_kb", "65536")
    w("max_graph_depth", "0")
    if "--profile" not in args:
        args = ["--profile", "smoke", *args]
    # the module's functions exist only once bench.py has loaded it: it arms the tracer
    env = dict(os.environ, BENCH_TRACE_ROOTS=" ".join(ROOTS), BENCH_TRACE_FUNCS=" ".join(FUNCS))
    before = vmstat()
    res = subprocess.run(["/usr/bin/python3", str(REPO / "bench" / "bench.py"), "--out",
                          str(out), *args], env=env)
    after = vmstat()
    w("tracing_on", "0")
    w("current_tracer", "nop")
    delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    (out / "vmstat-delta.txt").write_text("".join(f"{k} {v}\n" for k, v in sorted(delta.items())))
    print(summary(out / "trace.txt"))
    return res.returncode


LINE = re.compile(r"^\s*\d+\)\s+(?:[!#*@$+]\s*)?(?:([\d.]+) us\s+)?\|(\s*)(.*)$")


def summary(path, top=40):
    total = defaultdict(float)
    calls = defaultdict(int)
    stack = []
    for line in Path(path).read_text(errors="replace").splitlines():
        m = LINE.match(line)
        if not m:
            continue
        dur, indent, text = m.groups()
        depth = len(indent) // 2
        text = text.strip()
        if text.endswith("{"):
            stack.append((depth, re.sub(r"\s*\[\w+\]|\(\).*", "", text.rstrip("{ "))))
            continue
        if text.startswith("}"):
            name = re.search(r"/\*\s*(\S+)", text)
            if stack:
                d, n = stack.pop()
                name = n if not name else name.group(1)
                depth = d
            elif name:
                name = name.group(1)
            else:
                continue
        else:
            name = re.sub(r"\s*\[\w+\]|\(\).*", "", text.rstrip(";"))
        if dur:
            total[(depth, name)] += float(dur)
            calls[(depth, name)] += 1
    rows = sorted(total.items(), key=lambda kv: -kv[1])[:top]
    lines = [f"{'ms total':>10} {'calls':>7} {'us/call':>9}  depth function"]
    for (depth, name), us in rows:
        n = calls[(depth, name)]
        lines.append(f"{us / 1000:10.1f} {n:7d} {us / n:9.1f}  {depth:5d} {'  ' * depth}{name}")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "run":
        sys.exit(run(sys.argv[2:]))
    if len(sys.argv) == 3 and sys.argv[1] == "summary":
        print(summary(sys.argv[2]))
        sys.exit(0)
    sys.exit(__doc__)
