#!/usr/bin/python3
"""Seed corpus for fuzz_store: valid (and a few near-valid) session directories.

Each seed is one fuzzer input: [u16 LE meta length][meta][blocks]
(tests/fuzz/fuzz_store.c).  The sessions come from tests/unit/storegen.py,
the same writer the host unit tests trust, so every field (CRCs, counters,
zlib records, raw records, a partial last block) starts out right and the
fuzzer's mutations begin one step away from a valid session.

    /usr/bin/python3 tests/fuzz/make_seeds.py OUTDIR
"""
import random
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
import storegen as g  # noqa: E402

BS = g.BS
DEV = 40 * BS + 1000          # fits the harness's 256 KiB target; last block partial
LAST = DEV // BS


def pre(n, noisy=False):
    return g.block_content(n, min(BS, DEV - n * BS), noisy=noisy)


def session(state="complete", blocks=(0, 3, 7, 8, 20, LAST), raw=(3, 8), torn=b"",
            meta_tail=""):
    s = g.Session("/nonexistent", "s0", DEV, "/dev/loop0", state=state)
    for n in blocks:
        s.add(g.record(n, pre(n, noisy=n in raw), compress=n not in raw))
    meta = s.meta_text() + meta_tail
    return meta.encode(), s.blocks_bytes() + torn


def pack(meta, blocks):
    assert len(meta) < 1 << 16
    return struct.pack("<H", len(meta)) + meta + blocks


def seeds():
    yield "complete", session()
    yield "complete-empty", session(blocks=())
    yield "complete-one-raw", session(blocks=(LAST,), raw=(LAST,))
    yield "incomplete-enospc", session(state="incomplete:ENOSPC")
    # open (crash): no counters, a torn record at the tail, a torn meta line
    meta, blocks = session(state="open", blocks=(1, 2, 5))
    tail = g.record(9, pre(9))[:20]
    yield "open-torn", (meta + b"state=compl", blocks + tail)
    # many small records, adjacent blocks, random compressibility
    rnd = random.Random(7)
    many = sorted(rnd.sample(range(LAST + 1), 30))
    yield "complete-many", session(blocks=many, raw=[b for b in many if rnd.random() < 0.3])
    # the near-misses the rules talk about: duplicate block, block past the end
    yield "dup-block", session(blocks=(4, 4))
    yield "meta-overrides", session(meta_tail="ordered=1\nstate=complete\n")


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, (meta, blocks) in seeds():
        (out / f"seed-{name}").write_bytes(pack(meta, blocks))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/fuzz/seeds")
