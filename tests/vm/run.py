#!/usr/bin/python3
"""Run a command inside a QEMU guest booted with Debian's kernel; fail loudly.

    /usr/bin/python3 tests/vm/run.py [--name N] [--timeout S] [--disk FILE]... \
        [--mem MB] [--append ARGS] [--expect-crash] [--quiet] \
        [--kernel debian|bookworm|trixie|sid|debug] [--root DIR [--systemd]] \
        -- CMD [ARGS...]

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

Another root (--root DIR): the guest's root file system is DIR instead of the
host's / (still read-only over 9p under a tmpfs overlay): a Debian root with
packages installed in it (tests/packages/). CMD runs in /, the guest sees the
modules DIR has under /lib/modules (nothing is built or bind-mounted for it).
With --systemd, PID 1 execs DIR's systemd instead of stage 2, booting the unit
bdsnap-vm.service (init.sh writes it: stage 2 as a service, after sysinit.target
and what it wants): the same command, result and checks, on a root whose units
ran at boot.

Kernels (--kernel, or KERNEL= in the environment): debian (the default) is the
host's own Debian kernel (linux-image-amd64: 6.1 on Debian 12, 6.12 on Debian
13); the modules of the work tree are built for it. bookworm (6.1), trixie
(6.12) and sid (7.x) boot the kernel of that release's root cached by
tests/vm/kernel_root.sh (its vmlinuz,
-M q35; the initramfs gets that kernel's 9p/overlay modules, the guest sees its
/lib/modules/<release> bind-mounted): before the first boot of a process the
runner copies the module sources to build/ko/<kernel>/ and builds them there
inside the root, with the compiler that built that kernel, and the guest
command gets BDSNAP_KO_ROOT=<that directory> and BDSNAP_KERNEL=<kernel>.

Debug kernel (--kernel debug): boots the KASAN/lockdep/kmemleak kernel cached by
tests/vm/debug_kernel.sh (bzImage, -M q35; everything the guest needs is built
in, so the initramfs loads no modules); the modules are built as for trixie and
sid, in build/ko/debug/, against the debug tree (the work tree's .ko files stay
the Debian ones); scenarios take their .ko paths from BDSNAP_KO_ROOT. On top of
the checks above, every
checker report fails the run: KASAN, lockdep ("possible circular locking
dependency" ...), "sleeping function called from invalid context", DEBUG_LIST
corruption, and kmemleak: after the command the guest scans twice and any
"suspected memory leak" left (build/vm-results/<name>/kmemleak.txt) is a
failure; so is lockdep having switched itself off. Symbolize a module address
from a report with
    <cache>/linux/scripts/faddr2line build/ko/debug/module/bdsnap.ko func+0x1c/0x80
(<cache> is printed by `tests/vm/debug_kernel.sh --path`).
"""

import argparse
import dataclasses
import datetime
import fcntl
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
# Debug kernel: report every KASAN finding, not just the first; no KASLR, so
# guest addresses of built-in code equal the vmlinux link addresses.
# no_timer_check: under TCG on a loaded host the IO-APIC timer check can fail
# and panic the boot ("IO-APIC + timer doesn't work!"). no5lvl: `-cpu max` offers
# LA57, and with 5-level paging an interrupt that arrives while identify_cpu()
# has the CPU feature bits cleared sees every address as a KASAN
# "wild-memory-access" (6.1's pgtable_l5_enabled() reads X86_FEATURE_LA57).
DEBUG_KERNEL_ARGS = "kasan_multi_shot nokaslr no_timer_check no5lvl"

