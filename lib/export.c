// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Export: the image of a device as it was before a session's mount, built
 * from the device's current content without writing to the device.
 *
 * Why it is exact: a block that no session since @s saved was never written
 * since, so the device still holds its pre-mount content; every other block
 * gets the pre-image of the oldest of those sessions, written last (the
 * chain, chain.c).  The order of the steps matters for a device that is
 * mounted now:
 *
 *   1. verify every session, so a corrupt store stops us before any write,
 *      and check that the device holds what the newest session left;
 *   2. copy the device (O_DIRECT for a block device: the page cache of a
 *      mounted device can hold changes that have not reached it, and whose
 *      pre-images do not exist yet);
 *   3. only then read the log of the newest session, to its size now.
 *
 * In an ordered session a write reaches the device only after its pre-image
 * is durable in the log, so any block that changed before step 2 read it
 * has its pre-image in what step 3 reads, and overrides what step 2 copied.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "internal.h"

#define COPY_CHUNK	(1U << 20)

struct target {
	int fd;
	char *tmp;		/* regular file: the temporary renamed over the target */
	char *final;		/* ... and where it goes: a symlink's file, not the link */
	struct stat st;		/* of the target, when it exists */
	bool exists;
	uint64_t size;		/* block device: its size */
};

int source_open(const char *path, struct source *src)
{
	int rc = 0;

	if (stat(path, &src->st))
		return -errno;
	if (S_ISBLK(src->st.st_mode))
		src->direct = true;
	else if (!S_ISREG(src->st.st_mode))
		return -ENOTBLK;
	/* Read-only and not O_EXCL: a mounted device can be exported. */
	src->fd = open(path, O_RDONLY | O_CLOEXEC | (src->direct ? O_DIRECT : 0));
	if (src->fd < 0)
		return -errno;
	if (fstat(src->fd, &src->st))
		rc = -errno;
	else if (S_ISBLK(src->st.st_mode) != src->direct)
		rc = -ENOTBLK;	/* replaced between stat and open */
	else if (src->direct)
		rc = ioctl(src->fd, BLKGETSIZE64, &src->size) ? -errno : 0;
	else
		src->size = src->st.st_size;
	if (rc) {
		close(src->fd);
		src->fd = -1;
	}
	return rc;
}

/* Is the block device @dev (or the disk it is a partition of) a loop device over @file? */
static bool loop_over(dev_t dev, const struct stat *file)
{
	static const char *const where[] = { "loop/backing_file", "../loop/backing_file" };
	char path[96], backing[BDSNAP_PATH_MAX];
	struct stat st;
	size_t i;

	for (i = 0; i < sizeof(where) / sizeof(*where); i++) {
		snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/%s", major(dev), minor(dev),
			 where[i]);
		if (read_small(path, backing, sizeof(backing)) <= 0)
			continue;
		backing[strcspn(backing, "\n")] = '\0';
		if (!stat(backing, &st) && st.st_dev == file->st_dev && st.st_ino == file->st_ino)
			return true;
	}
	return false;
}

/* Would writing @a change what @b holds? */
static bool same_storage(const struct stat *a, const struct stat *b)
{
	if (S_ISBLK(a->st_mode) && S_ISBLK(b->st_mode))
		return a->st_rdev == b->st_rdev;
	if (S_ISREG(a->st_mode) && S_ISREG(b->st_mode))
		return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
	if (S_ISBLK(a->st_mode))
		return loop_over(a->st_rdev, b);
	return S_ISBLK(b->st_mode) && loop_over(b->st_rdev, a);
}

/* "dir/.name.bdsnap-XXXXXX": same file system as @path, so rename() is atomic. */
static char *temp_name(const char *path)
{
	char *d = strdup(path), *b = strdup(path), *out = NULL;

	if (d && b && asprintf(&out, "%s/.%s.bdsnap-XXXXXX", dirname(d), basename(b)) < 0)
		out = NULL;
	free(d);
	free(b);
	return out;
}

static int target_prepare(const char *path, const struct source *src, bool dry,
			  const char **refused, struct target *t)
{
	char *dir;
	int rc;

	if (!stat(path, &t->st)) {
		t->exists = true;
		if (same_storage(&t->st, &src->st))
			return refuse(refused, -EINVAL, "target is the device being exported");
		if (S_ISBLK(t->st.st_mode))
			return target_open(path, dry, refused, &t->fd, &t->size);
		if (S_ISDIR(t->st.st_mode))
			return -EISDIR;
		if (!S_ISREG(t->st.st_mode))
			return -ENOTBLK;
		if (backs_mounted_loop(&t->st))
			return refuse(refused, -EBUSY,
				      "target is the backing file of a mounted loop device");
	} else if (errno != ENOENT) {
		return -errno;
	}

	t->final = t->exists ? realpath(path, NULL) : strdup(path);
	if (!t->final)
		return -errno;
	t->tmp = temp_name(t->final);
	if (!t->tmp)
		return -ENOMEM;
	if (dry) {
		/* Check that the temporary could be created, without creating it. */
		dir = dirname(t->tmp);
		rc = access(dir, W_OK | X_OK) ? -errno : 0;
		free(t->tmp);
		t->tmp = NULL;
		return rc;
	}
	t->fd = mkostemp(t->tmp, O_CLOEXEC);	/* mode 0600: it holds a whole device */
	if (t->fd < 0) {
		rc = -errno;
		free(t->tmp);
		t->tmp = NULL;
		return rc;
	}
	return 0;
}

