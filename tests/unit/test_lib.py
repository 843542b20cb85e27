"""libbdsnap as a shared library: exports, soname, argument checks via ctypes."""
import ctypes
import errno
import os
import subprocess

import pytest

import storegen as g

SO = g.ROOT / "lib" / "libbdsnap.so.0"


@pytest.fixture(scope="module")
def lib():
    return ctypes.CDLL(str(SO))


def test_exports_only_bdsnap_symbols():
    out = subprocess.run(["nm", "-D", "--defined-only", str(SO)], capture_output=True,
                         text=True, check=True).stdout
    names = [l.split()[-1].split("@")[0] for l in out.splitlines() if l.split()[1] in "TtDdBbRr"]
    assert names and all(n.startswith("bdsnap_") for n in names), names


def test_soname():
    out = subprocess.run(["readelf", "-d", str(SO)], capture_output=True, text=True).stdout
    assert "[libbdsnap.so.0]" in out


def test_password_checks_come_first(lib, tmp_path):
    dev = str(tmp_path).encode()
    too_long = b"x" * g.C["BDSNAP_PASSWORD_MAX"]
    assert lib.bdsnap_activate(dev, too_long, 0, 0, 0) == -errno.ENAMETOOLONG
    assert lib.bdsnap_activate(dev, b"", 0, 0, 0) == -errno.EINVAL
    assert lib.bdsnap_deactivate(None, b"pw", 0) == -errno.EINVAL


@pytest.mark.skipif(os.path.exists("/dev/snap"), reason="/dev/snap exists on this host")
def test_without_module(lib):
    via_ioctl, via_syscall = 1, 2
    assert lib.bdsnap_resolve_via(via_ioctl, 0, 0) == -errno.ENOENT
    assert lib.bdsnap_resolve_via(via_syscall, 0, 0) == -errno.ENOSYS
    out, count = ctypes.c_void_p(), ctypes.c_size_t()
    assert lib.bdsnap_list(ctypes.byref(out), ctypes.byref(count)) == -errno.ENOENT
    assert lib.bdsnap_version(ctypes.create_string_buffer(64)) == -errno.ENOENT
