"""Bounded libFuzzer run of libbdsnap's store parser (tests/fuzz/fuzz_store.c).

Host-side; part of `make test` with the default 60 s, `make fuzz` runs longer:

    BDSNAP_FUZZ_SECONDS=60 /usr/bin/python3 -m pytest -v -s tests/fuzz

Builds build/fuzz/fuzz_store (clang -fsanitize=fuzzer,address,undefined),
writes the seed corpus (valid sessions from tests/unit/storegen.py), fuzzes
for BDSNAP_FUZZ_SECONDS, and fails on any crash, sanitizer report, leak,
timeout or broken invariant; the input is then in build/fuzz/crash-* (or
leak-*, timeout-*): replay with build/fuzz/fuzz_store <file>. The corpus
grows in build/fuzz/corpus across runs.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SECONDS = int(os.environ.get("BDSNAP_FUZZ_SECONDS", "60"))

pytestmark = pytest.mark.skipif(shutil.which("clang") is None,
                                reason="clang not installed (make deps)")


def test_fuzz_store_parser():
    res = subprocess.run(["make", "-s", "-C", str(HERE), "run", f"FUZZ_SECONDS={SECONDS}"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=SECONDS + 600)
    out = res.stdout
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", out)
    speed = re.search(r"stat::average_exec_per_sec:\s*(\d+)", out)
    cov = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", out)
    print(f"\nfuzz_store: {runs.group(1) if runs else '?'} inputs in {SECONDS} s "
          f"({speed.group(1) if speed else '?'}/s), final cov/ft/corpus "
          f"{'/'.join(cov[-1]) if cov else '?'}")
    assert res.returncode == 0, out[-6000:]
    assert runs and int(runs.group(1)) > 0, out[-2000:]