# Kernels of other Debian releases: boot with the root's vmlinuz on q35 (their
# 9p stack loads from modules); no_timer_check as for the debug kernel.
ROOT_KERNELS = ("bookworm", "trixie", "sid")
ROOT_KERNEL_ARGS = "nokaslr no_timer_check"
KERNELS = ("debian", *ROOT_KERNELS, "debug")
# --systemd: init.sh sees the unit on the command line and execs systemd, which
# boots only what that unit needs; no first-boot questions on the console.
SYSTEMD_ARGS = "systemd.unit=bdsnap-vm.service systemd.firstboot=off"
DEBUG_KERNEL_SH = Path(__file__).resolve().parent / "debug_kernel.sh"
KERNEL_ROOT_SH = Path(__file__).resolve().parent / "kernel_root.sh"
KO_BUILD = BUILD / "ko"
# Copied to KO_BUILD/<kernel> and built there for that kernel: (dir, make targets).
KO_SRC_DIRS = ("include", "mk", "module", "singlefile_fs", "usctm")
KO_BUILDS = (("usctm", ("all", "test_client")), ("module", ("all",)),
             ("singlefile_fs", ("all",)))
# Where a kernel root sees KO_BUILD/<kernel> while it builds (bind mount).
ROOT_SRC_MOUNT = "bdsnap-src"
# Build products are never copied from the work tree (they are Debian's).
_BUILD_PRODUCT = re.compile(
    r"\.(o|ko|mod|mod\.c|mod\.o|cmd|a|d|so|symvers)$|^Module\.symvers$|^modules\.order$"
    r"|^\.tmp_versions$|^\..*\.cmd$")

# The checkers (KASAN, lockdep, atomic sleep, DEBUG_LIST, kmemleak) exist only in
# the debug kernel; most of their reports also match WARNING:/BUG:.
BAD_PATTERNS = re.compile(
    r"WARNING:|BUG:|Call Trace|Oops|Kernel panic|general protection fault"
    r"|INFO: task .* blocked|soft lockup"
    r"|KASAN:|possible circular locking dependency|possible recursive locking"
    r"|inconsistent lock state|sleeping function called from invalid context"
    r"|list_add corruption|list_add double add|list_del corruption|suspected memory leak"
    r"|Kernel memory leak detector disabled")

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


def host_release() -> str:
    """The host's Debian codename (bookworm, trixie, ...), from /etc/os-release."""
    for line in Path("/etc/os-release").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME":
            return value.strip('"')
    return ""


def default_kernel() -> str:
    """KERNEL=debian|bookworm|trixie|sid|debug from the environment; debian when unset."""
    kernel = os.environ.get("KERNEL") or "debian"
    if kernel not in KERNELS:
        sys.exit(f"run.py: KERNEL={kernel!r}: must be one of {', '.join(KERNELS)}")
    return kernel


@dataclasses.dataclass
class DebugKernel:
    cache: Path       # /var/cache/bdsnap/kernel-<version>-<config hash>
    tree: Path        # the built tree: KDIR for modules, bzImage
    release: str      # its `uname -r`
    moddir: Path      # modules_install output for /lib/modules/<release>

    @property
    def bzimage(self) -> Path:
        return self.tree / "arch/x86/boot/bzImage"


def debug_kernel() -> DebugKernel:
    """The cached debug kernel (tests/vm/debug_kernel.sh --path); exit if none."""
    p = subprocess.run([str(DEBUG_KERNEL_SH), "--path"], capture_output=True, text=True)
    if p.returncode:
        sys.exit("run.py: no cached debug kernel for tests/vm/debug.config: build it with "
                 "`make debug-kernel` (tests/vm/debug_kernel.sh, ~20-30 min once)")
    cache = Path(p.stdout.strip())
    release = (cache / "release").read_text().strip()
    return DebugKernel(cache, cache / "linux", release,
                       cache / "modroot" / "lib" / "modules" / release)


