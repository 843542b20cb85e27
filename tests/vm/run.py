#!/usr/bin/python3
"""Run a command inside a QEMU guest booted with Debian's kernel; fail loudly.

    /usr/bin/python3 tests/vm/run.py [--name N] [--timeout S] [--disk FILE]... \
        [--mem MB] [--append ARGS] [--expect-crash] [--quiet] -- CMD [ARGS...]

or, from Python:

    sys.path.insert(0, "tests/vm"); import run
    res = run.run_guest(["insmod", "module/bdsnap.ko"], name="x", timeout=300)
    assert res.ok, res.reason

The guest sees the host's / read-only (9p) under a tmpfs overlay, so it can
create e.g. /snapshot; CMD runs through /bin/sh in the repository root (same
absolute path as on the host) with BDSNAP_GUEST=1 and BDSNAP_RESULTS=/results,
a writable share backed by build/vm-results/<name>/. CMD's output is streamed
to our stdout (guest ttyS1); the kernel console (ttyS0) and CMD's output are
kept in build/vm-logs/<name>-<UTC time>.{log,out}.

A run fails when CMD fails, the guest crashes (panic, oops, any WARN: the guest
boots with panic_on_warn etc.), hangs past --timeout, the kernel log shows a
warning/bug/lockup pattern, or the kernel gained a taint bit other than O and E.
With --expect-crash, a guest crash is the success and anything else a failure.
See tests/vm/init.sh for the guest side. Standard library only.
"""

import argparse
import dataclasses
import datetime
import hashlib
import lzma
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build"
INIT = Path(__file__).resolve().parent / "init.sh"

# Needed in the initramfs to mount the host root; run.py adds their dependencies.
STAGE1_MODULES = ["virtio_pci", "9pnet_virtio", "9p", "overlay"]

KERNEL_ARGS = ("console=ttyS0 rdinit=/init panic=-1 oops=panic panic_on_warn=1 "
               "softlockup_panic=1 hung_task_panic=1 printk.devkmsg=on")

BAD_PATTERNS = re.compile(
    r"WARNING:|BUG:|Call Trace|Oops|Kernel panic|general protection fault"
    r"|INFO: task .* blocked|soft lockup")

TAINT_LETTERS = "PFSRMBUDAWCIOELKXTN"  # bit 0 .. 18, kernel/panic.c
TAINT_ALLOWED = (1 << 12) | (1 << 13)  # O: out-of-tree, E: unsigned module


@dataclasses.dataclass
class GuestResult:
    ok: bool
    reason: str                  # one line; "ok" on success
    returncode: int | None       # CMD's exit status; None if it did not finish
    crashed: bool = False        # guest panicked / died without reporting
    timed_out: bool = False
    log_path: Path | None = None      # kernel console (ttyS0)
    output_path: Path | None = None   # CMD's output (ttyS1)
    results_dir: Path | None = None   # /results in the guest
    taint_boot: int | None = None
    taint_end: int | None = None
    duration: float = 0.0
    problems: list = dataclasses.field(default_factory=list)  # bad log lines


def default_kver() -> str:
    """Newest /lib/modules/*/build, like mk/kernel.mk (never `uname -r`)."""
    if os.environ.get("KVER"):
        return os.environ["KVER"]
    vers = [p.parent.name for p in Path("/lib/modules").glob("*/build")]
    if not vers:
        sys.exit("run.py: no /lib/modules/*/build: install linux-headers-amd64")
    key = lambda v: [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", v)]
    return sorted(vers, key=key)[-1]


def taint_letters(mask: int) -> str:
    return "".join(c for i, c in enumerate(TAINT_LETTERS) if mask >> i & 1) or "-"


def _atomic_write(path: Path, data: bytes) -> None:
    # Several runs may share build/vm: never let one see a half-written file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def vmlinux(kver: str) -> Path:
    """The uncompressed kernel: PVH boot of an ELF vmlinux is the fast path."""
    out = BUILD / "vm" / f"vmlinux-{kver}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    blob = Path(f"/boot/vmlinuz-{kver}").read_bytes()
    # bzImage embeds the xz stream after the setup code; find its magic.
    off = blob.find(b"\xfd7zXZ\x00")
    if off < 0:
        sys.exit(f"run.py: no xz stream in /boot/vmlinuz-{kver}")
    # The decompressor stops at the end of the stream; what follows is ignored.
    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(blob[off:])
    if not elf.startswith(b"\x7fELF"):
        sys.exit(f"run.py: /boot/vmlinuz-{kver} did not yield an ELF vmlinux")
    _atomic_write(out, elf)
    return out


def _module_order(kver: str) -> list[Path]:
    """STAGE1_MODULES and their dependencies, dependencies first."""
    base = Path("/lib/modules") / kver
    deps = {}
    for line in (base / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
    by_name = {Path(m).name.split(".ko")[0].replace("-", "_"): m for m in deps}
    order = []

    def visit(mod):
        for d in deps[mod]:
            visit(d)
        if mod not in order:
            order.append(mod)
    for name in STAGE1_MODULES:
        visit(by_name[name])
    return [base / m for m in order]


def _cpio(entries) -> bytes:
    """newc archive from (name, mode, data, rdev_major, rdev_minor) tuples."""
    out = bytearray()

    def add(ino, name, mode, data=b"", rmaj=0, rmin=0):
        nb = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rmaj, rmin, len(nb), 0]
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields) + nb)
        out.extend(b"\0" * (-len(out) % 4) + data)
        out.extend(b"\0" * (-len(out) % 4))
    for ino, e in enumerate(entries, 1):
        add(ino, *e)
    add(0, "TRAILER!!!", 0)
    return bytes(out)


