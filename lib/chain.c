// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A chain: a session and the later sessions of the same device.  The
 * pre-images of one session describe the device as it was before that
 * session's mount only where no later session changed it since, so both
 * restore and export apply the whole chain, newest session first, the
 * session itself last (each block ends as before the oldest session that
 * saved it).
 *
 * What must hold before the first byte is written, in this order:
 *   1. every session's meta is sound, its state restorable, and the chain is
 *      one device's sessions in start order (chain_check: cheap);
 *   2. every log verifies (chain_verify: streams all of them);
 *   3. the device the chain is applied over holds what the newest session
 *      left (chain_identity), or the result would be neither the old state
 *      nor any other.  A device that holds what an older session of the
 *      chain left had the later ones restored already (restoring sessions
 *      one by one, newest first): the chain is cut to that session;
 *   4. the caller agrees (chain_confirm).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

int opts_take(void *dst, size_t dsize, const void *src, size_t min)
{
	uint32_t size;
	size_t i;

	memset(dst, 0, dsize);
	if (!src)
		return 0;
	memcpy(&size, src, sizeof(size));
	if (size < min)
		return -EINVAL;
	/* A newer caller's fields this library does not know must be unused. */
	for (i = dsize; i < size; i++)
		if (((const uint8_t *)src)[i])
			return -EINVAL;
	memcpy(dst, src, size < dsize ? size : dsize);
	return 0;
}

void report_give(struct bdsnap_chain_report *out, const struct bdsnap_chain_report *rep)
{
	uint32_t size;

	if (!out)
		return;
	size = out->size < sizeof(*rep) ? out->size : sizeof(*rep);
	if (size <= sizeof(out->size))
		return;
	memcpy((char *)out + sizeof(out->size), (const char *)rep + sizeof(rep->size),
	       size - sizeof(out->size));
}

int chain_open(struct chain *c, struct bdsnap_session *s, struct bdsnap_session *const *later,
	       size_t nlater, const struct bdsnap_restore_opts *opts)
{
	uint64_t raw = 0;
	size_t i;
	int rc;

	memset(c, 0, sizeof(*c));
	if (!s || (nlater && !later))
		return -EINVAL;
	/* The first struct had size, flags, progress, ctx and confirm. */
	rc = opts_take(&c->opts, sizeof(c->opts), opts, sizeof(struct bdsnap_restore_opts));
	if (rc)
		return rc;
	c->n = nlater + 1;
	c->all = calloc(c->n, sizeof(*c->all));
	c->verified = calloc(3 * c->n, sizeof(*c->verified));
	c->saved = calloc(c->n, sizeof(*c->saved));
	c->kept = calloc(c->n, sizeof(*c->kept));
	c->log = malloc(c->n * sizeof(*c->log));
	c->log_st = calloc(c->n, sizeof(*c->log_st));
	c->map = calloc(c->n, sizeof(*c->map));
	if (!c->all || !c->verified || !c->saved || !c->kept || !c->log || !c->log_st ||
	    !c->map) {
		free(c->log);
		c->log = NULL;
		chain_close(c);
		return -ENOMEM;
	}
	c->records = c->verified + c->n;
	c->raw = c->records + c->n;
	c->all[0] = s;
	for (i = 0; i < nlater; i++)
		c->all[i + 1] = later[i];
	for (i = 0; i < c->n; i++) {
		c->log[i] = -1;
		c->logs += blocks_size(c->all[i]);
	}
	c->dry = c->opts.flags & BDSNAP_RESTORE_DRY_RUN;
	c->prog = (struct progress){ c->opts.progress, c->opts.ctx, 0, 0 };
	c->keep = !c->dry;
	preimage_budget_init(&c->budget);
	for (i = 0; i < c->n; i++) {
		const struct bdsnap_session_info *in = &c->all[i]->info;

		c->kept[i].budget = &c->budget;
		/*
		 * meta bounds what the zlib records hold: a chain that may not
		 * fit keeps none rather than fill memory for a part of them.
		 */
		if (in->bytes_raw != BDSNAP_UNSET && in->state_kind != BDSNAP_META_OPEN)
			raw += in->bytes_raw;
	}
	if (raw > c->budget.left)
		c->budget.left = 0;
	return 0;
}

