"""bdsnap load/unload/status --module on the host, where no module is ever loaded.

Every `load` here is a --dry-run, and runs in a new user namespace
(`unshare -Ur`): even a bug that tried to insert a module would get EPERM,
since CAP_SYS_MODULE only counts in the initial namespace.
"""
import json
import os
import re
import shutil
import subprocess

import pytest

import storegen as g
from conftest import CLI, run
from test_conf import Conf, load_lib

NO_MODULE = not os.path.exists("/dev/snap")
needs_no_module = pytest.mark.skipif(not NO_MODULE, reason="/dev/snap exists on this host")
UNIT = g.ROOT / "systemd" / "bdsnap.service.in"


def unshare_works():
    return shutil.which("unshare") and subprocess.run(
        ["unshare", "-Ur", "true"], capture_output=True).returncode == 0


def dry_load(*args, **kw):
    assert "--dry-run" in args, "the host never loads a module"
    if not unshare_works():
        pytest.skip("unshare -Ur (user namespaces) not available")
    return subprocess.run(["unshare", "-Ur", str(CLI), "load", *map(str, args)],
                          capture_output=True, text=True, **kw)


def module_kver():
    out = subprocess.run(["modinfo", "-F", "vermagic", str(g.ROOT / "module" / "bdsnap.ko")],
                         capture_output=True, text=True)
    return out.stdout.split()[0] if out.returncode == 0 and out.stdout.strip() else None


@pytest.fixture
def files(tmp_path):
    """A password file (0600) and an image file to name in a config."""
    pw = tmp_path / "password"
    pw.write_text("secret\n")
    pw.chmod(0o600)
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * 65536)
    return pw, img


def conf(tmp_path, text):
    f = tmp_path / "bdsnap.conf"
    f.write_text(text)
    f.chmod(0o644)
    return f


@pytest.mark.parametrize("args", [
    ["load", "extra"], ["load", "--wait", "5"], ["load", "--config", "c", "--wait", "x"],
    ["load", "--config", "c", "--wait", "-1"], ["load", "--to", "x"], ["load", "--tracker", "bio"],
    ["load", "--passfile", "f", "--password-fd", "0"], ["unload", "x"], ["unload", "--dry-run"],
    ["unload", "--from", "d"], ["status", "--module", "--force"], ["activate", "d", "--config", "c"],
], ids=" ".join)
def test_usage_errors_exit_2(args):
    res = run(*args)
    assert res.returncode == 2, res
    lines = res.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("bdsnap: "), res.stderr
    assert lines[1] == "Try 'bdsnap --help' for more information."


def test_help_lists_load_and_unload():
    res = run("--help")
    assert "\n  load [--from DIR] [--no-syscalls] [--config FILE [--wait SEC]]" in res.stdout
    assert "\n  unload [-f|--force]" in res.stdout
    assert "5 module missing or for another kernel, 6 bad configuration" in res.stdout


@pytest.mark.parametrize("text,line,msg", [
    ("/dev/sda1 tracker=zfs\n", 1, "tracker=zfs: unknown value (bio or vfs)"),
    ("# c\n\nsda1\n", 3, "sda1: not an absolute path"),
    ("{img}\n{img} ordered=yes\n", 2, "{img}: device listed twice"),
    ("{img} colour=blue\n", 1, "colour: unknown key (known: tracker, ordered, rollback)"),
    ("{img} rollback=yes ordered=no\n", 1, "ordered=no: rollback needs ordered"),
    ("{img} tracker=vfs rollback=keep\n", 1, "tracker=vfs: rollback needs the bio tracker"),
    ("{img}\n/dev/no-such-disk-here\n", 2, "/dev/no-such-disk-here: no such device or file"),
    ("{img} ordered=yes\n/dev/null\n", 2, "/dev/null: neither a block device nor a regular file"),
])
def test_bad_config_lines_exit_6(tmp_path, files, text, line, msg):
    pw, img = files
    f = conf(tmp_path, text.format(img=img))
    res = dry_load("--config", f, "--passfile", pw, "--dry-run")
    assert res.returncode == 6, res
    assert res.stderr == "bdsnap: %s:%d: %s\n" % (f, line, msg.format(img=img))
    assert res.stdout == ""


