// SPDX-License-Identifier: GPL-2.0
/*
 * usctm_call NR [ARG]... - make system call NR with up to six arguments
 * (decimal, 0x hex or negative) and print "ret=<value> errno=<errno>".
 * Exits 0 whatever the call returned, 2 on bad usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>

static int parse(const char *s, unsigned long *v)
{
	char *end;

	errno = 0;
	if (*s == '-')
		*v = (unsigned long)strtol(s, &end, 0);
	else
		*v = strtoul(s, &end, 0);
	return errno || end == s || *end ? -1 : 0;
}

int main(int argc, char **argv)
{
	unsigned long nr, a[6] = { 0 };
	long ret;
	int i;

	if (argc < 2 || argc > 8 || parse(argv[1], &nr)) {
		fprintf(stderr, "usage: %s NR [ARG]... (at most 6 ARGs)\n",
			argv[0]);
		return 2;
	}
	for (i = 2; i < argc; i++) {
		if (parse(argv[i], &a[i - 2])) {
			fprintf(stderr, "%s: bad argument '%s'\n", argv[0],
				argv[i]);
			return 2;
		}
	}

	errno = 0;
	ret = syscall((long)nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	printf("ret=%ld errno=%d\n", ret, ret == -1 ? errno : 0);
	return 0;
}
