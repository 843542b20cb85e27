"""data_crc32() (lib/crc32.c): the data CRC that verify checks, folded with PCLMULQDQ on x86-64."""
import os
import subprocess

import storegen as g


def test_crc32_is_zlibs(tmp_path):
    """The folded CRC-32 against zlib's, over every tail and alignment; on a CPU that can
    fold, folding must be what the library does."""
    src = tmp_path / "crc32.c"
    exe = tmp_path / "crc32"
    src.write_text(r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>
#include "internal.h"

int main(void)
{
	static uint8_t buf[70000];
	size_t i, len, at;

	for (i = 0; i < sizeof(buf); i++)
		buf[i] = rand();
	for (len = 0; len <= 1100; len++)
		for (at = 0; at < 16; at++)
			if (data_crc32(buf + at, len) != crc32_z(0, buf + at, len))
				return printf("differs: %zu bytes at %zu\n", len, at), 1;
	for (len = 4000; len < sizeof(buf); len = len * 3 / 2 + 7)
		if (data_crc32(buf + 5, len) != crc32_z(0, buf + 5, len))
			return printf("differs: %zu bytes\n", len), 1;
	printf("folds %d\n", data_crc32_folds());
	return 0;
}
""")
    subprocess.run(["cc", "-std=c11", "-D_GNU_SOURCE", "-O2", "-I", str(g.ROOT / "lib"),
                    "-I", str(g.ROOT / "include"), "-o", str(exe), str(src),
                    str(g.ROOT / "lib" / "libbdsnap.a"), "-lz"], check=True)
    res = subprocess.run([str(exe)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout
    flags = open("/proc/cpuinfo").read()
    if os.uname().machine == "x86_64" and " pclmulqdq" in flags and " sse4_1" in flags:
        assert res.stdout == "folds 1\n"
