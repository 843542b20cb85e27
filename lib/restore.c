// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Restore: write the pre-images of a session, and of the later sessions of
 * its device, back onto the device or an image of it (the chain: chain.c).
 *
 * Order matters because a half-done restore is worse than none: check every
 * meta and state, open and check the target (kept open, exclusively for a
 * block device, so nobody mounts it meanwhile), verify every log, check the
 * target's identity against the newest session, ask, and only then write
 * exactly the bytes that were verified, in a second pass over the very
 * files verify read (chain_apply).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

/* Is @dev mounted in this mount namespace?  1, 0 or -errno. */
static int mounted(dev_t dev)
{
	unsigned int maj, min;
	char *line = NULL;
	size_t cap = 0;
	int found = 0;
	FILE *f;

	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	while (!found && getline(&line, &cap, f) > 0)
		found = sscanf(line, "%*u %*u %u:%u", &maj, &min) == 2 &&
			makedev(maj, min) == dev;
	free(line);
	fclose(f);
	return found;
}

/* Is the disk /sys/block/@disk, or one of its partitions, mounted? */
static int disk_mounted(const char *disk)
{
	char path[PATH_MAX], buf[32];
	unsigned int maj, min;
	struct dirent *de;
	int found = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/sys/block/%s", disk);
	d = opendir(path);
	if (!d)
		return 0;
	/* "." is the disk itself; partitions are subdirectories named after it. */
	while (!found && (de = readdir(d))) {
		if (strcmp(de->d_name, ".") && strncmp(de->d_name, disk, strlen(disk)))
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/%s/dev", disk, de->d_name);
		if (read_small(path, buf, sizeof(buf)) > 0 && sscanf(buf, "%u:%u", &maj, &min) == 2)
			found = mounted(makedev(maj, min)) > 0;
	}
	closedir(d);
	return found;
}

int backs_mounted_loop(const struct stat *img)
{
	char path[PATH_MAX], file[BDSNAP_PATH_MAX];
	struct dirent *de;
	struct stat st;
	int found = 0;
	DIR *d;

	d = opendir("/sys/block");
	if (!d)
		return 0;
	while (!found && (de = readdir(d))) {
		if (strncmp(de->d_name, "loop", 4))
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file", de->d_name);
		if (read_small(path, file, sizeof(file)) <= 0)
			continue;
		file[strcspn(file, "\n")] = '\0';
		if (!stat(file, &st) && st.st_dev == img->st_dev && st.st_ino == img->st_ino)
			found = disk_mounted(de->d_name);
	}
	closedir(d);
	return found;
}

int target_open(const char *path, bool dry, const char **refused, int *fdp, uint64_t *size)
{
	/* Read too: the identity check reads the blocks it is about to overwrite. */
	int mode = (dry ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	struct stat st;
	int fd, rc;

	if (stat(path, &st))
		return -errno;
	if (S_ISBLK(st.st_mode)) {
		rc = mounted(st.st_rdev);
		if (rc)
			return rc < 0 ? rc : refuse(refused, -EBUSY, "target is mounted");
		/* O_EXCL on a block device fails while anyone else holds it so. */
		fd = open(path, mode | O_EXCL);
		if (fd < 0 && errno == EBUSY)
			return refuse(refused, -EBUSY, "target is in use (mounted or held)");
	} else if (S_ISREG(st.st_mode)) {
		if (backs_mounted_loop(&st))
			return refuse(refused, -EBUSY, "target is the backing file of a mounted loop device");
		fd = open(path, mode);
	} else {
		return -ENOTBLK;
	}
	if (fd < 0)
		return -errno;

	if (fstat(fd, &st))
		rc = -errno;
	else if (S_ISBLK(st.st_mode))
		rc = ioctl(fd, BLKGETSIZE64, size) ? -errno : 0;
	else if (S_ISREG(st.st_mode))
		*size = st.st_size, rc = 0;
	else
		rc = -ENOTBLK;	/* replaced between stat and open */
	if (rc) {
		close(fd);
		return rc;
	}
	*fdp = fd;
	return 0;
}

int writer_flush(struct writer *w)
{
	struct iovec *iov = w->iov;
	int n = w->n;
	uint64_t at = w->at;
	ssize_t k;

	while (n) {
		k = pwritev(w->fd, iov, n, at);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -EIO;
		at += k;
		for (; n && (size_t)k >= iov->iov_len; iov++, n--)
			k -= iov->iov_len;
		if (n) {
			iov->iov_base = (char *)iov->iov_base + k;
			iov->iov_len -= k;
		}
	}
	w->blocks += w->n;
	w->bytes += w->len;
	w->n = 0;
	w->len = 0;
	return 0;
}

int writer_add(struct writer *w, uint64_t block, const uint8_t *data, uint32_t len)
{
	uint64_t at = block * w->block_size;
	int rc;

	if (w->n && (w->n == WRITER_IOV || at != w->at + w->len)) {
		rc = writer_flush(w);
		if (rc)
			return rc;
	}
	if (!w->n)
		w->at = at;
	w->iov[w->n++] = (struct iovec){ .iov_base = (void *)data, .iov_len = len };
	w->len += len;
	return 0;
}

int chain_restore(struct bdsnap_session *s, struct bdsnap_session *const *later, size_t nlater,
		  const char *target, const struct bdsnap_restore_opts *opts, bool interrupted,
		  uint64_t *records, struct bdsnap_chain_report *report)
{
	struct bdsnap_chain_report rep = { .size = sizeof(rep) };
	struct chain c;
	uint64_t size;
	int rc, fd = -1;
	bool dry;

	rc = chain_open(&c, s, later, nlater, opts);
	if (rc)
		return rc;
	dry = c.dry;
	c.interrupted = interrupted;
	/* Two passes over every log (verify, write), one in a dry run. */
	c.prog.total = c.logs * (dry ? 1 : 2);

	rc = chain_check(&c, &rep);
	if (!rc) {
		/* Held open to the end: nobody mounts a block device opened O_EXCL. */
		rep.where = "target";
		rc = target_open(target ? target : s->info.path, dry, &rep.refused, &fd, &size);
		if (!rc)
			rep.where = NULL;
	}
	if (!rc)
		rc = chain_verify(&c, &rep);
	if (!rc) {
		rc = chain_identity(&c, fd, false, size, &rep);
		rep.where = rc ? "target" : NULL;
	}
	if (!rc && !dry)
		rc = chain_confirm(&c, &rep);
	if (!rc && !dry) {
		rc = chain_apply(&c, fd, &rep);
		if (!rc && fsync(fd))
			rc = -errno;
		if (rc && rc != -EBADMSG)
			rep.where = "target";
	}
	if (fd >= 0 && close(fd) && !rc && !dry)
		rc = -errno;
	if (!rc && records)
		memcpy(records, c.records, c.n * sizeof(*records));
	chain_close(&c);
	report_give(report, &rep);
	return rc;
}

int bdsnap_chain_restore(struct bdsnap_session *s, struct bdsnap_session *const *later,
			 size_t nlater, const char *target, const struct bdsnap_restore_opts *opts,
			 struct bdsnap_chain_report *report)
{
	return chain_restore(s, later, nlater, target, opts, false, NULL, report);
}
