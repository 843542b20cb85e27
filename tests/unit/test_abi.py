"""libbdsnap.so.0's ABI: the exported symbols and their version nodes, the sized
option structs, and the LIBBDSNAP_0 entry points old programs were linked with."""
import ctypes
import errno
import subprocess

import pytest

import storegen as g
from conftest import DEVICE_SIZE, sha
from test_chain import SHAPES, Chain

SO = g.ROOT / "lib" / "libbdsnap.so.0"
SYMBOLS = g.ROOT / "tests" / "unit" / "libbdsnap.symbols"


def test_exported_symbols_match_the_committed_list():
    out = subprocess.run(["nm", "-D", "--defined-only", str(SO)], capture_output=True,
                         text=True, check=True).stdout
    found = sorted(line.split()[-1] for line in out.splitlines())
    want = sorted(l for l in SYMBOLS.read_text().splitlines() if l and not l.startswith("#"))
    added, removed = sorted(set(found) - set(want)), sorted(set(want) - set(found))
    assert not added and not removed, (
        "libbdsnap's ABI changed: new %s, gone %s. New symbols go into a new version node "
        "of lib/libbdsnap.map, and tests/unit/libbdsnap.symbols is updated with them."
        % (added, removed))


def test_first_node_is_what_it_was():
    """Every LIBBDSNAP_0 symbol of the first release is still there, in that node."""
    first = ["activate", "conf_check", "conf_free", "conf_parse", "conf_read", "deactivate",
             "list", "module_load", "module_state", "module_unload", "resolve_via",
             "session_changed", "session_close", "session_export", "session_info",
             "session_meta", "session_open", "session_restore", "session_verify",
             "session_verify_progress", "sessions_free", "sessions_later", "sessions_scan",
             "version"]
    text = SYMBOLS.read_text()
    for name in first:
        assert ("bdsnap_%s@@LIBBDSNAP_0\n" % name in text or
                "bdsnap_%s@LIBBDSNAP_0\n" % name in text), name


@pytest.fixture(scope="module")
def lib():
    return ctypes.CDLL(str(SO))


def test_parse_size(lib):
    out = ctypes.c_uint64()
    for text, want in [(b"4096", 4096), (b"512K", 512 << 10), (b"20G", 20 << 30),
                       (b"1TiB", 1 << 40), (b"3MB", 3 << 20)]:
        assert lib.bdsnap_parse_size(text, ctypes.byref(out)) == 0 and out.value == want
    for text in (b"", b"K", b"-1", b"1X", b"1 G"):
        assert lib.bdsnap_parse_size(text, ctypes.byref(out)) == -errno.EINVAL, text
    assert lib.bdsnap_parse_size(b"99999999999E", ctypes.byref(out)) == -errno.ERANGE


def test_option_struct_sizes(lib):
    """A struct smaller than the first version, or larger with unknown bytes set, is refused."""
    policy = (ctypes.c_uint8 * 64)()
    remove = (ctypes.c_uint8 * 1)()

    def plan(size, extra=0):
        ctypes.memset(policy, 0, 64)
        ctypes.c_uint32.from_buffer(policy).value = size
        policy[40] = extra
        return lib.bdsnap_retention_plan(None, 0, policy, remove)
    first = 16      # uint32 size, unsigned keep, uint64 max_size
    assert plan(first) == 0
    assert plan(first - 4) == -errno.EINVAL
    assert plan(48) == 0                      # a newer caller, its new fields unused
    assert plan(48, extra=1) == -errno.EINVAL  # ... or used: this library cannot honour it


OLD_CALLER = r"""
/* A program built against LIBBDSNAP_0: the structs as that bdsnap.h had them. */
#include <stdio.h>
#include <stdint.h>
#include <stddef.h>
struct verify_report { uint64_t records, bytes_raw, file_size; int torn_tail, meta_torn;
		       uint64_t torn_offset; const char *bad_file; uint64_t bad_offset;
		       const char *reason; };
struct restore_opts { unsigned int flags; void *progress; void *ctx; };
struct restore_report { struct verify_report verify; uint64_t blocks, bytes;
			const char *refused; };
struct bdsnap_session;
int bdsnap_session_open(const char *dir, struct bdsnap_session **out);
int old_restore(struct bdsnap_session *, const char *, const struct restore_opts *,
		struct restore_report *);
__asm__(".symver old_restore, bdsnap_session_restore@LIBBDSNAP_0");
int main(int argc, char **argv)
{
	struct restore_opts o = { 0, NULL, NULL };
	struct restore_report r;
	struct bdsnap_session *s;
	int rc;

	(void)argc;
	if (bdsnap_session_open(argv[1], &s))
		return 99;
	rc = old_restore(s, NULL, &o, &r);
	printf("%d %llu %s\n", rc, (unsigned long long)r.blocks, r.refused ? r.refused : "-");
	return 0;
}
"""


def test_program_linked_against_the_first_node_still_works(world, tmp_path):
    """bdsnap_session_restore@LIBBDSNAP_0 with its old structs: now the whole chain."""
    chain = Chain(world, *SHAPES["overlapping"])
    src = tmp_path / "old.c"
    src.write_text(OLD_CALLER)
    exe = tmp_path / "old"
    subprocess.run(["cc", "-o", exe, src, "-L", SO.parent, "-l:libbdsnap.so.0",
                    "-Wl,-rpath," + str(SO.parent)], check=True)
    res = subprocess.run([exe, chain.sessions[0].dir], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[:2] == ["0", "10"]
    assert sha(world.image) == chain.sha_before(0) == world.pre_sha
    assert len(world.pre) == DEVICE_SIZE
