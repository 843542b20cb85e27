"""`make deb` builds the four packages, lintian finds no error or warning, and
they hold what they should. About a minute; skipped when the packaging tools
(the Makefile's PKG_PACKAGES) are not installed: `make deps-pkg` installs them.
Installing and using the packages in a guest: tests/packages/ (make test-packages).

Run on the host: /usr/bin/python3 -m pytest tests/host/test_packages.py
"""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "build" / "deb"
TOOLS = ("dpkg-buildpackage", "dh", "dh_dkms", "lintian", "fakeroot")

pytestmark = pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                reason="packaging tools not installed (make deps-pkg)")


@pytest.fixture(scope="module")
def built():
    res = subprocess.run(["make", "-C", str(REPO), "deb"], capture_output=True, text=True)
    assert res.returncode == 0, (res.stdout + res.stderr)[-6000:]
    return re.sub(r"\\\n\s*", "", res.stdout + res.stderr)  # a command per line


def deb(name):
    (path,) = OUT.glob(name + "_*.deb")
    return path


def contents(name):
    out = subprocess.run(["dpkg-deb", "-c", str(deb(name))], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[5].lstrip(".") for line in out.splitlines()}


def control(name, member):
    return subprocess.run(["dpkg-deb", "--info", str(deb(name)), member], capture_output=True,
                          text=True).stdout


def test_lintian_clean(built):
    text = (OUT / "lintian.txt").read_text()
    bad = [l for l in text.splitlines() if re.match(r"[EW]: ", l)]
    assert bad == [], text


def test_no_werror_and_hardened_flags(built):
    compiles = [l for l in built.splitlines() if re.match(r"(cc|gcc) .* -c ", l)]
    assert compiles
    for line in compiles:
        assert not re.search(r" -Werror( |$)", line), line
        assert "-D_FORTIFY_SOURCE=" in line and "-fstack-protector-strong" in line, line
    links = [l for l in built.splitlines() if re.match(r"(cc|gcc) .* -o (shared/bdsnap|"
                                                       r"libbdsnap\.so\.0) ", l)]
    assert len(links) == 2 and all("-Wl,-z,now" in l for l in links), links


def test_bdsnap_package(built):
    files = contents("bdsnap")
    for f in ("/usr/sbin/bdsnap", "/etc/bdsnap/bdsnap.conf", "/usr/share/man/man8/bdsnap.8.gz"):
        assert f in files, f
    # Where this release's systemd.pc puts units: on Debian 13 /lib is an alias
    # of /usr/lib, and a file installed through it is a lintian error.
    unitdir = subprocess.run(["pkg-config", "--variable=systemdsystemunitdir", "systemd"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert unitdir and f"{unitdir}/bdsnap.service" in files, (unitdir, sorted(files))
    assert control("bdsnap", "conffiles").split() == ["/etc/bdsnap/bdsnap.conf"]
    postinst = control("bdsnap", "postinst")
    assert "mkdir -m 0700 /snapshot" in postinst
    assert "deb-systemd-helper" in postinst  # enabled by the admin, purged with the package
    assert "the session store /snapshot is kept" in control("bdsnap", "postrm")
    info = control("bdsnap", "control")
    assert re.search(r"^Depends:.*libbdsnap0 \(>= ", info, re.M)


def test_library_packages(built):
    lib = contents("libbdsnap0")
    assert any(re.fullmatch(r"/usr/lib/[\w-]+/libbdsnap\.so\.0", f) for f in lib)
    assert control("libbdsnap0", "symbols").startswith("libbdsnap.so.0 libbdsnap0 #MINVER#")
    dev = contents("libbdsnap-dev")
    for pat in (r"/usr/include/bdsnap/bdsnap\.h", r"/usr/include/bdsnap/uapi/bdsnap\.h",
                r"/usr/lib/[\w-]+/libbdsnap\.(so|a)", r"/usr/lib/[\w-]+/pkgconfig/bdsnap\.pc"):
        assert any(re.fullmatch(pat, f) for f in dev), pat


def test_dkms_package(built):
    files = contents("bdsnap-dkms")
    src = [f for f in files if f.startswith("/usr/src/bdsnap-")]
    (base,) = {"/".join(f.split("/")[:4]) for f in src}
    for f in ("dkms.conf", "module/Kbuild", "usctm/Makefile", "singlefile_fs/Kbuild",
              "include/uapi/bdsnap.h", "mk/kernel.mk"):
        assert "%s/%s" % (base, f) in files, f
    assert not any("test_client" in f or "mkfs" in f for f in src)
    assert "dkms" in control("bdsnap-dkms", "control")
    assert "common.postinst" in control("bdsnap-dkms", "postinst")
