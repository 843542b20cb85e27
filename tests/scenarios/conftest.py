"""Fixtures for scenarios that run inside the test guest (tests/vm/run.py).

Every fixture cleans up after itself (unmount, detach, deactivate, rmmod), so
a failing test leaves the next one a clean kernel; rmmod at the end of every
test also proves that no session or reference leaked.
"""

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lib"))

import bdsnap_uapi as uapi  # noqa: E402

PASSWORD = "bdsnap-test-password"
CLI = Path(os.environ.get("BDSNAP_CLI", REPO / "cli" / "bdsnap"))
# Kernel modules are built for the kernel the guest runs: on another kernel
# than the host's Debian one (KERNEL=trixie, sid, debug) tests/vm/run.py builds
# them in build/ko/<kernel>/ and passes that
# directory as BDSNAP_KO_ROOT; user-space tools always come from REPO.
KO_ROOT = Path(os.environ.get("BDSNAP_KO_ROOT") or REPO)
MODULE = KO_ROOT / "module" / "bdsnap.ko"
STORE = Path("/snapshot")


# The subset `make test` (and so CI) runs on the debug kernel (issue 11;
# pytest -m debug_smoke, ~25 minutes there; `make test-debug` runs every
# scenario, ~100 minutes, too long for CI): a scenario of every file but the
# benchmark, weighted to where the checkers find most: error paths (store EIO,
# a full store), concurrency (parallel writers, unload racing calls), teardown
# and mount-time writes. Listed here rather than decorated in each file
# because most are single parameter sets.
DEBUG_SMOKE = (
    "test_ext4.py::test_roundtrip[files_small_large-plain]",
    "test_ext4.py::test_roundtrip[files_small_large-ordered]",
    "test_ext4.py::test_mount_time_writes_unclean_journal",
    "test_ext4.py::test_partition_of_partitioned_loop",
    "test_singlefile_fs.py::test_roundtrip[vfs-append]",
    "test_singlefile_fs.py::test_roundtrip[bio-append]",
    "test_singlefile_fs_basic.py::test_truncate",
    "test_singlefile_fs_basic.py::test_enospc",
    "test_cli.py::test_listings_changed_verify_export_restore",
    "test_faults.py::test_store_eio_mid_session[ordered]",
    "test_faults.py::test_full_store_ordered_fails_unsaved_writes_with_eio",
    "test_faults.py::test_concurrent_writers_restore_exact[ordered]",
    "test_load.py::test_unload_refused_while_a_session_is_open",
    "test_usctm.py::test_client_unload_restores_enosys_then_usctm_unloads",
    "test_usctm.py::test_calls_race_install_and_uninstall",
    "test_syscalls.py::test_activate_mount_write_restore_through_syscall",
    "test_syscalls.py::test_rmmod_bdsnap_waits_for_running_call",
    "test_badinput.py::test_malformed_requests",
    "test_hostile.py::test_random_and_malformed_ioctls",
    "test_teardown.py::test_rmmod_while_mounted_is_refused",
    "test_teardown.py::test_lazy_umount_with_open_file",
    "test_teardown.py::test_remount_ro_rw_keeps_one_session",
    "test_teardown.py::test_second_loop_over_same_image_is_refused_or_tracked",
    "test_lifecycle.py::test_mount_racing_umount_keeps_its_writes_tracked",
    "test_lifecycle.py::test_writeback_under_a_memory_cgroup_makes_progress",
    "test_filesystems.py::test_roundtrip[xfs-ordered]",
    "test_restore_chain.py::test_restore_of_older_session_equals_export_and_pre_image[overlapping]",
    "test_map.py::test_map_while_written_then_recover_a_deleted_file[ext4-plain]",
    "test_rollback.py::test_mount_and_writes_during_the_rollback_are_refused",
    "test_map.py::test_view_of_a_plain_session_outlives_its_mount_and_the_module",
)


@pytest.hookimpl(tryfirst=True)  # before -m selects on the marker
def pytest_collection_modifyitems(config, items):
    found = set()
    for item in items:
        key = f"{Path(str(item.fspath)).name}::{item.name}"
        if key in DEBUG_SMOKE:
            item.add_marker(pytest.mark.debug_smoke)
            found.add(key)
    # A renamed test must not silently shrink the subset: with -m debug_smoke,
    # every listed test of a collected file must exist.
    if "debug_smoke" in (config.option.markexpr or ""):
        files = {Path(str(item.fspath)).name for item in items}
        lost = [k for k in DEBUG_SMOKE if k.split("::")[0] in files and k not in found]
        if lost:
            raise pytest.UsageError("conftest.DEBUG_SMOKE names tests that do not exist: "
                                    + ", ".join(lost))


