#!/usr/bin/python3
"""Turn bench.json (from bench/bench.py in the guest) into bench/results/<date>.md and .png.

    /usr/bin/python3 bench/report.py build/vm-results/bench/bench.json --out bench/results

Medians over the repetitions; every ratio is of medians, within this one guest
boot (absolute numbers under TCG emulation mean little). The chart is drawn by
gnuplot (Debian's gnuplot-nox, pngcairo terminal); without gnuplot the .md is
still written and the chart is skipped with a message (exit status 0 only when
both were made).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

EXT4 = ["baseline", "v2", "v2-ordered", "dm-snapshot"]
SFS = ["sfs", "sfs-v1", "sfs-v2"]
JOBS = ["seq-first", "seq-rewrite", "rand-first", "rand-rewrite", "mixed"]  # also singlefilefs
QD1_JOBS = ["qd1-seq-first", "qd1-seq-rewrite", "qd1-rand-first", "qd1-rand-rewrite"]
# ext4 rows: each queue-depth-1 job beside its libaio counterpart
EXT4_JOBS = [j for job in JOBS for j in (job, "qd1-" + job) if j in JOBS + QD1_JOBS]
KINDS = ["seq", "rand", "mixed", "qd1-seq", "qd1-rand"]  # the mount cycles, in bench.py's order
DEPTH = {"seq": "libaio, qd 4", "rand": "libaio, qd 16", "mixed": "libaio, qd 16",
         "qd1-seq": "psync, qd 1", "qd1-rand": "psync, qd 1"}
SNAP = ["v2", "v2-ordered", "dm-snapshot"]
LABEL = {"baseline": "no snapshot", "v2": "bdsnap V2", "v2-ordered": "bdsnap V2 ordered",
         "dm-snapshot": "dm-snapshot (P, 4 KiB)", "sfs": "singlefilefs alone",
         "sfs-v1": "bdsnap V1 on sfs", "sfs-v2": "bdsnap V2 on sfs"}
TARGETS = {  # name: (threshold, text)
    "rand_first_ordered_vs_dm": (1.5, "random-4K first write, V2 ordered / dm-snapshot"),
    "ordered_vs_dm": (1.2, "V2 ordered / dm-snapshot, every job"),
    "plain_seq_first_qd1": (0.20, "sequential first write, V2 / no snapshot, qd 1"),
    "plain_seq_first_aio": (0.30, "sequential first write, V2 / no snapshot, libaio"),
    "rewrite_vs_baseline": (0.95, "rewrite / baseline"),
    "store_text": (0.5, "store / raw bytes on compressible (text) data"),
    "restore_vs_dd": (0.8, "restore speed / dd of the same blocks"),
    "view_vs_device": (0.5, "read speed of a view (bdsnap map) / of the device"),
}


def base_job(job):
    """seq-first for qd1-seq-first: the job the queue-depth-1 one repeats."""
    return job.removeprefix("qd1-")


def depth(job):
    """The fio engine and queue depth of an ext4 job, e.g. 'psync, qd 1'."""
    return DEPTH[job.rsplit("-", 1)[0] if job != "mixed" else job]


def job_label(job):
    return f"{base_job(job)} ({depth(job)})"


def metric(job, row, sfs=False):
    """(value, unit): MB/s for sequential jobs and singlefilefs, IOPS for random ones."""
    if sfs or base_job(job).startswith("seq"):
        return row["bw_bytes"] / 1e6, "MB/s"
    if job == "mixed":
        return row["total_iops"], "IOPS (r+w)"
    return row["iops"], "IOPS"


def med(values):
    return statistics.median(values) if values else None


def fmt(x, digits=2):
    if x is None:
        return "–"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


class Report:
    def __init__(self, res):
        self.r = res
        self.runs = {}
        for row in res["runs"]:
            self.runs.setdefault((row["config"], row["job"]), []).append(row)

    def value(self, cfg, job, sfs=False):
        rows = self.runs.get((cfg, job), [])
        vals = [metric(job, r, sfs)[0] for r in rows]
        return med(vals), (min(vals), max(vals)) if vals else (None, None), rows

    def ratio(self, cfg, ref, job, sfs=False):
        a, b = self.value(cfg, job, sfs)[0], self.value(ref, job, sfs)[0]
        return a / b if a is not None and b else None

    # ---- sections --------------------------------------------------------------
    def throughput(self):
        out = ["| job | I/O | config | median | min – max | × no snapshot | × dm-snapshot "
               "| held ≤ | queue ≤ | backlog s |",
               "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for job in EXT4_JOBS:
            for cfg in EXT4:
                m, (lo, hi), rows = self.value(cfg, job)
                if m is None:
                    continue
                unit = metric(job, rows[0])[1]
                held = max(r.get("held_max", 0) for r in rows)
                queue = max(r.get("queue_max", 0) for r in rows)
                snap = cfg in ("v2", "v2-ordered")
                drain = med([r["drain_s"] for r in rows if "drain_s" in r])
                out.append(f"| {base_job(job)} | {depth(job)} | {LABEL[cfg]} | {fmt(m)} {unit} "
                           f"| {fmt(lo)} – {fmt(hi)} "
                           f"| {fmt(self.ratio(cfg, 'baseline', job))} "
                           f"| {fmt(self.ratio(cfg, 'dm-snapshot', job))} "
                           f"| {held if snap else ''} | {queue if snap else ''} "
                           f"| {fmt(drain) if snap and job.endswith('first') else ''} |")
        return out

    def measured_jobs(self):
        """EXT4_JOBS that this run has (a run from before the qd1 jobs has none of them)."""
        return [j for j in EXT4_JOBS if any((c, j) in self.runs for c in EXT4)]

    def ratio_matrix(self):
        """One row per job and queue depth: ratios to no snapshot (V2 ordered and dm-snapshot
        side by side), then to dm-snapshot."""
        out = ["| job | I/O | V2 × no snapshot | V2 ordered × no snapshot "
               "| dm-snapshot × no snapshot | V2 × dm-snapshot | V2 ordered × dm-snapshot |",
               "|---|---|---:|---:|---:|---:|---:|"]
        for job in self.measured_jobs():
            out.append(f"| {base_job(job)} | {depth(job)} | " + " | ".join(
                [fmt(self.ratio(c, "baseline", job)) for c in SNAP]
                + [fmt(self.ratio(c, "dm-snapshot", job)) for c in ("v2", "v2-ordered")])
                + " |")
        return out

    def sfs(self):
        out = ["| job (4 KiB pwrite, fsync at the end) | config | median MB/s | min – max "
               "| × sfs alone |", "|---|---|---:|---:|---:|"]
        for job in JOBS[:4]:
            for cfg in SFS:
                m, (lo, hi), _ = self.value(cfg, job, sfs=True)
                if m is None:
                    continue
                out.append(f"| {job} | {LABEL[cfg]} | {fmt(m)} | {fmt(lo)} – {fmt(hi)} "
                           f"| {fmt(self.ratio(cfg, 'sfs', job, sfs=True))} |")
        return out

    def sessions(self):
        out = ["| config | session | blocks saved (median) | close (umount) s, median |",
               "|---|---|---:|---:|"]
        rows = {}
        for s in self.r["sessions"]:
            if s["kind"].startswith("compress"):
                continue
            rows.setdefault((s["config"], s["kind"]), []).append(s)
        for (cfg, kind), ss in sorted(rows.items(), key=lambda kv: (
                (EXT4 + SFS).index(kv[0][0]), KINDS.index(kv[0][1]) if kv[0][1] in KINDS
                else len(KINDS), kv[0][1])):
            blocks = med([s.get("blocks_saved", 0) for s in ss])
            out.append(f"| {LABEL[cfg]} | {kind} | {fmt(blocks) if cfg not in ('baseline', 'sfs', 'dm-snapshot') else ''} "
                       f"| {fmt(med([s['umount_s'] for s in ss if s['umount_s'] is not None]))} |")
        return out

    def compress(self):
        out = ["| pre-image data | blocks | raw bytes | stored bytes | stored / raw |",
               "|---|---:|---:|---:|---:|"]
        for c in self.r["compress"]:
            out.append(f"| {c['data']} | {c['blocks_saved']} | {c['bytes_raw']} "
                       f"| {c['bytes_stored']} | {c['bytes_stored'] / max(c['bytes_raw'], 1):.3f} |")
        return out

    def restore_rows(self):
        by = {}
        for x in self.r["restore"]:
            by.setdefault(x["config"], []).append(x)
        return by

    def restore(self):
        out = ["| config | blocks | restore s (median) | dd s (median) | restore speed / dd |",
               "|---|---:|---:|---:|---:|"]
        for cfg, xs in self.restore_rows().items():
            rs, ds = med([x["restore_s"] for x in xs]), med([x["dd_s"] for x in xs])
            out.append(f"| {LABEL[cfg]} | {fmt(med([x['blocks'] for x in xs]))} | {fmt(rs)} "
                       f"| {fmt(ds)} | {fmt(ds / rs if rs else None)} |")
        return out

    def view_rows(self):
        by = {}
        for x in self.r.get("view", []):
            by.setdefault(x["config"], []).append(x)
        return {cfg: (med([x["view_s"] for x in xs]), med([x["device_s"] for x in xs]),
                      xs[0]["bytes"]) for cfg, xs in by.items()}

    def view(self):
        out = ["| config | bytes | view read s (median) | image read s (median) | view / image speed |",
               "|---|---:|---:|---:|---:|"]
        for cfg, (vs, ds, size) in self.view_rows().items():
            out.append(f"| {LABEL[cfg]} | {size} | {fmt(vs)} | {fmt(ds)} "
                       f"| {fmt(ds / vs if vs else None)} |")
        return out

    def memory(self):
        """Kernel memory a session pins (unreclaimable slab + vmalloc), net of the baseline's
        for the same job, and scaled to a million touched blocks."""
        base = {}
        delta = lambda m, k: m["after"][k] - m["before"][k]
        pinned = lambda m: delta(m, "SUnreclaim") + delta(m, "VmallocUsed")
        for m in self.r["memory"]:
            if m["config"] == "baseline":
                base[m["kind"]] = m
        out = ["| config | session | blocks touched | Δ SUnreclaim kB | Δ VmallocUsed kB "
               "| Δ SReclaimable kB | pinned − baseline kB | scaled per million blocks, MiB |",
               "|---|---|---:|---:|---:|---:|---:|---:|"]
        per = {}
        for m in self.r["memory"]:
            if m["config"] == "baseline":
                continue
            b = base.get(m["kind"])
            net = pinned(m) - (pinned(b) if b else 0)
            pm = net / 1024 / m["blocks"] * 1e6 if m["blocks"] else None
            per.setdefault(m["config"], []).append((m["blocks"], net))
            out.append(f"| {LABEL[m['config']]} | {m['kind']} | {m['blocks']} "
                       f"| {delta(m, 'SUnreclaim')} | {delta(m, 'VmallocUsed')} "
                       f"| {delta(m, 'SReclaimable')} | {net} | {fmt(pm)} |")
        # two session sizes: slope = per-block cost, intercept = fixed cost per session
        out += ["", "| config (fit through the two sessions) | fixed per session, kB "
                "| marginal per million blocks, MiB |", "|---|---:|---:|"]
        for cfg, pts in per.items():
            if len(pts) != 2:
                continue
            (n1, d1), (n2, d2) = sorted(pts)
            if n2 < 2 * n1:  # a slope through two close points is noise
                out.append(f"| {LABEL[cfg]} | ≈ {fmt((d1 + d2) / 2)} | below resolution "
                           f"(sessions of {n1} and {n2} blocks: Δ {d2 - d1:+d} kB) |")
                continue
            slope = (d2 - d1) / (n2 - n1)
            out.append(f"| {LABEL[cfg]} | {fmt(d1 - slope * n1)} | {fmt(slope * 1e6 / 1024)} |")
        return out + ["", *self.memory_peak()]

    def memory_peak(self):
        """Pre-images in memory at the peak of a first-write flood: the store's queue
        (module LIST, sampled every 0.25 s), which writers wait on at store_queue_max."""
        out = []
        for cfg in ("v2", "v2-ordered"):
            peaks = [(r.get("queue_max", 0), r["job"]) for (c, j), rows in self.runs.items()
                     if c == cfg and j.endswith("first") for r in rows]
            if peaks:
                n, job = max(peaks)
                out.append(f"- {LABEL[cfg]}: at most {n} pre-images queued "
                           f"({fmt(n * 4 / 1024)} MiB, {job_label(job)})")
        if out:
            out = ["Peak pre-image memory under the first-write floods (the bound: "
                   "`store_queue_max` = 4096 queued, 16 MiB, plus up to 4 batches of 256 "
                   "being read, 4 MiB, and one batch of 128 being appended, 0.5 MiB: 20.5 MiB "
                   "per session; the store's page pool only keeps pages that were in use "
                   "together, so it adds nothing to the peak):", "", *out]
        return out

    def cpu(self):
        out = ["| 4 KiB block, user space in the guest | zlib level 1 µs | copy µs | zlib ratio |",
               "|---|---:|---:|---:|"]
        for c in self.r.get("cpu", []):
            out.append(f"| {c['data']} | {fmt(c['zlib1_us'])} | {fmt(c['copy_us'])} "
                       f"| {c['ratio']:.3f} |")
        return out

    def targets(self):
        t = {}
        t["rand_first_ordered_vs_dm"] = [
            (f"V2 ordered, {depth(j)}", self.ratio("v2-ordered", "dm-snapshot", j))
            for j in ("rand-first", "qd1-rand-first")]
        t["rewrite_vs_baseline"] = [(f"{LABEL[c]}, {job_label(j)}", self.ratio(c, "baseline", j))
                                    for c in ("v2", "v2-ordered")
                                    for j in ("seq-rewrite", "rand-rewrite", "qd1-seq-rewrite",
                                              "qd1-rand-rewrite")]
        t["rewrite_vs_baseline"] += [(f"{LABEL[c]}, {j}", self.ratio(c, "sfs", j, sfs=True))
                                     for c in ("sfs-v1", "sfs-v2")
                                     for j in ("seq-rewrite", "rand-rewrite")]
        t["ordered_vs_dm"] = [(job_label(j), self.ratio("v2-ordered", "dm-snapshot", j))
                              for j in EXT4_JOBS
                              if self.value("v2-ordered", j)[0] is not None]
        t["plain_seq_first_qd1"] = [("V2", self.ratio("v2", "baseline", "qd1-seq-first"))]
        t["plain_seq_first_aio"] = [("V2", self.ratio("v2", "baseline", "seq-first"))]
        text = [c for c in self.r["compress"] if c["data"] == "text"]
        t["store_text"] = [("text", text[0]["bytes_stored"] / text[0]["bytes_raw"]
                            if text else None)]
        rr = []
        for cfg, xs in self.restore_rows().items():
            if cfg in ("v2", "v2-ordered"):
                rs, ds = med([x["restore_s"] for x in xs]), med([x["dd_s"] for x in xs])
                rr.append((LABEL[cfg], ds / rs if rs else None))
        t["restore_vs_dd"] = rr
        t["view_vs_device"] = [(LABEL[cfg], ds / vs if vs else None)
                               for cfg, (vs, ds, _) in self.view_rows().items()]
        out = ["| target | measured | met? |", "|---|---|---|"]
        self.missed = []
        for key, (thr, text_) in TARGETS.items():
            for what, v in t[key]:
                lower = key == "store_text"
                ok = v is not None and (v <= thr if lower else v >= thr)
                if v is not None and not ok:
                    self.missed.append(f"{text_} ({what}): {fmt(v)}")
                out.append(f"| {text_} {'≤' if lower else '≥'} {thr} | {what}: **{fmt(v)}** "
                           f"| {'yes' if ok else 'no' if v is not None else 'not measured'} |")
        self.target_values = t
        return out

    def markdown(self, png_name, host):
        r, p = self.r, self.r["params"]
        verify = r.get("verify", [])
        lines = [
            f"# bdsnap benchmark, {r['started'][:10]}",
            "",
            f"![throughput relative to no snapshot]({png_name})",
            "",
            "## Setup",
            "",
            f"- `make bench`: one QEMU guest (TCG, 1 vCPU, Debian kernel {r['kernel']}) on "
            f"{host}; profile `{r['profile']}`, every job {r['reps']}× (median reported, "
            f"configurations rotated between repetitions), whole guest run "
            f"{r['duration_s'] / 60:.1f} min.",
            "- Devices: loop devices over files on the guest's tmpfs (no host disk or host page "
            "cache in the path: the only noise is CPU contention, which hits every configuration "
            "of the boot alike; a virtio disk adds the host's I/O load to it). Each configuration "
            f"and repetition gets a fresh copy of one golden {p['image_mb']} MiB ext4 image whose "
            f"{p['seq_mb']} MiB file `fio.dat` is fully written beforehand (fio's buffers: zlib "
            "level 1 keeps ~93 % of a block), so writes overwrite allocated blocks.",
            f"- bdsnap's store: `{r.get('store_fs', 'ext4')}` "
            + ("on a loop device over a tmpfs file" if r.get("store_fs", "ext4") == "ext4"
               else "") + "; dm-snapshot: `snapshot-origin` + `snapshot … P 8` (persistent "
            "exceptions, 4 KiB chunks = bdsnap's block), COW on a loop device over a tmpfs file.",
            f"- fio (O_DIRECT, `end_fsync=1`, one job, job files in `bench/fio/`): seq = 1 MiB "
            f"writes, libaio iodepth 4, over {p['seq_mb']} MiB; rand = 4 KiB random writes, "
            f"libaio iodepth 16, "
            f"over {p['rand_mb']} MiB, each block once; *first* = fresh session (new mount; a new "
            "dm snapshot), *rewrite* = the same blocks again in the same session; mixed = 70/30 "
            f"random read/write 4 KiB, iodepth 16, {p['mixed_io_mb']} MiB on a fresh session. "
            f"A sequential first pass (and mixed) stops after {p['seq_cap_s']} s, a random one "
            f"after {p['rand_cap_s']} s; a rewrite pass runs {p['rewrite_s']} s, time-based, over "
            "exactly the blocks its first pass wrote.",
            *([] if "seq_qd1_mb" not in p else [
                "- Queue depth 1 (`psync, qd 1`): the same seq and rand jobs with `ioengine=psync` "
                "(one `pwrite` in flight), first touch and rewrite as above, over "
                f"{p['seq_qd1_mb']} MiB and {p['rand_qd1_mb']} MiB, each in a fresh session of "
                "its own after mixed (two more mount cycles per configuration; a random first "
                f"pass stops after {p['rand_qd1_cap_s']} s). Beside the libaio jobs they compare "
                "V2 ordered with dm-snapshot when a writer waits for each write."]),
            "- `held ≤` / `queue ≤`: the largest `writes_held` / `queue_depth` the module's LIST "
            "reported (sampled every 0.25 s); `backlog s`: how long the store still worked after "
            "a first pass ended (pre-images queued, non-ordered); the rewrite starts after it.",
            "",
            "## Throughput (ext4)",
            "",
            *self.throughput(),
            "",
            *self.ratio_matrix(),
            "",
            "## singlefilefs: V1 (and V2) vs the file system alone",
            "",
            *self.sfs(),
            "",
            "## Targets (reported, not asserted)",
            "",
            *self.targets(),
            "",
            "## Store size vs raw bytes",
            "",
            f"A fresh V2 session overwrites a {p['comp_mb']} MiB file of text (C headers from "
            "`/usr/include`) or of random bytes; `bytes_raw` and `bytes_stored` from the session's "
            "meta (stored includes record headers).",
            "",
            *self.compress(),
            "",
            "## Restore vs dd",
            "",
            "`bdsnap restore` of the random-write session onto the image file, against `dd "
            "bs=4096 count=<blocks> conv=notrunc,fsync` of as many blocks onto the same file.",
            "",
            *self.restore(),
            "",
            "Bit-exact after restore (repetition 0, sha256 of the image before the mount and "
            "after the restore): " + (", ".join(
                f"{LABEL[v['config']]} {'yes' if v['ok'] else '**NO**'}" for v in verify) or "–")
            + ".",
            "",
            "## Reading a view vs reading the device",
            "",
            "The random-write session's view (`bdsnap map`: the image as before the mount, "
            "served by the NBD daemon) read whole with `dd bs=1M`, against the image file "
            "read the same way; page cache dropped before each.",
            "",
            *self.view(),
            "",
            "## Kernel memory",
            "",
            "`/proc/meminfo` after `drop_caches`, before the mount and after the first-touch "
            "job (store drained, session still open), repetition 0. *Pinned* = SUnreclaim + "
            "VmallocUsed (SReclaimable is cache the kernel takes back: dentries, inodes, buffer "
            "heads of the store's and the image's file systems). bdsnap's block map is one bit "
            "per block in whole pages from the page allocator (128 KiB per million blocks), "
            "which neither Slab nor VmallocUsed shows. With a few ten thousand blocks the "
            "fixed cost of a session dominates the scaled figure; the fit separates the two, "
            "within the noise of a few ten kB.",
            "",
            *self.memory(),
            "",
            "## Session close",
            "",
            *self.sessions(),
            "",
            "## CPU cost of compression",
            "",
            *self.cpu(),
            "",
        ]
        if r.get("errors"):
            lines += ["## Errors", "", *[f"- {e}" for e in r["errors"]], ""]
        return "\n".join(lines)

    def chart(self, png, title):
        """Top: every ext4 job (each queue-depth-1 job beside its libaio one), ratio to no
        snapshot; bottom left: V2 ordered / dm-snapshot at the libaio depth and at queue
        depth 1 side by side; bottom right: singlefilefs."""
        gp = shutil.which("gnuplot")
        if not gp:
            return "gnuplot not found (apt-get install gnuplot-nox): chart skipped"

        def num(x):
            return fmt(x, 3) if x is not None else "NaN"

        def row(label, values, extra=""):
            return f'"{label}" ' + " ".join(num(v) for v in values) + extra

        jobs = self.measured_jobs() or JOBS
        pairs = JOBS[:4]
        ext4 = [row(base_job(j), [self.ratio(c, "baseline", j) for c in SNAP], f' "{depth(j)}"')
                for j in jobs]
        vs_dm = [row(j, [self.ratio("v2-ordered", "dm-snapshot", x) for x in (j, "qd1-" + j)])
                 for j in pairs]
        sfs = [row(j, [self.ratio(c, "sfs", j, sfs=True) for c in ("sfs-v1", "sfs-v2")])
               for j in JOBS[:4]]
        ext4, vs_dm, sfs = ("\n".join(rows) for rows in (ext4, vs_dm, sfs))
        script = f"""