/* An open log may grow between the passes: export reads a device that may be mounted. */
static bool is_open(const struct chain *c, size_t i)
{
	return c->all[i]->info.state_kind == BDSNAP_META_OPEN;
}

void chain_close(struct chain *c)
{
	size_t i;

	for (i = 0; c->saved && i < c->n; i++)
		blockset_free(&c->saved[i]);
	for (i = 0; c->kept && i < c->n; i++)
		preimages_free(&c->kept[i]);
	for (i = 0; c->map && i < c->n; i++)
		log_unmap(&c->map[i]);
	for (i = 0; c->log && i < c->n; i++)
		if (c->log[i] >= 0)
			close(c->log[i]);
	free(c->map);
	free(c->log);
	free(c->log_st);
	free(c->kept);
	free(c->saved);
	free(c->verified);
	free(c->all);
	memset(c, 0, sizeof(*c));
}

/* May this session be restored or exported without BDSNAP_RESTORE_FORCE? */
static int check_state(const struct bdsnap_session *s, bool synced, const char **refused)
{
	switch (s->info.state_kind) {
	case BDSNAP_META_OPEN:
		/*
		 * Ordered: no block reached the device before its pre-image was
		 * durable.  Synced (a view): every read waits for the log.
		 */
		if (s->info.ordered == 1 || synced)
			break;
		return refuse(refused, -EINPROGRESS,
			      "session is open and not ordered (device still mounted, "
			      "or a crash may have lost pre-images)");
	case BDSNAP_META_INCOMPLETE:
		return refuse(refused, -ENODATA, "session is incomplete (pre-images were lost)");
	default:
		break;
	}
	/* Written by bdsnap delete --force: a later session it needs is gone. */
	if (bdsnap_session_meta(s, "chain_broken"))
		return refuse(refused, -ENOLINK,
			      "a later session of this device was deleted (meta chain_broken=)");
	return 0;
}

static int bad_session(struct bdsnap_chain_report *rep, const struct bdsnap_session *s,
		       const struct bdsnap_verify_report *v)
{
	rep->verify = *v;
	rep->bad_session = s->info.dir;
	return -EBADMSG;
}

int chain_check(struct chain *c, struct bdsnap_chain_report *rep)
{
	const struct bdsnap_session_info *first = &c->all[0]->info, *in;
	struct bdsnap_verify_report v;
	size_t i;
	int rc;

	rep->sessions = c->n;
	for (i = 0; i < c->n; i++) {
		if (c->all[i]->meta_reason) {
			memset(&v, 0, sizeof(v));
			report_bad(&v, "meta", c->all[i]->meta_offset, c->all[i]->meta_reason);
			return bad_session(rep, c->all[i], &v);
		}
		rc = c->opts.flags & BDSNAP_RESTORE_FORCE ? 0 :
		     check_state(c->all[i], c->synced && i == c->n - 1, &rep->refused);
		if (rc) {
			rep->bad_session = c->all[i]->info.dir;
			return rc;
		}
	}
	for (i = 1; i < c->n; i++) {
		in = &c->all[i]->info;
		if (strcmp(in->path, first->path) || in->device_size != first->device_size ||
		    in->block_size != first->block_size)
			return refuse(&rep->refused, -EINVAL, "later sessions are of another device");
		if (strcmp(in->start, c->all[i - 1]->info.start) <= 0)
			return refuse(&rep->refused, -EINVAL, "later sessions are not in start order");
	}
	return 0;
}

/*
 * At most this much of a chain's logs is mapped at once: mapped pages count
 * in the process's size (though they are the page cache's, not its own).
 */
#define MAP_MAX	(1ULL << 30)

