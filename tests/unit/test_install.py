"""Packaging: make install/uninstall into a DESTDIR (the FHS layout of the Debian
packages, without dkms), pkg-config, the installed header and library used by
a program, the man page, dkms.conf and modprobe.d, the build flags, and the
Debian packaging's agreement with the tree (debian/)."""
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
MULTIARCH = subprocess.run(["cc", "-print-multiarch"], capture_output=True,
                           text=True).stdout.strip()
LIB = "lib/" + MULTIARCH if MULTIARCH else "lib"
FILES = ["sbin/bdsnap", LIB + "/libbdsnap.so.0", LIB + "/libbdsnap.so", LIB + "/libbdsnap.a",
         LIB + "/pkgconfig/bdsnap.pc", "include/bdsnap/bdsnap.h", "include/bdsnap/uapi/bdsnap.h",
         "share/man/man8/bdsnap.8", "lib/systemd/system/bdsnap.service",
         "share/doc/bdsnap/bdsnap.conf.example"]
DKMS_SRC = "usr/src/bdsnap-%s" % VERSION
# Without /usr/sbin and /sbin: no dkms, as on a machine without it.
NO_DKMS_PATH = "/usr/bin:/bin"

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


def make(*args, **env):
    return subprocess.run(["make", "-s", "-C", str(g.ROOT), *args], capture_output=True, text=True,
                          env=dict(os.environ, **env))


@pytest.fixture(scope="module")
def dest(tmp_path_factory):
    root = tmp_path_factory.mktemp("destdir")
    res = make("install", "DESTDIR=%s" % root, "PREFIX=%s" % PREFIX, PATH=NO_DKMS_PATH)
    assert shutil.which("dkms", path=NO_DKMS_PATH) is None
    assert res.returncode == 0, res.stdout + res.stderr
    return root


def libdir(dest):
    return dest / PREFIX.lstrip("/") / LIB