set terminal pngcairo size 1400,1000 font "DejaVu Sans,10"
set output "{png}"
$ext4 << EOD
{ext4}
EOD
$vsdm << EOD
{vs_dm}
EOD
$sfs << EOD
{sfs}
EOD
set multiplot title "{title}" font ",12"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set yrange [0:*]
set grid ytics
set key top left opaque
set offsets 0, 0, graph 0.12, 0
set size 1,0.48
set origin 0,0.47
set ylabel "throughput / no snapshot (median of runs)"
set title "ext4: fio, ratio to no snapshot (libaio at its queue depth; psync at queue depth 1)"
set xrange [-0.6:{len(jobs) - 0.4}]
plot 1 with lines lc rgb "black" dt 2 notitle, \\
     $ext4 using 2:xtic(strcol(1)."\\n".strcol(5)) title "{LABEL['v2']}" lc rgb "#1f77b4", \\
     '' using 3 title "{LABEL['v2-ordered']}" lc rgb "#2ca02c", \\
     '' using 4 title "{LABEL['dm-snapshot']}" lc rgb "#d62728"
set size 0.55,0.45
set origin 0,0
set title "ext4: bdsnap V2 ordered / dm-snapshot, by queue depth"
set xrange [-0.6:{len(pairs) - 0.4}]
set ylabel "V2 ordered / dm-snapshot (ratio of medians)"
plot 1 with lines lc rgb "black" dt 2 notitle, \\
     $vsdm using 2:xtic(strcol(1)) title "libaio (seq qd 4, rand qd 16)" lc rgb "#2ca02c", \\
     '' using 3 title "psync, qd 1" lc rgb "#98df8a"