int chain_verify(struct chain *c, struct bdsnap_chain_report *rep)
{
	struct bdsnap_verify_report v;
	uint64_t size, mapped = 0;
	size_t i;
	int rc;

	for (i = 0; i < c->n; i++) {
		/* Open once: the write pass reads what was verified, even if a path changes. */
		c->log[i] = log_open(c->all[i]);
		if (c->log[i] < 0)
			return c->log[i];
		if (fstat(c->log[i], &c->log_st[i]))
			return -errno;
		size = c->log_st[i].st_size;
		/* Not mapped, the log is read into a buffer: slower, as good. */
		if (sizeof(size_t) >= 8 && size && size <= MAP_MAX - mapped &&
		    S_ISREG(c->log_st[i].st_mode) && !log_map(c->log[i], size, &c->map[i]))
			mapped += size;
		rc = session_verify_log(c->all[i], c->log[i], &c->map[i], &v, &c->prog,
					&c->saved[i],
					c->keep && !is_open(c, i) ? &c->kept[i] : NULL);
		if (rc == -EBADMSG)
			return bad_session(rep, c->all[i], &v);
		if (rc)
			return rc;
		c->verified[i] = v.torn_tail ? v.torn_offset : v.file_size;
		c->records[i] = v.records;
		c->raw[i] = v.bytes_raw;
		c->prog.base += v.file_size;
		if (i) {
			rep->later_blocks += v.records;
			rep->later_bytes += v.bytes_raw;
		} else {
			rep->verify = v;
			rep->blocks = v.records;
			rep->bytes = v.bytes_raw;
		}
		/* A view reads single records later; only a write pass reads all again. */
		if (!c->keep)
			log_unmap(&c->map[i]);
	}
	return 0;
}

/* Keep the first @n sessions: the device holds what the last of them left. */
static void chain_cut(struct chain *c, size_t n, struct bdsnap_chain_report *rep)
{
	size_t i;

	for (i = n; i < c->n; i++) {
		blockset_free(&c->saved[i]);
		preimages_free(&c->kept[i]);
		log_unmap(&c->map[i]);
		close(c->log[i]);
		c->log[i] = -1;
	}
	c->n = n;
	rep->sessions = n;
	rep->later_blocks = rep->later_bytes = 0;
	for (i = 1; i < n; i++) {
		rep->later_blocks += c->records[i];
		rep->later_bytes += c->raw[i];
	}
}

/* Does @fd hold what session @k of the chain left?  1 yes, 0 no, -errno. */
static int holds_end_of(struct chain *c, size_t k, int fd, bool direct, uint64_t size,
			struct bdsnap_identity *id)
{
	const struct bdsnap_session_info *in = &c->all[k]->info;
	uint64_t *blocks = blockset_sorted(&c->saved[k]);
	int rc;

	if (!blocks)
		return -ENOMEM;
	rc = fingerprint(fd, direct, blocks, c->saved[k].n, in->block_size, size, &id->sample,
			 id->end_sha256);
	free(blocks);
	if (rc < 0)
		return rc;
	/* Past the end of the device (rc 1), or another content, or another sample. */
	return !rc && id->sample == in->end_sample && !strcasecmp(id->end_sha256, in->end_sha256);
}

int chain_identity(struct chain *c, int fd, bool direct, uint64_t size,
		   struct bdsnap_chain_report *rep)
{
	const struct bdsnap_session_info *in = &c->all[c->n - 1]->info;
	struct bdsnap_identity *id = &rep->identity;
	size_t k = c->n - 1;
	int rc = 0;

	id->size = size;
	id->device_size = in->device_size;
	id->checked = BDSNAP_ID_SIZE;
	if (size != in->device_size)
		id->differs |= BDSNAP_ID_SIZE;

	if (c->interrupted) {
		/* Neither compared nor cut: the device is between two states. */
	} else if (!in->end_sha256) {
		id->no_fingerprint = 1;
	} else {
		id->checked |= BDSNAP_ID_FINGERPRINT;
		/* the newest first: it is the device's state unless some were restored */
		for (k = c->n; k-- > 0 && c->all[k]->info.end_sha256;) {
			rc = holds_end_of(c, k, fd, direct, size, id);
			if (rc)
				break;
		}
		if (rc < 0)
			return rc;
		if (rc) {
			in = &c->all[k]->info;
			chain_cut(c, k + 1, rep);
		} else {
			k = c->n - 1;
			holds_end_of(c, k, fd, direct, size, id);
			id->differs |= BDSNAP_ID_FINGERPRINT;
		}
	}
	id->session = in->dir;

	if (in->fs_uuid && fs_uuid_read(fd, direct, id->fs_uuid) == 0) {
		id->checked |= BDSNAP_ID_FS_UUID;
		if (strcasecmp(id->fs_uuid, in->fs_uuid))
			id->differs |= BDSNAP_ID_FS_UUID;
	}