/* Keep the target on success, or remove what we created. */
static int target_finish(struct target *t, int rc)
{
	char *d;
	int dfd;

	if (t->fd < 0) {
		free(t->final);
		return rc;
	}
	if (!rc && fsync(t->fd))
		rc = -errno;
	if (close(t->fd) && !rc)
		rc = -errno;
	t->fd = -1;
	if (!t->tmp)
		return rc;
	/* An existing file keeps its permissions; a new one stays 0600. */
	if (!rc && t->exists && chmod(t->tmp, t->st.st_mode & 07777))
		rc = -errno;
	if (!rc && rename(t->tmp, t->final))
		rc = -errno;
	if (rc) {
		unlink(t->tmp);
	} else if ((d = strdup(t->tmp))) {
		dfd = open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);	/* the rename itself */
			close(dfd);
		}
		free(d);
	}
	free(t->tmp);
	free(t->final);
	t->tmp = t->final = NULL;
	return rc;
}

static bool all_zero(const uint8_t *buf, size_t len)
{
	return !len || (!buf[0] && !memcmp(buf, buf + 1, len - 1));
}

/*
 * The first @len bytes of the source onto the target.  A new file is
 * sparse: it starts as a hole of @len bytes and zero chunks are not written.
 */
static int copy_device(const struct source *src, struct target *t, uint64_t len,
		       const struct progress *prog, const char **where)
{
	bool sparse = t->tmp != NULL;
	uint64_t off;
	uint8_t *buf;
	size_t want;
	int rc = 0;

	if (sparse && ftruncate(t->fd, len))
		return -errno;
	if (posix_memalign((void **)&buf, DIO_ALIGN, COPY_CHUNK))
		return -ENOMEM;
	posix_fadvise(src->fd, 0, len, POSIX_FADV_SEQUENTIAL);
	for (off = 0; off < len && !rc; off += want) {
		want = len - off < COPY_CHUNK ? len - off : COPY_CHUNK;
		rc = read_dev(src->fd, src->direct, buf, want, off);
		if (rc)
			*where = "source";
		if (rc > 0)
			rc = -EIO;	/* the source shrank under us */
		else if (!(sparse && all_zero(buf, want)) && (rc = write_full(t->fd, buf, want, off)))
			*where = "target";
		progress_report(prog, off + want);
	}
	free(buf);
	return rc;
}

int bdsnap_chain_export(struct bdsnap_session *s, struct bdsnap_session *const *later,
			size_t nlater, const char *source, const char *target,
			const struct bdsnap_restore_opts *opts, struct bdsnap_chain_report *report)
{
	struct bdsnap_chain_report rep = { .size = sizeof(rep) };
	struct source src = { .fd = -1 };
	struct target t = { .fd = -1 };
	uint64_t size = s->info.device_size;
	struct chain c;
	bool dry;
	int rc;

	if (!target)
		return -EINVAL;
	rc = chain_open(&c, s, later, nlater, opts);
	if (rc)
		return rc;
	dry = c.dry;
	/* Verify every log, copy the device, apply every log. */
	c.prog.total = dry ? c.logs : 2 * c.logs + (size == BDSNAP_UNSET ? 0 : size);

	rc = chain_check(&c, &rep);
	if (!rc)
		rc = chain_verify(&c, &rep);
	if (!rc) {
		rep.where = "source";
		rc = source_open(source ? source : s->info.path, &src);
		if (!rc)
			rc = chain_identity(&c, src.fd, src.direct, src.size, &rep);
	}
	if (!rc) {
		rep.where = "target";
		rc = target_prepare(target, &src, dry, &rep.refused, &t);
		rep.target_exists = t.exists;
		if (!rc && t.fd >= 0 && !t.tmp && t.size < size)
			rc = refuse(&rep.refused, -ENOSPC,
				    "target is smaller than the session's device");
	}
	if (!rc && !dry && t.exists)
		rc = chain_confirm(&c, &rep);
	if (!rc && !dry) {
		rep.where = NULL;
		rc = copy_device(&src, &t, size, &c.prog, &rep.where);
		c.prog.base += size;
		if (!rc)
			rc = chain_apply(&c, t.fd, &rep);
		if (rc && rc != -EBADMSG && !rep.where)
			rep.where = "target";	/* writing a pre-image */
	}
	rc = target_finish(&t, rc);
	if (rc && !rep.where && rc != -EBADMSG && !rep.refused && rc != -ECANCELED)
		rep.where = "target";	/* fsync or rename */
	if (!rc || rc == -ECANCELED)
		rep.where = NULL;
	if (!rc && !dry)
		rep.image_size = size;
	if (src.fd >= 0)
		close(src.fd);
	chain_close(&c);
	report_give(report, &rep);
	return rc;
}
