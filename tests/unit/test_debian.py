"""debian/ agrees with the tree: one version, one dkms.conf, one list of symbols,
the packaging tools in the Makefile's PKG_PACKAGES. Building the packages and
lintian: tests/host/test_packages.py; installing them: tests/packages/."""
import re
import subprocess

import storegen as g

DEBIAN = g.ROOT / "debian"
VERSION = "%d.%d.%d" % (g.C["BDSNAP_VERSION_MAJOR"], g.C["BDSNAP_VERSION_MINOR"],
                        g.C["BDSNAP_VERSION_PATCH"])


def test_changelog_version_is_the_header_version():
    first = (DEBIAN / "changelog").read_text().splitlines()[0]
    assert re.match(r"bdsnap \((.+?)\) ", first).group(1) == VERSION
    assert (DEBIAN / "source/format").read_text().strip() == "3.0 (native)"


def test_symbols_file_is_the_abi_list():
    """debian/libbdsnap0.symbols names exactly the symbols and version nodes of
    tests/unit/libbdsnap.symbols (which test_abi.py compares with the library);
    dpkg-gensymbols -c4 in debian/rules fails a build that differs from it."""
    abi = set()
    for line in (g.ROOT / "tests/unit/libbdsnap.symbols").read_text().splitlines():
        if line and not line.startswith("#"):
            abi.add(line.replace("@@", "@") if "@" in line else "%s@%s" % (line, line))
    lines = (DEBIAN / "libbdsnap0.symbols").read_text().splitlines()
    assert lines[0] == "libbdsnap.so.0 libbdsnap0 #MINVER#"
    deb = set()
    for line in lines[1:]:
        if line.startswith("*"):
            continue
        sym, minver = line.split()
        assert line.startswith(" ") and minver >= "0.2.0", line
        deb.add(sym)
    assert deb == abi


def test_one_dkms_conf():
    """bdsnap-dkms ships the tree's dkms.conf: debian/ only points at it."""
    assert (DEBIAN / "bdsnap-dkms.dkms").read_text().split() == ["dkms.conf"]
    conf = (g.ROOT / "dkms.conf").read_text()
    assert re.search(r'^BUILD_EXCLUSIVE_KERNEL="[^"]+"$', conf, re.M)
    assert re.search(r'^AUTOINSTALL="yes"$', conf, re.M)
    assert "BDSNAP_KO_WERROR=" in conf  # no -Werror in a build on the admin's machine
    assert not list(DEBIAN.glob("*dkms.conf*"))


def test_four_packages():
    control = (DEBIAN / "control").read_text()
    assert re.findall(r"^Package: (\S+)$", control, re.M) == [
        "bdsnap", "libbdsnap0", "libbdsnap-dev", "bdsnap-dkms"]
    assert "debhelper-compat (= 13)" in control and "dh-sequence-dkms" in control


def test_pkg_packages_list_the_tools():
    out = subprocess.run(["make", "-s", "-C", str(g.ROOT), "-p", "-n", "deps-pkg"],
                         capture_output=True, text=True).stdout
    pkgs = re.search(r"^PKG_PACKAGES := (.*)$", out, re.M).group(1).split()
    for p in ("dpkg-dev", "debhelper", "dh-dkms", "dkms", "fakeroot", "lintian"):
        assert p in pkgs
    # debian/rules asks systemd.pc where units go; its package differs by release.
    owner = subprocess.run(["dpkg", "-S", "/usr/share/pkgconfig/systemd.pc"],
                           capture_output=True, text=True, check=True).stdout
    assert owner.split(":")[0] in pkgs, (owner, pkgs)


def test_rules_build_without_werror_with_dpkg_buildflags():
    rules = (DEBIAN / "rules").read_text()
    assert "include /usr/share/dpkg/default.mk" in rules  # exports dpkg-buildflags
    assert "hardening=+all" in rules
    assert re.search(r"BDSNAP_MAKE := WERROR= ", rules)
    assert "dh_makeshlibs -- -c4" in rules
