"""`bdsnap load` / `bdsnap unload` (libkmod) and activation from a config file.

Runs INSIDE the test guest (tests/vm/run.py), as root:

    make all
    /usr/bin/python3 tests/vm/run.py --name load -- \\
        /usr/bin/python3 -m pytest -p no:cacheprovider -v tests/scenarios/test_load.py

Covered: load from the build tree, then activation of the devices of a
config file, mount/write/unmount/restore with sha256 equal; unload refused
while a session is open (even with --force) and while devices are activated
(unless --force); the documented errors of a module built for another
kernel, both the release (found by bdsnap before inserting anything) and the
rest of vermagic (found by the kernel: usctm, loaded first, is removed again);
a config naming a missing device; the password never in any /proc/*/cmdline
or environ while load runs; the installed-module path (modprobe lookup).
"""

import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (CLI, KO_ROOT, PASSWORD, meta, require_built, restore, sessions, sh,
                      sha256)

X86 = os.uname().machine == "x86_64"
HAVE_USCTM = X86 and (KO_ROOT / "usctm" / "usctm.ko").exists()

pytestmark = pytest.mark.usefixtures("load_built")


@pytest.fixture(scope="module")
def load_built(guest):
    require_built(KO_ROOT / "module" / "bdsnap.ko")


def loaded(name):
    return Path("/sys/module", name, "initstate").exists()


def cli(*args, password=None, input=None):
    """The CLI; a password goes through --password-fd 0, never argv."""
    cmd = [str(CLI), *map(str, args)]
    if password is not None:
        cmd += ["--password-fd", "0"]
        input = password + "\n"
    return subprocess.run(cmd, text=True, input=input, capture_output=True)


def ok(res):
    assert res.returncode == 0, f"{res.args} exited {res.returncode}:\n{res.stdout}{res.stderr}"
    return res


@pytest.fixture
def modules(guest):
    """Nothing loaded before; whatever a test left loaded is removed after."""
    for name in ("bdsnap", "usctm"):
        assert not loaded(name), f"{name} loaded before the test"
    yield
    for name in ("bdsnap", "usctm"):
        if loaded(name):
            sh(f"rmmod {name}")


@pytest.fixture
def passfile(tmp_path):
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


def write_conf(path, lines):
    path.write_text("# bdsnap devices activated at load\n\n" + "\n".join(lines) + "\n")
    path.chmod(0o644)
    return path


def test_load_from_tree_then_config_restores(modules, make_disk, passfile, tmp_path):
    disks = [make_disk("plain").mkfs_ext4(), make_disk("ordered").mkfs_ext4()]
    before = [sha256(d.image) for d in disks]
    conf = write_conf(tmp_path / "bdsnap.conf", [
        f"{disks[0].image}            # the default tracker",
        f"{disks[1].image}\ttracker=bio ordered=yes",
    ])

    res = ok(cli("load", "--from", KO_ROOT, "--config", conf, "--passfile", passfile))
    assert f"loaded {KO_ROOT}/module/bdsnap.ko" in res.stdout
    assert f"activated {disks[1].image} (tracker bio, ordered)" in res.stdout
    assert loaded("bdsnap") and loaded("usctm") == HAVE_USCTM

    (state,) = json.loads(ok(cli("status", "--module", "--json")).stdout)["module"]
    assert state["module"] == "loaded" and state["devices"] == 2, state
    assert state["trackers"] == "bio vfs", state
    if HAVE_USCTM:
        assert isinstance(state["sys_activate"], int) and state["sys_activate"] > 0, state
        assert "system calls: activate_snapshot" in res.stdout
    text = ok(cli("status")).stdout
    assert text.startswith("MODULE         loaded\n") and f"\n{disks[0].image} " in text, text

    seen = set(sessions())
    for i, disk in enumerate(disks):
        disk.attach()
        mnt = disk.mount()
        (mnt / "data").write_bytes(os.urandom(3 << 20) + b"x" * (2 << 20))
        os.sync()
        disk.umount()
        disk.detach()
    new = [s for s in sessions() if s not in seen]
    assert len(new) == 2, new
    for disk, sha in zip(disks, before):
        (session,) = [s for s in new if meta(s)["path"] == str(disk.image)]
        assert sha256(disk.image) != sha
        restore(session, disk.image)
        assert sha256(disk.image) == sha

    res = ok(cli("unload", "--force", "--passfile", passfile))
    assert res.stdout.count("deactivated ") == 2 and "unloaded bdsnap" in res.stdout
    assert not loaded("bdsnap") and not loaded("usctm")


