#!/usr/bin/python3
"""The arm64 test group: Debian's arm64 kernel under qemu-system-aarch64 (TCG).

    /usr/bin/python3 tests/arm64/run.py                 all arm64 scenarios
    /usr/bin/python3 tests/arm64/run.py -k ext4         those whose name contains ext4
    /usr/bin/python3 tests/arm64/run.py --cmd 'CMD'     one guest command, no scenarios

Needs tests/arm64/deps.sh (the cached arm64 kernel, modules, busybox) and
tests/arm64/build.sh (build/arm64/out: the cross-built modules, CLI and test
helpers); the host-side check also needs the amd64 cli/bdsnap (`make cli`).

One boot runs every guest scenario (tests/arm64/scenarios/*.sh, driven by
tests/arm64/guest.sh; Python does not exist in that guest), then the host checks
what the guest left in build/arm64/results/<name>/: a session written on arm64
must verify and restore bit-exact with the amd64 CLI. Every scenario and check
prints PASS or FAIL; the run fails, besides, on any kernel warning, BUG or oops
in the guest's console log or dmesg, on a taint bit other than O and E, on a
guest crash or a hang past --timeout. The last line is `N passed, N failed`.

The guest (tests/arm64/init.sh) boots from a busybox-static:arm64 initramfs
with the 9p modules of the image package, shares the repository read-only and
the results directory read-write, and its console (ttyAMA0) is kept in
build/arm64/logs/<name>-<UTC time>.log. Standard library only.
"""

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BUILD = REPO / "build" / "arm64"
OUT = BUILD / "out"
INIT = HERE / "init.sh"
DEPS = HERE / "deps.sh"

# Needed in the initramfs to mount the 9p shares; their dependencies come first.
STAGE1_MODULES = ["virtio_mmio", "9pnet_virtio", "9p"]
PRODUCTS = ["bdsnap.ko", "singlefilefs.ko", "bdsnap", "bdsnap.bin", "mkfs.singlefilefs",
            "bdsnap-ioctl-test"]

KERNEL_ARGS = ("console=ttyAMA0 rdinit=/init panic=-1 oops=panic panic_on_warn=1 "
               "softlockup_panic=1 hung_task_panic=1 printk.devkmsg=on")

# arm64 prints "Call trace:", x86 "Call Trace:".
BAD_PATTERNS = re.compile(
    r"WARNING:|BUG:|kernel BUG|[Cc]all [Tt]race|Oops|Kernel panic|Internal error:"
    r"|Unable to handle kernel|general protection fault|INFO: task .* blocked"
    r"|soft lockup|hard LOCKUP|rcu: INFO|self-detected stall|SError")

TAINT_LETTERS = "PFSRMBUDAWCIOELKXTN"  # bit 0 .. 18, kernel/panic.c
TAINT_ALLOWED = (1 << 12) | (1 << 13)  # O: out-of-tree, E: unsigned module


def die(msg):
    sys.exit(f"arm64-run: {msg}")


@dataclasses.dataclass
class Cache:
    path: Path
    env: dict

    @property
    def moddir(self) -> Path:
        return Path(self.env["MODDIR"])

    @property
    def image(self) -> Path:
        return Path(self.env["IMAGE"])


