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
#define WHERE_OFF_BITS	48
#define WHERE_OFF_MASK	((1ULL << WHERE_OFF_BITS) - 1)
#define FREE_SLOT	UINT64_MAX

/* Where a block's pre-image is: session (in the chain) and record offset. */
struct entry {
	uint64_t block;
	uint64_t where;
};

struct bdsnap_view {
	struct chain c;
	struct source src;
	int *log;		/* per session: its "blocks", open */
	struct entry *slot;	/* open addressing; FREE_SLOT marks a free one */
	size_t cap, n;
	bool live;		/* the newest session is open: its log grows */
	uint64_t next;		/* ... and is indexed up to here */
	uint8_t *buf;		/* a chunk of the device, DIO_ALIGN-aligned */
	uint32_t bs, unit;	/* block size; unit of a device read */
};

static size_t slot_at(const struct bdsnap_view *v, uint64_t block)
{
	return (block * 0x9e3779b97f4a7c15ULL) >> 20 & (v->cap - 1);
}

static struct entry *lookup(struct bdsnap_view *v, uint64_t block)
{
	size_t i;

	for (i = slot_at(v, block); v->slot[i].block != FREE_SLOT; i = (i + 1) & (v->cap - 1))
		if (v->slot[i].block == block)
			return &v->slot[i];
	return NULL;
}

static int grow(struct bdsnap_view *v)
{
	struct entry *old = v->slot;
	size_t i, j, cap = v->cap;

	v->cap = cap ? 2 * cap : 1024;
	v->slot = malloc(v->cap * sizeof(*v->slot));
	if (!v->slot) {
		v->slot = old;
		v->cap = cap;
		return -ENOMEM;
	}
	for (i = 0; i < v->cap; i++)
		v->slot[i].block = FREE_SLOT;
	for (i = 0; i < cap; i++) {
		if (old[i].block == FREE_SLOT)
			continue;
		for (j = slot_at(v, old[i].block); v->slot[j].block != FREE_SLOT;
		     j = (j + 1) & (v->cap - 1))
			;
		v->slot[j] = old[i];
	}
	free(old);
	return 0;
}

struct index_ctx {
	struct bdsnap_view *v;
	uint64_t session;
};

/*
 * record_fn: the sessions are scanned oldest first, so the first record of
 * a block is the one whose pre-image the view shows: the block as it was
 * before the oldest session that changed it.
 */
static int index_add(void *ctx, uint64_t block, const uint8_t *data, uint32_t len, uint64_t off)
{
	struct index_ctx *x = ctx;
	struct bdsnap_view *v = x->v;
	size_t i;
	int rc;

	(void)data;
	(void)len;
	if (lookup(v, block))
		return 0;
	if ((v->n + 1) * 4 > v->cap * 3) {
		rc = grow(v);
		if (rc)
			return rc;
	}
	for (i = slot_at(v, block); v->slot[i].block != FREE_SLOT; i = (i + 1) & (v->cap - 1))
		;
	v->slot[i].block = block;
	v->slot[i].where = x->session << WHERE_OFF_BITS | off;
	v->n++;
	return 0;
}

/* Index session @i's records from @from; where the next scan starts in *@next. */
static int index_session(struct bdsnap_view *v, size_t i, uint64_t from, uint64_t limit,
			 uint64_t *next)
{
	struct bdsnap_verify_report rep = { 0 };
	struct index_ctx x = { v, i };
	int rc;

	rc = store_scan(v->c.all[i], from, limit, &rep, index_add, &x, NULL);
	if (!rc)
		*next = rep.torn_tail ? rep.torn_offset : rep.file_size;
	return rc;
}

/* The newest session's records written since the last look. */
static int index_refresh(struct bdsnap_view *v)
{
	struct stat st;

	if (!v->live)
		return 0;
	if (fstat(v->log[v->c.n - 1], &st))
		return -errno;
	if ((uint64_t)st.st_size <= v->next)
		return 0;
	return index_session(v, v->c.n - 1, v->next, UINT64_MAX, &v->next);
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

static int index_build(struct bdsnap_view *v)
{
	uint64_t next = 0;
	size_t i;
	int rc;

	if (v->c.n > 1U << (64 - WHERE_OFF_BITS))
		return -E2BIG;
	rc = grow(v);
	for (i = 0; i < v->c.n && !rc; i++) {
		v->live = i == v->c.n - 1 && v->c.all[i]->info.state_kind == BDSNAP_META_OPEN;
		rc = index_session(v, i, 0, v->live ? UINT64_MAX : v->c.verified[i], &next);
	}
	v->next = next;
	return rc;
}

int bdsnap_view_open(struct bdsnap_session *s, struct bdsnap_session *const *later,
		     size_t nlater, const char *source, const struct bdsnap_restore_opts *opts,
		     struct bdsnap_view **out, struct bdsnap_chain_report *report)
{
	struct bdsnap_chain_report rep = { .size = sizeof(rep) };
	struct bdsnap_session *live;
	struct bdsnap_view *v;
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
	/* Every read goes to the logs: nothing is kept from the verify pass. */
	v->c.keep = false;
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
		if (!rc)
			rc = index_build(v);
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
 * The device from @start (a multiple of v->unit) into v->buf, @want bytes;
 * then the pre-images of the blocks that [@off, @end) touches over it.
 */
static int read_chunk(struct bdsnap_view *v, uint64_t start, size_t want, uint64_t off,
		      uint64_t end)
{
	uint64_t b, last = (end - 1) / v->bs;
	struct entry *e;
	int rc;

	rc = read_dev(v->src.fd, v->src.direct, v->buf, want, start);
	if (rc)
		return rc > 0 ? -EIO : rc;	/* > 0: the device shrank */
	/* Only now the log: see the top of this file. */
	rc = view_sync(v);
	if (!rc)
		rc = index_refresh(v);
	for (b = off / v->bs; b <= last && !rc; b++) {
		e = lookup(v, b);
		if (!e)
			continue;
		rc = store_read_record(v->c.all[e->where >> WHERE_OFF_BITS],
				       v->log[e->where >> WHERE_OFF_BITS],
				       e->where & WHERE_OFF_MASK, b, v->buf + (b * v->bs - start));
	}
	/* A record that checked at open and no longer does: the log is damaged. */
	return rc == -EBADMSG ? -EIO : rc;
}

int bdsnap_view_read(struct bdsnap_view *v, void *buf, size_t len, uint64_t off)
{
	uint64_t size = bdsnap_view_size(v), start, end, stop;
	uint8_t *dst = buf;
	size_t k;
	int rc;

	if (off > size || len > size - off)
		return -EINVAL;
	while (len) {
		/* whole units of the device, so that O_DIRECT can read them */
		start = off / v->unit * v->unit;
		end = start + VIEW_CHUNK < off + len ? start + VIEW_CHUNK : off + len;
		stop = (end + v->unit - 1) / v->unit * v->unit;
		rc = read_chunk(v, start, (stop < size ? stop : size) - start, off, end);
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
	free(v->slot);
	free(v->buf);
	chain_close(&v->c);
	free(v);
}
