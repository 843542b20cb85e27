#!/usr/bin/python3
"""Two or more builds of the modules in one guest boot: bench.py with each in turn, medians.

    /usr/bin/python3 tests/vm/run.py --name ab --mem 3072 --timeout 3000 -- \\
        /usr/bin/python3 bench/ab.py --ko base=/path/to/old/tree --ko new=$PWD --rounds 3 \\
        -- --profile full --configs v2 --jobs seq-first rand-first

Each --ko LABEL=DIR is a directory as BDSNAP_KO_ROOT takes it (module/bdsnap.ko,
singlefile_fs/singlefilefs.ko, built for the guest's kernel). Only numbers of one boot
compare (bench/README.md), so the builds alternate within it: round r runs them in
order, reversed on odd rounds (A B, B A, A B ...), so that a drift over the boot
hits each alike. Every run is one bench.py --reps 1 --jobs-only with the arguments
after `--`, into $BDSNAP_RESULTS/<label>-<round>/; the table gives per
configuration and job the median MB/s of each build, its spread, and its ratio to the
first build.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ko", action="append", required=True, metavar="LABEL=DIR",
                    help="a build to compare (repeat; the first is the reference)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=os.environ.get("BDSNAP_RESULTS", "."))
    ap.add_argument("bench_args", nargs=argparse.REMAINDER,
                    help="-- then arguments for bench.py")
    a = ap.parse_args(argv)
    builds = [kv.split("=", 1) for kv in a.ko]
    if any(len(b) != 2 or not (Path(b[1]) / "module" / "bdsnap.ko").is_file() for b in builds):
        ap.error("--ko wants LABEL=DIR with DIR/module/bdsnap.ko")
    args = [x for x in a.bench_args if x != "--"]
    bw = defaultdict(list)  # (config, job, label): MB/s of each round
    for rnd in range(a.rounds):
        for label, ko in builds if rnd % 2 == 0 else builds[::-1]:
            out = Path(a.out) / f"{label}-{rnd}"
            print(f"== round {rnd}: {label} ({ko})", flush=True)
            res = subprocess.run([sys.executable, str(BENCH / "bench.py"), "--reps", "1",
                                  "--jobs-only", "--out", str(out), *args],
                                 env=dict(os.environ, BDSNAP_KO_ROOT=ko))
            if res.returncode:
                sys.exit(f"ab.py: bench.py with {label} exited {res.returncode}")
            for row in json.loads((out / "bench.json").read_text())["runs"]:
                bw[(row["config"], row["job"], label)].append(row["bw_bytes"] / 1e6)
    labels = [label for label, _ in builds]
    print(f"\n{'config':12} {'job':16}" + "".join(f" {l:>24}" for l in labels))
    for cfg, job in dict.fromkeys((c, j) for c, j, _ in bw):
        ref = statistics.median(bw[(cfg, job, labels[0])])
        cells = []
        for label in labels:
            v = bw[(cfg, job, label)]
            med = statistics.median(v)
            cells.append(f"{med:7.1f} ({min(v):.1f}-{max(v):.1f}) {med / ref:4.2f}")
        print(f"{cfg:12} {job:16}" + "".join(f" {c:>24}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