def _sync_tree(src: Path, dst: Path) -> None:
    """Mirror the sources of src into dst: copy what differs, drop what vanished.

    Unchanged files keep their mtime, so kbuild in dst stays incremental.
    Build products (objects, ELF binaries, .cmd files) are neither copied nor
    deleted: dst has its own, built against the other kernel.
    """
    dst.mkdir(parents=True, exist_ok=True)
    names = set()
    for s in src.iterdir():
        if _BUILD_PRODUCT.search(s.name) or s.name in ("__pycache__", ".pytest_cache"):
            continue
        d = dst / s.name
        if s.is_dir():
            names.add(s.name)
            _sync_tree(s, d)
            continue
        data = s.read_bytes()
        if data.startswith(b"\x7fELF"):
            continue
        names.add(s.name)
        if not d.is_file() or d.read_bytes() != data:
            d.unlink(missing_ok=True)
            shutil.copy(s, d)  # mtime now: newer than objects built from the old text
    for d in dst.iterdir():
        if d.name in names or _BUILD_PRODUCT.search(d.name):
            continue
        if d.is_dir():
            shutil.rmtree(d)  # gone from src
        elif not d.read_bytes().startswith(b"\x7fELF"):
            d.unlink()


@dataclasses.dataclass
class RootKernel:
    name: str         # trixie, sid
    cache: Path       # /var/cache/bdsnap/root-<name>
    release: str      # its `uname -r`

    @property
    def root(self) -> Path:
        return self.cache / "root"

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def moddir(self) -> Path:
        return self.root / "lib" / "modules" / self.release


def root_kernel(name: str) -> RootKernel:
    """The cached root of release `name` (tests/vm/kernel_root.sh NAME --path); exit if none."""
    p = subprocess.run([str(KERNEL_ROOT_SH), name, "--path"], capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"run.py: no cached {name} root: make it with `tests/vm/kernel_root.sh {name}` "
                 "(`make kernel-roots` makes all, a few minutes each)")
    cache = Path(p.stdout.strip())
    return RootKernel(name, cache, (cache / "release").read_text().strip())


_modules_built: dict = {}


