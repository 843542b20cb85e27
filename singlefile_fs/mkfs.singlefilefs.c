// SPDX-License-Identifier: GPL-2.0
/*
 * mkfs.singlefilefs - format an image file or block device as singlefilefs.
 *
 * Writes the data blocks, then the inode block, then the superblock, so an
 * interrupted run leaves no valid magic behind. The format is described in
 * singlefilefs.h.
 */
#include <endian.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

#include "singlefilefs.h"

#define DEFAULT_SIZE	(1024ULL * 1024)

/* An image file this run created, removed again if the run fails. */
static const char *created_path;

/* Where the initial content comes from: a buffer or a file descriptor. */
struct content {
	const char *name;	/* for messages */
	const char *text;	/* --text, or NULL */
	size_t text_len;
	size_t text_off;
	int fd;			/* --content, or -1 */
};

static _Noreturn void usage(void)
{
	printf(
		"Usage: %s [options] IMAGE\n"
		"\n"
		"Format IMAGE (an image file or a block device) as singlefilefs,\n"
		"a file system holding one file, \"%s\".\n"
		"\n"
		"Options:\n"
		"  -s, --size BYTES      file system size (suffixes K, M, G: powers\n"
		"                        of 1024); an image file is created or\n"
		"                        extended to it. Default: the size of an\n"
		"                        existing file or device, else 1M\n"
		"  -c, --content FILE    initial content of the file\n"
		"  -t, --text STRING     initial content of the file\n"
		"  -h, --help            show this help and exit\n"
		"  -V, --version         show the version and exit\n"
		"\n"
		"Exit status: 0 success, 1 error, 2 invalid arguments.\n",
		program_invocation_short_name, SFS_FILE_NAME);
	exit(0);
}

static _Noreturn void bad_usage(void)
{
	fprintf(stderr, "Try '%s --help' for more information.\n",
		program_invocation_short_name);
	exit(2);
}

static void remove_created(void)
{
	if (created_path)
		unlink(created_path);
}

static void close_stdout(void)
{
	if (fflush(stdout) != 0 || ferror(stdout) || fclose(stdout) != 0) {
		if (errno != EPIPE)
			warn("write error");
		_exit(1);
	}
}

/* Parse a size: decimal digits with an optional K, M or G suffix. */
static uint64_t parse_size(const char *arg)
{
	unsigned int shift = 0;
	unsigned long long val;
	char *end;

	errno = 0;
	if (arg[0] < '0' || arg[0] > '9')
		errx(2, "--size: %s: not a number", arg);
	val = strtoull(arg, &end, 10);
	if (errno == ERANGE)
		errx(2, "--size: %s: too large", arg);
	if (*end) {
		if (!strcmp(end, "K") || !strcmp(end, "KiB"))
			shift = 10;
		else if (!strcmp(end, "M") || !strcmp(end, "MiB"))
			shift = 20;
		else if (!strcmp(end, "G") || !strcmp(end, "GiB"))
			shift = 30;
		else
			errx(2, "--size: %s: unknown suffix \"%s\"", arg, end);
	}
	if (val > (UINT64_MAX >> shift))
		errx(2, "--size: %s: too large", arg);
	return (uint64_t)val << shift;
}