def test_unload_refused_while_a_session_is_open(modules, make_disk):
    disk = make_disk().mkfs_ext4()
    ok(cli("load", "--from", KO_ROOT, "--no-syscalls", password=PASSWORD))
    assert loaded("bdsnap") and not loaded("usctm")
    res = cli("load", "--from", KO_ROOT, password=PASSWORD)
    assert res.returncode == 4 and "already loaded" in res.stderr
    ok(cli("activate", disk.image, password=PASSWORD))
    disk.attach()
    disk.mount()

    for force in ([], ["--force"]):
        res = cli("unload", *force, password=PASSWORD)
        assert res.returncode == 4, res
        assert res.stderr.startswith(f"bdsnap: unload: refused: a session is open on {disk.image}")
        assert "unmount it first" in res.stderr and loaded("bdsnap")
    disk.umount()
    disk.detach()

    res = cli("unload")
    assert res.returncode == 4 and "1 device activated" in res.stderr and "--force" in res.stderr
    res = cli("unload", "--force", password="not-the-password")
    assert res.returncode == 1 and "wrong password" in res.stderr and loaded("bdsnap")
    res = ok(cli("unload", "--force", password=PASSWORD))
    assert f"deactivated {disk.image}" in res.stdout and not loaded("bdsnap")
    res = cli("unload")
    assert res.returncode == 1 and "not loaded" in res.stderr


def copy_tree(dst, magic_edit=None):
    """A build tree with bdsnap.ko (its vermagic edited) and usctm.ko as they are."""
    (dst / "module").mkdir(parents=True)
    data = (KO_ROOT / "module" / "bdsnap.ko").read_bytes()
    if magic_edit:
        start = data.index(b"vermagic=") + len("vermagic=")
        end = data.index(b"\0", start)
        old = data[start:end]
        new = magic_edit(old)
        assert len(new) == len(old) and new != old
        data = data[:start] + new + data[end:]
    (dst / "module" / "bdsnap.ko").write_bytes(data)
    if HAVE_USCTM:
        (dst / "usctm").mkdir()
        shutil.copy(KO_ROOT / "usctm" / "usctm.ko", dst / "usctm" / "usctm.ko")
    return dst


def other_release(magic):
    """The same vermagic for another kernel release of the same length."""
    release, rest = magic.split(b" ", 1)
    i = next(i for i, c in enumerate(release) if chr(c).isdigit())  # "6" of 6.1.0-...
    swapped = release[:i] + (b"7" if release[i:i + 1] != b"7" else b"8") + release[i + 1:]
    return swapped + b" " + rest


def test_module_for_another_kernel(modules, tmp_path, passfile):
    running = os.uname().release
    tree = copy_tree(tmp_path / "other", other_release)
    other = other_release(running.encode() + b" x").split(b" ")[0].decode()
    res = cli("load", "--from", tree, "--passfile", passfile)
    assert res.returncode == 5, res
    assert res.stderr == (f"bdsnap: load: {tree}/module/bdsnap.ko: built for kernel {other}, "
                          f"this is {running}: rebuild it with make KVER={running}\n")
    assert not loaded("bdsnap") and not loaded("usctm")
    # --dry-run says the same without a password.
    res = cli("load", "--from", tree, "--dry-run")
    assert res.returncode == 5 and f"built for kernel {other}" in res.stderr


