// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * View: the device as it was before a session's mount, read block by block
 * while the device stays in use.  It is what bdsnap_chain_export() would
 * write, without the copy: an index of block -> record, built from the logs
 * of the chain at open, answers each read from the log or from the device.
 *
 * Why a read is exact: as in export.c, the device's blocks are read first
 * and the log only after.  A block that no session of the chain saved was
 * never written since the mount, so the device holds its old content.  A
 * block whose write reached the device before our read has, in an ordered
 * session, its pre-image durable in the log before that write was let
 * through, so the scan of the log's new records after the read finds it and
 * it overrides what the device gave.  A plain session lets a write through
 * once the block's pre-image is queued in memory, not yet in the log: so
 * between the two steps each read waits, with BDSNAP_IOC_SYNC_STORE, until
 * the log holds everything queued so far, which includes the pre-image of
 * any block whose new content the device read returned.  Without the module
 * to wait for, an open plain session is refused as its export is.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define VIEW_CHUNK	(1U << 20)

/*
 * The index is the chain's own: each session's set of saved blocks, kept by
 * the verify pass at open with each block's record offset, and the newest
 * session's grown by the records written since.
 */
struct bdsnap_view {
	struct chain c;
	struct source src;
	int *log;		/* per session: its "blocks", open */
	bool live;		/* the newest session is open: its log grows */
	uint64_t next;		/* ... and is indexed up to here */
	uint8_t *buf;		/* a chunk of the device, DIO_ALIGN-aligned */
	uint32_t bs, unit;	/* block size; unit of a device read */
};

/* record_fn: a record the newest session wrote since the last look. */
static int index_add(void *ctx, uint64_t block, const uint8_t *data, uint32_t len, uint64_t off)
{
	struct blockset *newest = ctx;
	int rc;

	(void)data;
	(void)len;
	rc = blockset_add(newest, block, off);
	return rc > 0 ? -EBADMSG : rc;	/* once per session, as the verify pass checked */
}

/* The newest session's records written since the last look. */
static int index_refresh(struct bdsnap_view *v)
{
	struct bdsnap_verify_report rep = { 0 };
	size_t k = v->c.n - 1;
	struct stat st;
	int rc;

	if (!v->live)
		return 0;
	if (fstat(v->log[k], &st))
		return -errno;
	if ((uint64_t)st.st_size <= v->next)
		return 0;
	rc = store_scan(v->c.all[k], v->next, UINT64_MAX, &rep, index_add, &v->c.saved[k], NULL);
	if (!rc)
		v->next = rep.torn_tail ? rep.torn_offset : rep.file_size;
	return rc;
}

/*
 * Which session's record holds @block's pre-image: the oldest that saved it,
 * for the view is the block as it was before the oldest session changed it.
 */
static bool locate(const struct bdsnap_view *v, uint64_t block, size_t *session, uint64_t *off)
{
	size_t i;

	for (i = 0; i < v->c.n; i++) {
		if (blockset_find(&v->c.saved[i], block, off)) {
			*session = i;
			return true;
		}
	}
	return false;
}

/*
 * An open plain session: wait until its log holds every pre-image queued so
 * far.  Once it has ended, its log is final, and only a session that ended
 * complete let no write through without a pre-image.
 */
static int view_sync(struct bdsnap_view *v)
{
	struct bdsnap_session *live = v->c.all[v->c.n - 1], *now;
	int rc;

	if (!v->c.synced)
		return 0;
	rc = store_sync(live->info.name);
	if (rc != -ENOENT)
		return rc;
	rc = bdsnap_session_open(live->dir, &now);
	if (rc)
		return rc;
	rc = now->info.state_kind == BDSNAP_META_COMPLETE ? 0 : -EIO;
	bdsnap_session_close(now);
	if (!rc)
		v->c.synced = false;
	return rc;
}