static void write_all(int fd, const void *buf, size_t len, uint64_t off,
		      const char *path)
{
	const char *p = buf;
	ssize_t n;

	while (len) {
		n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err(1, "%s", path);
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
}

/* Fill up to @len bytes of @buf from the content; returns the byte count. */
static size_t content_read(struct content *c, char *buf, size_t len)
{
	size_t done = 0;
	ssize_t n;

	if (c->text) {
		if (len > c->text_len - c->text_off)
			len = c->text_len - c->text_off;
		memcpy(buf, c->text + c->text_off, len);
		c->text_off += len;
		return len;
	}
	if (c->fd < 0)
		return 0;
	while (done < len) {
		n = read(c->fd, buf + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err(1, "%s", c->name);
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return done;
}

/*
 * Open @path for formatting and return its fd; *size is the file system
 * size in bytes. @size_opt is --size or 0.
 */
static int open_image(const char *path, uint64_t size_opt, uint64_t *size)
{
	struct stat st;
	uint64_t dev_size;
	int fd;

	if (stat(path, &st) < 0) {
		if (errno != ENOENT)
			err(1, "%s", path);
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0)
			err(1, "%s", path);
		created_path = path;
		st.st_size = 0;
	} else if (S_ISBLK(st.st_mode)) {
		/* O_EXCL on a block device fails if it is mounted or held. */
		fd = open(path, O_RDWR | O_EXCL | O_CLOEXEC);
		if (fd < 0)
			err(1, "%s", path);
		if (ioctl(fd, BLKGETSIZE64, &dev_size) < 0)
			err(1, "%s: cannot get the device size", path);
		if (size_opt > dev_size)
			errx(1, "%s: --size %" PRIu64 " exceeds the device size %" PRIu64,
			     path, size_opt, dev_size);
		*size = size_opt ? size_opt : dev_size;
		return fd;
	} else if (S_ISREG(st.st_mode)) {
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			err(1, "%s", path);
	} else {
		errx(1, "%s: not a regular file or a block device", path);
	}

	if (size_opt)
		*size = size_opt;
	else if (st.st_size > 0)
		*size = (uint64_t)st.st_size;
	else
		*size = DEFAULT_SIZE;
	if ((uint64_t)st.st_size < *size && ftruncate(fd, (off_t)*size) < 0)
		err(1, "%s: cannot extend to %" PRIu64 " bytes", path, *size);
	return fd;
}

/* Write the data blocks; returns the content length in bytes. */
static uint64_t write_data(int fd, const char *path, struct content *c,
			   uint64_t nr_blocks)
{
	static char block[SFS_BLOCK_SIZE];
	uint64_t blk, len = 0;
	size_t n;

	for (blk = SFS_DATA_BLOCK;; blk++) {
		memset(block, 0, sizeof(block));
		n = content_read(c, block, sizeof(block));
		if (!n)
			break;
		if (blk >= nr_blocks)
			errx(1, "%s: larger than the capacity of %" PRIu64 " bytes",
			     c->name,
			     (nr_blocks - SFS_DATA_BLOCK) * SFS_BLOCK_SIZE);
		write_all(fd, block, sizeof(block), blk * SFS_BLOCK_SIZE, path);
		len += n;
		if (n < sizeof(block))
			break;
	}
	return len;
}

static void write_metadata(int fd, const char *path, uint64_t nr_blocks,
			   uint64_t file_size)
{
	static char block[SFS_BLOCK_SIZE];
	struct sfs_disk_inode *di = (struct sfs_disk_inode *)block;
	struct sfs_disk_super *ds = (struct sfs_disk_super *)block;

	memset(block, 0, sizeof(block));
	di->size = htole64(file_size);
	write_all(fd, block, sizeof(block),
		  (uint64_t)SFS_INODE_BLOCK * SFS_BLOCK_SIZE, path);

	memset(block, 0, sizeof(block));
	ds->magic = htole32(SFS_MAGIC);
	ds->version = htole32(SFS_VERSION);
	ds->block_size = htole32(SFS_BLOCK_SIZE);
	ds->flags = htole32(0);
	ds->nr_blocks = htole64(nr_blocks);
	write_all(fd, block, sizeof(block),
		  (uint64_t)SFS_SUPER_BLOCK * SFS_BLOCK_SIZE, path);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "size",    required_argument, NULL, 's' },
		{ "content", required_argument, NULL, 'c' },
		{ "text",    required_argument, NULL, 't' },
		{ "help",    no_argument,       NULL, 'h' },
		{ "version", no_argument,       NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct content content = { .name = "content", .fd = -1 };
	const char *content_path = NULL, *path;
	uint64_t size_opt = 0, size, nr_blocks, file_size;
	int fd, opt;

	atexit(close_stdout);
	atexit(remove_created);

	while ((opt = getopt_long(argc, argv, "s:c:t:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			size_opt = parse_size(optarg);
			if (!size_opt)
				errx(2, "--size: must not be 0");
			break;
		case 'c':
			content_path = optarg;
			break;
		case 't':
			content.text = optarg;
			content.text_len = strlen(optarg);
			break;
		case 'h':
			usage();
			break;
		case 'V':
			printf("%s (bdsnap), on-disk format version %u\n",
			       program_invocation_short_name, SFS_VERSION);
			return 0;
		default:
			bad_usage();
		}
	}
	if (content_path && content.text) {
		warnx("--content and --text are mutually exclusive");
		bad_usage();
	}
	if (optind != argc - 1) {
		warnx(optind == argc ? "no IMAGE given" : "too many arguments");
		bad_usage();
	}
	path = argv[optind];

	if (content_path) {
		content.name = content_path;
		content.fd = open(content_path, O_RDONLY | O_CLOEXEC);
		if (content.fd < 0)
			err(1, "%s", content_path);
	}

	fd = open_image(path, size_opt, &size);
	nr_blocks = size / SFS_BLOCK_SIZE;
	if (nr_blocks < SFS_MIN_BLOCKS)
		errx(1, "%s: size %" PRIu64 " is below the minimum of %u bytes",
		     path, size, SFS_MIN_BLOCKS * SFS_BLOCK_SIZE);

	file_size = write_data(fd, path, &content, nr_blocks);
	write_metadata(fd, path, nr_blocks, file_size);

	if (fsync(fd) < 0)
		err(1, "%s", path);
	if (close(fd) < 0)
		err(1, "%s", path);
	if (content.fd >= 0)
		close(content.fd);
	created_path = NULL;
	return 0;
}
