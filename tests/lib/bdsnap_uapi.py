"""include/uapi/bdsnap.h for Python tests, read from the header itself.

The header is the single definition of the ioctl numbers, the request
structs and the store format; this module parses it (simple #defines and
structs of fixed-width fields) instead of re-declaring anything, so a change
to the header cannot leave the tests behind.
"""

import ctypes
import fcntl
import os
import re
from pathlib import Path

HEADER = Path(__file__).resolve().parents[2] / "include" / "uapi" / "bdsnap.h"
_TYPES = {"__u8": ctypes.c_uint8, "char": ctypes.c_char, "__u32": ctypes.c_uint32,
          "__le32": ctypes.c_uint32, "__u64": ctypes.c_uint64, "__le64": ctypes.c_uint64}


def _parse():
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)
    consts = {}
    for name, value in re.findall(r"^#define\s+(\w+)\s+(.+?)\s*$", text, re.M):
        expr = re.sub(r"(0x[0-9a-fA-F]+|\d+)U?L*L*\b", r"\1", value)
        expr = re.sub(r"\b([A-Z_][A-Z0-9_]+)\b", lambda m: str(consts.get(m.group(1), m.group(1))), expr)
        try:
            consts[name] = eval(expr, {"__builtins__": {}})  # plain integer arithmetic only
        except Exception:
            pass
    for body in re.findall(r"enum\s+\w+\s*{(.*?)}", text, re.S):
        for name, value in re.findall(r"(\w+)\s*=\s*(\d+)", body):
            consts[name] = int(value)
    structs = {}
    for name, body in re.findall(r"struct\s+(\w+)\s*{(.*?)};", text, re.S):
        fields = []
        for ftype, fname, dim in re.findall(r"(\w+)\s+(\w+)(?:\[(\w+)\])?;", body):
            ctype = _TYPES[ftype]
            if dim:
                ctype = ctype * (consts[dim] if dim in consts else int(dim))
            fields.append((fname, ctype))
        structs[name] = type(name, (ctypes.Structure,), {"_fields_": fields})
    return consts, structs


CONST, STRUCT = _parse()
globals().update({k: v for k, v in CONST.items() if k.startswith("BDSNAP_")})


def _ioc(direction, nr, struct):
    # asm-generic/ioctl.h: dir << 30 | size << 16 | type << 8 | nr
    return (direction << 30) | (ctypes.sizeof(struct) << 16) | (ord("S") << 8) | nr


IOC_VERSION = _ioc(3, 0, STRUCT["bdsnap_version"])
IOC_ACTIVATE = _ioc(1, 1, STRUCT["bdsnap_activate"])
IOC_DEACTIVATE = _ioc(1, 2, STRUCT["bdsnap_activate"])
IOC_LIST = _ioc(3, 3, STRUCT["bdsnap_list"])
IOC_SET_PASSWORD = _ioc(1, 4, STRUCT["bdsnap_set_password"])
CTL = "/dev/" + "snap"


def new(name, **fields):
    """A zeroed request struct with its size field set."""
    obj = STRUCT[name]()
    if "size" in dict(obj._fields_):
        obj.size = ctypes.sizeof(obj)
    for key, value in fields.items():
        setattr(obj, key, value.encode() if isinstance(value, str) else value)
    return obj


def ioctl(cmd, obj, fd=None):
    """Issue an ioctl on /dev/snap; raises OSError with the kernel's errno."""
    own = fd is None
    if own:
        fd = os.open(CTL, os.O_RDWR)
    try:
        fcntl.ioctl(fd, cmd, obj)
    finally:
        if own:
            os.close(fd)
    return obj


def activate(path, password, tracker=0, flags=0):
    ioctl(IOC_ACTIVATE, new("bdsnap_activate", path=path, password=password,
                            tracker=tracker, flags=flags))


def deactivate(path, password):
    ioctl(IOC_DEACTIVATE, new("bdsnap_activate", path=path, password=password))


def list_devices(capacity=64):
    info_t = STRUCT["bdsnap_dev_info"]
    entries = (info_t * capacity)()
    req = new("bdsnap_list", capacity=capacity, entry_size=ctypes.sizeof(info_t),
              entries=ctypes.addressof(entries))
    ioctl(IOC_LIST, req)
    return list(entries[:min(req.count, capacity)])