set size 0.45,0.45
set origin 0.55,0
set title "singlefilefs: write loop, ratio to sfs alone"
set xrange [-0.6:3.6]
set ylabel "throughput / singlefilefs alone"
plot 1 with lines lc rgb "black" dt 2 notitle, \\
     $sfs using 2:xtic(1) title "{LABEL['sfs-v1']}" lc rgb "#9467bd", \\
     '' using 3 title "{LABEL['sfs-v2']}" lc rgb "#1f77b4"
unset multiplot
"""
        res = subprocess.run([gp], input=script, text=True, capture_output=True)
        if res.returncode:
            return f"gnuplot failed: {res.stderr.strip()}"
        return None


def host_info():
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                     if l.startswith("model name"))
    except (OSError, StopIteration):
        model = "unknown CPU"
    return f"a {os.cpu_count()}-core host ({model}, load average " \
           f"{os.getloadavg()[0]:.1f} when the report was made)"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", help="bench.json from the guest")
    ap.add_argument("--out", default="bench/results", help="directory for <date>.md/.png")
    ap.add_argument("--name", default=None, help="file stem (default: the run's UTC date)")
    a = ap.parse_args(argv)
    res = json.loads(Path(a.json).read_text())
    if not res.get("finished"):
        sys.exit(f"report.py: {a.json}: the run did not finish")
    stem = a.name or res["started"][:10]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rep = Report(res)
    md = rep.markdown(f"{stem}.png", host_info())
    (out / f"{stem}.md").write_text(md)
    err = rep.chart(out / f"{stem}.png", f"bdsnap benchmark {stem} (TCG guest, medians of "
                                          f"{res['reps']} runs)")
    print(f"wrote {out / (stem + '.md')}" + ("" if err else f" and {out / (stem + '.png')}"))
    for m in rep.missed:
        print(f"target missed: {m}")
    if err:
        print(f"report.py: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