def test_module_rejected_by_the_kernel_leaves_nothing(modules, tmp_path, passfile):
    """Same release, another configuration: only the kernel sees it; usctm goes again."""
    def other_flags(magic):
        assert b" SMP " in magic, magic
        return magic.replace(b" SMP ", b" smp ", 1)

    tree = copy_tree(tmp_path / "flags", other_flags)
    res = cli("load", "--from", tree, "--passfile", passfile)
    assert res.returncode == 5, res
    assert (f"bdsnap: load: {tree}/module/bdsnap.ko: rejected by the kernel (Exec format error)"
            in res.stderr)
    assert not loaded("bdsnap") and not loaded("usctm")


def test_bad_config_loads_nothing(modules, make_disk, tmp_path, passfile):
    disk = make_disk()
    conf = write_conf(tmp_path / "bad.conf", [f"{disk.image}", "/dev/no-such-disk ordered=yes"])
    res = cli("load", "--from", KO_ROOT, "--config", conf, "--passfile", passfile)
    assert res.returncode == 6, res
    assert res.stderr == f"bdsnap: {conf}:4: /dev/no-such-disk: no such device or file\n"
    passfile.chmod(0o640)
    conf = write_conf(tmp_path / "good.conf", [f"{disk.image}"])
    res = cli("load", "--from", KO_ROOT, "--config", conf, "--passfile", passfile)
    assert res.returncode == 6 and "readable or writable by group or others" in res.stderr
    assert not loaded("bdsnap") and not loaded("usctm")


def scan_proc(secret):
    """Processes whose command line or environment holds @secret."""
    hits = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        for what in ("cmdline", "environ"):
            try:
                if secret in Path("/proc", pid, what).read_bytes():
                    hits.append((pid, what))
            except OSError:
                pass
    return hits


def test_password_never_in_proc(modules, make_disk):
    password = "Pw x'" + secrets.token_hex(8)
    secret = password.encode()
    proc = subprocess.Popen([str(CLI), "load", "--from", str(KO_ROOT), "--password-fd", "0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    hits = []
    try:
        proc.stdin.write(secret[:5])
        proc.stdin.flush()
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:      # load is blocked reading the rest
            hits += scan_proc(secret) + scan_proc(b"password=")
        assert proc.poll() is None, "load did not wait for the password"
        proc.stdin.write(secret[5:] + b"\n")
        proc.stdin.close()
        while proc.poll() is None:             # while it loads the modules
            hits += scan_proc(secret) + scan_proc(b"password=")
        err = proc.stderr.read().decode()      # a few lines: the pipes never filled
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 0, err
    assert hits == []
    assert loaded("bdsnap")
    assert not Path("/sys/module/bdsnap/parameters/password").exists()
    assert password not in sh("dmesg").stdout
    # The module got the password intact, blanks and quote included.
    disk = make_disk()
    ok(cli("activate", disk.image, password=password))
    ok(cli("unload", "--force", password=password))


def test_installed_module_is_found_by_lookup(modules, passfile):
    kdir = Path("/lib/modules") / os.uname().release
    if not (kdir / "modules.dep").exists() or not shutil.which("depmod"):
        pytest.skip("no modules.dep for this kernel, or no depmod")
    extra = kdir / "updates" / "bdsnap-test"
    extra.mkdir(parents=True)
    try:
        shutil.copy(KO_ROOT / "module" / "bdsnap.ko", extra)
        if HAVE_USCTM:
            shutil.copy(KO_ROOT / "usctm" / "usctm.ko", extra)
        sh("depmod -a")
        res = ok(cli("load", "--passfile", passfile))
        assert f"loaded {extra}/bdsnap.ko" in res.stdout
        assert loaded("bdsnap") and loaded("usctm") == HAVE_USCTM
        ok(cli("unload"))
        assert not loaded("bdsnap") and not loaded("usctm")
    finally:
        shutil.rmtree(extra)
        sh("depmod -a")
    res = cli("load", "--passfile", passfile)
    assert res.returncode == 5 and "bdsnap.ko is not installed for kernel" in res.stderr
