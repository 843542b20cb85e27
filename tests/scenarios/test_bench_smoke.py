"""`make bench`, smoke variant: every configuration and job once, tiny sizes.

Runs inside the test guest with the other scenarios (`make test`), so the
benchmark cannot rot between the (long, manual) `make bench` runs. It asserts
that every configuration ran and produced numbers, that each bdsnap
configuration's session restores the image bit-exact, and that the report
(markdown, and the chart when gnuplot is installed) is made from the result.
No speed is asserted: that is what `make bench` reports.
"""

import json
import shutil
import subprocess
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import bench  # noqa: E402
import report  # noqa: E402

BDSNAP_CONFIGS = sorted(bench.ACTIVATE)


def test_bench_smoke(guest, tmp_path):
    out = tmp_path / "out"
    res = subprocess.run(["/usr/bin/python3", str(REPO / "bench" / "bench.py"), "--profile",
                          "smoke", "--out", str(out), "--work", str(tmp_path / "work")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(res.stdout)
    assert res.returncode == 0, res.stdout[-3000:]
    r = json.loads((out / "bench.json").read_text())
    assert r.get("finished") and not r["errors"], r["errors"]

    # every configuration x job (the libaio ones and those at queue depth 1) produced
    # positive numbers
    runs = {(x["config"], x["job"]): x for x in r["runs"]}
    want = [(c, j) for c in bench.EXT4_CONFIGS for j in report.EXT4_JOBS]
    want += [(c, j) for c in bench.SFS_CONFIGS for j in report.JOBS[:4]]
    missing = [w for w in want if w not in runs]
    assert not missing, f"no result for {missing}"
    for key in want:
        x = runs[key]
        assert x["bw_bytes"] > 0 and x["total_iops"] > 0 and x["bytes"] > 0, (key, x)

    # each bdsnap configuration: complete sessions, restored bit-exact, timed against dd
    for s in r["sessions"]:
        if s["config"] in bench.ACTIVATE:
            assert s["state"] == "complete" and s["blocks_saved"] > 0, s
    verified = {v["config"]: v["ok"] for v in r["verify"]}
    assert verified == {c: True for c in BDSNAP_CONFIGS}, verified
    restored = {x["config"] for x in r["restore"] if x["restore_s"] > 0 and x["dd_s"] > 0}
    assert restored == set(BDSNAP_CONFIGS), restored
    viewed = {x["config"] for x in r["view"] if x["view_s"] > 0 and x["device_s"] > 0}
    assert viewed == set(BDSNAP_CONFIGS) & set(bench.EXT4_CONFIGS), viewed

    # the side measurements
    assert {c["data"] for c in r["compress"] if c["bytes_raw"] > 0} == {"text", "random"}
    assert {(m["config"], m["kind"]) for m in r["memory"]} == {
        (c, k) for c in bench.EXT4_CONFIGS for k in ("seq", "rand")}
    assert {c["data"] for c in r["cpu"]} == {"text", "random"}

    # and the report made from it
    rc = report.main([str(out / "bench.json"), "--out", str(tmp_path / "report"),
                      "--name", "smoke"])
    md = (tmp_path / "report" / "smoke.md").read_text()
    for section in ("## Throughput (ext4)", "## Targets", "## Restore vs dd",
                    "## Reading a view vs reading the device", "## Kernel memory"):
        assert section in md
    if shutil.which("gnuplot"):
        assert rc == 0
        assert (tmp_path / "report" / "smoke.png").read_bytes()[:4] == b"\x89PNG"