def test_missing_device_waits_then_fails(tmp_path, files):
    pw, img = files
    f = conf(tmp_path, "%s\n%s/later.img\n" % (img, tmp_path))
    res = dry_load("--config", f, "--passfile", pw, "--wait", "1", "--dry-run")
    assert res.returncode == 6 and "later.img: no such device or file" in res.stderr


def test_config_file_itself(tmp_path, files):
    pw, _ = files
    res = dry_load("--config", tmp_path / "none.conf", "--passfile", pw, "--dry-run")
    assert res.returncode == 6
    assert res.stderr == "bdsnap: %s/none.conf: No such file or directory\n" % tmp_path
    f = conf(tmp_path, "# nothing\n")
    f.chmod(0o666)
    res = dry_load("--config", f, "--passfile", pw, "--dry-run")
    assert res.returncode == 6
    assert res.stderr == "bdsnap: %s: writable by group or others: chmod go-w it\n" % f


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_readable_password_file_exit_6(tmp_path, files, mode):
    pw, img = files
    pw.chmod(mode)
    res = dry_load("--config", conf(tmp_path, "%s\n" % img), "--passfile", pw, "--dry-run")
    assert res.returncode == 6
    assert res.stderr == ("bdsnap: %s: readable or writable by group or others (mode %04o): "
                          "chmod 600 it\n" % (pw, mode))


def test_password_file_not_owned_by_root_exit_6(tmp_path, files):
    pw, img = files
    os.chown(pw, 4242, 4242)
    pw.chmod(0o604)     # readable in the user namespace; the owner is checked first
    res = dry_load("--config", conf(tmp_path, "%s\n" % img), "--passfile", pw, "--dry-run")
    assert res.returncode == 6
    assert re.fullmatch(r"bdsnap: %s: owned by uid \d+, not by root: chown root it\n" % pw,
                        res.stderr), res.stderr


def test_missing_password_file_exit_6(tmp_path, files):
    _, img = files
    res = dry_load("--config", conf(tmp_path, "%s\n" % img), "--passfile", tmp_path / "nope",
                   "--dry-run")
    assert res.returncode == 6
    assert res.stderr == "bdsnap: %s/nope: No such file or directory\n" % tmp_path


def test_config_reads_etc_password_by_default(tmp_path, files):
    _, img = files
    if os.path.exists("/etc/bdsnap/password"):
        pytest.skip("/etc/bdsnap/password exists here")
    res = dry_load("--config", conf(tmp_path, "%s\n" % img), "--dry-run")
    assert res.returncode == 6
    assert res.stderr == "bdsnap: /etc/bdsnap/password: No such file or directory\n"


def credentials(tmp_path, mode=0o400):
    """What systemd's LoadCredential=password:... gives a service."""
    d = tmp_path / "credentials"
    d.mkdir()
    (d / "password").write_text("from-systemd\n")
    (d / "password").chmod(mode)
    return d


def test_config_reads_the_systemd_credential(tmp_path, files):
    """Under bdsnap.service the password is $CREDENTIALS_DIRECTORY/password: a
    good one gets as far as the module (missing here, exit 5), a bad one exit 6."""
    _, img = files
    f = conf(tmp_path, "%s\n" % img)
    creds = credentials(tmp_path)
    env = dict(os.environ, CREDENTIALS_DIRECTORY=str(creds))
    res = dry_load("--from", tmp_path, "--config", f, "--dry-run", env=env)
    assert res.returncode == 5 and "no such module file" in res.stderr, res
    (creds / "password").chmod(0o644)
    res = dry_load("--from", tmp_path, "--config", f, "--dry-run", env=env)
    assert res.returncode == 6
    assert res.stderr == ("bdsnap: %s/password: readable or writable by group or others "
                          "(mode 0644): chmod 600 it\n" % creds)
    (creds / "password").unlink()
    res = dry_load("--from", tmp_path, "--config", f, "--dry-run", env=env)
    assert res.returncode == 6
    assert res.stderr == "bdsnap: %s/password: No such file or directory\n" % creds


def test_passfile_wins_over_the_credential(tmp_path, files):
    pw, img = files
    env = dict(os.environ, CREDENTIALS_DIRECTORY=str(tmp_path / "none"))
    res = dry_load("--from", tmp_path, "--config", conf(tmp_path, "%s\n" % img), "--passfile", pw,
                   "--dry-run", env=env)
    assert res.returncode == 5 and "no such module file" in res.stderr, res


