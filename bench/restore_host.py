#!/usr/bin/python3
"""bdsnap restore against dd, on the host, without the kernel module.

    /usr/bin/python3 bench/restore_host.py [--dir /dev/shm/bdsnap-rh] [--blocks 12297]
        [--image-mb 256] [--reps 7] [--kinds raw mixed compressible]

What bench.py's "Restore vs dd" does in the guest, on a crafted session
(tests/unit/storegen.py) so that a change to lib/ can be timed in seconds:
a complete session of --blocks distinct random 4 KiB blocks of an image of
--image-mb MiB, with a true end fingerprint (restore runs without --force).
Kinds of pre-images (share of random blocks, stored raw as the kernel stores
what zlib level 1 cannot shrink by an eighth; the others are text from
/usr/include, stored as zlib level 1 streams):
  raw           98 % random: the bench's fio session (its data blocks are
                stored raw, the file system's metadata compressed)
  mixed         50 % random
  compressible  all text: every record is a zlib stream
Each repetition puts the session's end content back on the saved blocks
(untimed), times `bdsnap restore <session> --to <image> -y`, then as many
4 KiB blocks written by `dd bs=4096 count=<blocks> conv=notrunc,fsync` onto
the same image: from a file of random bytes (dd), and from the image itself
(dd-self: what bench.py times, cheaper, since each block is read from and
written back to the same page).  They alternate, so all see the same page
cache and load.  The first restore of each kind is checked bit-exact.
Prints medians of wall and of CPU seconds (user + system, steadier on a busy
host) and the speed ratios restore / dd (dd seconds / restore seconds).
Keep --dir on tmpfs to compare with the guest's bench (its images live on
tmpfs); on a disk the fsync of scattered blocks weighs in as well.
"""

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "unit"))
sys.path.insert(0, str(REPO / "bench"))

import storegen as g  # noqa: E402
from bench import text_like  # noqa: E402

CLI = Path(os.environ.get("BDSNAP_CLI", REPO / "cli" / "bdsnap"))
BS = g.BS
RANDOM_SHARE = {"raw": 0.98, "mixed": 0.5, "compressible": 0.0}


def build(work, kind, nblocks, image_mb, keep, seed=1):
    """The image as the session left it, the session, and the sha256 of the saved blocks
    as they were before it (what a restore must give back)."""
    rnd = random.Random(seed)
    size = image_mb << 20
    blocks = sorted(rnd.sample(range(size // BS), nblocks))
    text = text_like(4 << 20)
    after = bytearray(os.urandom(size))
    store = work / ("store-" + kind)
    shutil.rmtree(store, ignore_errors=True)
    image = work / ("image-" + kind)
    s = g.Session(store, "loop0_20261207T100000.000000000Z", size, str(image))
    want = hashlib.sha256()
    for n in blocks:
        if rnd.random() < RANDOM_SHARE[kind]:
            pre, payload = os.urandom(BS), None
        else:
            at = rnd.randrange(len(text) - BS)
            pre = text[at:at + BS]
            payload = zlib.compress(pre, 1)
        s.add(g.record(n, pre, compress=payload is not None, payload=payload))
        want.update(pre)
    s.write(end=bytes(after))
    image.write_bytes(after)
    if keep:  # for profiling by hand: cp it over the image, then restore
        image.with_suffix(".end").write_bytes(after)
    ends = {n: bytes(after[n * BS:(n + 1) * BS]) for n in blocks}
    return image, s.dir, ends, want.hexdigest()


def put_back(image, ends):
    with open(image, "r+b") as f:
        for n, data in ends.items():
            f.seek(n * BS)
            f.write(data)


def saved_sha(image, ends):
    h = hashlib.sha256()
    with open(image, "rb") as f:
        for n in ends:
            f.seek(n * BS)
            h.update(f.read(BS))
    return h.hexdigest()


def timed(cmd):
    """Wall seconds, and CPU seconds (user + system): the second is steadier on a busy host."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="/dev/shm/bdsnap-restore-host")
    ap.add_argument("--blocks", type=int, default=12297)
    ap.add_argument("--image-mb", type=int, default=256)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--kinds", nargs="*", default=list(RANDOM_SHARE), choices=list(RANDOM_SHARE))
    ap.add_argument("--keep", action="store_true", help="leave --dir behind, with image-<kind>.end: the image as the session left it")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    work = Path(a.dir)
    work.mkdir(parents=True, exist_ok=True)
    source = work / "dd-source"
    source.write_bytes(os.urandom(a.blocks * BS))
    results = []
    try:
        for kind in a.kinds:
            image, sess, ends, want = build(work, kind, a.blocks, a.image_mb, a.keep)
            runs = {"restore": [], "dd": [], "dd-self": []}
            for rep in range(a.reps):
                put_back(image, ends)
                runs["restore"].append(timed([CLI, "restore", sess, "--to", image, "-y"]))
                if rep == 0 and saved_sha(image, ends) != want:
                    sys.exit(f"{kind}: restore is not bit-exact")
                for name, src in ("dd", source), ("dd-self", image):
                    runs[name].append(timed(["dd", f"if={src}", f"of={image}", f"bs={BS}",
                                             f"count={a.blocks}", "conv=notrunc,fsync",
                                             "status=none"]))
            x = {"kind": kind, "blocks": a.blocks, "log_bytes": (sess / "blocks").stat().st_size,
                 "runs": runs}
            for name, times in runs.items():
                x[name + "_s"] = statistics.median(t[0] for t in times)
                x[name + "_cpu_s"] = statistics.median(t[1] for t in times)
            for name in "dd", "dd-self":
                x[name + "_ratio"] = x[name + "_s"] / x["restore_s"]
                x[name + "_cpu_ratio"] = x[name + "_cpu_s"] / x["restore_cpu_s"]
            results.append(x)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    if a.json:
        print(json.dumps(results, indent=1))
        return
    print(f"medians of {a.reps} runs in {work}; ratio: restore speed / dd speed, wall (cpu)")
    print(f"{'kind':13} {'blocks':>6} {'log MiB':>7} {'restore s':>14} {'dd s':>14} "
          f"{'dd-self s':>14} {'ratio dd':>12} {'ratio dd-self':>13}")
    for x in results:
        cell = {n: f"{x[n + '_s']:.3f} ({x[n + '_cpu_s']:.3f})" for n in x["runs"]}
        ratio = {n: f"{x[n + '_ratio']:.2f} ({x[n + '_cpu_ratio']:.2f})" for n in ("dd", "dd-self")}
        print(f"{x['kind']:13} {x['blocks']:6} {x['log_bytes'] / 2**20:7.1f} "
              f"{cell['restore']:>14} {cell['dd']:>14} {cell['dd-self']:>14} "
              f"{ratio['dd']:>12} {ratio['dd-self']:>13}")

if __name__ == "__main__":
    main()