static int logs_open(struct bdsnap_view *v)
{
	char path[BDSNAP_PATH_MAX + 8];
	size_t i;

	v->log = malloc(v->c.n * sizeof(*v->log));
	if (!v->log)
		return -ENOMEM;
	for (i = 0; i < v->c.n; i++)
		v->log[i] = -1;
	for (i = 0; i < v->c.n; i++) {
		if (snprintf(path, sizeof(path), "%s/blocks", v->c.all[i]->dir) >= (int)sizeof(path))
			return -ENAMETOOLONG;
		v->log[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (v->log[i] < 0)
			return -errno;
	}
	return 0;
}

int bdsnap_view_open(struct bdsnap_session *s, struct bdsnap_session *const *later,
		     size_t nlater, const char *source, const struct bdsnap_restore_opts *opts,
		     struct bdsnap_view **out, struct bdsnap_chain_report *report)
{
	struct bdsnap_chain_report rep = { .size = sizeof(rep) };
	struct bdsnap_session *live;
	struct bdsnap_view *v;
	size_t i;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->src.fd = -1;
	rc = chain_open(&v->c, s, later, nlater, opts);
	if (rc) {
		free(v);
		return rc;
	}
	/* The verify pass keeps where each block is, never the pre-images. */
	v->c.keep = false;
	for (i = 0; i < v->c.n; i++)
		v->c.saved[i].offsets = true;
	v->c.prog.total = v->c.logs;
	v->bs = s->info.block_size;
	v->unit = v->bs > DIO_ALIGN ? v->bs : DIO_ALIGN;
	live = v->c.all[v->c.n - 1];
	v->c.synced = live->info.state_kind == BDSNAP_META_OPEN && live->info.ordered != 1 &&
		      !store_sync(live->info.name);
	rc = chain_check(&v->c, &rep);
	if (!rc)
		rc = chain_verify(&v->c, &rep);
	if (!rc) {
		rep.where = "source";
		rc = source_open(source ? source : s->info.path, &v->src);
		if (!rc)
			rc = chain_identity(&v->c, v->src.fd, v->src.direct, v->src.size, &rep);
		/* the device holds an older session's end: the open one is not ours */
		if (v->c.all[v->c.n - 1] != live)
			v->c.synced = false;
		if (!rc && v->src.size < s->info.device_size)
			rc = refuse(&rep.refused, -ENOSPC,
				    "source is smaller than the session's device");
	}
	if (!rc) {
		rep.where = NULL;
		rc = logs_open(v);
		live = v->c.all[v->c.n - 1];
		v->live = live->info.state_kind == BDSNAP_META_OPEN;
		v->next = v->c.verified[v->c.n - 1];
		if (!rc && posix_memalign((void **)&v->buf, DIO_ALIGN, VIEW_CHUNK))
			rc = -ENOMEM;
	}
	report_give(report, &rep);
	if (rc) {
		bdsnap_view_close(v);
		return rc;
	}
	*out = v;
	return 0;
}

uint64_t bdsnap_view_size(const struct bdsnap_view *v)
{
	return v->c.all[0]->info.device_size;
}

/*
 * The device from @start (a multiple of v->unit) into @into, @want bytes;
 * then the pre-images of the blocks that [@off, @end) touches over it.
 */
static int read_chunk(struct bdsnap_view *v, uint8_t *into, uint64_t start, size_t want,
		      uint64_t off, uint64_t end)
{
	uint64_t b, last = (end - 1) / v->bs, at;
	size_t k;
	int rc;

	rc = read_dev(v->src.fd, v->src.direct, into, want, start);
	if (rc)
		return rc > 0 ? -EIO : rc;	/* > 0: the device shrank */
	/* Only now the log: see the top of this file. */
	rc = view_sync(v);
	if (!rc)
		rc = index_refresh(v);
	if (rc == -EBADMSG)
		return -EIO;	/* a new record is bad: which block's, nobody knows */
	for (b = off / v->bs; b <= last && !rc; b++) {
		if (locate(v, b, &k, &at))
			rc = store_read_record(v->c.all[k], v->log[k], at, b,
					       into + (b * v->bs - start));
	}
	return rc;
}

int bdsnap_view_read(struct bdsnap_view *v, void *buf, size_t len, uint64_t off)
{
	uint64_t size = bdsnap_view_size(v), start, end, stop;
	uint8_t *dst = buf;
	size_t k;
	int rc;

	if (off > size || len > size - off)
		return -EINVAL;
	/* Whole units into a buffer O_DIRECT can fill: no copy through v->buf. */
	if (len && !(off % v->unit) && !(len % v->unit) &&
	    (!v->src.direct || !((uintptr_t)buf % DIO_ALIGN)))
		return read_chunk(v, buf, off, len, off, off + len);
	while (len) {
		/* whole units of the device, so that O_DIRECT can read them */
		start = off / v->unit * v->unit;
		end = start + VIEW_CHUNK < off + len ? start + VIEW_CHUNK : off + len;
		stop = (end + v->unit - 1) / v->unit * v->unit;
		rc = read_chunk(v, v->buf, start, (stop < size ? stop : size) - start, off, end);
		if (rc)
			return rc;
		k = end - off;
		memcpy(dst, v->buf + (off - start), k);
		dst += k;
		off += k;
		len -= k;
	}
	return 0;
}

void bdsnap_view_close(struct bdsnap_view *v)
{
	size_t i;

	if (!v)
		return;
	for (i = 0; v->log && i < v->c.n; i++)
		if (v->log[i] >= 0)
			close(v->log[i]);
	if (v->src.fd >= 0)
		close(v->src.fd);
	free(v->log);
	free(v->buf);
	chain_close(&v->c);
	free(v);
}