def build_modules(kernel: str) -> Path:
    """Build the project's modules for `kernel` (not debian) in build/ko/<kernel>/.

    Returns the directory to pass as BDSNAP_KO_ROOT. Once per process. Debug
    kernel: against its tree, with -g so that scripts/faddr2line can name the
    line of a report. trixie, sid: inside that release's root, with its
    compiler and headers.
    """
    if kernel in _modules_built:
        return _modules_built[kernel]
    if kernel == "debug":
        dk = debug_kernel()

        def make(d, targets):
            return ["make", "-C", str(out / d), f"KDIR={dk.tree}", "KCFLAGS=-g", *targets]
    else:
        rk = root_kernel(kernel)
        mnt = rk.root / ROOT_SRC_MOUNT

        def make(d, targets):
            # A private mount namespace: the mounts vanish with the command.
            # objtool reads /proc.
            script = (f"mount --bind {shlex.quote(str(out))} {shlex.quote(str(mnt))} && "
                      f"mount -t proc proc {shlex.quote(str(rk.root / 'proc'))} && "
                      f"exec chroot {shlex.quote(str(rk.root))} env -i PATH=/usr/bin:/bin "
                      f"make -C /{ROOT_SRC_MOUNT}/{d} KVER={rk.release} {' '.join(targets)}")
            return ["unshare", "-m", "sh", "-c", script]
        mnt.mkdir(exist_ok=True)
    out = KO_BUILD / kernel
    out.mkdir(parents=True, exist_ok=True)
    # Several runners (developers, make targets) may share build/ko/<kernel>:
    # one syncs and builds at a time; a guest already running keeps the
    # modules it loaded (insmod reads the file at load time).
    with open(KO_BUILD / f".{kernel}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for d in KO_SRC_DIRS:
            if (REPO / d).is_dir():
                _sync_tree(REPO / d, out / d)
        for d, targets in KO_BUILDS:
            if not (out / d).is_dir():
                continue
            cmd = make(d, targets)
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if p.returncode:
                sys.stdout.write(p.stdout[-4000:])
                sys.exit(f"run.py: building {d} for the {kernel} kernel failed: "
                         f"{shlex.join(cmd)}")
    _modules_built[kernel] = out
    return out


def taint_letters(mask: int) -> str:
    return "".join(c for i, c in enumerate(TAINT_LETTERS) if mask >> i & 1) or "-"


def _atomic_write(path: Path, data: bytes) -> None:
    # Several runs may share build/vm: never let one see a half-written file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def vmlinux(kver: str) -> Path | None:
    """The uncompressed kernel: PVH boot of an ELF vmlinux is the fast path.

    None if /boot/vmlinuz-KVER is not xz-compressed (Debian 13 and later
    compress with zstd, which Debian 12's python3 cannot read): that kernel
    boots as a bzImage, as the other releases' kernels do.
    """
    out = BUILD / "vm" / f"vmlinux-{kver}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    blob = Path(f"/boot/vmlinuz-{kver}").read_bytes()
    # bzImage embeds the xz stream after the setup code; find its magic.
    off = blob.find(b"\xfd7zXZ\x00")
    if off < 0:
        return None
    # The decompressor stops at the end of the stream; what follows is ignored.
    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(blob[off:])
    if not elf.startswith(b"\x7fELF"):
        sys.exit(f"run.py: /boot/vmlinuz-{kver} did not yield an ELF vmlinux")
    _atomic_write(out, elf)
    return out


def _module_order(moddir: Path) -> list[Path]:
    """STAGE1_MODULES and their dependencies, dependencies first; built-in ones skipped."""
    deps = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
    builtin = moddir / "modules.builtin"
    builtin = builtin.read_text().split() if builtin.exists() else []

    def key(m):
        return Path(m).name.split(".ko")[0].replace("-", "_")
    by_name = {key(m): m for m in deps}
    builtin = {key(m) for m in builtin}
    order = []

    def visit(mod):
        for d in deps[mod]:
            visit(d)
        if mod not in order:
            order.append(mod)
    for name in STAGE1_MODULES:
        if name in by_name:
            visit(by_name[name])
        elif name not in builtin:
            sys.exit(f"run.py: module {name} is neither in {moddir}/modules.dep nor built in")
    return [moddir / m for m in order]


def _module_bytes(path: Path) -> bytes:
    """A module file as busybox insmod takes it: uncompressed."""
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".zst":
        return subprocess.run(["zstd", "-dc", str(path)], check=True,
                              capture_output=True).stdout
    return data


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


def initramfs(moddir: Path | None) -> Path:
    """busybox + init.sh + the 9p/overlay modules of `moddir`; rebuilt when any changes.

    moddir None (the debug kernel has all of them built in): no modules.
    """
    mods = _module_order(moddir) if moddir else []
    busybox = Path("/bin/busybox")
    h = hashlib.sha256(INIT.read_bytes())
    for p in [busybox, *mods]:
        h.update(p.name.encode() + p.read_bytes())
    tag = moddir.name if moddir else "nomodules"
    out = BUILD / "vm" / f"initramfs-{tag}-{h.hexdigest()[:16]}.cpio"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    names = [p.name.removesuffix(".xz").removesuffix(".zst") for p in mods]
    d, x = 0o040755, 0o100755
    entries = [(n, d) for n in ("bin", "dev", "modules")]
    entries += [("dev/console", 0o020600, b"", 5, 1),
                ("bin/busybox", x, busybox.read_bytes()),  # copied: static binary
                ("init", x, INIT.read_bytes()),
                ("modules.list", 0o100644, "".join(n + "\n" for n in names).encode())]
    entries += [(f"modules/{n}", 0o100644, _module_bytes(p)) for n, p in zip(names, mods)]
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


def _symbolize_leaks(leaks: str, modsyms: Path) -> str:
    """Name raw module addresses in a kmemleak report (module unloaded since).

    modsyms.txt (written by init.sh's modwatch) has lines
    "NAME BASE SIZE ADDR TYPE SYMBOL [NAME]" for every module load it saw; a
    raw address inside a recorded module (BASE <= address < BASE + SIZE) is
    named after the nearest symbol at or below it if that is a text symbol.
    Addresses in a module's init code (freed after init, its symbols gone,
    beyond the core's data) stay raw.
    """
    loads = {}   # (name, base, size) -> [(addr, type, symbol)]
    if modsyms.exists():
        for line in modsyms.read_text(errors="replace").splitlines():
            f = line.split()
            if len(f) >= 6:
                key = (f[0], int(f[1], 16), int(f[2]))
                loads.setdefault(key, []).append((int(f[3], 16), f[4].lower(), f[5]))

    def name(m):
        addr = int(m.group(1), 16)
        for (mod, base, size), syms in loads.items():
            if not base <= addr < base + size:
                continue
            below = [s for s in syms if s[0] <= addr]
            if below:
                a, kind, sym = max(below)
                if kind == "t":
                    return f"{m.group(1)} = {sym}+{addr - a:#x} [{mod}]"
        return m.group(0)
    return re.sub(r"(?<=\] )(0x[0-9a-f]{16})$", name, leaks, flags=re.M)


def run_guest(cmd, name: str = "run", timeout: int = 900, disks=(), mem_mb: int | None = None,
              expect_crash: bool = False, append: str = "", kver: str | None = None,
              smp: int = 1, quiet: bool = False, kernel: str | None = None,
              ko_root: Path | None = None, root: Path | None = None,
              systemd: bool = False) -> GuestResult:
    """Boot the guest, run `cmd` (list: argv, str: shell text), judge the outcome.

    kernel: one of KERNELS (default: $KERNEL, else debian). mem_mb defaults
    to 1024, 2048 for debug (KASAN shadow, kmemleak, lockdep). ko_root (not
    debian): BDSNAP_KO_ROOT for the guest; default: build the project's
    modules for that kernel (build_modules()). root: the guest's root file
    system instead of the host's / (its own modules; cmd runs in /); systemd:
    boot root's systemd, which runs cmd as bdsnap-vm.service.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"bad run name {name!r}")
    kernel = kernel or default_kernel()
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, not {kernel!r}")
    mem_mb = mem_mb or (2048 if kernel == "debug" else 1024)
    guest_env = {"BDSNAP_KERNEL": kernel}
    if root is not None:
        root = Path(root).resolve()
        if not (root / "bin" / "sh").exists():
            raise FileNotFoundError(f"{root}/bin/sh: not a root file system")
    if systemd:
        if root is None:
            raise ValueError("systemd: only with another root (the host's / is not booted)")
        append = f"{append} {SYSTEMD_ARGS}".strip()
    if kernel != "debian" and root is None:
        ko_root = Path(ko_root) if ko_root else build_modules(kernel)
        guest_env["BDSNAP_KO_ROOT"] = str(ko_root.resolve())
    if kernel == "debug":
        dk = debug_kernel()
        guest_env["BDSNAP_MODDIR"] = str(dk.moddir)
        boot = ["-M", "q35", "-kernel", str(dk.bzimage), "-initrd", str(initramfs(None))]
        append = f"{DEBUG_KERNEL_ARGS} {append}".strip()
    elif kernel in ROOT_KERNELS:
        rk = root_kernel(kernel)
        if root is None:
            guest_env["BDSNAP_MODDIR"] = str(rk.moddir)
        boot = ["-M", "q35", "-kernel", str(rk.vmlinuz), "-initrd", str(initramfs(rk.moddir))]
        append = f"{ROOT_KERNEL_ARGS} {append}".strip()
    else:
        kver = kver or default_kver()
        initrd = ["-initrd", str(initramfs(Path("/lib/modules") / kver))]
        elf = vmlinux(kver)
        if elf is not None:
            boot = ["-kernel", str(elf), *initrd]
        else:
            boot = ["-M", "q35", "-kernel", f"/boot/vmlinuz-{kver}", *initrd]
            append = f"{ROOT_KERNEL_ARGS} {append}".strip()
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
        f"BDSNAP_REPO={shlex.quote(str(REPO) if root is None else '/')}\n"
        f"BDSNAP_NDISKS={len(disks)}\n"
        + "".join(f"{k}={shlex.quote(v)}\n" for k, v in guest_env.items()))
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
            *boot, "-append", f"{KERNEL_ARGS} {append}".strip(),
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-virtfs", f"local,path={qesc(root or '/')},mount_tag=hostroot,security_model=none,"
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
    # Debug kernel: init.sh scanned for leaks after the command and recorded
    # whether lockdep was still on.
    leak_file = results / "kmemleak.txt"
    leaks = leak_file.read_text(errors="replace") if leak_file.exists() else ""
    if leaks.strip():
        leaks = _symbolize_leaks(leaks, results / "modsyms.txt")
        leak_file = results / "kmemleak.sym.txt"
        leak_file.write_text(leaks)
        n = leaks.count("unreferenced object")
        where = re.findall(r"^\s+\[<[0-9a-f]+>\] (?:0x[0-9a-f]+ = )?(\S+(?: \[\w+\])?)",
                           leaks, re.M)
        where = [w for w in where if not re.match(r"(kmem_cache_alloc|__kmalloc|kmalloc|"
                                                   r"kmemleak|slab_|__slab|vmalloc|__vmalloc)", w)]
        res.problems.append(f"kmemleak: {n} suspected memory leak(s)"
                            + (f", first allocated in {where[0]}" if where else "")
                            + f" (see {leak_file.relative_to(REPO)})")
    checkers = results / "checkers.txt"
    if checkers.exists() and "debug_locks=0" in checkers.read_text():
        res.problems.append("lockdep switched itself off during the run (debug_locks=0): "
                            "an earlier report disabled it, or it ran out of room")
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
        if leaks.strip():
            lines += [f"--- {leak_file} (first 40 lines) ---", *leaks.splitlines()[:40]]
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
    ap.add_argument("--mem", type=int, default=None,
                    help="guest MiB (default 1024; 2048 with the debug kernel)")
    ap.add_argument("--smp", type=int, default=1, help="guest CPUs (default 1)")
    ap.add_argument("--disk", action="append", default=[], help="raw virtio disk (repeatable)")
    ap.add_argument("--expect-crash", action="store_true", help="success = guest panicked")
    ap.add_argument("--kver", default=None, help="kernel version (default: newest "
                    "/lib/modules/*/build)")
    ap.add_argument("--append", default="", help="extra kernel command line")
    ap.add_argument("--quiet", action="store_true", help="do not stream CMD's output")
    ap.add_argument("--kernel", choices=KERNELS, default=None,
                    help="debian: the host's Debian kernel (default); bookworm, trixie, sid: "
                    "the kernel "
                    "of that release's root (tests/vm/kernel_root.sh); debug: the "
                    "KASAN/lockdep/kmemleak kernel built by tests/vm/debug_kernel.sh "
                    "(default: $KERNEL, else debian)")
    ap.add_argument("--root", default=None,
                    help="the guest's root file system (default: the host's /)")
    ap.add_argument("--systemd", action="store_true",
                    help="with --root: boot its systemd, which runs CMD as a service")
    ap.add_argument("cmd", nargs="+", help="command run through /bin/sh in the guest")
    a = ap.parse_args(argv)
    # One argument is shell text ("make check && ..."); several are an argv.
    cmd = a.cmd[0] if len(a.cmd) == 1 else a.cmd
    res = run_guest(cmd, name=a.name, timeout=a.timeout, disks=a.disk, mem_mb=a.mem,
                    expect_crash=a.expect_crash, append=a.append, kver=a.kver,
                    smp=a.smp, quiet=a.quiet, kernel=a.kernel, root=a.root,
                    systemd=a.systemd)
    if res.ok:
        return 0
    return res.returncode if res.returncode and not res.problems else 1


if __name__ == "__main__":
    sys.exit(main())