def sh(cmd, check=True, input=None):
    """Run a shell command; on failure raise with its output."""
    res = subprocess.run(cmd, shell=True, text=True, input=input,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if check and res.returncode:
        raise AssertionError(f"`{cmd}` exited {res.returncode}:\n{res.stdout}")
    return res


def kmsg_mark(text):
    """Write a unique marker into the kernel log; klog_since() reads after it.
    (Counting lines does not work: a full log buffer drops the oldest.)"""
    mark = f"bdsnap-test: {text} {time.monotonic_ns()}"
    with open("/dev/kmsg", "w") as f:
        f.write(mark + "\n")
    return mark


def klog_since(mark):
    lines = sh("dmesg").stdout.splitlines()
    for i, line in enumerate(lines):
        if mark in line:
            return lines[i + 1:]
    raise AssertionError(f"marker {mark!r} not in the kernel log")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def bdsnap_cli(*args, check=True, password=None):
    """The bdsnap CLI; a password goes through --password-fd 0, never argv."""
    cmd = [str(CLI), *map(str, args)]
    if password is not None:
        cmd += ["--password-fd", "0"]
    res = subprocess.run(cmd, text=True, input=(password + "\n") if password else None,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and res.returncode:
        raise AssertionError(f"{cmd} exited {res.returncode}:\n{res.stdout}{res.stderr}")
    return res


def sessions():
    """Session directories in the store, oldest first."""
    if not STORE.exists():
        return []
    return sorted((p for p in STORE.iterdir() if p.is_dir()), key=lambda p: p.name.split("_")[-1])


def meta(session):
    """meta as a dict, later lines overriding earlier ones (docs/format.md)."""
    out = {}
    for line in (Path(session) / "meta").read_text().splitlines():
        key, _, value = line.partition("=")
        out[key] = value
    return out


def require_built(*paths):
    """Fail, not skip, on a missing build product: a skip once hid that a fresh
    clone ran none of test_usctm (`make all` did not build its client)."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        pytest.fail("not built (make all): " + ", ".join(missing))


@pytest.fixture(scope="session")
def guest():
    if not os.environ.get("BDSNAP_GUEST"):
        pytest.skip("kernel scenarios run only inside the test guest (tests/vm/run.py)")
    sh("modprobe loop")
    sh("modprobe ext4")


class Module:
    """bdsnap.ko loaded with given parameters; unloaded (and checked) at teardown."""

    def __init__(self, **params):
        self.params = {"password": PASSWORD, "auth_fail_delay_ms": 20, **params}
        args = " ".join(f"{k}={v}" for k, v in self.params.items())
        sh(f"insmod {MODULE} {args}")
        self.loaded = True

    def unload(self):
        """rmmod; a test may unload early, the fixture's teardown then has nothing to do."""
        if self.loaded:
            sh("rmmod bdsnap")
            self.loaded = False


@pytest.fixture
def load_bdsnap(guest):
    loaded = []

    def load(**params):
        mod = Module(**params)
        loaded.append(mod)
        return mod

    yield load
    for mod in loaded:
        mod.unload()


@pytest.fixture
def bdsnap(load_bdsnap):
    return load_bdsnap()


def holders(mnt):
    """Processes with a file, a mapping or their directory under @mnt."""
    out, prefix = [], str(mnt) + "/"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = [os.readlink(p) for p in (proc / "fd").iterdir()]
            links += [os.readlink(proc / "cwd"), os.readlink(proc / "root")]
            maps = (proc / "maps").read_text()
            comm = (proc / "comm").read_text().strip()
        except OSError:
            continue  # gone meanwhile
        if any(ln == str(mnt) or ln.startswith(prefix) for ln in links) or prefix in maps:
            out.append(f"{proc.name} {comm}")
    return out or "none"


class Disk:
    """An image file, optionally attached to a loop device and mounted."""

    def __init__(self, path, size_mb):
        self.image = Path(path)
        self.loop = None
        self.mnt = None
        self.active = None
        sh(f"truncate -s {size_mb}M {self.image}")

    def mkfs_ext4(self, *opts):
        sh(f"mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 {' '.join(opts)} {self.image}")
        return self

    def attach(self, partscan=False):
        self.loop = sh(f"losetup -f --show {'-P' if partscan else ''} {self.image}").stdout.strip()
        return self.loop

    def detach(self):
        if self.loop:
            sh(f"losetup -d {self.loop}")
            self.loop = None

    def mount(self, dev=None, mnt=None, fstype="ext4"):
        self.mnt = Path(mnt or f"/mnt/{self.image.stem}")
        self.mnt.mkdir(parents=True, exist_ok=True)
        sh(f"mount -t {fstype} {dev or self.loop} {self.mnt}")
        return self.mnt

    def umount(self):
        """Unmount; a busy mount is retried twice, a second apart, after
        printing who holds it. Once on 7.2 a umount right after closing an
        mmap'ed file and an O_DIRECT one found the mount busy, and a second
        later it was not (no process held it: a reference the kernel drops
        asynchronously); a holder that stays still fails the test."""
        if not self.mnt:
            return
        for attempt in range(3):
            res = subprocess.run(["umount", str(self.mnt)], text=True, capture_output=True)
            if res.returncode == 0 or "busy" not in res.stderr or attempt == 2:
                break
            print(f"umount {self.mnt}: busy; holders: {holders(self.mnt)}")
            time.sleep(1)
        if res.returncode:
            raise AssertionError(f"umount {self.mnt} exited {res.returncode}: {res.stderr}"
                                 f"holders: {holders(self.mnt)}")
        self.mnt = None

    def activate(self, path=None, **kw):
        self.active = str(path or self.image)
        uapi.activate(self.active, PASSWORD, **kw)

    def deactivate(self):
        if self.active:
            uapi.deactivate(self.active, PASSWORD)
            self.active = None

    def cleanup(self):
        for step in (self.umount, self.deactivate, self.detach):
            try:
                step()
            except Exception as exc:  # keep cleaning; report at the end
                print(f"cleanup of {self.image}: {exc}")
        self.image.unlink(missing_ok=True)


@pytest.fixture
def make_disk(guest, tmp_path):
    disks = []

    def make(name="disk", size_mb=64):
        disk = Disk(tmp_path / f"{name}.img", size_mb)
        disks.append(disk)
        return disk

    yield make
    for disk in reversed(disks):
        disk.cleanup()


def restore(session, target, *extra):
    """Restore with the CLI and return its output."""
    return bdsnap_cli("restore", session, "--to", target, *extra).stdout
