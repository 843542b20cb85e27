"""Crash consistency: crash the guest in the middle of a write-heavy workload
on a tracked device, boot again, restore from the session that was left
open, and compare the device with its pre-mount image, on the host.

Run on the host (each run boots the test guest twice, ~20-30 s):

    /usr/bin/python3 -m pytest -v -s tests/crash                 # 3 ordered runs
    BDSNAP_CRASH_RUNS=20 /usr/bin/python3 -m pytest -v -s tests/crash   # make stress

One run:
  1. the host makes two disk images: the tracked disk (64 MiB ext4, already
     holding files) and the store disk (256 MiB ext4), and records the
     tracked disk's sha256: the pre-mount image;
  2. boot 1 (guest, both as virtio disks: /dev/vda tracked, /dev/vdb store):
     mount the store at /snapshot, insmod bdsnap, `bdsnap activate /dev/vda
     --ordered`, mount /dev/vda, start a workload (new files, in-place
     overwrites with and without O_DIRECT, fsync, deletes, sync) and after a
     random 0.5-4 s `echo c > /proc/sysrq-trigger`: the guest panics, qemu
     exits (run.py --expect-crash);
  3. boot 2: mount the store, `bdsnap verify` and `bdsnap restore SESSION
     --to /dev/vda` (the session says state=open; an ordered one needs no
     --force, a plain one does, and gets it);
  4. the host compares the tracked disk's sha256 with the pre-mount one.

Ordered sessions must restore bit-exact every time (asserted: N/N). Plain
(non-ordered) sessions promise nothing after a crash (a write may reach the
device before its pre-image reaches the store): BDSNAP_CRASH_PLAIN_RUNS runs
(default 1) are made and their outcome is printed, not asserted; except that a
log the crash damaged must be refused (exit 3) without a write to the device.

What a crash here means: qemu's virtio disks use cache=writeback (run.py's
default), so everything the guest had submitted to a disk before the panic is
in the host file, and what it had only in its page cache is lost. A volatile
disk write cache that loses unflushed writes in another order is not modelled.

BDSNAP_CRASH_SEED fixes the random delays (the seed is printed); the disk
images of a failed run are kept under build/crash/.
"""

import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "vm"))
import run  # noqa: E402  (tests/vm/run.py)

PASSWORD = "bdsnap-crash-password"
WORK = REPO / "build" / "crash"
RUNS = int(os.environ.get("BDSNAP_CRASH_RUNS", "3"))
PLAIN_RUNS = int(os.environ.get("BDSNAP_CRASH_PLAIN_RUNS", "1"))
SEED = int(os.environ.get("BDSNAP_CRASH_SEED", str(int(time.time()))))
BOOT_TIMEOUT = 300

pytestmark = [
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                       reason="qemu-system-x86_64 not installed"),
    pytest.mark.skipif(not (REPO / "module" / "bdsnap.ko").exists()
                       or not (REPO / "cli" / "bdsnap").exists(),
                       reason="build first: make all"),
]

# Guest side of boot 1. The workload changes old files in place (their
# pre-images are real data), writes new ones, uses O_DIRECT, fsync and sync,
# and keeps writeback busy so that the device changes all the time.
CRASH_SCRIPT = r"""
set -e
mkdir -p /snapshot /mnt/t
mount -t ext4 /dev/vdb /snapshot
insmod module/bdsnap.ko password={password} auth_fail_delay_ms=10
printf '%s\n' {password} | cli/bdsnap activate /dev/vda {ordered} --password-fd 0
mount -t ext4 /dev/vda /mnt/t
echo 50 > /proc/sys/vm/dirty_writeback_centisecs
echo 50 > /proc/sys/vm/dirty_expire_centisecs
(
  set +e
  i=0
  while :; do
    i=$((i + 1))
    dd if=/dev/urandom of=/mnt/t/new$((i % 16)) bs=64k count=4 conv=fsync status=none
    dd if=/dev/urandom of=/mnt/t/big bs=4k count=8 seek=$(( (i * 97) % 2040 )) \
      conv=notrunc oflag=direct status=none
    f=/mnt/t/old$((i % 40))
    if [ -e $f ]; then
      dd if=/dev/urandom of=$f bs=4k count=2 seek=$((i % 8)) conv=notrunc status=none
    fi
    [ $((i % 9)) = 0 ] && rm -f /mnt/t/old$(( (i * 7) % 40 ))
    [ $((i % 5)) = 0 ] && sync
  done
) >/dev/null 2>&1 &
sleep {delay}
echo "bdsnap-crash: crashing after {delay} s" > /dev/kmsg
echo c > /proc/sysrq-trigger
sleep 60
echo "bdsnap-crash: still alive after sysrq-c"
exit 1
"""