def cache() -> Cache:
    p = subprocess.run([str(DEPS), "--path"], capture_output=True, text=True)
    if p.returncode:
        die("no arm64 kernel cache: run `make deps-arm64` (tests/arm64/deps.sh)")
    path = Path(p.stdout.strip())
    env = {}
    for line in (path / "env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, _, v = line.partition("=")
            env[k] = v
    return Cache(path, env)


def taint_letters(mask: int) -> str:
    return "".join(c for i, c in enumerate(TAINT_LETTERS) if mask >> i & 1) or "-"


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def module_order(moddir: Path, names) -> list[Path]:
    """Modules `names` and their dependencies (modules.dep), dependencies first."""
    deps = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
    by_name = {Path(m).name.split(".ko")[0].replace("-", "_"): m for m in deps}
    order = []

    def visit(mod):
        for d in deps[mod]:
            visit(d)
        if mod not in order:
            order.append(mod)
    for name in names:
        if name not in by_name:
            die(f"module {name} not in {moddir}/modules.dep")
        visit(by_name[name])
    return [moddir / m for m in order]


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


def initramfs(c: Cache) -> Path:
    """busybox-static:arm64 + init.sh + the 9p modules; rebuilt when any changes."""
    mods = module_order(c.moddir, STAGE1_MODULES)
    busybox = Path(c.env["BUSYBOX"])
    h = hashlib.sha256(INIT.read_bytes())
    for p in [busybox, *mods]:
        h.update(p.name.encode() + p.read_bytes())
    out = BUILD / "vm" / f"initramfs-{c.env['RELEASE']}-{h.hexdigest()[:16]}.cpio"
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


def _untime(line: str) -> str:
    return re.sub(r"^\[[\s\d.]+\] ", "", line.strip())


def scan(text: str) -> list[str]:
    # The echoed kernel command line mentions oops=panic etc.
    return [_untime(l) for l in text.splitlines()
            if BAD_PATTERNS.search(l) and "ommand line:" not in l]


@dataclasses.dataclass
class GuestResult:
    ok: bool
    reason: str
    returncode: int | None
    log_path: Path
    results: Path
    duration: float
    boot_s: float | None = None
    problems: list = dataclasses.field(default_factory=list)


def _tail(path: Path, stop: threading.Event, sink):
    """Stream a file the guest appends to over 9p (its output) as it grows."""
    pos = 0
    while True:
        done = stop.is_set()
        try:
            with open(path, "rb") as f:
                f.seek(pos)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            pos += len(chunk)
            try:
                sink.write(chunk)
                sink.flush()
            except (OSError, ValueError):
                pass
        if done:
            return
        stop.wait(0.3)


def run_guest(cmd: str, name: str, timeout: int = 900, mem_mb: int = 1024,
              prepare=None, quiet: bool = False) -> GuestResult:
    """Boot the arm64 guest, run shell text `cmd` in the repository, judge the outcome.

    prepare(results_dir) may put inputs in the results directory before the boot.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"bad run name {name!r}")
    c = cache()
    initrd = initramfs(c)
    results = BUILD / "results" / name
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir(parents=True)
    (results / "cmd.sh").write_text(cmd + "\n")
    (results / "vm.env").write_text(f"BDSNAP_REPO={shlex.quote(str(REPO))}\n")
    if prepare:
        prepare(results)
    logs = BUILD / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    log_path = logs / f"{name}-{stamp}.log"
    if log_path.exists():
        log_path = logs / f"{name}-{stamp}-{os.getpid()}.log"

    def qesc(p):  # qemu option values escape commas by doubling them
        return str(p).replace(",", ",,")

    def share(tag, path, ro):
        return ["-fsdev", f"local,id={tag},path={qesc(path)},security_model=none"
                          + (",readonly=on" if ro else ""),
                "-device", f"virtio-9p-device,fsdev={tag},mount_tag={tag}"]
    # pauth-impdef: QEMU's cheap pointer-authentication hash instead of QARMA,
    # which costs a lot under TCG; architecturally the same CPU for the kernel.
    qemu = ["qemu-system-aarch64", "-M", "virt", "-cpu", "max,pauth-impdef=on", "-smp", "1",
            "-m", str(mem_mb), "-nographic", "-no-reboot", "-monitor", "none", "-nic", "none",
            "-kernel", str(c.image), "-initrd", str(initrd), "-append", KERNEL_ARGS,
            *share("repo", REPO, True), *share("results", results, False),
            *share("kmods", c.moddir, True),
            "-serial", f"file:{qesc(log_path)}"]
    t0 = time.monotonic()
    timed_out = False
    stop = threading.Event()
    sink = open(os.devnull, "wb") if quiet else open(sys.stdout.fileno(), "wb", closefd=False)
    sys.stdout.flush()
    tail = threading.Thread(target=_tail, args=(results / "output.txt", stop, sink), daemon=True)
    tail.start()
    proc = subprocess.Popen(qemu, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        qemu_out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        qemu_out, _ = proc.communicate()
    stop.set()
    tail.join(10)
    duration = time.monotonic() - t0

    res = GuestResult(ok=False, reason="", returncode=None, log_path=log_path,
                      results=results, duration=duration)
    info = {}
    if (results / "exit").exists():
        info = dict(kv.split("=") for kv in (results / "exit").read_text().split())
        res.returncode = int(info["rc"])
    if (results / "boot").exists():
        res.boot_s = float((results / "boot").read_text().split("=")[1])
    klog = log_path.read_text(errors="replace") if log_path.exists() else ""
    dmesg = results / "dmesg.txt"
    res.problems = list(dict.fromkeys(scan(klog + "\n" + (
        dmesg.read_text(errors="replace") if dmesg.exists() else ""))))
    why = []
    if timed_out:
        why.append(f"guest hung: killed after {timeout} s")
    elif proc.returncode != 0:
        why.append(f"qemu exited {proc.returncode}: {qemu_out.decode(errors='replace')[-500:]}")
    if (results / "init-failed").exists():
        why.append((results / "init-failed").read_text().strip())
    elif res.returncode is None and not timed_out:
        panic = [_untime(l) for l in klog.splitlines() if "Kernel panic" in l]
        why.append("guest crashed (" + (panic[-1] if panic else "no result, no panic line") + ")")
    elif res.returncode:
        why.append(f"command exited {res.returncode}")
    if res.problems:
        why.append(f"kernel log: {res.problems[0]}")
    if info:
        t0_, t1_ = int(info["taint_boot"]), int(info["taint_end"])
        new = t1_ & ~t0_ & ~TAINT_ALLOWED
        if new:
            why.append(f"kernel tainted {taint_letters(new)} ({new}); now {taint_letters(t1_)}")
    res.ok = not why
    res.reason = "ok" if res.ok else "; ".join(why)
    if not res.ok:
        tail_lines = klog.splitlines()[-60:]
        print(f"--- last {len(tail_lines)} lines of {log_path} ---", *tail_lines, sep="\n")
    boot = f", command started {res.boot_s:.1f} s after kernel start" if res.boot_s else ""
    print(f"arm64-run: {name}: guest {'ok' if res.ok else 'FAILED: ' + res.reason} "
          f"[{duration:.1f} s{boot}; log {log_path.relative_to(REPO)}]", flush=True)
    return res


# --- host side of the scenarios ------------------------------------------------------

def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def prepare_inputs(results: Path) -> None:
    """An ext4 image made on the host (the guest has no mkfs.ext4), with files in it."""
    inp = results / "input"
    seed = inp / "seed"
    (seed / "src").mkdir(parents=True)
    for f in sorted((REPO / "module").glob("*.[ch]")):
        shutil.copy(f, seed / "src")
    (seed / "random.bin").write_bytes(os.urandom(3 << 20))
    (seed / "text.txt").write_text("".join(f"line {i} of a text file\n" for i in range(60000)))
    img = inp / "ext4.img"
    with open(img, "wb") as f:
        f.truncate(32 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0",
                    "-d", str(seed), str(img)], check=True)
    shutil.rmtree(seed)


def host_store_check(results: Path, amd64_cli: Path) -> tuple[bool, str]:
    """A session written by the arm64 kernel: amd64 `bdsnap verify` and `restore --to`."""
    keep = results / "keep"
    kept = sorted(p for p in (keep / "store").glob("*") if p.is_dir())
    if len(kept) != 1:
        return False, f"the guest kept {len(kept)} sessions in {keep}/store, not 1 (did ext4_v2 fail?)"
    if not os.access(amd64_cli, os.X_OK):
        return False, f"{amd64_cli} missing: build the amd64 CLI first (make cli)"
    session = kept[0]
    before = (keep / "before.sha256").read_text().split()[0]
    p = subprocess.run([str(amd64_cli), "verify", str(session)], capture_output=True, text=True)
    if p.returncode:
        return False, f"amd64 bdsnap verify exited {p.returncode}: {p.stdout}{p.stderr}"
    print(f"    amd64 bdsnap verify: {p.stdout.strip().splitlines()[-1] if p.stdout.strip() else 'ok'}")
    # The same session as the arm64 CLI showed it, field by field.
    p = subprocess.run([str(amd64_cli), "show", str(session), "--json"], capture_output=True,
                       text=True)
    if p.returncode:
        return False, f"amd64 bdsnap show exited {p.returncode}: {p.stderr}"
    # `show -J` is {"sessions": [one row]} (bdsnap(8), OUTPUT).
    ours = json.loads(p.stdout)["sessions"][0]
    theirs = json.loads((keep / "show-arm64.json").read_text())["sessions"][0]
    # Fields both CLIs print (a work tree's two builds may be of different
    # revisions; `make test` builds both from one); the core ones must be there.
    core = {"uuid", "state", "tracker", "device_size", "block_size", "blocks_saved",
            "bytes_raw", "bytes_stored", "errors"}
    if core - (set(ours) & set(theirs)):
        return False, f"`bdsnap show --json` lacks {sorted(core - (set(ours) & set(theirs)))}"
    diff = sorted(k for k in set(ours) & set(theirs)
                  if ours[k] != theirs[k] and not _path_only(k, ours[k], theirs[k]))
    if diff:
        return False, ("amd64 and arm64 `bdsnap show --json` differ in "
                       + ", ".join(f"{k}: {ours.get(k)!r} vs {theirs.get(k)!r}" for k in diff))
    target = results / "restore-amd64.img"
    shutil.copy(keep / "after.img", target)
    if sha256(target) == before:
        return False, "the kept image equals the pre-mount one: the session proves nothing"
    p = subprocess.run([str(amd64_cli), "restore", str(session), "--to", str(target)],
                       capture_output=True, text=True)
    if p.returncode:
        return False, f"amd64 bdsnap restore exited {p.returncode}: {p.stdout}{p.stderr}"
    got = sha256(target)
    target.unlink()
    if got != before:
        return False, f"restored with amd64 bdsnap: sha256 {got} != pre-mount {before}"
    return True, f"verify + restore with amd64 cli/bdsnap: sha256 {before[:16]}... equal"


def _path_only(key, a, b) -> bool:
    """Where the session directory lives differs (guest /snapshot, host results)."""
    return key == "dir" and isinstance(a, str) \
        and isinstance(b, str) and Path(a).name == Path(b).name


def scenarios() -> list[str]:
    return sorted(p.stem for p in (HERE / "scenarios").glob("*.sh"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", default="scenarios", help="names logs and results (default "
                    "scenarios)")
    ap.add_argument("--timeout", type=int, default=900, help="seconds (default 900)")
    ap.add_argument("-k", dest="select", default="", help="only scenarios whose name "
                    "contains this")
    ap.add_argument("--cmd", default=None, help="run this shell text in the guest instead")
    ap.add_argument("--quiet", action="store_true", help="do not stream the guest's output")
    ap.add_argument("--amd64-cli", default=str(REPO / "cli" / "bdsnap"),
                    help="the host CLI for the store-format check (default cli/bdsnap)")
    a = ap.parse_args(argv)

    missing = [p for p in PRODUCTS if not (OUT / p).exists()]
    if missing:
        die(f"missing in {OUT}: {', '.join(missing)}: run `make arm64` (tests/arm64/build.sh)")
    if a.cmd is not None:
        res = run_guest(a.cmd, a.name, a.timeout, quiet=a.quiet)
        return 0 if res.ok else 1

    names = [s for s in scenarios() if a.select in s]
    if not names:
        die(f"no scenario matches {a.select!r}")
    cmd = f"sh tests/arm64/guest.sh {' '.join(names)}"
    res = run_guest(cmd, a.name, a.timeout, prepare=prepare_inputs, quiet=a.quiet)

    verdicts = collect_verdicts(res, names)
    if "ext4_v2" in names:
        ok, detail = host_store_check(res.results, Path(a.amd64_cli))
        verdicts.append(("host/store_format_amd64", ok, detail))
    verdicts.append(kernel_verdict(res))
    return summarize(verdicts)


def collect_verdicts(res: GuestResult, names) -> list[tuple[str, bool, str]]:
    """(name, ok, detail) per scenario from the guest's verdicts file; a
    scenario without a verdict (the guest died or hung in it) failed."""
    verdicts, seen = [], set()
    vfile = res.results / "verdicts"
    if vfile.exists():
        for line in vfile.read_text().splitlines():
            word, _, rest = line.partition(" ")
            name, _, detail = rest.partition(" ")
            verdicts.append((name, word == "PASS", detail))
            seen.add(name.split("/")[-1])
    for n in names:
        if n not in seen:
            verdicts.append((f"arm64/{n}", False, "no verdict: the guest did not finish it"))
    return verdicts


def kernel_verdict(res: GuestResult) -> tuple[str, bool, str]:
    """The guest as a whole: no warning, oops, crash, hang or new taint over all
    scenarios (a scenario's own failure is counted by its verdict)."""
    clean = res.ok or (res.returncode not in (None, 0) and not res.problems
                       and res.reason == f"command exited {res.returncode}")
    return ("arm64/kernel_clean", clean, res.reason)


def summarize(verdicts) -> int:
    print("\narm64 results:")
    for name, ok, detail in verdicts:
        print(f"  {'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""))
    passed = sum(ok for _, ok, _ in verdicts)
    failed = len(verdicts) - passed
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
