#!/usr/bin/python3
"""bdsnap benchmark, guest side: every configuration in one boot, raw numbers to JSON.

    /usr/bin/python3 tests/vm/run.py --name bench --mem 3072 -- \\
        /usr/bin/python3 bench/bench.py --profile full --out /results

(`make bench` does this, then bench/report.py turns the JSON into
bench/results/<date>.md and .png.) Runs as root inside the test guest only:
it loads bdsnap.ko, singlefilefs.ko and dm-snapshot, and unloads what it
loaded before it exits, also on failure.

Everything lives on the guest's tmpfs: each device is a loop device over an
image file in /tmp (no host disk, no host page cache in the path, so the only
noise is CPU contention, which hits every configuration of one boot alike).

ext4 configurations, each on a fresh copy of one golden ext4 image that holds a
fully written file fio.dat (fio's buffers: zlib level 1 keeps ~93 % of a block):
  baseline      no snapshot
  v2            bdsnap V2 (block layer), non-ordered
  v2-ordered    bdsnap V2, ordered (BDSNAP_ACT_ORDERED)
  dm-snapshot   snapshot-origin + snapshot with a persistent exception store,
                chunk 8 sectors (4 KiB, bdsnap's block), COW on a loop device
                over a tmpfs file (bdsnap's store: ext4 on the same kind of loop)
Per configuration and repetition, five mount cycles (= five bdsnap sessions,
five fresh dm snapshots), each phase on blocks its session has not written yet:
  1. seq-first, seq-rewrite      fio 1 MiB sequential writes over seq_mb,
                                 libaio, iodepth 4
  2. rand-first, rand-rewrite    fio 4 KiB random writes over rand_mb,
                                 libaio, iodepth 16
     then (bdsnap) restore of that session timed against dd of as many 4 KiB
     blocks onto the same target; in repetition 0 the restore must give back
     the pre-mount image bit-exact
  3. mixed                       fio 70/30 random read/write, 4 KiB, iodepth 16
  4. qd1-seq-first, qd1-seq-rewrite    as 1. at queue depth 1 (psync, one job)
                                       over seq_qd1_mb
  5. qd1-rand-first, qd1-rand-rewrite  as 2. at queue depth 1 over rand_qd1_mb
                                       (no restore)
(1.-3. as before the queue-depth-1 cycles were added, so that earlier results
stay comparable.) A first pass writes every block of its region once (or stops
at its cap); the store then drains its backlog (non-ordered), and the rewrite
pass runs for rewrite_s seconds, time-based, over exactly the blocks the first
pass wrote.
singlefilefs configurations (sfs alone, sfs-v1, sfs-v2): bench/sfs_write.c,
4 KiB pwrite()s, sequential and random, first touch and rewrite, fsync at the
end; restore checked bit-exact in repetition 0.
Once: store size vs raw bytes on text-like and on random data; kernel memory
(/proc/meminfo) before and during a session that touched N blocks.
"""

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
sys.path.insert(0, str(REPO / "tests" / "lib"))

import bdsnap_uapi as uapi  # noqa: E402

KO_ROOT = Path(os.environ.get("BDSNAP_KO_ROOT") or REPO)
CLI = Path(os.environ.get("BDSNAP_CLI", REPO / "cli" / "bdsnap"))
PASSWORD = "bdsnap-bench-password"
BS = 4096

PROFILES = {
    # ~20 minutes on a 2-core TCG host (the qd1 cycles ~4 of them); see bench/README.md.
    "full": dict(reps=3, image_mb=256, seq_mb=128, rand_mb=48, mixed_mb=48, mixed_io_mb=16,
                 seq_qd1_mb=32, rand_qd1_mb=16,
                 comp_mb=16, sfs_mb=32, store_mb=768, seq_cap_s=15, rand_cap_s=90,
                 rand_qd1_cap_s=45, rewrite_s=4, sfs_rewrite_passes=4, mem_mb_min=2500),
    # tests/scenarios/test_bench_smoke.py: every path once, tiny sizes.
    "smoke": dict(reps=1, image_mb=64, seq_mb=8, rand_mb=4, mixed_mb=4, mixed_io_mb=2,
                  seq_qd1_mb=4, rand_qd1_mb=2,
                  comp_mb=2, sfs_mb=2, store_mb=128, seq_cap_s=60, rand_cap_s=60,
                  rand_qd1_cap_s=60, rewrite_s=1, sfs_rewrite_passes=1, mem_mb_min=0),
}
EXT4_CONFIGS = ["baseline", "v2", "v2-ordered", "dm-snapshot"]
SFS_CONFIGS = ["sfs", "sfs-v1", "sfs-v2"]
ACTIVATE = {  # configuration: (tracker, activation flags)
    "v2": (uapi.BDSNAP_TRACKER_BIO, 0),
    "v2-ordered": (uapi.BDSNAP_TRACKER_BIO, uapi.BDSNAP_ACT_ORDERED),
    "sfs-v1": (uapi.BDSNAP_TRACKER_VFS, 0),
    "sfs-v2": (uapi.BDSNAP_TRACKER_BIO, 0),
}
MEMINFO_KEYS = ("MemTotal", "MemFree", "Buffers", "Cached", "SwapCached", "AnonPages",
                "Shmem", "Slab", "SReclaimable", "SUnreclaim", "KernelStack", "PageTables",
                "VmallocUsed", "Percpu")

