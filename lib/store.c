// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Reading and verifying the "blocks" log of a session (docs/format.md).
 *
 * The log can be gigabytes, so it is streamed through a fixed buffer and
 * every record is checked completely (header, lengths, bounds, inflation,
 * checksum) before its pre-image is handed on; nothing is trusted because a
 * length field said so.  The same walk serves verification and restore, so
 * the two can never disagree about what a valid record is.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "internal.h"

#define READ_BUF	(1U << 20)

int report_bad(struct bdsnap_verify_report *rep, const char *file, uint64_t off,
	       const char *reason)
{
	rep->bad_file = file;
	rep->bad_offset = off;
	rep->reason = reason;
	return -EBADMSG;
}

/* Sequential reads through one buffer, never past @end. */
struct reader {
	int fd;
	uint8_t *buf;
	size_t len, pos;
	uint64_t off, end;
};

/* 0, or -EIO when the file turned out shorter than when we started. */
static int rd_read(struct reader *r, void *dst, size_t n)
{
	uint8_t *p = dst;
	size_t k;
	int rc;

	while (n) {
		if (r->pos == r->len) {
			k = r->end - r->off < READ_BUF ? r->end - r->off : READ_BUF;
			rc = k ? read_dev(r->fd, false, r->buf, k, r->off) : 1;
			if (rc)
				return rc > 0 ? -EIO : rc;
			r->len = k;
			r->pos = 0;
		}
		k = n < r->len - r->pos ? n : r->len - r->pos;
		memcpy(p, r->buf + r->pos, k);
		r->pos += k;
		r->off += k;
		p += k;
		n -= k;
	}
	return 0;
}

static void rd_seek(struct reader *r, uint64_t off)
{
	r->off = off;
	r->pos = r->len = 0;
}

/* The 64-byte header, against the format rules and against meta. */
static int check_header(struct bdsnap_session *s, const struct bdsnap_store_header *h,
			uint64_t size, struct bdsnap_verify_report *rep)
{
#define BAD(field, why) report_bad(rep, "blocks", offsetof(struct bdsnap_store_header, field), why)
	if (le64toh(h->magic) != BDSNAP_STORE_MAGIC)
		return BAD(magic, "bad store magic");
	/* Before the CRC: a newer version may checksum differently. */
	if (le32toh(h->version) != BDSNAP_STORE_VERSION)
		return BAD(version, "unsupported store version");
	if (crc32(0, (const Bytef *)h, offsetof(struct bdsnap_store_header, header_crc)) !=
	    le32toh(h->header_crc))
		return BAD(header_crc, "store header CRC mismatch");
	if (le32toh(h->header_size) < sizeof(*h) || le32toh(h->header_size) > size)
		return BAD(header_size, "header_size out of range");
	if (!valid_block_size(le32toh(h->block_size)))
		return BAD(block_size, "block_size is not a power of two in 512..65536");
	if (h->flags)
		return BAD(flags, "unknown store header flag");
	if (le32toh(h->block_size) != s->info.block_size)
		return BAD(block_size, "block_size differs from meta");
	if (le64toh(h->device_size) != s->info.device_size)
		return BAD(device_size, "device_size differs from meta");
	if (memcmp(h->uuid, s->uuid, sizeof(h->uuid)))
		return BAD(uuid, "uuid differs from meta");
	return 0;
#undef BAD
}

/* Everything a record header claims must hold before its payload is read. */
static const char *check_record(const struct bdsnap_record *r, uint32_t bs, uint64_t dev_size)
{
	uint64_t block = le64toh(r->block), nblocks = dev_size / bs + !!(dev_size % bs);
	uint32_t flags = le32toh(r->flags), raw = le32toh(r->raw_len);
	uint32_t stored = le32toh(r->stored_len);

	if (le32toh(r->magic) != BDSNAP_RECORD_MAGIC)
		return "bad record magic";
	if (crc32(0, (const Bytef *)r, offsetof(struct bdsnap_record, header_crc)) !=
	    le32toh(r->header_crc))
		return "record header CRC mismatch";
	if (flags & ~BDSNAP_REC_FLAGS_ALL)
		return "unknown record flag";
	if (block >= nblocks)
		return "block beyond device_size";
	/* Only a device's last block may be partial, and then exactly so. */
	if (raw != (dev_size - block * bs < bs ? dev_size - block * bs : bs))
		return "raw_len is not the size of the block";
	if (stored == 0 || stored > compressBound(bs))
		return "stored_len out of range";
	if (!(flags & BDSNAP_REC_ZLIB) && stored != raw)
		return "raw payload length differs from raw_len";
	return NULL;
}