# An LD_PRELOAD library that makes finit_module(2) and init_module(2) fail as
# a Secure Boot kernel does with an unsigned module: nothing reaches the kernel.
REFUSE_KEY = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/syscall.h>

long syscall(long nr, ...)
{
	long (*real)(long, ...) = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
	long a[6];
	va_list ap;
	int i;

	if (nr == SYS_finit_module || nr == SYS_init_module) {
		errno = EKEYREJECTED;
		return -1;
	}
	va_start(ap, nr);
	for (i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	return real(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

int init_module(void *image, unsigned long len, const char *params)
{
	(void)image, (void)len, (void)params;
	errno = EKEYREJECTED;
	return -1;
}
"""


def fake_module(directory):
    """An ELF object whose .modinfo says it was built for the running kernel."""
    src = directory / "fake.c"
    src.write_text('__attribute__((section(".modinfo"), used)) static const char vermagic[] = '
                   '"vermagic=%s SMP mod_unload ";\n' % os.uname().release)
    (directory / "module").mkdir()
    subprocess.run(["cc", "-c", "-o", str(directory / "module" / "bdsnap.ko"), str(src)],
                   check=True)


def test_rejected_signature_exit_5(tmp_path, files):
    """The kernel refuses the module's signature (EKEYREJECTED from finit_module):
    a message that says so and how to enrol DKMS's key, exit 5."""
    if not unshare_works():
        pytest.skip("unshare -Ur (user namespaces) not available")
    pw, _ = files
    shim = tmp_path / "refuse_key.so"
    (tmp_path / "refuse_key.c").write_text(REFUSE_KEY)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(shim), str(tmp_path / "refuse_key.c"),
                    "-ldl"], check=True)
    fake_module(tmp_path)
    # A real load (no --dry-run), but in a user namespace (EPERM at worst) and
    # with both module system calls answered by the shim.
    res = subprocess.run(["unshare", "-Ur", str(CLI), "load", "--from", str(tmp_path),
                          "--passfile", str(pw), "--no-syscalls"],
                         capture_output=True, text=True, env=dict(os.environ, LD_PRELOAD=str(shim)))
    assert res.returncode == 5, res
    assert res.stderr == (
        "bdsnap: load: %s/module/bdsnap.ko: Key was rejected by service: the kernel refuses a "
        "module not signed by a key it trusts (Secure Boot): DKMS signs the modules it builds "
        "with its key; enrol it with mokutil --import /var/lib/dkms/mok.pub and reboot "
        "(README, \"Secure Boot\")\n" % tmp_path)
    assert res.stdout == ""


def test_module_file_missing_exit_5(tmp_path, files):
    pw, _ = files
    res = dry_load("--from", tmp_path, "--passfile", pw, "--dry-run")
    assert res.returncode == 5
    assert res.stderr == ("bdsnap: load: %s/bdsnap.ko: no such module file (build it with make)\n"
                          % tmp_path)


@pytest.mark.skipif(not (g.ROOT / "module" / "bdsnap.ko").exists(), reason="module not built")
def test_module_for_another_kernel_exit_5(tmp_path, files):
    """The host runs another kernel than the guest the module is built for."""
    pw, img = files
    kver, running = module_kver(), os.uname().release
    if not kver or kver == running:
        pytest.skip("the module is built for this host's kernel")
    res = dry_load("--from", g.ROOT, "--config", conf(tmp_path, "%s\n" % img), "--passfile", pw,
                   "--dry-run")
    assert res.returncode == 5
    assert res.stderr == ("bdsnap: load: %s/module/bdsnap.ko: built for kernel %s, this is %s: "
                          "rebuild it with make KVER=%s\n" % (g.ROOT, kver, running, running))


def test_not_installed_exit_5(files):
    pw, _ = files
    if subprocess.run(["modinfo", "bdsnap"], capture_output=True).returncode == 0:
        pytest.skip("bdsnap is installed for this kernel")
    res = dry_load("--passfile", pw, "--dry-run")
    assert res.returncode == 5
    assert res.stderr == ("bdsnap: load: bdsnap.ko is not installed for kernel %s: install "
                          "bdsnap-dkms and this kernel's headers (or make install, with DKMS), "
                          "or --from a build tree\n" % os.uname().release)


@needs_no_module
def test_unload_without_module():
    res = run("unload")
    assert res.returncode == 1 and res.stderr == "bdsnap: unload: the bdsnap module is not loaded\n"


@needs_no_module
def test_status_module_without_module():
    res = run("status", "--module", "--json")
    assert res.returncode == 0
    (state,) = json.loads(res.stdout)["module"]
    assert state["module"] == "not loaded" and state["version"] is None
    res = run("status", "--module")
    assert res.returncode == 0 and res.stdout.split() == ["MODULE", "not", "loaded"]


def unit_keys():
    """[Unit]/[Service]/[Install] keys of the unit template, each with all its values."""
    keys = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            keys.setdefault(k, []).append(v)
    return keys


def test_unit_file_orders_before_local_fs():
    unit = {k: v[-1] for k, v in unit_keys().items()}
    assert unit["DefaultDependencies"] == "no"
    assert "local-fs-pre.target" in unit["Before"].split()
    assert "local-fs-pre.target" in unit["Wants"].split()
    assert unit["RequiresMountsFor"] == "/snapshot"
    assert unit["WantedBy"] == "sysinit.target"
    assert unit["ExecStart"] == ("@SBINDIR@/bdsnap load --config /etc/bdsnap/bdsnap.conf "
                                 "--wait 30")


def test_unit_password_is_a_credential():
    """Not a path on the command line: systemd hands the service a private copy."""
    keys = unit_keys()
    assert keys["LoadCredential"] == ["password:/etc/bdsnap/password"]
    assert "-/etc/bdsnap/password" in keys["InaccessiblePaths"]
    assert "password" not in keys["ExecStart"][0]


def test_unit_hardening_keeps_what_load_needs():
    keys = unit_keys()
    assert set(keys["CapabilityBoundingSet"][0].split()) == {"CAP_SYS_MODULE", "CAP_SYS_ADMIN"}
    assert "@module" in keys["SystemCallFilter"][0].split()
    # /dev/snap is a misc device; the module opens the configured block devices
    # for reading in the service's context, and a rollback left unfinished by a
    # crash writes them (and the store, and image files outside /usr and /etc).
    assert keys["DevicePolicy"] == ["closed"]
    assert {"char-misc rw", "block-* rw"} <= set(keys["DeviceAllow"])
    assert keys["ProtectSystem"] == ["full"]
    for key in ("PrivateDevices", "ProtectKernelModules", "PrivateUsers", "ProcSubset"):
        assert key not in keys, key


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze")
def test_systemd_analyze_verify(tmp_path):
    unit = tmp_path / "bdsnap.service"
    unit.write_text(UNIT.read_text().replace("@SBINDIR@", str(CLI.parent)))
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "bdsnap.service" not in res.stderr, res.stderr


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze")
def test_systemd_analyze_security_exposure(tmp_path):
    """What is left is what loading modules as root takes (see the unit's comments)."""
    unit = tmp_path / "bdsnap.service"
    unit.write_text(UNIT.read_text().replace("@SBINDIR@", str(CLI.parent)))
    res = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                          str(unit)], capture_output=True, text=True)
    if "--offline" in res.stderr:
        pytest.skip("systemd-analyze security has no --offline (systemd < 250)")
    m = re.search(r"Overall exposure level for bdsnap.service: ([\d.]+)", res.stdout)
    assert m, res.stdout + res.stderr
    assert float(m.group(1)) <= 2.0, res.stdout


def test_make_install_puts_the_unit(tmp_path):
    res = subprocess.run(["make", "-s", "-C", str(g.ROOT), "install", "DESTDIR=%s" % tmp_path,
                          "PREFIX=/usr"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    unit = tmp_path / "usr/lib/systemd/system/bdsnap.service"
    assert "ExecStart=/usr/sbin/bdsnap load --config /etc/bdsnap/bdsnap.conf" in unit.read_text()
    example = tmp_path / "usr/share/doc/bdsnap/bdsnap.conf.example"
    devs = [l for l in example.read_text().splitlines() if l.startswith("#/")]
    assert devs and not (tmp_path / "etc").exists()
    # Every commented example line is valid once uncommented.
    text = "\n".join(l[1:] for l in devs).encode()
    assert Conf(load_lib(), text).rc == 0
