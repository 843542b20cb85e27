"""Malformed or unauthorised requests on /dev/snap: each a specific errno,
never a kernel warning (the runner fails the run on any)."""

import ctypes
import errno
import os
import time

import pytest

from conftest import MODULE, PASSWORD, sh, uapi

pytestmark = pytest.mark.badinput


def expect_errno(code, fn, *args, **kw):
    with pytest.raises(OSError) as exc:
        fn(*args, **kw)
    assert exc.value.errno == code, f"expected {errno.errorcode[code]}, got {exc.value}"


def raw_activate(cmd=None, **fields):
    req = uapi.new("bdsnap_activate", **fields)
    return uapi.ioctl(cmd or uapi.IOC_ACTIVATE, req)


def test_wrong_password_is_eacces_after_the_delay(bdsnap, make_disk):
    disk = make_disk().mkfs_ext4()
    start = time.monotonic()
    for _ in range(5):
        expect_errno(errno.EACCES, uapi.activate, str(disk.image), "wrong")
    assert time.monotonic() - start >= 5 * 0.020
    expect_errno(errno.EACCES, uapi.activate, str(disk.image), "")
    assert uapi.list_devices() == []


def test_caller_without_cap_sys_admin_gets_eperm(bdsnap, make_disk):
    disk = make_disk().mkfs_ext4()
    fd = os.open(uapi.CTL, os.O_RDWR)
    pid = os.fork()
    if pid == 0:  # child: keep the open fd, drop root, then ask
        code = 1
        try:
            os.setresuid(65534, 65534, 65534)
            try:
                uapi.ioctl(uapi.IOC_ACTIVATE, uapi.new("bdsnap_activate", path=str(disk.image),
                                                       password=PASSWORD), fd=fd)
            except OSError as exc:
                code = 0 if exc.errno == errno.EPERM else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert uapi.list_devices() == []


@pytest.mark.parametrize("path,code", [
    ("/nonexistent/image", errno.ENOENT),
    ("/dev/null", errno.ENOTBLK),
    ("/tmp", errno.ENOTBLK),
])
def test_bad_paths(bdsnap, path, code):
    expect_errno(code, uapi.activate, path, PASSWORD)


def test_double_activate_and_inactive_deactivate(bdsnap, make_disk):
    disk = make_disk().mkfs_ext4()
    disk.activate()
    expect_errno(errno.EEXIST, uapi.activate, str(disk.image), PASSWORD)
    loop = disk.attach()  # the same device through another path is the same activation
    expect_errno(errno.ENODEV, uapi.deactivate, loop, PASSWORD)
    disk.deactivate()
    expect_errno(errno.ENODEV, uapi.deactivate, str(disk.image), PASSWORD)


def test_malformed_requests(bdsnap, make_disk):
    disk = make_disk().mkfs_ext4()
    path = str(disk.image)
    unterminated_path = "a" * uapi.BDSNAP_PATH_MAX
    unterminated_pw = "p" * uapi.BDSNAP_PASSWORD_MAX
    expect_errno(errno.EINVAL, raw_activate, path=unterminated_path, password=PASSWORD)
    expect_errno(errno.EINVAL, raw_activate, path=path, password=unterminated_pw)
    expect_errno(errno.EINVAL, raw_activate, path="", password=PASSWORD)
    expect_errno(errno.EINVAL, raw_activate, path=path, password=PASSWORD, tracker=77)
    expect_errno(errno.EINVAL, raw_activate, path=path, password=PASSWORD, flags=1 << 31)
    req = uapi.new("bdsnap_activate", path=path, password=PASSWORD)
    req.reserved[2] = 1
    expect_errno(errno.EINVAL, uapi.ioctl, uapi.IOC_ACTIVATE, req)
    req = uapi.new("bdsnap_activate", path=path, password=PASSWORD)
    req.size = 0
    expect_errno(errno.EINVAL, uapi.ioctl, uapi.IOC_ACTIVATE, req)
    expect_errno(errno.EINVAL, raw_activate, cmd=uapi.IOC_DEACTIVATE, path=path,
                 password=PASSWORD, flags=1)
    expect_errno(errno.ENOTTY, uapi.ioctl, uapi.IOC_ACTIVATE + 0x10,
                 uapi.new("bdsnap_activate"))
    # LIST with a NULL array but room claimed, and a wrong entry size
    lst = uapi.new("bdsnap_list", capacity=4, entry_size=ctypes.sizeof(uapi.STRUCT["bdsnap_dev_info"]))
    expect_errno(errno.EINVAL, uapi.ioctl, uapi.IOC_LIST, lst)
    lst = uapi.new("bdsnap_list", capacity=0, entry_size=3)
    expect_errno(errno.EINVAL, uapi.ioctl, uapi.IOC_LIST, lst)
    # an unmapped array is EFAULT, not a crash
    lst = uapi.new("bdsnap_list", capacity=1, entry_size=ctypes.sizeof(uapi.STRUCT["bdsnap_dev_info"]),
                   entries=0x10)
    disk.activate()
    expect_errno(errno.EFAULT, uapi.ioctl, uapi.IOC_LIST, lst)
    assert len(uapi.list_devices()) == 1