def pkg_config(dest, *args, module="bdsnap"):
    """pkg-config on the installed bdsnap.pc, relocated to dest; the modules it
    requires (zlib, libkmod) are the system's."""
    env = dict(os.environ, PKG_CONFIG_PATH=str(libdir(dest) / "pkgconfig"))
    res = subprocess.run(["pkg-config", "--define-variable=prefix=%s%s" % (dest, PREFIX), *args,
                          module], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def test_install_puts_every_file(dest):
    base = dest / PREFIX.lstrip("/")
    for f in FILES:
        assert (base / f).exists(), f
    assert os.readlink(base / LIB / "libbdsnap.so") == "libbdsnap.so.0"
    assert os.access(base / "sbin/bdsnap", os.X_OK)
    assert not (base / "bin").exists()
    res = subprocess.run([str(base / "sbin/bdsnap"), "--version"], capture_output=True, text=True,
                         env=dict(os.environ, LD_LIBRARY_PATH=str(libdir(dest))))
    assert res.stdout == "bdsnap %s\n" % VERSION


def test_installed_cli_uses_the_shared_library(dest):
    """The installed CLI links libbdsnap.so.0 (the tree's links the archive, to run in place)."""
    needed = subprocess.run(["readelf", "-d", str(dest / PREFIX.lstrip("/") / "sbin/bdsnap")],
                            capture_output=True, text=True, check=True).stdout
    assert "Shared library: [libbdsnap.so.0]" in needed
    assert "libkmod" not in needed and "libz" not in needed  # they come with libbdsnap.so.0
    tree = subprocess.run(["readelf", "-d", str(g.ROOT / "cli" / "bdsnap")],
                          capture_output=True, text=True, check=True).stdout
    assert "libbdsnap" not in tree


def test_installed_unit_names_the_sbin_cli(dest):
    unit = (dest / PREFIX.lstrip("/") / "lib/systemd/system/bdsnap.service").read_text()
    assert "ExecStart=%s/sbin/bdsnap load --config /etc/bdsnap/bdsnap.conf" % PREFIX in unit
    assert "@SBINDIR@" not in unit


def test_install_without_dkms_puts_the_dkms_sources(dest):
    """DESTDIR staging needs no dkms; the module sources are what the package ships."""
    src = dest / DKMS_SRC
    assert (src / "dkms.conf").exists() and (src / "module/Kbuild").exists()
    assert not (src / "usctm/test_client").exists()
    assert not (src / "singlefile_fs/mkfs.singlefilefs.c").exists()


def test_pkg_config(dest):
    base = "%s%s" % (dest, PREFIX)
    assert pkg_config(dest, "--modversion") == [VERSION]
    # (--cflags also has libkmod's include directory, relocated like ours)
    assert "-I%s/include/bdsnap" % base in pkg_config(dest, "--cflags")
    assert pkg_config(dest, "--libs") == ["-L%s/%s" % (base, LIB), "-lbdsnap"]
    pc = (libdir(dest) / "pkgconfig/bdsnap.pc").read_text()
    assert re.search(r"^Requires\.private: zlib libkmod$", pc, re.M)
    assert "Libs.private" not in pc
    assert "prefix=%s\n" % PREFIX in pc and "libdir=${prefix}/%s\n" % LIB in pc
    static = pkg_config(dest, "--static", "--libs")
    assert "-lz" in static and "-lkmod" in static


@pytest.mark.parametrize("link", ["shared", "static"])
def test_program_builds_against_installed_files(dest, tmp_path, world, link):
    src = tmp_path / "prog.c"
    src.write_text(PROGRAM)
    exe = tmp_path / "prog"
    libdir = dest / PREFIX.lstrip("/") / LIB
    if link == "shared":
        flags = pkg_config(dest, "--cflags", "--libs")
    else:
        # The archive, and the shared libraries of the modules bdsnap.pc requires
        # (pkg-config --static would also want libkmod's own static dependencies).
        requires = re.search(r"^Requires\.private: (.*)$", (libdir / "pkgconfig/bdsnap.pc")
                             .read_text(), re.M).group(1)
        flags = pkg_config(dest, "--cflags") + [str(libdir / "libbdsnap.a")] + \
            pkg_config(dest, "--libs", module=requires)
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
    assert make("install", "DESTDIR=%s" % tmp_path, PATH=NO_DKMS_PATH).returncode == 0
    res = make("uninstall", "DESTDIR=%s" % tmp_path, PATH=NO_DKMS_PATH)
    assert res.returncode == 0, res.stderr
    left = [p for p in tmp_path.rglob("*") if not p.is_dir()]
    assert left == []


@pytest.mark.parametrize("target", ["lib/ctl.o", "cli/load.o", "singlefile_fs/mkfs.singlefilefs"])
def test_build_flags_honoured_and_no_werror_by_default(target):
    """dpkg-buildflags' CPPFLAGS/CFLAGS/LDFLAGS reach every user-space compile; -Werror
    only when WERROR says so (the project's own builds do, the package build does not)."""
    d, t = target.split("/")
    flags = ["CPPFLAGS=-D_FORTIFY_SOURCE=2", "CFLAGS=-O2 -fstack-protector-strong",
             "LDFLAGS=-Wl,-z,now"]
    cmd = ["make", "-s", "-B", "-n", "-C", str(g.ROOT / d), t, *flags]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    line = next(l for l in out.splitlines() if " -o %s" % t in l)
    for want in ("-D_FORTIFY_SOURCE=2", "-fstack-protector-strong"):
        assert want in line, line
    if t.startswith("mkfs"):
        assert "-Wl,-z,now" in line
    assert "-Werror" not in line
    out = subprocess.run(cmd + ["WERROR=-Werror"], capture_output=True, text=True).stdout
    assert "-Werror" in out


def test_top_makefile_builds_with_werror():
    out = make("-n", "-B", "lib").stdout
    assert "WERROR=-Werror" in out


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
