"""Rollback mode across a crash (issue 22): crash the guest in the middle of
a rollback session, or in the middle of its rollback at unmount; the next
boot's `bdsnap load --config` must finish the rollback before it activates
the device, and the device must then equal its pre-mount image (sha256, on
the host). Two boots per run, as tests/crash/test_crash.py does:

  1. boot 1: `bdsnap load --config` (the device with rollback=yes), mount,
     a write workload; then either `echo c > /proc/sysrq-trigger` after a
     random 0.5-3 s (mid-session), or stop the workload, unmount, and crash
     a random 0-0.15 s after the kernel says it writes the session back
     (mid-rollback);
  2. boot 2: `bdsnap load --config` again, then a mount and an unmount (a
     rollback session that changes nothing).

BDSNAP_ROLLBACK_CRASH_RUNS sets the runs of each kind (default 1; `make
stress` 5).
"""

import os
import random
import re
import shutil

import pytest

from test_crash import (PASSWORD, SEED, WORK, make_disks, pytestmark, run,  # noqa: F401
                        series, sha256)

RUNS = int(os.environ.get("BDSNAP_ROLLBACK_CRASH_RUNS", "1"))
BOOT_TIMEOUT = 300

STORE = r"""
mkdir -p /snapshot /mnt/t
mount -t ext4 /dev/vdb /snapshot
"""

LOAD = r"""
echo '/dev/vda rollback=yes' > /tmp/bdsnap.conf
printf '%s\n' {password} | cli/bdsnap load --from . --no-syscalls --config /tmp/bdsnap.conf \
  --password-fd 0
"""

WORKLOAD = r"""
(
  set +e
  i=0
  while [ ! -e /tmp/stop ]; do
    i=$((i + 1))
    dd if=/dev/urandom of=/mnt/t/new$((i % 16)) bs=64k count=8 conv=fsync status=none
    dd if=/dev/urandom of=/mnt/t/big bs=4k count=16 seek=$(( (i * 97) % 2030 )) \
      conv=notrunc oflag=direct status=none
    f=/mnt/t/old$((i % 40))
    [ -e $f ] && dd if=/dev/urandom of=$f bs=4k count=2 seek=$((i % 8)) conv=notrunc status=none
    [ $((i % 9)) = 0 ] && rm -f /mnt/t/old$(( (i * 7) % 40 ))
    [ $((i % 5)) = 0 ] && sync
  done
  touch /tmp/stopped
) >/dev/null 2>&1 &
"""

MID_SESSION = "set -e\n" + STORE + LOAD + r"""
mount -t ext4 /dev/vda /mnt/t
""" + WORKLOAD + r"""
sleep {delay}
echo "bdsnap-crash: crashing mid-session after {delay} s" > /dev/kmsg
echo c > /proc/sysrq-trigger
sleep 60
exit 1
"""

MID_ROLLBACK = "set -e\n" + STORE + LOAD + r"""
mount -t ext4 /dev/vda /mnt/t
# a big change set: the write-back then lasts long enough to be cut
dd if=/dev/urandom of=/mnt/t/fill bs=1M count=24 conv=fsync status=none
""" + WORKLOAD + r"""
sleep 2
touch /tmp/stop
while [ ! -e /tmp/stopped ]; do sleep 0.1; done
umount /mnt/t &
until dmesg | grep -q 'log checked, writing it back'; do sleep 0.01; done
sleep {delay}
echo "bdsnap-crash: crashing mid-rollback after {delay} s" > /dev/kmsg
echo c > /proc/sysrq-trigger
sleep 60
exit 1
"""

# Boot 2: what the crash left, then the boot's load, then one more cycle.
FINISH = "set -e\n" + STORE + r"""
n=0
for s in /snapshot/vda_*; do
  [ -e "$s/meta" ] && ! grep -q '^rolled_back=' "$s/meta" && n=$((n + 1))
done
echo "bdsnap-crash: pending=$n"
""" + LOAD + r"""
left=$(ls /snapshot | grep -c '^vda_' || true)
echo "bdsnap-crash: left=$left"
mount -t ext4 /dev/vda /mnt/t
umount /mnt/t
umount /snapshot
"""


def one_run(name, script, delay, rnd):
    d = WORK / name
    tracked, store = make_disks(d, rnd)
    pre = sha256(tracked)
    out = {"name": name, "delay": delay, "ok": False}
    res = run.run_guest(script.format(password=PASSWORD, delay=f"{delay:.2f}"),
                        name=f"{name}-crash", disks=[tracked, store], expect_crash=True,
                        timeout=BOOT_TIMEOUT, quiet=True)
    log = res.log_path.read_text(errors="replace") if res.log_path else ""
    if not res.ok or "sysrq triggered crash" not in log:
        out["error"] = f"boot 1: {res.reason} (log {res.log_path})"
        return out
    out["changed"] = sha256(tracked) != pre
    res = run.run_guest(FINISH.format(password=PASSWORD), name=f"{name}-finish",
                        disks=[tracked, store], timeout=BOOT_TIMEOUT, quiet=True)
    text = res.output_path.read_text(errors="replace") if res.output_path else ""
    info = dict(re.findall(r"^bdsnap-crash: (\w+)=(.*)$", text, re.M))
    out.update(pending=int(info.get("pending", -1)), left=info.get("left"))
    if not res.ok:
        out["error"] = f"boot 2: {res.reason} (output {res.output_path})\n{text[-3000:]}"
        return out
    out["ok"] = sha256(tracked) == pre and out["pending"] == 1 and out["left"] == "0"
    if out["ok"]:
        shutil.rmtree(d)
    else:
        out["error"] = f"not rolled back, or the session not finished (kept in {d})"
    return out


def describe(r):
    verdict = "bit-exact" if r["ok"] else f"FAILED: {r.get('error')}"
    return (f"{r['name']}: crash after {r['delay']:.2f} s, device changed={r.get('changed')}, "
            f"sessions left unfinished by the crash={r.get('pending')}, "
            f"left after load={r.get('left')} -> {verdict}")


@pytest.mark.parametrize("where", ["mid-session", "mid-rollback"])
def test_crash_is_rolled_back_at_the_next_boot(where):
    rnd = random.Random(SEED + (2 if where == "mid-session" else 3))
    script = MID_SESSION if where == "mid-session" else MID_ROLLBACK
    print(f"\ncrash seed {SEED} (BDSNAP_CRASH_SEED), {RUNS} {where} runs")

    def one(i):
        delay = rnd.uniform(0.5, 3.0) if where == "mid-session" else rnd.uniform(0, 0.15)
        return one_run(f"rollback-{where}-{i}", script, delay, rnd)

    series(f"{where} crashes rolled back at the next boot", RUNS, one, describe)