	if (c->opts.flags & BDSNAP_RESTORE_FORCE)
		return 0;
	rep->bad_session = in->dir;
	if (id->differs)
		return refuse(&rep->refused, -EMEDIUMTYPE,
			      "the device does not hold what the newest session left");
	/*
	 * A crashed ordered session has no end; its crash restore must work.
	 * Nor has a session still open, which a view (synced) reads live.
	 */
	if (id->no_fingerprint &&
	    !(in->state_kind == BDSNAP_META_OPEN && (in->ordered == 1 || c->synced)))
		return refuse(&rep->refused, -EMEDIUMTYPE,
			      "fingerprint unavailable: the newest session recorded no end_sha256, "
			      "so the device's content cannot be proven");
	rep->bad_session = NULL;
	return 0;
}

int chain_confirm(struct chain *c, struct bdsnap_chain_report *rep)
{
	if (!c->opts.confirm || !c->opts.confirm(c->opts.ctx, rep))
		return 0;
	return -ECANCELED;
}

/* scan_fn: the once-per-session rule where not verified yet, then the pre-image onto the device. */
struct overlay {
	struct unique_ctx u;
	struct writer w;
};

static int overlay_rec(void *ctx, const struct rec *v)
{
	struct overlay *o = ctx;
	int rc;

	if (!v)
		return writer_flush(&o->w);
	rc = v->trusted ? 0 : add_unique(&o->u, v);
	return rc ? rc : writer_add(&o->w, v->block, v->data, v->len);
}

/* Is the closed log @i still the file verify read, as it was then? */
static bool unchanged(const struct chain *c, size_t i)
{
	const struct stat *was = &c->log_st[i];
	struct stat now;

	return !fstat(c->log[i], &now) && now.st_size == was->st_size &&
	       now.st_mtim.tv_sec == was->st_mtim.tv_sec &&
	       now.st_mtim.tv_nsec == was->st_mtim.tv_nsec &&
	       now.st_ctim.tv_sec == was->st_ctim.tv_sec &&
	       now.st_ctim.tv_nsec == was->st_ctim.tv_nsec;
}

/*
 * Newest session first, each log in file order: a block saved by several
 * sessions ends as the oldest of them had it.  A closed log is read to the
 * size verified, trusting what verify checked (the file is the one it read,
 * and unchanged: else nothing is written); an open one is read to its size
 * now, every record checked again: it may have grown since (export copies a
 * device that may be mounted; the pre-images of what changed meanwhile are
 * in the log), and appending changes its times.
 */
int chain_apply(struct chain *c, int fd, struct bdsnap_chain_report *rep)
{
	struct bdsnap_verify_report again;
	struct overlay o;
	struct scan sc;
	size_t i;
	bool open;
	int rc = 0;

	for (i = 0; i < c->n; i++) {
		if (!is_open(c, i) && !unchanged(c, i))
			return -EIO;
		/* Time has passed (export copied a device, a user was asked): pages may be gone. */
		if (c->map[i].addr && log_populate(&c->map[i]))
			log_unmap(&c->map[i]);
	}
	rep->wrote = 1;
	rep->later_blocks = rep->later_bytes = 0;	/* counted again: an open log may have grown */
	for (i = c->n; i-- > 0 && !rc;) {
		open = is_open(c, i);
		memset(&again, 0, sizeof(again));
		o.u = (struct unique_ctx){ .rep = &again };
		o.w = (struct writer){ .fd = fd, .block_size = c->all[i]->info.block_size };
		sc = (struct scan){ .limit = open ? UINT64_MAX : c->verified[i],
				    .trusted = open ? 0 : c->verified[i], .map = c->map[i],
				    .kept = c->keep ? &c->kept[i] : NULL,
				    .fn = overlay_rec, .ctx = &o, .prog = &c->prog };
		rc = scan_log(c->all[i], c->log[i], &sc, &again);
		blockset_free(&o.u.set);
		c->prog.base += c->verified[i];
		if (rc == -EBADMSG)
			return bad_session(rep, c->all[i], &again);
		/* A log only grows; anything else changed it between the passes. */
		if (!rc && (open ? again.records < c->records[i] : again.records != c->records[i]))
			rc = -EIO;
		if (i) {
			rep->later_blocks += o.w.blocks;
			rep->later_bytes += o.w.bytes;
		} else {
			rep->blocks = o.w.blocks;
			rep->bytes = o.w.bytes;
		}
	}
	return rc;
}