# Guest side of boot 2: find the one session, verify and restore it.
RESTORE_SCRIPT = r"""
set -e
mkdir -p /snapshot
mount -t ext4 /dev/vdb /snapshot
n=$(ls /snapshot | grep -c '^vda_' || true)
[ "$n" = 1 ] || { echo "bdsnap-crash: expected one session, found $n"; ls -la /snapshot; exit 1; }
s=$(ls /snapshot | grep '^vda_')
echo "bdsnap-crash: session=$s"
grep '^state=' /snapshot/$s/meta | tail -1 | sed 's/^/bdsnap-crash: meta /'
cli/bdsnap show $s
cli/bdsnap verify $s | sed 's/^/bdsnap-crash: verify /'
set +e
cli/bdsnap restore $s --to /dev/vda
rc=$?
set -e
if [ $rc = 4 ]; then
  echo "bdsnap-crash: restore without --force refused; with --force"
  set +e
  cli/bdsnap restore $s --to /dev/vda --force
  rc=$?
  set -e
  echo "bdsnap-crash: forced=1"
  # 3: a plain session's log was damaged by the crash; nothing was written
  [ $rc = 3 ] && echo "bdsnap-crash: refused=corrupt log"
  [ $rc = 0 ] || [ $rc = 3 ] || exit $rc
else
  [ $rc = 0 ] || exit $rc
  echo "bdsnap-crash: forced=0"
fi
sync
umount /snapshot
"""


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def make_disks(d, rnd):
    """The tracked image (populated ext4) and the store image."""
    if d.exists():
        shutil.rmtree(d)
    src = d / "content"
    src.mkdir(parents=True)
    for i in range(40):
        (src / f"old{i}").write_bytes(rnd.randbytes(rnd.randrange(16, 256) << 10))
    (src / "big").write_bytes(rnd.randbytes(8 << 20))
    tracked, store = d / "tracked.img", d / "store.img"
    for img, mb in ((tracked, 64), (store, 256)):
        with open(img, "wb") as f:
            f.truncate(mb << 20)
    mkfs = ["mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "lazy_itable_init=0,lazy_journal_init=0"]
    subprocess.run([*mkfs, "-d", str(src), str(tracked)], check=True)
    subprocess.run([*mkfs, str(store)], check=True)
    shutil.rmtree(src)
    return tracked, store


def one_run(name, ordered, delay, rnd):
    """Crash, restore, compare. Returns a dict describing the run."""
    d = WORK / name
    tracked, store = make_disks(d, rnd)
    pre = sha256(tracked)
    out = {"name": name, "delay": delay, "ok": False}

    script = CRASH_SCRIPT.format(password=PASSWORD, ordered="--ordered" if ordered else "",
                                 delay=f"{delay:.2f}")
    res = run.run_guest(script, name=f"{name}-crash", disks=[tracked, store],
                        expect_crash=True, timeout=BOOT_TIMEOUT, quiet=True)
    log = res.log_path.read_text(errors="replace") if res.log_path else ""
    if not res.ok or "sysrq triggered crash" not in log:
        out["error"] = f"boot 1: {res.reason} (log {res.log_path})"
        return out
    crashed = sha256(tracked)
    out["changed"] = crashed != pre

    res = run.run_guest(RESTORE_SCRIPT, name=f"{name}-restore", disks=[tracked, store],
                        timeout=BOOT_TIMEOUT, quiet=True)
    text = res.output_path.read_text(errors="replace") if res.output_path else ""
    info = dict(re.findall(r"^bdsnap-crash: (\w+)[= ](.*)$", text, re.M))
    m = re.search(r"ok: (\d+) blocks", info.get("verify", ""))
    out.update(state=info.get("meta", "?"), blocks=int(m.group(1)) if m else None,
               forced=info.get("forced"), refused=info.get("refused"))
    if not res.ok:
        out["error"] = f"boot 2: {res.reason} (output {res.output_path})\n{text[-3000:]}"
        return out
    after = sha256(tracked)
    if out["refused"] and after != crashed:
        out["error"] = f"boot 2: a refused restore wrote to the device (kept in {d})"
        return out
    out["ok"] = after == pre
    if out["ok"]:
        shutil.rmtree(d)
    else:
        out["error"] = f"restored image differs from the pre-mount image (kept in {d})"
    return out


def describe(r, promised=True):
    if r["ok"]:
        verdict = "bit-exact"
    elif r.get("refused"):
        verdict = f"restore refused ({r['refused']}), device left as the crash left it"
    elif promised or "boot" in r.get("error", ""):
        verdict = f"FAILED: {r.get('error', 'differs')}"
    else:
        verdict = "not bit-exact (no promise without ordered mode)"
    return (f"{r['name']}: crash after {r['delay']:.2f} s, device changed={r.get('changed')}, "
            f"{r.get('state', '?')}, {r.get('blocks')} blocks in the session, "
            f"forced={r.get('forced')} -> {verdict}")


def series(what, runs, one, describe):
    """Run one(i) for i < runs, print each run with describe(); every run must
    restore bit-exact, and must have changed the device (or it proves nothing)."""
    results = []
    t0 = time.monotonic()
    for i in range(runs):
        r = one(i)
        print(describe(r), flush=True)
        results.append(r)
    ok = sum(r["ok"] for r in results)
    print(f"{what}: {ok}/{runs} bit-exact ({time.monotonic() - t0:.0f} s)", flush=True)
    assert ok == runs, "\n".join(describe(r) for r in results if not r["ok"])
    assert all(r.get("changed") for r in results)


def test_ordered_crash_restores_bit_exact():
    rnd = random.Random(SEED)
    print(f"\ncrash seed {SEED} (BDSNAP_CRASH_SEED), {RUNS} ordered runs")
    series("ordered crashes survived", RUNS,
           lambda i: one_run(f"ordered-{i}", True, rnd.uniform(0.5, 4.0), rnd), describe)


def test_plain_crash_outcome_is_reported():
    """Non-ordered mode makes no promise after a crash: report, never assert."""
    if PLAIN_RUNS <= 0:
        pytest.skip("BDSNAP_CRASH_PLAIN_RUNS=0")
    rnd = random.Random(SEED + 1)
    results = []
    for i in range(PLAIN_RUNS):
        r = one_run(f"plain-{i}", False, rnd.uniform(0.5, 4.0), rnd)
        print(describe(r, promised=False), flush=True)
        results.append(r)
    ok = sum(r["ok"] for r in results)
    print(f"plain (non-ordered) crashes: {ok}/{PLAIN_RUNS} restored bit-exact (reported only)")
    # only the machinery must work: both boots, one session, a restore
    broken = [r for r in results if not r["ok"] and "boot" in r.get("error", "")]
    assert not broken, "\n".join(describe(r) for r in broken)
    for r in results:
        if not r["ok"]:
            shutil.rmtree(WORK / r["name"], ignore_errors=True)
