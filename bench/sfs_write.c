// SPDX-License-Identifier: GPL-2.0
/*
 * sfs_write - the singlefilefs write loop of the benchmark (fio's file
 * handling does not fit a one-file file system).
 *
 *   sfs_write FILE BYTES BS seq|rand [SEED [PASSES]]
 *
 * pwrite()s BYTES of FILE (which must already be that long: no append) in
 * BS-byte writes, in order (seq) or in a random permutation of the BS-sized
 * slots (rand, each slot once), PASSES times over the same slots in the same
 * order (default 1; a rewrite runs several to last long enough to time), then
 * fsync()s, and prints one JSON line:
 * {"bytes": ..., "ops": ..., "seconds": ...} (seconds include the fsync).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	uint64_t bytes, bs, n, i, k, passes = 1, seed = 42;
	uint64_t *order;
	unsigned char *buf;
	double t0, t1;
	int fd, rnd;

	if (argc < 5 || argc > 7) {
		fprintf(stderr, "usage: sfs_write FILE BYTES BS seq|rand [SEED [PASSES]]\n");
		return 2;
	}
	bytes = strtoull(argv[2], NULL, 0);
	bs = strtoull(argv[3], NULL, 0);
	rnd = !strcmp(argv[4], "rand");
	if (argc >= 6)
		seed = strtoull(argv[5], NULL, 0) | 1;
	if (argc == 7)
		passes = strtoull(argv[6], NULL, 0);
	if (!bs || bytes % bs || !passes || (!rnd && strcmp(argv[4], "seq"))) {
		fprintf(stderr, "sfs_write: BYTES must be a multiple of BS; mode seq or rand\n");
		return 2;
	}
	n = bytes / bs;
	order = malloc(n * sizeof(*order));
	buf = malloc(bs);
	if (!order || !buf) {
		perror("malloc");
		return 1;
	}
	for (i = 0; i < n; i++)
		order[i] = i;
	if (rnd)
		for (i = n - 1; i > 0; i--) {
			uint64_t j = xorshift(&seed) % (i + 1), t = order[i];

			order[i] = order[j];
			order[j] = t;
		}
	for (i = 0; i < bs; i++)
		buf[i] = (unsigned char)xorshift(&seed);

	fd = open(argv[1], O_WRONLY);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	t0 = now();
	for (k = 0; k < passes; k++)
		for (i = 0; i < n; i++) {
			uint64_t tag = k * n + i;

			memcpy(buf, &tag, sizeof(tag));	/* every write differs */
			if (pwrite(fd, buf, bs, order[i] * bs) != (ssize_t)bs) {
				perror("pwrite");
				return 1;
			}
		}
	if (fsync(fd)) {
		perror("fsync");
		return 1;
	}
	t1 = now();
	close(fd);
	printf("{\"bytes\": %llu, \"ops\": %llu, \"seconds\": %.6f}\n",
	       (unsigned long long)(bytes * passes), (unsigned long long)(n * passes), t1 - t0);
	return 0;
}
