"""bdsnap_view_*: the pre-mount device read in place equals the exported image,
read in any pieces, and follows an open ordered session's log as it grows."""
import errno
import hashlib
import os
import subprocess

import pytest

import storegen as g
from conftest import DEVICE_SIZE, pre_block, sha
from test_chain import SHAPES, Chain

SO = g.ROOT / "lib" / "libbdsnap.so.0"

# view SIZES... SESSION [LATER...]: reads the view in pieces of the given sizes
# (cycled, from offset 0) and writes it to stdout; "+N" as a size first rewrites
# the source at block N and appends that block's record to the newest log (the
# file named by $APPEND), as an ordered session does while the view is open.
READER = r"""
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "bdsnap.h"

static int run_hook(const char *arg)
{
	char cmd[4096];

	snprintf(cmd, sizeof(cmd), "%s %s", getenv("HOOK"), arg);
	return system(cmd);
}

int main(int argc, char **argv)
{
	struct bdsnap_chain_report rep = { .size = sizeof(rep) };
	struct bdsnap_session *s[8];
	struct bdsnap_view *v;
	size_t sizes[16], nsizes = 0, i = 0, n;
	uint64_t off = 0, size;
	int a = 1, rc, ns = 0;
	char *buf;

	for (; a < argc && argv[a][0] != '/'; a++)
		sizes[nsizes++] = strtoul(argv[a], NULL, 0);
	for (; a < argc; a++)
		if ((rc = bdsnap_session_open(argv[a], &s[ns++])))
			return fprintf(stderr, "open %s: %d\n", argv[a], rc), 2;
	rc = bdsnap_view_open(s[0], s + 1, ns - 1, getenv("SOURCE"), NULL, &v, &rep);
	if (rc)
		return fprintf(stderr, "view_open: %d %s\n", rc, rep.refused ? rep.refused : "-"), 3;
	if (getenv("HOOK") && run_hook("opened"))
		return 4;
	size = bdsnap_view_size(v);
	buf = malloc(1 << 20);
	while (off < size) {
		n = sizes[i++ % nsizes];
		n = n < size - off ? n : size - off;
		rc = bdsnap_view_read(v, buf, n, off);
		if (rc)
			return fprintf(stderr, "view_read %llu: %d\n", (unsigned long long)off, rc), 5;
		fwrite(buf, 1, n, stdout);
		off += n;
	}
	printf("%d", bdsnap_view_read(v, buf, 1, size));
	bdsnap_view_close(v);
	return 0;
}
"""


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    d = tmp_path_factory.mktemp("view")
    src = d / "view.c"
    src.write_text(READER)
    exe = d / "view"
    subprocess.run(["cc", "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror",
                    "-I", g.ROOT / "lib", "-I", g.ROOT / "include", "-o", exe, src, "-L", SO.parent, "-l:libbdsnap.so.0",
                    "-Wl,-rpath," + str(SO.parent)], check=True)
    return exe


def view(reader, sizes, sessions, env=None):
    """The view's bytes, and what a read past its end returned."""
    res = subprocess.run([reader, *map(str, sizes), *(s.dir for s in sessions)],
                         capture_output=True, env=env)
    assert res.returncode == 0, res.stderr.decode()
    out = res.stdout
    return out[:DEVICE_SIZE], int(out[DEVICE_SIZE:])


@pytest.mark.parametrize("sizes", [[DEVICE_SIZE], [1], [4095, 1, 8193], [1 << 20]],
                         ids=["whole", "bytes", "odd", "chunk"])
def test_view_is_the_pre_mount_image(world, reader, sizes):
    s = world.session()
    s.write()
    after = sha(world.image)
    data, past_end = view(reader, sizes if sizes != [1] else [1, 3, 7], [s])
    assert hashlib.sha256(data).hexdigest() == world.pre_sha
    assert past_end == -errno.EINVAL
    assert sha(world.image) == after, "the view changed the device"


@pytest.mark.parametrize("shape", SHAPES)
def test_view_of_each_session_of_a_chain_equals_its_pre_image(world, reader, shape):
    chain = Chain(world, *SHAPES[shape])
    for i in range(len(chain.sessions)):
        data, _ = view(reader, [5000], chain.sessions[i:])
        assert hashlib.sha256(data).hexdigest() == chain.sha_before(i), (shape, i)


def test_view_follows_an_open_ordered_log(world, reader, tmp_path):
    """While the view is open, block 5 is written: as an ordered session does,
    its pre-image reaches the log before the new content reaches the device.
    The view still shows the pre-mount block."""
    s = world.session(state="open", ordered=1)
    s.write()
    blocks = s.dir / "blocks"
    record = g.record(5, pre_block(5))
    hook = tmp_path / "hook.sh"
    hook.write_text(f"""#!/bin/sh
cat {tmp_path / 'rec'} >> {blocks}
printf 'new content' | dd of={world.image} bs={g.BS} seek=5 conv=notrunc status=none
""")
    hook.chmod(0o755)
    (tmp_path / "rec").write_bytes(record)
    data, _ = view(reader, [g.BS], [s], env={**os.environ, "HOOK": str(hook)})
    assert world.image.read_bytes()[5 * g.BS:5 * g.BS + 11] == b"new content"
    assert hashlib.sha256(data).hexdigest() == world.pre_sha


def test_view_refuses_an_open_plain_session(world, reader):
    s = world.session(state="open", ordered=0)
    s.write()
    res = subprocess.run([reader, "4096", s.dir], capture_output=True, text=True)
    assert res.returncode == 3
    assert res.stderr.startswith(f"view_open: {-errno.EINPROGRESS} session is open and not ordered")


def test_view_of_a_record_damaged_after_open_fails_that_read_only(world, reader, tmp_path):
    s = world.session()
    s.write()
    off = s.offsets()[s.blocks().index(7)] + g.RECORD.size + 2   # in block 7's payload
    hook = tmp_path / "hook.sh"
    hook.write_text(f"""#!/bin/sh
printf 'X' | dd of={s.dir / 'blocks'} bs=1 seek={off} conv=notrunc status=none
""")
    hook.chmod(0o755)
    env = {**os.environ, "HOOK": str(hook)}
    res = subprocess.run([reader, str(g.BS), s.dir], capture_output=True, env=env)
    assert res.returncode == 5
    assert res.stderr.decode() == f"view_read {7 * g.BS}: {-errno.EBADMSG}\n"
    assert res.stdout == world.pre[:7 * g.BS]
