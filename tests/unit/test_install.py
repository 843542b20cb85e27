"""Packaging: make install/uninstall into a DESTDIR, pkg-config, the installed
header and library used by a program, the man page, dkms.conf and modprobe.d."""
import os
import re
import shutil
import subprocess

import pytest

import storegen as g
from conftest import DEVICE_SIZE, pre_block

PREFIX = "/usr/local"
VERSION = "%d.%d.%d" % (g.C["BDSNAP_VERSION_MAJOR"], g.C["BDSNAP_VERSION_MINOR"],
                        g.C["BDSNAP_VERSION_PATCH"])
FILES = ["bin/bdsnap", "lib/libbdsnap.so.0", "lib/libbdsnap.so", "lib/libbdsnap.a",
         "lib/pkgconfig/bdsnap.pc", "include/bdsnap/bdsnap.h", "include/bdsnap/uapi/bdsnap.h",
         "share/man/man8/bdsnap.8"]

PROGRAM = r"""
#include <bdsnap.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	struct bdsnap_version v;
	struct bdsnap_session *s;
	struct bdsnap_extent *e;
	size_t n;
	int rc = bdsnap_version(&v);

	printf("version %d\n", rc == -ENOENT ? 0 : rc == 0 ? 1 : rc);
	if (argc < 2 || bdsnap_session_open(argv[1], &s))
		return 10;
	rc = bdsnap_session_changed(s, &e, &n, NULL, NULL, NULL);
	if (rc)
		return 11;
	printf("extents %zu first %llu last %llu+%llu\n", n, (unsigned long long)e[0].offset,
	       (unsigned long long)e[n - 1].offset, (unsigned long long)e[n - 1].length);
	free(e);
	bdsnap_session_close(s);
	return 0;
}
"""