def initramfs(kver: str) -> Path:
    """busybox + init.sh + the 9p/overlay modules; rebuilt when any changes."""
    mods = _module_order(kver)
    busybox = Path("/bin/busybox")
    h = hashlib.sha256(INIT.read_bytes())
    for p in [busybox, *mods]:
        h.update(p.name.encode() + p.read_bytes())
    out = BUILD / "vm" / f"initramfs-{kver}-{h.hexdigest()[:16]}.cpio"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    d, x = 0o040755, 0o100755
    entries = [(n, d) for n in ("bin", "dev", "modules")]
    entries += [("dev/console", 0o020600, b"", 5, 1),
                ("bin/busybox", x, busybox.read_bytes()),  # copied: static binary
                ("init", x, INIT.read_bytes()),
                ("modules.list", 0o100644, "".join(p.name + "\n" for p in mods).encode())]
    entries += [(f"modules/{p.name}", 0o100644, p.read_bytes()) for p in mods]
    _atomic_write(out, _cpio(entries))
    return out


def _stream(pipe, sinks):
    # Forward the guest's ttyS1 byte stream as it arrives (live CI output).
    # Keep draining even if a sink breaks (`run.py | head`): a full pipe would
    # stall the guest's UART and turn into a bogus timeout.
    while chunk := os.read(pipe.fileno(), 65536):
        for s in list(sinks):
            try:
                s.write(chunk)
                s.flush()
            except (OSError, ValueError):
                sinks.remove(s)


def _untime(line: str) -> str:
    return re.sub(r"^\[[\s\d.]+\] ", "", line.strip())


def _scan(text: str) -> list[str]:
    # The echoed kernel command line mentions oops=panic etc.
    return [_untime(l) for l in text.splitlines()
            if BAD_PATTERNS.search(l) and "ommand line:" not in l]


