"""Shared fixtures: a built CLI, a pre-mount image, its modified copy, sessions."""
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import storegen as g  # noqa: E402

CLI = g.ROOT / "cli" / "bdsnap"
NBLOCKS = 41
DEVICE_SIZE = (NBLOCKS - 1) * g.BS + 1000          # the last block is partial
SAVED = [0, 3, 7, 8, 20, NBLOCKS - 1]              # blocks the "mount" wrote to
RAW = {3, 8}                                       # incompressible: stored raw


@pytest.fixture(scope="session", autouse=True)
def built():
    for part in ("lib", "cli"):  # the project's own build: warnings are errors
        subprocess.run(["make", "-s", "-C", str(g.ROOT / part), "WERROR=-Werror"], check=True)


def run(*args, **kw):
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, **kw)


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def pre_block(n):
    size = min(g.BS, DEVICE_SIZE - n * g.BS)
    return g.block_content(n, size, noisy=n in RAW)


class World:
    """A device before mount (pre), after it (image), and a store to put sessions in."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.pre = b"".join(pre_block(n) for n in range(NBLOCKS))
        assert len(self.pre) == DEVICE_SIZE
        self.pre_sha = hashlib.sha256(self.pre).hexdigest()
        after = bytearray(self.pre)
        for n in SAVED:
            after[n * g.BS:n * g.BS + len(pre_block(n))] = b"\xee" * len(pre_block(n))
        self.image = tmp / "device.img"
        self.image.write_bytes(after)
        self.store = tmp / "store"
        self.store.mkdir()

    def session(self, name="loop0_20240501T100000.000000000Z", blocks=SAVED, **kw):
        s = g.Session(self.store, name, DEVICE_SIZE, str(self.image), **kw)
        for n in blocks:
            s.add(g.record(n, pre_block(n), compress=n not in RAW))
        return s


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)
