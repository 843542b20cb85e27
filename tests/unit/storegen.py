"""Writer of crafted bdsnap session directories for the host unit tests.

Constants and the record layouts are parsed from include/uapi/bdsnap.h, the
single definition, so the tests follow the header instead of restating it.
Every helper produces valid bytes unless told otherwise, and a field can be
overridden to build one precise violation at a time.
"""
import hashlib
import random
import re
import struct
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UAPI = ROOT / "include" / "uapi" / "bdsnap.h"


def _parse_defines(text):
    """Integer #defines, evaluated in order so they may refer to each other."""
    values = {}
    for name, expr in re.findall(r"^#define\s+(BDSNAP_\w+)\s+([^/\n]+)", text, re.M):
        expr = re.sub(r"\b(0x[0-9a-fA-F]+|\d+)[UL]+\b", r"\1", expr.strip())
        try:
            values[name] = int(eval(expr, {"__builtins__": {}}, dict(values)))
        except Exception:
            pass  # strings and ioctl macros are not needed here
    return values


_CTYPES = {"__le64": "Q", "__u64": "Q", "__le32": "I", "__u32": "I", "__u8": "B"}


def _code(code, n):
    return "%ds" % n if code == "B" and n > 1 else "%d%s" % (n, code)


class Layout:
    """A little-endian struct from the header: pack by field name, offsets by name."""

    def __init__(self, text, name):
        body = re.search(r"struct %s \{(.*?)\};" % name, text, re.S).group(1)
        self.fields = []  # (name, struct code, count)
        for ctype, field, count in re.findall(r"(__\w+)\s+(\w+)(?:\[(\w+)\])?;", body):
            self.fields.append((field, _CTYPES[ctype], int(count) if count else 1))
        self.fmt = "<" + "".join(_code(code, n) for _, code, n in self.fields)
        self.size = struct.calcsize(self.fmt)
        declared = re.search(r"sizeof\(struct %s\) == (\d+)" % name, text)
        assert declared and int(declared.group(1)) == self.size, name

    def offset(self, field):
        fmt = "<"
        for name, code, n in self.fields:
            if name == field:
                return struct.calcsize(fmt)
            fmt += _code(code, n)
        raise KeyError(field)

    def pack(self, **values):
        args = []
        for name, code, n in self.fields:
            if code == "B" and n > 1:
                args.append(values.pop(name, b""))
            elif n > 1:
                args.extend(values.pop(name, [0] * n))
            else:
                args.append(values.pop(name, 0))
        assert not values, values
        return struct.pack(self.fmt, *args)


_TEXT = UAPI.read_text()
C = _parse_defines(_TEXT)
HEADER = Layout(_TEXT, "bdsnap_store_header")
RECORD = Layout(_TEXT, "bdsnap_record")
BS = C["BDSNAP_BLOCK_SIZE"]
UUID = bytes(range(16))


def crc(data):
    return zlib.crc32(data) & 0xFFFFFFFF


def _sealed(layout, over, **fields):
    """Pack with overrides; header_crc covers the bytes before it unless overridden."""
    fields.update(over)
    forced = "header_crc" in fields
    raw = layout.pack(**fields)
    if forced:
        return raw
    at = layout.offset("header_crc")
    return layout.pack(**fields, header_crc=crc(raw[:at]))


def store_header(device_size, block_size=BS, uuid=UUID, **over):
    return _sealed(HEADER, over, magic=C["BDSNAP_STORE_MAGIC"], version=C["BDSNAP_STORE_VERSION"],
                   header_size=HEADER.size, block_size=block_size, device_size=device_size,
                   uuid=uuid)


def record(block, raw, compress=True, payload=None, **over):
    """Header + payload of one pre-image; zlib unless compress=False."""
    if payload is None:
        payload = zlib.compress(raw) if compress else raw
    head = _sealed(RECORD, over, magic=C["BDSNAP_RECORD_MAGIC"],
                   flags=C["BDSNAP_REC_ZLIB"] if compress else 0, block=block,
                   raw_len=len(raw), stored_len=len(payload), data_crc=crc(raw))
    return head + payload


