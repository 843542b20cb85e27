// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Restore: write a session's pre-images back onto a device or image.
 *
 * Order matters because a half-done restore is worse than none: check meta
 * and state, open and check the target (kept open, exclusively for a block
 * device, so nobody mounts it meanwhile), verify the whole log, check the
 * target's size against the verified device_size, and only then write, in a
 * second pass over exactly the bytes that were verified.
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
	int mode = (dry ? O_RDONLY : O_WRONLY) | O_CLOEXEC;
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

int write_block(void *ctx, uint64_t block, const uint8_t *data, uint32_t len, uint64_t off)
{
	struct writer *w = ctx;
	int rc;

	(void)off;
	rc = write_full(w->fd, data, len, block * w->block_size);
	if (rc)
		return rc;
	w->blocks++;
	w->bytes += len;
	return 0;
}

int check_state(const struct bdsnap_session *s, unsigned int flags, const char **refused)
{
	if (flags & BDSNAP_RESTORE_FORCE)
		return 0;
	switch (s->info.state_kind) {
	case BDSNAP_META_OPEN:
		/* Ordered: no block reached the device before its pre-image was durable. */
		if (s->info.ordered == 1)
			return 0;
		return refuse(refused, -EINPROGRESS,
			      "session is open and not ordered (device still mounted, "
			      "or a crash may have lost pre-images)");
	case BDSNAP_META_INCOMPLETE:
		return refuse(refused, -ENODATA, "session is incomplete (pre-images were lost)");
	default:
		return 0;
	}
}

int bdsnap_session_restore(struct bdsnap_session *s, const char *target,
			   const struct bdsnap_restore_opts *opts,
			   struct bdsnap_restore_report *report)
{
	struct bdsnap_restore_report local;
	struct bdsnap_restore_report *rep = report ? report : &local;
	struct bdsnap_verify_report again = { 0 };
	unsigned int flags = opts ? opts->flags : 0;
	bool dry = flags & BDSNAP_RESTORE_DRY_RUN;
	struct progress prog = { opts ? opts->progress : NULL, opts ? opts->ctx : NULL, 0, 0 };
	struct writer w = { .fd = -1 };
	uint64_t size;
	int rc;

	memset(rep, 0, sizeof(*rep));
	if (s->meta_reason)
		return report_bad(&rep->verify, "meta", s->meta_offset, s->meta_reason);
	rc = check_state(s, flags, &rep->refused);
	if (rc)
		return rc;
	if (!target)
		target = s->info.path;
	rc = target_open(target, dry, &rep->refused, &w.fd, &size);
	if (rc)
		return rc;
	/* Two passes over the log (verify, write), one in a dry run. */
	prog.total = blocks_size(s) * (dry ? 1 : 2);
	/* Size only after verify: a damaged device_size is corruption, not a refusal. */
	rc = session_verify(s, &rep->verify, &prog, NULL);
	if (!rc && size < s->info.device_size)
		rc = refuse(&rep->refused, -ENOSPC, "target is smaller than the session's device");
	if (rc || dry) {
		rep->blocks = rc ? 0 : rep->verify.records;
		rep->bytes = rc ? 0 : rep->verify.bytes_raw;
		close(w.fd);
		return rc;
	}

	w.block_size = s->info.block_size;
	prog.base = rep->verify.file_size;
	rc = store_scan(s, rep->verify.file_size, &again, write_block, &w, &prog);
	rep->blocks = w.blocks;
	rep->bytes = w.bytes;
	/* A log that changed between the passes is a failed restore, not a success. */
	if (!rc && again.records != rep->verify.records)
		rc = -EIO;
	if (rc == -EBADMSG) {
		rep->verify.bad_file = again.bad_file;
		rep->verify.bad_offset = again.bad_offset;
		rep->verify.reason = again.reason;
	}
	if (!rc && fsync(w.fd))
		rc = -errno;
	if (close(w.fd) && !rc)
		rc = -errno;
	return rc;
}