def test_version(bdsnap):
    v = uapi.ioctl(uapi.IOC_VERSION, uapi.new("bdsnap_version"))
    assert (v.major, v.minor) == (uapi.BDSNAP_VERSION_MAJOR, uapi.BDSNAP_VERSION_MINOR)
    assert v.store_format == uapi.BDSNAP_STORE_VERSION and v.block_size == uapi.BDSNAP_BLOCK_SIZE


def test_set_password(bdsnap, make_disk):
    disk = make_disk().mkfs_ext4()
    req = uapi.new("bdsnap_set_password", old_password="nope", new_password="new-pw")
    expect_errno(errno.EACCES, uapi.ioctl, uapi.IOC_SET_PASSWORD, req)
    req = uapi.new("bdsnap_set_password", old_password=PASSWORD, new_password="")
    expect_errno(errno.EINVAL, uapi.ioctl, uapi.IOC_SET_PASSWORD, req)
    uapi.ioctl(uapi.IOC_SET_PASSWORD,
               uapi.new("bdsnap_set_password", old_password=PASSWORD, new_password="new-pw"))
    expect_errno(errno.EACCES, uapi.activate, str(disk.image), PASSWORD)
    uapi.activate(str(disk.image), "new-pw")
    uapi.deactivate(str(disk.image), "new-pw")


def test_password_not_readable_back(bdsnap):
    assert not os.path.exists("/sys/module/bdsnap/parameters/password")
    assert PASSWORD.encode() not in open("/proc/modules", "rb").read()


def test_load_without_password_is_refused(guest):
    res = sh(f"insmod {MODULE}", check=False)
    assert res.returncode != 0
    assert "password" in sh("dmesg | tail -5").stdout


def test_store_on_tracked_device_is_refused(load_bdsnap, make_disk):
    store = make_disk("store").mkfs_ext4()
    loop = store.attach()
    mnt = store.mount()
    load_bdsnap(store_dir=f"{mnt}/snapshots")
    expect_errno(errno.EXDEV, uapi.activate, loop, PASSWORD)


def test_ordered_vfs_is_refused(bdsnap, make_disk):
    """V1 copies inside probe handlers, which cannot wait for a durable store."""
    disk = make_disk().mkfs_ext4()
    expect_errno(errno.EINVAL, uapi.activate, str(disk.image), PASSWORD,
                 tracker=uapi.BDSNAP_TRACKER_VFS, flags=uapi.BDSNAP_ACT_ORDERED)


def test_vfs_tracker_refuses_ext4_at_mount(bdsnap, make_disk):
    """V1 cannot track ext4 exactly: the mount fails instead of a wrong snapshot."""
    disk = make_disk().mkfs_ext4()
    disk.activate(tracker=uapi.BDSNAP_TRACKER_VFS)
    disk.attach()
    res = sh(f"mkdir -p /mnt/v1 && mount -t ext4 {disk.loop} /mnt/v1", check=False)
    assert res.returncode != 0
    assert "vfs tracker cannot track ext4" in sh("dmesg | tail -5").stdout