def block_content(n, size=BS, noisy=False, seed=0):
    """Self-describing: a block written to the wrong place is caught, not just "differs"."""
    tag = b"bdsnap block %08d " % n
    data = (tag * (size // len(tag) + 1))[:size]
    if noisy:  # incompressible, so the writer stores it raw
        data = (tag + random.Random(n * 7919 + seed).randbytes(size))[:size]
    return data


def fingerprint(image, blocks, device_size, block_size=BS):
    """meta end_sample and end_sha256 (docs/format.md) of @blocks on @image (bytes).

    Up to 256 of the distinct saved blocks, ascending (more: those at
    floor(i * N / 256)); the hash covers each one's number as 8 bytes
    little-endian, then its content on the device at the session's end.
    """
    b = sorted(set(blocks))
    sample = b if len(b) <= 256 else [b[i * len(b) // 256] for i in range(256)]
    h = hashlib.sha256()
    for n in sample:
        h.update(struct.pack("<Q", n))
        h.update(image[n * block_size:min((n + 1) * block_size, device_size)])
    return len(sample), h.hexdigest()


class Session:
    """One session directory: meta lines and the blocks log, written on demand.

    identity: start keys the module writes after the mount (fs_type, fs_uuid,
    image_dev, image_ino), as a dict.  end_keys: write end_sample and
    end_sha256 when the session ended (not open), computed over the file at
    meta path (or `end=` bytes given to write()) as it is then: write a
    session once the device holds what it left.
    """

    def __init__(self, root, name, device_size, path, state="complete", devname="loop0",
                 start="2024-05-01T10:00:00.000000000Z", block_size=BS, uuid=UUID, ordered=0,
                 identity=None, end_keys=True):
        self.dir = Path(root) / name
        self.device_size = device_size
        self.block_size = block_size
        self.path = path
        self.header = store_header(device_size, block_size, uuid)
        self.records = []
        self.meta = [("format", C["BDSNAP_STORE_VERSION"]), ("uuid", uuid.hex()),
                     ("path", path), ("devname", devname), ("device_size", device_size),
                     ("block_size", block_size), ("tracker", "bio"), ("ordered", ordered),
                     ("start", start), ("state", "open")]
        self.meta += list((identity or {}).items())
        self.end_state = state
        self.end_keys = end_keys

    def add(self, blob):
        self.records.append(blob)

    def blocks(self):
        """Block numbers of the records."""
        return [struct.unpack_from("<Q", r, RECORD.offset("block"))[0] for r in self.records]

    def offsets(self):
        """Byte offset of each record in the blocks file."""
        out, at = [], len(self.header)
        for blob in self.records:
            out.append(at)
            at += len(blob)
        return out

    def blocks_bytes(self):
        return self.header + b"".join(self.records)

    def meta_text(self, counters=True, end=None):
        lines = list(self.meta)
        if self.end_state != "open":
            if counters:
                raw = sum(struct.unpack_from("<I", r, RECORD.offset("raw_len"))[0]
                          for r in self.records)
                lines += [("blocks_saved", len(self.records)), ("bytes_raw", raw),
                          ("bytes_stored", len(self.blocks_bytes())), ("errors", 0)]
            if self.end_keys and end is not None:
                sample, digest = fingerprint(end, self.blocks(), self.device_size,
                                             self.block_size)
                lines += [("end_sample", sample), ("end_sha256", digest)]
            lines += [("end", "2024-05-01T10:05:00.000000000Z"), ("state", self.end_state)]
        return "".join("%s=%s\n" % kv for kv in lines)

    def write(self, blocks=None, meta=None, end=None):
        """end: the device at the session's end; default the file at meta path, if any."""
        if end is None and Path(self.path).is_file():
            end = Path(self.path).read_bytes()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "blocks").write_bytes(self.blocks_bytes() if blocks is None else blocks)
        (self.dir / "meta").write_text(self.meta_text(end=end) if meta is None else meta)
        return self.dir