T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", flush=True)


def sh(cmd, check=True, env=None, input=None):
    res = subprocess.run(cmd, shell=isinstance(cmd, str), text=True, env=env, input=input,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if check and res.returncode:
        shown = cmd if isinstance(cmd, str) else shlex.join(map(str, cmd))
        raise RuntimeError(f"`{shown}` exited {res.returncode}:\n{res.stdout}")
    return res.stdout


def drop_caches():
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def meminfo():
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in MEMINFO_KEYS:
            out[key] = int(rest.split()[0])  # kB
    return out


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def read_meta(session):
    out = {}
    for line in (Path(session) / "meta").read_text().splitlines():
        key, _, value = line.partition("=")
        out[key] = value
    return out


class Sampler(threading.Thread):
    """Polls the module's LIST (writes_held, queue_depth) of one device."""

    def __init__(self, path, period=0.25):
        super().__init__(daemon=True)
        self.path, self.period = str(path), period
        self.stop_evt = threading.Event()
        self.held, self.queue = [], []

    def run(self):
        while not self.stop_evt.wait(self.period):
            try:
                devs = uapi.list_devices()
            except OSError:
                continue
            for d in devs:
                if d.path.decode(errors="replace") == self.path:
                    self.held.append(d.writes_held)
                    self.queue.append(d.queue_depth)

    def stop(self):
        self.stop_evt.set()
        self.join()
        agg = lambda v, f: f(v) if v else 0
        return {"held_max": agg(self.held, max), "held_mean": agg(self.held, statistics.mean),
                "queue_max": agg(self.queue, max),
                "queue_mean": agg(self.queue, statistics.mean), "samples": len(self.held)}


class Session:
    """One mount cycle; for bdsnap configurations, .dir is its store directory after exit."""

    def __init__(self):
        self.dir = None
        self.umount_s = None
        self.mount_s = None


class Bench:
    def __init__(self, profile, out, work, configs=None, only_jobs=None, store_fs="ext4",
                 perf=False):
        self.p = dict(PROFILES[profile])
        self.profile = profile
        self.out = Path(out)
        self.work = Path(work)
        self.configs = configs
        self.only_jobs = only_jobs
        self.perf = perf
        self.store_fs = store_fs
        self.stack = contextlib.ExitStack()
        self.res = {"profile": profile, "params": self.p, "kernel": platform.release(),
                    "store_fs": store_fs,
                    "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                    "runs": [], "sessions": [], "restore": [], "view": [], "compress": [], "memory": [],
                    "verify": [], "errors": []}
        self.store_mnt = Path("/mnt/bench-store")
        self.store = self.store_mnt / "snapshot"
        self.mnt = Path("/mnt/bench")

    # ---- setup ---------------------------------------------------------------
    def setup(self):
        if os.geteuid():
            sys.exit("bench.py: must run as root inside the test guest")
        if sh("lsmod").count("\nbdsnap "):
            sys.exit("bench.py: bdsnap is already loaded")
        self.work.mkdir(parents=True, exist_ok=True)
        self.stack.callback(shutil.rmtree, self.work, ignore_errors=True)
        for m in ("loop", "ext4", "dm_snapshot"):
            sh(["modprobe", m])
        self.sfs_write = self.work / "sfs_write"
        sh(["gcc", "-O2", "-Wall", "-o", self.sfs_write, BENCH / "sfs_write.c"])
        self.mnt.mkdir(parents=True, exist_ok=True)
        # the store: ext4 on a loop device over a tmpfs file, like dm-snapshot's COW
        # (--store-fs tmpfs: straight on tmpfs, to see what the store's file system costs)
        self.store_mnt.mkdir(parents=True, exist_ok=True)
        if self.store_fs == "tmpfs":
            sh(["mount", "-t", "tmpfs", "-o", "mode=0700", "benchstore", self.store_mnt])
        else:
            simg = self.work / "store.img"
            sh(["truncate", "-s", f"{self.p['store_mb']}M", simg])
            sh(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", simg])
            sloop = sh(["losetup", "-f", "--show", simg]).strip()
            self.stack.callback(sh, ["losetup", "-d", sloop], check=False)
            sh(["mount", "-t", "ext4", sloop, self.store_mnt])
        self.stack.callback(sh, ["umount", self.store_mnt], check=False)
        self.store.mkdir()
        sh(["insmod", KO_ROOT / "module" / "bdsnap.ko", f"password={PASSWORD}",
            f"store_dir={self.store}"])
        self.stack.callback(sh, ["rmmod", "bdsnap"], check=False)
        if os.environ.get("BENCH_TRACE_FUNCS"):
            self.arm_trace()  # bench/profile.py: needs the module's symbols, so after insmod
        sh(["insmod", KO_ROOT / "singlefile_fs" / "singlefilefs.ko"])
        self.stack.callback(sh, ["rmmod", "singlefilefs"], check=False)
        self.make_golden()

    def arm_trace(self):
        """function_graph on BENCH_TRACE_FUNCS only (cheap), recorded under BENCH_TRACE_ROOTS;
        the trace is saved to the output directory before the module goes."""
        tracing = Path("/sys/kernel/tracing")
        for name, env in (("set_ftrace_filter", "BENCH_TRACE_FUNCS"),
                          ("set_graph_function", "BENCH_TRACE_ROOTS")):
            (tracing / name).write_text("")
            for func in os.environ[env].split():
                try:
                    with open(tracing / name, "a") as f:
                        f.write(func + "\n")
                except OSError:
                    log(f"trace: {func}: not traceable (inlined?)")
        (tracing / "current_tracer").write_text("function_graph")
        (tracing / "trace_options").write_text("funcgraph-tail")
        (tracing / "tracing_on").write_text("1")

        def dump():
            (tracing / "tracing_on").write_text("0")
            with open(tracing / "trace") as src, open(self.out / "trace.txt", "w") as dst:
                shutil.copyfileobj(src, dst)
        self.stack.callback(dump)

    def make_golden(self):
        p = self.p
        self.golden = self.work / "golden.img"
        sh(["truncate", "-s", f"{p['image_mb']}M", self.golden])
        sh(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0",
            self.golden])
        loop = sh(["losetup", "-f", "--show", self.golden]).strip()
        try:
            sh(["mount", "-t", "ext4", loop, self.mnt])
            try:
                # fio's buffers are random: every 4 KiB block is incompressible
                sh(["fio", "--name=layout", f"--filename={self.mnt / 'fio.dat'}", "--rw=write",
                    "--bs=1M", f"--size={p['seq_mb']}M", "--ioengine=psync", "--end_fsync=1"])
                with open(self.mnt / "text.dat", "wb") as f:
                    f.write(text_like(p["comp_mb"] << 20))
                with open(self.mnt / "random.dat", "wb") as f:
                    f.write(os.urandom(p["comp_mb"] << 20))
            finally:
                sh(["umount", self.mnt])
        finally:
            sh(["losetup", "-d", loop])
        self.sfs_golden = self.work / "sfs-golden.img"
        content = self.work / "sfs-content"
        content.write_bytes(os.urandom(p["sfs_mb"] << 20))
        sh([REPO / "singlefile_fs" / "mkfs.singlefilefs", "-s", f"{p['sfs_mb'] + 1}M",
            "-c", content, self.sfs_golden])
        content.unlink()
        log(f"golden images ready ({p['image_mb']} MiB ext4, {p['sfs_mb'] + 1} MiB sfs)")

    # ---- sessions --------------------------------------------------------------
    def store_sessions(self):
        return {p.name for p in self.store.iterdir() if p.is_dir()}

    @contextlib.contextmanager
    def session(self, cfg, image, fstype="ext4"):
        """Attach, (dm-snapshot: build origin + fresh snapshot), mount; undo all on exit."""
        sess = Session()
        seen = self.store_sessions()
        with contextlib.ExitStack() as st:
            loop = sh(["losetup", "-f", "--show", image]).strip()
            st.callback(sh, ["losetup", "-d", loop])
            dev = loop
            if cfg == "dm-snapshot":
                dev = self.dm_snapshot(st, loop)
            t = time.monotonic()
            sh(["mount", "-t", fstype, dev, self.mnt])
            sess.mount_s = time.monotonic() - t
            mounted = True
            try:
                yield sess
            except BaseException:
                mounted = False
                sh(["umount", self.mnt], check=False)
                raise
            finally:
                if mounted:
                    t = time.monotonic()
                    sh(["umount", self.mnt])  # bdsnap: the session drains and closes here
                    sess.umount_s = time.monotonic() - t
        if cfg in ACTIVATE:
            new = self.store_sessions() - seen
            if len(new) != 1:
                raise RuntimeError(f"{cfg}: expected one new session in {self.store}, got {new}")
            sess.dir = self.store / new.pop()

    def dm_snapshot(self, st, origin):
        cow = self.work / "cow.img"
        sh(["truncate", "-s", f"{self.p['seq_mb'] * 9 // 8 + 16}M", cow])  # zeros: a new store
        st.callback(cow.unlink)
        cloop = sh(["losetup", "-f", "--show", cow]).strip()
        st.callback(sh, ["losetup", "-d", cloop])
        sectors = sh(["blockdev", "--getsz", origin]).strip()
        env = dict(os.environ, DM_DISABLE_UDEV="1")  # no udev: dmsetup makes the nodes
        sh(["dmsetup", "create", "bench-snap", "--table",
            f"0 {sectors} snapshot {origin} {cloop} P 8"], env=env)
        st.callback(sh, ["dmsetup", "remove", "bench-snap"], env=env)
        sh(["dmsetup", "create", "bench-origin", "--table",
            f"0 {sectors} snapshot-origin {origin}"], env=env)
        st.callback(sh, ["dmsetup", "remove", "bench-origin"], env=env)
        sh(["dmsetup", "mknodes"], env=env)
        return "/dev/mapper/bench-origin"

    def record_session(self, cfg, rep, kind, sess, keep=False):
        row = {"config": cfg, "rep": rep, "kind": kind, "mount_s": sess.mount_s,
               "umount_s": sess.umount_s}
        if sess.dir:
            m = read_meta(sess.dir)
            row.update(state=m.get("state"), blocks_saved=int(m.get("blocks_saved", 0)),
                       bytes_raw=int(m.get("bytes_raw", 0)),
                       bytes_stored=int(m.get("bytes_stored", 0)), ordered=m.get("ordered"))
            if m.get("state") != "complete":
                self.res["errors"].append(f"{cfg} rep {rep} {kind}: session state "
                                          f"{m.get('state')}")
            if not keep:
                self.drop_session(sess)
        self.res["sessions"].append(row)
        return row

    def drop_session(self, sess):
        shutil.rmtree(sess.dir)
        sh(["fstrim", self.store_mnt], check=False)  # give the tmpfs pages back

    def activated(self, cfg, image):
        if cfg not in ACTIVATE:
            return contextlib.nullcontext()
        tracker, flags = ACTIVATE[cfg]
        uapi.activate(str(image), PASSWORD, tracker=tracker, flags=flags)
        st = contextlib.ExitStack()
        st.callback(uapi.deactivate, str(image), PASSWORD)
        return st

    def wait_drained(self, image, timeout=300):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            d = [d for d in uapi.list_devices() if d.path.decode() == str(image)]
            if not d or (d[0].queue_depth == 0 and d[0].writes_held == 0):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{image}: store did not drain in {timeout} s")

    # ---- jobs ------------------------------------------------------------------
    def want(self, job):
        # "rand" selects rand-first and rand-rewrite; "rand-first" also opens the session "rand"
        return not self.only_jobs or any(job.startswith(j) or j.startswith(job)
                                         for j in self.only_jobs)

    def fio(self, cfg, rep, job, jobfile, image, size, io_bytes=None, runtime=None,
            time_based=False):
        """One fio run over the first `size` bytes of fio.dat: io_bytes (default: all of
        them) or, time_based, for `runtime` seconds; a first pass stops after `runtime`."""
        if not self.want(job):
            return None
        env = dict(os.environ, BENCH_FILE=str(self.mnt / "fio.dat"), BENCH_SIZE=str(size),
                   BENCH_IO=str(io_bytes or size), BENCH_RUNTIME=str(runtime),
                   BENCH_TIME_BASED=str(int(time_based)))
        sampler = Sampler(image)
        sampler.start()
        t = time.monotonic()
        cmd = ["fio", "--output-format=json", BENCH / "fio" / jobfile]
        if self.perf:
            # the whole guest: the workers, the loop devices and fio all count
            perf_data = self.out / f"perf-{cfg}-{job}-{rep}.data"
            cmd = ["perf", "record", "-q", "-a", "-g", "-F", "500", "-o", perf_data, "--"] + cmd
        try:
            out = sh(cmd, env=env)
        finally:
            counters = sampler.stop()
        wall = time.monotonic() - t
        if self.perf:
            # now, while the module is loaded: its symbols resolve only then
            report = ["perf", "report", "-i", perf_data, "--no-children", "--sort", "sym",
                      "--stdio"]
            (self.out / f"perf-{cfg}-{job}-{rep}.txt").write_text(
                sh(report + ["-g", "none", "--percent-limit", "0.5"]) +
                sh(report + ["-g", "caller,2,callee,function,percent", "--percent-limit", "2"]))
        data = json.loads(out[out.index("{"):])
        j = data["jobs"][0]
        if j.get("error"):
            raise RuntimeError(f"fio {jobfile}: error {j['error']}")
        w, r = j["write"], j["read"]
        row = {"config": cfg, "rep": rep, "job": job, "bw_bytes": w["bw_bytes"],
               "iops": w["iops"], "read_iops": r["iops"], "read_bw_bytes": r["bw_bytes"],
               "total_iops": w["iops"] + r["iops"], "bytes": w["io_bytes"] + r["io_bytes"],
               "runtime_ms": j["job_runtime"], "wall_s": wall,
               "clat_p99_us": w["clat_ns"]["percentile"].get("99.000000", 0) / 1000,
               **counters}
        self.res["runs"].append(row)
        self.save()
        log(f"  {cfg:12} rep {rep} {job:16} {w['bw_bytes'] / 1e6:8.1f} MB/s "
            f"{w['iops'] + r['iops']:9.0f} IOPS  held<= {counters['held_max']} "
            f"queue<= {counters['queue_max']}")
        return row

    def rewrite(self, cfg, rep, job, jobfile, image, size, first, cap):
        """The rewrite pass after `first`: time-based over exactly the blocks it wrote
        (a random first pass cut by its cap: the same blocks once more, capped at `cap`)."""
        if first is None:
            return self.fio(cfg, rep, job, jobfile, image, size,
                            runtime=self.p["rewrite_s"], time_based=True)
        written = first["bytes"]
        if jobfile.startswith("seq") or written >= size:
            # sequential: the prefix [0, written); random: the first pass covered the region
            return self.fio(cfg, rep, job, jobfile, image, min(written, size),
                            runtime=self.p["rewrite_s"], time_based=True)
        # a random first pass cut by its cap: the same bytes again, same seed = same blocks
        return self.fio(cfg, rep, job, jobfile, image, size, io_bytes=written, runtime=cap)

    def sfs_job(self, cfg, rep, job, mode, image, passes=1):
        if not self.want(job):
            return None
        sampler = Sampler(image)
        sampler.start()
        try:
            out = sh([self.sfs_write, self.mnt / "the-file", str(self.p["sfs_mb"] << 20),
                      str(BS), mode, str(rep + 7), str(passes)])
        finally:
            counters = sampler.stop()
        d = json.loads(out.strip().splitlines()[-1])
        row = {"config": cfg, "rep": rep, "job": job, "bw_bytes": d["bytes"] / d["seconds"],
               "iops": d["ops"] / d["seconds"], "read_iops": 0,
               "total_iops": d["ops"] / d["seconds"], "bytes": d["bytes"],
               "runtime_ms": d["seconds"] * 1000, **counters}
        self.res["runs"].append(row)
        self.save()
        log(f"  {cfg:12} rep {rep} {job:16} {row['bw_bytes'] / 1e6:8.1f} MB/s "
            f"{row['iops']:9.0f} IOPS")
        return row

    def drained(self, image, run):
        """Let a non-ordered store finish its backlog before the rewrite pass, so that the
        rewrite measures the fast path, not the compression of the first pass's pre-images;
        how long that took is recorded with the first pass."""
        t = time.monotonic()
        self.wait_drained(image)
        if run is not None:
            run["drain_s"] = time.monotonic() - t
            self.save()

    def mem_point(self, image=None):
        if image is not None:
            self.wait_drained(image)
        drop_caches()
        time.sleep(0.5)
        drop_caches()
        return meminfo()

    def view_vs_device(self, cfg, rep, sess, image):
        """Read the session's view (bdsnap map: the image before the mount) whole, then the
        image itself, both bs=1M from a cold cache: what reading through a view costs."""
        dev = sh([CLI, "map", sess.dir]).strip()
        try:
            times = []
            for path in (dev, image):
                drop_caches()
                t = time.monotonic()
                sh(["dd", f"if={path}", "of=/dev/null", "bs=1M", "status=none"])
                times.append(time.monotonic() - t)
        finally:
            sh([CLI, "unmap", dev])
        size = Path(image).stat().st_size
        self.res["view"].append({"config": cfg, "rep": rep, "bytes": size,
                                 "view_s": times[0], "device_s": times[1]})
        log(f"  {cfg:12} rep {rep} read view {times[0]:.2f} s, image {times[1]:.2f} s")

    def restore_vs_dd(self, cfg, rep, sess, image, expect_sha=None):
        """Restore the session onto `image`; then dd as many 4 KiB blocks onto it."""
        blocks = int(read_meta(sess.dir).get("blocks_saved", 0))
        t = time.monotonic()
        sh([CLI, "restore", sess.dir, "--to", image])
        restore_s = time.monotonic() - t
        ok = None
        if expect_sha is not None:
            ok = sha256(image) == expect_sha
            self.res["verify"].append({"config": cfg, "rep": rep, "ok": ok,
                                       "session": sess.dir.name, "blocks": blocks})
            log(f"  {cfg:12} rep {rep} restore bit-exact: {ok}")
            if not ok:
                self.res["errors"].append(f"{cfg} rep {rep}: restored image differs")
        # the same count of blocks onto the same target, rewriting what is there
        t = time.monotonic()
        sh(["dd", f"if={image}", f"of={image}", f"bs={BS}", f"count={blocks}",
            "conv=notrunc,fsync", "status=none"])
        dd_s = time.monotonic() - t
        self.res["restore"].append({"config": cfg, "rep": rep, "blocks": blocks,
                                    "restore_s": restore_s, "dd_s": dd_s, "bit_exact": ok})
        log(f"  {cfg:12} rep {rep} restore {blocks} blocks {restore_s:.2f} s, dd {dd_s:.2f} s")

    def ext4_config(self, cfg, rep):
        p = self.p
        img = self.work / "work.img"
        img.unlink(missing_ok=True)
        shutil.copyfile(self.golden, img)
        mem = rep == 0 and not self.only_jobs
        check = rep == 0 and cfg in ACTIVATE
        with self.activated(cfg, img):
            # 1. sequential 1 MiB, iodepth 4
            if self.want("seq"):
                s = self.write_phase(cfg, rep, "seq", "seq-1m.fio", img, p["seq_mb"],
                                     p["seq_cap_s"], mem)
                self.record_session(cfg, rep, "seq", s)
            # 2. random 4 KiB, iodepth 16, then restore vs dd
            if self.want("rand"):
                sha = sha256(img) if check else None
                s = self.write_phase(cfg, rep, "rand", "rand-4k.fio", img, p["rand_mb"],
                                     p["rand_cap_s"], mem)
                self.record_session(cfg, rep, "rand", s, keep=True)
                if s.dir:
                    self.view_vs_device(cfg, rep, s, img)
                    self.restore_vs_dd(cfg, rep, s, img, sha)
                    self.drop_session(s)
            # 3. mixed 70/30
            if self.want("mixed"):
                with self.session(cfg, img) as s:
                    self.fio(cfg, rep, "mixed", "mixed-70-30.fio", img, p["mixed_mb"] << 20,
                             p["mixed_io_mb"] << 20, runtime=p["seq_cap_s"])
                self.record_session(cfg, rep, "mixed", s)
            # 4., 5. the same writes at queue depth 1 (psync), each in a session of its own
            if self.want("qd1-seq"):
                s = self.write_phase(cfg, rep, "qd1-seq", "seq-1m-qd1.fio", img,
                                     p["seq_qd1_mb"], p["seq_cap_s"])
                self.record_session(cfg, rep, "qd1-seq", s)
            if self.want("qd1-rand"):
                s = self.write_phase(cfg, rep, "qd1-rand", "rand-4k-qd1.fio", img,
                                     p["rand_qd1_mb"], p["rand_qd1_cap_s"])
                self.record_session(cfg, rep, "qd1-rand", s)
        img.unlink()

    def write_phase(self, cfg, rep, kind, jobfile, img, size_mb, cap, mem=False):
        """One mount cycle: `kind`-first over the first size_mb MiB of fio.dat (every block
        once, or until `cap` seconds), the store drained, then `kind`-rewrite over the same
        blocks; with `mem`, kernel memory before the mount and after the first pass."""
        before = self.mem_point() if mem else None
        with self.session(cfg, img) as s:
            r = self.fio(cfg, rep, f"{kind}-first", jobfile, img, size_mb << 20, runtime=cap)
            self.drained(img, r)
            if mem:
                self.memory(cfg, kind, before, self.mem_point(img), s, r)
            self.rewrite(cfg, rep, f"{kind}-rewrite", jobfile, img, size_mb << 20, r, cap)
        return s

    def memory(self, cfg, kind, before, after, sess, run):
        """Kernel memory of a session that touched `blocks` blocks (LIST's blocks_saved;
        for dm-snapshot and the baseline, the 4 KiB blocks fio wrote)."""
        written = run["bytes"] if run else 0
        blocks = written // BS
        if cfg in ACTIVATE:
            d = [d for d in uapi.list_devices() if d.path.decode() == str(self.work / "work.img")]
            blocks = d[0].blocks_saved if d else blocks
        self.res["memory"].append({"config": cfg, "kind": kind, "before": before,
                                   "after": after, "bytes_written": written, "blocks": blocks})

    def sfs_config(self, cfg, rep):
        img = self.work / "sfs.img"
        img.unlink(missing_ok=True)
        shutil.copyfile(self.sfs_golden, img)
        check = rep == 0 and cfg in ACTIVATE
        with self.activated(cfg, img):
            if self.want("seq"):
                with self.session(cfg, img, "singlefilefs") as s:
                    self.drained(img, self.sfs_job(cfg, rep, "seq-first", "seq", img))
                    self.sfs_job(cfg, rep, "seq-rewrite", "seq", img,
                                 self.p["sfs_rewrite_passes"])
                self.record_session(cfg, rep, "seq", s)
            if self.want("rand"):
                sha = sha256(img) if check else None
                with self.session(cfg, img, "singlefilefs") as s:
                    self.drained(img, self.sfs_job(cfg, rep, "rand-first", "rand", img))
                    self.sfs_job(cfg, rep, "rand-rewrite", "rand", img,
                                 self.p["sfs_rewrite_passes"])
                self.record_session(cfg, rep, "rand", s, keep=True)
                if s.dir:
                    self.restore_vs_dd(cfg, rep, s, img, sha)
                    self.drop_session(s)
        img.unlink()

    def cpu_costs(self):
        """User-space zlib level 1 (bdsnap's level) and a plain copy of 4 KiB blocks in this
        guest: what compressing a pre-image costs next to copying it (dm-snapshot)."""
        import zlib
        n = 256
        data = {"text": text_like(n * BS), "random": os.urandom(n * BS)}
        for name, buf in data.items():
            blocks = [buf[i:i + BS] for i in range(0, len(buf), BS)]
            t = time.monotonic()
            out = sum(len(zlib.compress(b, 1)) for b in blocks)
            z = (time.monotonic() - t) / n
            t = time.monotonic()
            for b in blocks:
                bytearray(b)
            c = (time.monotonic() - t) / n
            self.res.setdefault("cpu", []).append({"data": name, "zlib1_us": z * 1e6,
                                                   "copy_us": c * 1e6, "ratio": out / len(buf)})
            log(f"  zlib level 1 on {name}: {z * 1e6:.0f} us per 4 KiB block "
                f"(copy: {c * 1e6:.1f} us), ratio {out / len(buf):.3f}")

    def compressibility(self):
        """Store bytes vs raw bytes for pre-images of text-like and of random data."""
        img = self.work / "work.img"
        img.unlink(missing_ok=True)
        shutil.copyfile(self.golden, img)
        n = self.p["comp_mb"]
        with self.activated("v2", img):
            for data in ("text", "random"):
                with self.session("v2", img) as s:
                    sh(["dd", "if=/dev/zero", f"of={self.mnt / (data + '.dat')}", "bs=1M",
                        f"count={n}", "conv=notrunc", "oflag=direct", "status=none"])
                row = self.record_session("v2", 0, f"compress-{data}", s)
                self.res["compress"].append({"data": data, "file_bytes": n << 20, **{
                    k: row[k] for k in ("blocks_saved", "bytes_raw", "bytes_stored")}})
                log(f"  compress {data}: raw {row['bytes_raw']} stored {row['bytes_stored']} "
                    f"({row['bytes_stored'] / max(row['bytes_raw'], 1):.3f})")
        img.unlink()

    # ---- driver ----------------------------------------------------------------
    def save(self):
        self.res["duration_s"] = time.monotonic() - T0
        tmp = self.out / ".bench.json.tmp"
        tmp.write_text(json.dumps(self.res, indent=1))
        os.replace(tmp, self.out / "bench.json")

    def run(self, reps=None, jobs_only=False):
        reps = reps or self.p["reps"]
        ext4 = [c for c in EXT4_CONFIGS if not self.configs or c in self.configs]
        sfs = [c for c in SFS_CONFIGS if not self.configs or c in self.configs]
        self.res["reps"] = reps
        with self.stack:
            self.setup()
            for rep in range(reps):
                # rotate the order so that no configuration always runs first or last
                for cfg in ext4[rep % len(ext4):] + ext4[:rep % len(ext4)] if ext4 else []:
                    log(f"{cfg} rep {rep}")
                    self.ext4_config(cfg, rep)
                for cfg in sfs[rep % len(sfs):] + sfs[:rep % len(sfs)] if sfs else []:
                    log(f"{cfg} rep {rep}")
                    self.sfs_config(cfg, rep)
            if not jobs_only and (not self.configs or "v2" in self.configs):
                self.compressibility()
            if not jobs_only:
                self.cpu_costs()
            self.res["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
            self.save()
        log(f"done in {time.monotonic() - T0:.0f} s; {len(self.res['errors'])} error(s)")
        return self.res


def text_like(n):
    """n bytes of C headers from /usr/include, in a fixed order (real, compressible text)."""
    out, size = [], 0
    for root, dirs, files in os.walk("/usr/include"):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".h"):
                continue
            try:
                data = Path(root, name).read_bytes()
            except OSError:
                continue
            out.append(data)
            size += len(data)
            if size >= n:
                return b"".join(out)[:n]
    data = b"".join(out) or b"the quick brown fox jumps over the lazy dog\n"
    return (data * (n // len(data) + 1))[:n]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="full")
    ap.add_argument("--out", default=os.environ.get("BDSNAP_RESULTS", "."),
                    help="directory for bench.json (default $BDSNAP_RESULTS)")
    ap.add_argument("--work", default="/tmp/bench", help="scratch directory (tmpfs)")
    ap.add_argument("--reps", type=int, default=None, help="override the profile's repetitions")
    ap.add_argument("--configs", nargs="*", help=f"subset of {EXT4_CONFIGS + SFS_CONFIGS}")
    ap.add_argument("--jobs", nargs="*", help="only jobs starting with these (seq, rand, mixed, "
                    "qd1 = qd1-seq and qd1-rand; or e.g. rand-first, qd1-rand-first)")
    ap.add_argument("--store-fs", choices=("ext4", "tmpfs"), default="ext4",
                    help="file system of bdsnap's store (default ext4 on a loop device)")
    ap.add_argument("--jobs-only", action="store_true",
                    help="skip the measurements made once (store size vs raw, CPU costs): "
                    "the jobs alone, e.g. for bench/ab.py or a profile of the jobs")
    ap.add_argument("--perf", action="store_true",
                    help="run each fio job under `perf record -a -g` (linux-perf on the host) "
                    "and leave perf-<config>-<job>-<rep>.txt, CPU share per symbol, in --out")
    a = ap.parse_args(argv)
    if not os.environ.get("BDSNAP_GUEST"):
        sys.exit("bench.py: runs only inside the test guest (tests/vm/run.py); use `make bench`")
    mem = meminfo()["MemTotal"] // 1024
    if mem < PROFILES[a.profile]["mem_mb_min"]:
        sys.exit(f"bench.py: profile {a.profile} needs a guest with >= "
                 f"{PROFILES[a.profile]['mem_mb_min']} MiB (run.py --mem), this one has {mem}")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    res = Bench(a.profile, a.out, a.work, a.configs, a.jobs, a.store_fs,
                a.perf).run(a.reps, a.jobs_only)
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