def make(*args):
    return subprocess.run(["make", "-s", "-C", str(g.ROOT), *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def dest(tmp_path_factory):
    root = tmp_path_factory.mktemp("destdir")
    res = make("install", "DESTDIR=%s" % root, "PREFIX=%s" % PREFIX)
    assert res.returncode == 0, res.stdout + res.stderr
    return root


def pkg_config(dest, *args):
    env = dict(os.environ, PKG_CONFIG_PATH=str(dest / PREFIX.lstrip("/") / "lib/pkgconfig"),
               PKG_CONFIG_SYSROOT_DIR=str(dest), PKG_CONFIG_LIBDIR="")
    res = subprocess.run(["pkg-config", *args, "bdsnap"], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def test_install_puts_every_file(dest):
    base = dest / PREFIX.lstrip("/")
    for f in FILES:
        assert (base / f).exists(), f
    assert os.readlink(base / "lib/libbdsnap.so") == "libbdsnap.so.0"
    assert os.access(base / "bin/bdsnap", os.X_OK)
    res = subprocess.run([str(base / "bin/bdsnap"), "--version"], capture_output=True, text=True)
    assert res.stdout == "bdsnap %s\n" % VERSION


def test_pkg_config(dest):
    base = "%s%s" % (dest, PREFIX)
    assert pkg_config(dest, "--modversion") == [VERSION]
    assert pkg_config(dest, "--cflags", "--libs") == ["-I%s/include/bdsnap" % base,
                                                        "-L%s/lib" % base, "-lbdsnap"]
    assert "-lz" in pkg_config(dest, "--static", "--libs")


@pytest.mark.parametrize("link", ["shared", "static"])
def test_program_builds_against_installed_files(dest, tmp_path, world, link):
    src = tmp_path / "prog.c"
    src.write_text(PROGRAM)
    exe = tmp_path / "prog"
    libdir = dest / PREFIX.lstrip("/") / "lib"
    if link == "shared":
        flags = pkg_config(dest, "--cflags", "--libs")
    else:
        flags = pkg_config(dest, "--cflags") + [str(libdir / "libbdsnap.a")] + \
            [f for f in pkg_config(dest, "--static", "--libs") if f.startswith("-l") and
             f != "-lbdsnap"]
    res = subprocess.run(["cc", "-std=c11", "-Wall", "-Werror", "-o", str(exe), str(src), *flags],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    s = world.session()
    s.write()
    res = subprocess.run([str(exe), str(s.dir)], capture_output=True, text=True,
                         env=dict(os.environ, LD_LIBRARY_PATH=str(libdir)))
    assert res.returncode == 0, res.stdout + res.stderr
    last = (DEVICE_SIZE - 1) // g.BS
    assert res.stdout.splitlines()[1] == "extents 5 first 0 last %d+%d" % (
        last * g.BS, len(pre_block(last)))
    if link == "shared":
        ldd = subprocess.run(["ldd", str(exe)], capture_output=True, text=True,
                             env=dict(os.environ, LD_LIBRARY_PATH=str(libdir))).stdout
        assert str(libdir / "libbdsnap.so.0") in ldd


def test_uninstall_removes_everything(tmp_path):
    assert make("install", "DESTDIR=%s" % tmp_path).returncode == 0
    res = make("uninstall", "DESTDIR=%s" % tmp_path)
    assert res.returncode == 0, res.stderr
    left = [p for p in tmp_path.rglob("*") if not p.is_dir()]
    assert left == []


def test_man_page_sections_and_commands():
    text = (g.ROOT / "cli" / "bdsnap.8").read_text()
    sections = re.findall(r"^\.SH (.+)$", text, re.M)
    for want in ["NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS", "EXIT STATUS",
                 "FILES", "EXAMPLES", "SEE ALSO"]:
        assert want in sections
    help_text = subprocess.run([str(g.ROOT / "cli" / "bdsnap"), "--help"], capture_output=True,
                               text=True).stdout
    for cmd in re.findall(r"^  (\w+) ", help_text, re.M):
        assert '.SY "bdsnap %s"' % cmd in text, cmd
    for opt in set(re.findall(r"--[a-z-]+", help_text)):
        assert opt.replace("-", r"\-") in text, opt
    exit_status = text.split(".SH EXIT STATUS")[1].split(".SH")[0]
    assert re.findall(r"^\.B (\d)$", exit_status, re.M) == ["0", "1", "2", "3", "4", "5", "6"]


@pytest.mark.skipif(not shutil.which("groff"), reason="groff not installed")
def test_man_page_renders_without_warnings():
    res = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z",
                          str(g.ROOT / "cli" / "bdsnap.8")], capture_output=True, text=True)
    assert res.returncode == 0 and res.stderr == ""


def test_dkms_conf_matches_header_and_modules():
    conf = g.ROOT / "dkms.conf"
    script = ('kernel_source_dir=/k; arch=x86_64; . "%s"; echo "$PACKAGE_NAME $PACKAGE_VERSION"; '
              'echo "${BUILT_MODULE_NAME[@]}"; echo "${BUILT_MODULE_LOCATION[@]}"' % conf)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == "bdsnap %s" % VERSION
    assert out[1].split() == ["bdsnap", "singlefilefs", "usctm"]
    for name, where in zip(out[1].split(), out[2].split()):
        kbuild = (g.ROOT / where / "Kbuild")
        kbuild = kbuild if kbuild.exists() else g.ROOT / where / "Makefile"
        assert "obj-m += %s.o" % name in kbuild.read_text()


def test_dkms_source_tree_is_complete(tmp_path):
    """What install-dkms copies is enough to build: every file the Kbuilds name."""
    res = make("install-dkms", "DESTDIR=%s" % tmp_path)
    assert res.returncode == 0, res.stderr
    src = tmp_path / ("usr/src/bdsnap-%s" % VERSION)
    assert 'PACKAGE_VERSION="%s"' % VERSION in (src / "dkms.conf").read_text()
    assert (src / "include/uapi/bdsnap.h").exists() and (src / "mk/kernel.mk").exists()
    assert not list(src.rglob("*.o")) and not list(src.rglob("*.mod.c"))
    for d in ("module", "singlefile_fs", "usctm"):
        for obj in re.findall(r"(\w+)\.o\b", " ".join(
                (g.ROOT / d / f).read_text() for f in ("Kbuild", "Makefile")
                if (g.ROOT / d / f).exists())):
            if (g.ROOT / d / (obj + ".c")).exists():
                assert (src / d / (obj + ".c")).exists(), (d, obj)


def test_modprobe_example_says_0600():
    text = (g.ROOT / "examples" / "modprobe.d" / "bdsnap.conf").read_text()
    assert re.search(r"^options bdsnap password=", text, re.M)
    assert "0600" in text