/* The raw pre-image of a checked record, or a reason it has none. */
static const char *decode(const struct bdsnap_record *r, uint8_t *payload, uint8_t *raw,
			  uint32_t bs, const uint8_t **data)
{
	uLongf out = bs;
	uLong in = le32toh(r->stored_len);

	*data = payload;
	if (le32toh(r->flags) & BDSNAP_REC_ZLIB) {
		/* Exactly raw_len bytes, and the stream must use all of the payload. */
		if (uncompress2(raw, &out, payload, &in) != Z_OK || out != le32toh(r->raw_len) ||
		    in != le32toh(r->stored_len))
			return "zlib payload does not inflate to raw_len bytes";
		*data = raw;
	}
	if (data_crc32(*data, le32toh(r->raw_len)) != le32toh(r->data_crc))
		return "data CRC mismatch";
	return NULL;
}


int store_scan(struct bdsnap_session *s, uint64_t from, uint64_t limit,
	       struct bdsnap_verify_report *rep, record_fn fn, void *ctx,
	       const struct progress *prog)
{
	struct bdsnap_store_header h;
	struct bdsnap_record r;
	struct reader rd = { .fd = -1 };
	uint8_t *payload = NULL, *raw = NULL;
	const uint8_t *data;
	char path[BDSNAP_PATH_MAX + 8];
	const char *why;
	uint32_t bs;
	uint64_t off;
	struct stat st;
	int rc;

	if (snprintf(path, sizeof(path), "%s/blocks", s->dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	rd.fd = open(path, O_RDONLY | O_CLOEXEC);
	if (rd.fd < 0)
		return -errno;
	if (fstat(rd.fd, &st)) {
		rc = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = report_bad(rep, "blocks", 0, "blocks is not a regular file");
		goto out;
	}
	/* An open session may still grow: look only at what is there now. */
	rd.end = (uint64_t)st.st_size < limit ? (uint64_t)st.st_size : limit;
	rep->file_size = rd.end;
	posix_fadvise(rd.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	rd.buf = malloc(READ_BUF);
	if (!rd.buf) {
		rc = -ENOMEM;
		goto out;
	}

	if (rd.end < sizeof(h)) {
		rc = report_bad(rep, "blocks", 0, "blocks is shorter than its header");
		goto out;
	}
	rc = rd_read(&rd, &h, sizeof(h));
	if (!rc)
		rc = check_header(s, &h, rd.end, rep);
	if (rc)
		goto out;
	bs = le32toh(h.block_size);
	rd_seek(&rd, from > le32toh(h.header_size) ? from : le32toh(h.header_size));
	payload = malloc(compressBound(bs));
	raw = malloc(bs);
	if (!payload || !raw) {
		rc = -ENOMEM;
		goto out;
	}

	while ((off = rd.off) < rd.end) {
		/* A record cut short by the end of the file is a torn tail, not corruption. */
		if (rd.end - off < sizeof(r))
			break;
		rc = rd_read(&rd, &r, sizeof(r));
		if (rc)
			goto out;
		why = check_record(&r, bs, s->info.device_size);
		if (why) {
			rc = report_bad(rep, "blocks", off, why);
			goto out;
		}
		if (le32toh(r.stored_len) > rd.end - rd.off)
			break;
		rc = rd_read(&rd, payload, le32toh(r.stored_len));
		if (rc)
			goto out;
		why = decode(&r, payload, raw, bs, &data);
		if (why) {
			rc = report_bad(rep, "blocks", off, why);
			goto out;
		}
		rc = fn(ctx, le64toh(r.block), data, le32toh(r.raw_len), off);
		if (rc)
			goto out;
		rep->records++;
		rep->bytes_raw += le32toh(r.raw_len);
		progress_report(prog, rd.off);
	}
	if (off < rd.end) {
		rep->torn_tail = 1;
		rep->torn_offset = off;
	}
	progress_report(prog, rd.end);
out:
	free(raw);
	free(payload);
	free(rd.buf);
	close(rd.fd);
	return rc;
}

int store_read_record(const struct bdsnap_session *s, int fd, uint64_t off, uint64_t block,
		      uint8_t *out)
{
	uint32_t bs = s->info.block_size;
	struct bdsnap_record r;
	uint8_t *payload, *raw;
	const uint8_t *data;
	int rc;

	rc = read_dev(fd, false, &r, sizeof(r), off);
	if (rc)
		return rc > 0 ? -EBADMSG : rc;
	if (check_record(&r, bs, s->info.device_size) || le64toh(r.block) != block)
		return -EBADMSG;
	payload = malloc(le32toh(r.stored_len));
	raw = malloc(bs);
	if (!payload || !raw) {
		rc = -ENOMEM;
		goto out;
	}
	rc = read_dev(fd, false, payload, le32toh(r.stored_len), off + sizeof(r));
	if (rc > 0 || (!rc && decode(&r, payload, raw, bs, &data)))
		rc = -EBADMSG;
	if (!rc)
		memcpy(out, data, le32toh(r.raw_len));
out:
	free(raw);
	free(payload);
	return rc;
}

static size_t slot_of(const struct blockset *set, uint64_t block)
{
	return (block * 0x9e3779b97f4a7c15ULL) >> 20 & (set->cap - 1);
}

/* @block's slot in @set (cap > 0): where it is, or the free one where it would go. */
static size_t probe(const struct blockset *set, uint64_t block)
{
	size_t j;

	for (j = slot_of(set, block); set->slot[j] != UINT64_MAX && set->slot[j] != block;)
		j = (j + 1) & (set->cap - 1);
	return j;
}

static int blockset_grow(struct blockset *set)
{
	struct blockset bigger = { .cap = set->cap ? 2 * set->cap : 1024, .offsets = set->offsets };
	size_t i, j;

	bigger.slot = malloc(bigger.cap * sizeof(uint64_t));
	if (bigger.slot && set->offsets)
		bigger.off = malloc(bigger.cap * sizeof(uint64_t));
	if (!bigger.slot || (set->offsets && !bigger.off)) {
		free(bigger.slot);
		return -ENOMEM;
	}
	memset(bigger.slot, 0xff, bigger.cap * sizeof(uint64_t));
	for (i = 0; i < set->cap; i++) {
		if (set->slot[i] == UINT64_MAX)
			continue;
		j = probe(&bigger, set->slot[i]);
		bigger.slot[j] = set->slot[i];
		if (set->offsets)
			bigger.off[j] = set->off[i];
	}
	free(set->slot);
	free(set->off);
	set->slot = bigger.slot;
	set->off = bigger.off;
	set->cap = bigger.cap;
	return 0;
}

int blockset_add(struct blockset *set, uint64_t block, uint64_t off)
{
	size_t j;
	int rc;

	if (2 * (set->n + 1) > set->cap) {
		rc = blockset_grow(set);
		if (rc)
			return rc;
	}
	j = probe(set, block);
	if (set->slot[j] == block)
		return 1;
	set->slot[j] = block;
	if (set->offsets)
		set->off[j] = off;
	set->n++;
	return 0;
}

bool blockset_find(const struct blockset *set, uint64_t block, uint64_t *off)
{
	size_t j;

	if (!set->n)
		return false;
	j = probe(set, block);
	if (set->slot[j] != block)
		return false;
	if (set->offsets)
		*off = set->off[j];
	return true;
}

void blockset_free(struct blockset *set)
{
	free(set->slot);
	free(set->off);
	*set = (struct blockset){ .offsets = set->offsets };
}

static int by_block(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

uint64_t *blockset_sorted(const struct blockset *set)
{
	uint64_t *v = malloc((set->n ? set->n : 1) * sizeof(*v));
	size_t i, n = 0;

	if (!v)
		return NULL;
	for (i = 0; i < set->cap; i++)
		if (set->slot[i] != UINT64_MAX)
			v[n++] = set->slot[i];
	qsort(v, n, sizeof(*v), by_block);
	return v;
}

/* record_fn: the once-per-session rule; @ctx is a struct unique_ctx. */
int add_unique(void *ctx, uint64_t block, const uint8_t *data, uint32_t len, uint64_t off)
{
	struct unique_ctx *u = ctx;
	int rc;

	rc = blockset_add(&u->set, block, off);
	if (rc > 0)
		return report_bad(u->rep, "blocks", off, "duplicate block");
	if (!rc && u->kept)
		preimages_add(u->kept, block, data, len);
	return rc;
}

/* meta's end-of-session counters must describe the log that is there. */
static int check_counters(struct bdsnap_session *s, struct bdsnap_verify_report *rep)
{
	const struct bdsnap_session_info *in = &s->info;

	if (rep->torn_tail)
		return report_bad(rep, "blocks", rep->torn_offset, "torn record in a complete session");
	if (in->blocks_saved != BDSNAP_UNSET && in->blocks_saved != rep->records)
		return report_bad(rep, "meta", meta_offset(s, "blocks_saved"),
				  "blocks_saved differs from the records in blocks");
	if (in->bytes_raw != BDSNAP_UNSET && in->bytes_raw != rep->bytes_raw)
		return report_bad(rep, "meta", meta_offset(s, "bytes_raw"),
				  "bytes_raw differs from the records in blocks");
	if (in->bytes_stored != BDSNAP_UNSET && in->bytes_stored != rep->file_size)
		return report_bad(rep, "meta", meta_offset(s, "bytes_stored"),
				  "bytes_stored differs from the size of blocks");
	return 0;
}

int session_verify(struct bdsnap_session *s, struct bdsnap_verify_report *rep,
		   const struct progress *prog, struct blockset *keep, struct preimages *kept)
{
	struct unique_ctx u = { .set.offsets = keep && keep->offsets, .rep = rep, .kept = kept };
	int rc;

	memset(rep, 0, sizeof(*rep));
	rep->meta_torn = s->meta_torn;
	if (s->meta_reason)
		return report_bad(rep, "meta", s->meta_offset, s->meta_reason);
	rc = store_scan(s, 0, UINT64_MAX, rep, add_unique, &u, prog);
	if (!rc && s->info.state_kind == BDSNAP_META_COMPLETE)
		rc = check_counters(s, rep);
	if (!rc && keep)
		*keep = u.set;
	else
		blockset_free(&u.set);
	return rc;
}

int bdsnap_session_verify_progress(struct bdsnap_session *s,
				   struct bdsnap_verify_report *report,
				   bdsnap_progress_fn progress, void *ctx)
{
	struct bdsnap_verify_report local;
	struct progress prog = { progress, ctx, 0, blocks_size(s) };

	return session_verify(s, report ? report : &local, &prog, NULL, NULL);
}

int bdsnap_session_verify(struct bdsnap_session *s, struct bdsnap_verify_report *report)
{
	return bdsnap_session_verify_progress(s, report, NULL, NULL);
}

uint64_t blocks_size(const struct bdsnap_session *s)
{
	char path[BDSNAP_PATH_MAX + 8];
	struct stat st;

	if (snprintf(path, sizeof(path), "%s/blocks", s->dir) >= (int)sizeof(path) ||
	    stat(path, &st))
		return 0;
	return st.st_size;
}

void progress_report(const struct progress *p, uint64_t done)
{
	uint64_t at;

	if (!p || !p->fn)
		return;
	/* Totals are estimated up front; an open session's log may have grown since. */
	at = p->base + done;
	p->fn(p->ctx, at < p->total ? at : p->total, p->total);
}
