// SPDX-License-Identifier: LGPL-2.1-or-later
/* Small file helpers. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "internal.h"

int read_dev(int fd, bool direct, void *buf, size_t want, uint64_t off)
{
	/* O_DIRECT wants aligned lengths; reading past the end just comes back short. */
	size_t len = direct ? (want + DIO_ALIGN - 1) / DIO_ALIGN * DIO_ALIGN : want;
	size_t got = 0;
	ssize_t n;

	while (got < want) {
		n = pread(fd, (char *)buf + got, len - got, off + got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 1;
		got += n;
	}
	return 0;
}

int write_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;
	ssize_t n;

	while (len) {
		n = pwrite(fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= n;
		off += n;
	}
	return 0;
}

ssize_t read_small(const char *path, char *buf, size_t cap)
{
	ssize_t got;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	do
		got = read(fd, buf, cap - 1);
	while (got < 0 && errno == EINTR);
	if (got < 0)
		got = -errno;
	close(fd);
	buf[got < 0 ? 0 : got] = '\0';
	return got;
}