def run_guest(cmd, name: str = "run", timeout: int = 900, disks=(), mem_mb: int = 1024,
              expect_crash: bool = False, append: str = "", kver: str | None = None,
              smp: int = 1, quiet: bool = False) -> GuestResult:
    """Boot the guest, run `cmd` (list: argv, str: shell text), judge the outcome."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"bad run name {name!r}")
    kver = kver or default_kver()
    script = cmd if isinstance(cmd, str) else shlex.join(cmd)
    disks = [Path(p).resolve() for p in disks]
    for p in disks:
        if not p.is_file():
            raise FileNotFoundError(p)

    results = BUILD / "vm-results" / name
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir(parents=True)
    (results / "cmd.sh").write_text(script + "\n")
    (results / "vm.env").write_text(
        f"BDSNAP_REPO={shlex.quote(str(REPO))}\nBDSNAP_NDISKS={len(disks)}\n")
    logs = BUILD / "vm-logs"
    logs.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    log_path = logs / f"{name}-{stamp}.log"
    if log_path.exists():  # same name twice within a second
        stamp += f"-{os.getpid()}"
        log_path = logs / f"{name}-{stamp}.log"
    out_path = logs / f"{name}-{stamp}.out"

    def qesc(p):  # qemu option values escape commas by doubling them
        return str(p).replace(",", ",,")
    qemu = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-smp", str(smp),
            "-m", str(mem_mb), "-nographic", "-no-reboot", "-monitor", "none", "-nic", "none",
            "-kernel", str(vmlinux(kver)), "-initrd", str(initramfs(kver)),
            "-append", f"{KERNEL_ARGS} {append}".strip(),
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,"
                       "readonly=on,multidevs=remap",
            "-virtfs", f"local,path={qesc(results)},mount_tag=results,security_model=none",
            "-serial", f"file:{qesc(log_path)}",  # ttyS0: kernel console
            "-serial", "stdio"]                     # ttyS1: CMD's output
    for p in disks:
        qemu += ["-drive", f"file={qesc(p)},format=raw,if=virtio"]

    t0 = time.monotonic()
    timed_out = False
    with open(out_path, "wb") as out:
        sys.stdout.flush()
        # sys.stdout may be a text-only stand-in (pytest capture): write to its fd.
        sinks = [out] if quiet else [out, open(sys.stdout.fileno(), "wb", closefd=False)]
        proc = subprocess.Popen(qemu, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        reader = threading.Thread(target=_stream, args=(proc.stdout, sinks), daemon=True)
        reader.start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            proc.wait()
        reader.join(5)
    res = GuestResult(ok=False, reason="", returncode=None, timed_out=timed_out,
                      log_path=log_path, output_path=out_path, results_dir=results,
                      duration=time.monotonic() - t0)

    exit_file = results / "exit"
    if exit_file.exists():
        info = dict(kv.split("=") for kv in exit_file.read_text().split())
        res.returncode = int(info["rc"])
        res.taint_boot, res.taint_end = int(info["taint_boot"]), int(info["taint_end"])
    klog = log_path.read_text(errors="replace") if log_path.exists() else ""
    dmesg = results / "dmesg.txt"
    res.problems = _scan(klog + "\n" + (dmesg.read_text(errors="replace")
                                        if dmesg.exists() else ""))
    res.problems = list(dict.fromkeys(res.problems))  # dmesg repeats the console
    qrc = proc.returncode
    # qemu's 0 is never a guest-written status: panic (panic=-1) or power-off.
    res.crashed = not timed_out and qrc == 0

    why = []
    first = res.problems[0] if res.problems else "no message"
    if timed_out:
        why.append(f"guest hung: killed after {timeout} s timeout"
                   + (f" (first: {first})" if res.problems else ""))
    elif res.crashed:
        panic = [_untime(l) for l in klog.splitlines() if "Kernel panic" in l]
        why.append(f"guest crashed{' after the command' if res.returncode is not None else ''}"
                   f" ({panic[-1] if panic else 'no panic line'}; first: {first})")
    elif res.returncode is None:
        why.append(f"no result from the guest (qemu exit {qrc}"
                   + (": guest init failed, see kernel log)" if qrc == 253 else ")"))
    if expect_crash:
        res.ok = res.crashed
        res.reason = "ok: guest crashed as expected" if res.ok else (
            why[0] if why else f"expected a crash, but the command exited {res.returncode}")
    else:
        if res.returncode not in (None, 0):
            why.append(f"command exited {res.returncode}")
        if res.problems and not res.crashed:
            why.append(f"kernel log: {res.problems[0]}")
        if res.taint_end is not None:
            new = res.taint_end & ~res.taint_boot & ~TAINT_ALLOWED
            if new:
                why.append(f"kernel tainted {taint_letters(new)} ({new}); "
                           f"taint now {taint_letters(res.taint_end)} ({res.taint_end})")
        res.ok = not why
        res.reason = "ok" if res.ok else "; ".join(why)

    lines = []
    if not res.ok:
        tail = klog.splitlines()[-60:]
        lines += [f"--- last {len(tail)} lines of {log_path} ---", *tail]
    lines.append(f"bdsnap-vm: {name}: {'PASS' if res.ok else 'FAIL'}: {res.reason} "
                 f"[{res.duration:.1f} s, log {log_path.relative_to(REPO)}]")
    try:
        print(*lines, sep="\n", flush=True)
    except BrokenPipeError:  # `run.py | head`: the verdict still goes to the exit status
        sys.stdout = open(os.devnull, "w")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 usage="%(prog)s [options] -- CMD [ARGS...]")
    ap.add_argument("--name", default="run", help="names logs and build/vm-results/NAME")
    ap.add_argument("--timeout", type=int, default=900, help="seconds (default 900)")
    ap.add_argument("--mem", type=int, default=1024, help="guest MiB (default 1024)")
    ap.add_argument("--smp", type=int, default=1, help="guest CPUs (default 1)")
    ap.add_argument("--disk", action="append", default=[], help="raw virtio disk (repeatable)")
    ap.add_argument("--expect-crash", action="store_true", help="success = guest panicked")
    ap.add_argument("--kver", default=None, help="kernel version (default: newest "
                    "/lib/modules/*/build)")
    ap.add_argument("--append", default="", help="extra kernel command line")
    ap.add_argument("--quiet", action="store_true", help="do not stream CMD's output")
    ap.add_argument("cmd", nargs="+", help="command run through /bin/sh in the guest")
    a = ap.parse_args(argv)
    # One argument is shell text ("make check && ..."); several are an argv.
    cmd = a.cmd[0] if len(a.cmd) == 1 else a.cmd
    res = run_guest(cmd, name=a.name, timeout=a.timeout, disks=a.disk, mem_mb=a.mem,
                    expect_crash=a.expect_crash, append=a.append, kver=a.kver,
                    smp=a.smp, quiet=a.quiet)
    if res.ok:
        return 0
    return res.returncode if res.returncode and not res.problems else 1


if __name__ == "__main__":
    sys.exit(main())
