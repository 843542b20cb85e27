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
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "internal.h"

/*
 * A log that is not mapped (struct scan) is read through a buffer: large
 * enough that the calls do not count, small enough that what it brought in
 * is still in the CPU's cache when the CRC (or, on the write pass, the
 * write) goes over it.
 */
#define READ_BUF	(256U << 10)

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ	22
#endif

int report_bad(struct bdsnap_verify_report *rep, const char *file, uint64_t off,
	       const char *reason)
{
	rep->bad_file = file;
	rep->bad_offset = off;
	rep->reason = reason;
	return -EBADMSG;
}

/* Is every page of @m in the page cache, so that touching it needs no read? */
static bool resident(const struct logmap *m)
{
	size_t page = sysconf(_SC_PAGESIZE), at, len, i;
	unsigned char vec[4096];

	for (at = 0; at < m->len; at += len) {
		len = m->len - at < sizeof(vec) * page ? m->len - at : sizeof(vec) * page;
		if (mincore((char *)m->addr + at, len, vec))
			return false;
		for (i = 0; i < (len + page - 1) / page; i++)
			if (!(vec[i] & 1))
				return false;
	}
	return true;
}

/*
 * Read in what is not cached and map every page: unlike MAP_POPULATE or a
 * first touch, this reports a page that cannot be read as an error, where
 * a touch would raise SIGBUS; and it takes one call, not a fault per few
 * pages.
 */
static int populate(const struct logmap *m)
{
	return madvise(m->addr, m->len, MADV_POPULATE_READ) ? -errno : 0;
}

int log_populate(const struct logmap *m)
{
	return resident(m) ? 0 : populate(m);
}

int log_map(int fd, size_t len, struct logmap *m)
{
	void *addr;
	int rc;

	*m = (struct logmap){ 0 };
	addr = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	if (addr == MAP_FAILED)
		return -errno;
	madvise(addr, len, MADV_SEQUENTIAL);
	*m = (struct logmap){ addr, len };
	rc = populate(m);
	if (rc)
		log_unmap(m);
	return rc;
}

void log_unmap(struct logmap *m)
{
	if (m->addr)
		munmap(m->addr, m->len);
	*m = (struct logmap){ 0 };
}

/* Sequential reads of a log, never past @end; records are used where they lie. */
struct reader {
	int fd;
	uint64_t off, end;	/* the next byte to consume; where to stop */
	const uint8_t *at;	/* bytes [@start, @start + @len) of the file are here: */
	uint64_t start;
	size_t len;
	struct logmap map;	/* ... in the log's mapping (of its first bytes), */
	uint8_t *buf;		/* ... or in this buffer (READ_BUF, once allocated) */
};

static bool rd_has(const struct reader *r, size_t n)
{
	return r->off >= r->start && r->off + n <= r->start + r->len;
}

/*
 * The next @n bytes (at most READ_BUF, none past @end), in place; pointers
 * into the buffer go stale unless rd_has() said they stay.  0, or -EIO when
 * the file turned out shorter than when we started.
 */
static int rd_peek(struct reader *r, size_t n, const uint8_t **p)
{
	size_t want;
	int rc;

	if (!rd_has(r, n)) {
		if (r->off + n <= r->map.len) {
			r->at = r->map.addr;
			r->start = 0;
			r->len = r->map.len;
		} else {
			if (!r->buf && !(r->buf = malloc(READ_BUF)))
				return -ENOMEM;
			want = r->end - r->off < READ_BUF ? r->end - r->off : READ_BUF;
			rc = want ? read_dev(r->fd, false, r->buf, want, r->off) : 1;
			if (rc)
				return rc > 0 ? -EIO : rc;
			r->at = r->buf;
			r->start = r->off;
			r->len = want;
		}
		if (!rd_has(r, n))
			return -EIO;
	}
	*p = r->at + (r->off - r->start);
	return 0;
}

static void rd_skip(struct reader *r, size_t n)
{
	r->off += n;
}

static void rd_seek(struct reader *r, uint64_t off)
{
	r->off = off;
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
static const char *decode(const struct bdsnap_record *r, const uint8_t *payload, uint8_t *raw,
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

/*
 * A record before @sc->trusted was checked whole by an earlier scan of the
 * same open file, unchanged since: its header is checked again (cheap, and
 * it must still be the record verified), its pre-image is not.  A raw one
 * is its payload; a zlib one is what that scan kept, in the same order.
 * 0 with *@data; 1: nothing kept, inflate (and check) it again; -EIO: the
 * log is not what was verified.
 */
static int trusted_data(const struct scan *sc, const struct bdsnap_record *r,
			const uint8_t *payload, size_t *nkept, const uint8_t **data)
{
	const struct preimage *k;

	*data = payload;
	if (!(le32toh(r->flags) & BDSNAP_REC_ZLIB))
		return 0;
	if (!sc->kept || *nkept >= sc->kept->n)
		return 1;
	k = &sc->kept->v[(*nkept)++];
	if (k->block != le64toh(r->block) || k->len != le32toh(r->raw_len))
		return -EIO;
	*data = sc->kept->data + k->off;
	return 0;
}

/* What was handed on is about to be overwritten or freed: the callback must use it now. */
static int hand_back(const struct scan *sc, bool *scratch)
{
	*scratch = false;
	return sc->fn(sc->ctx, NULL);
}

int log_open(const struct bdsnap_session *s)
{
	char path[BDSNAP_PATH_MAX + 8];
	int fd;

	if (snprintf(path, sizeof(path), "%s/blocks", s->dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int scan_log(struct bdsnap_session *s, int fd, const struct scan *sc,
	     struct bdsnap_verify_report *rep)
{
	struct bdsnap_store_header h;
	struct bdsnap_record r;
	struct reader rd = { .fd = fd, .map = sc->map };
	struct rec v = { 0 };
	const uint8_t *p;
	uint8_t *raw = NULL;
	const char *why;
	size_t nkept = 0;
	bool scratch = false;	/* @raw was handed on */
	uint32_t bs;
	uint64_t off;
	struct stat st;
	int rc;

	if (fstat(fd, &st))
		return -errno;
	if (!S_ISREG(st.st_mode))
		return report_bad(rep, "blocks", 0, "blocks is not a regular file");
	/* An open session may still grow: look only at what is there now. */
	rd.end = (uint64_t)st.st_size < sc->limit ? (uint64_t)st.st_size : sc->limit;
	rep->file_size = rd.end;
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	if (rd.end < sizeof(h))
		return report_bad(rep, "blocks", 0, "blocks is shorter than its header");

	rc = rd_peek(&rd, sizeof(h), &p);
	if (rc)
		goto out;
	memcpy(&h, p, sizeof(h));
	rc = check_header(s, &h, rd.end, rep);
	if (rc)
		goto out;
	bs = le32toh(h.block_size);
	rd_seek(&rd, sc->from > le32toh(h.header_size) ? sc->from : le32toh(h.header_size));
	raw = malloc(bs);
	if (!raw) {
		rc = -ENOMEM;
		goto out;
	}

	while ((off = rd.off) < rd.end) {
		/* A record cut short by the end of the file is a torn tail, not corruption. */
		if (rd.end - off < sizeof(r))
			break;
		/* What was handed on may live in the buffer, which a refill overwrites. */
		if (!rd_has(&rd, sizeof(r)) && (rc = hand_back(sc, &scratch)))
			goto out;
		rc = rd_peek(&rd, sizeof(r), &p);
		if (rc)
			goto out;
		memcpy(&r, p, sizeof(r));
		why = check_record(&r, bs, s->info.device_size);
		if (why) {
			rc = report_bad(rep, "blocks", off, why);
			goto out;
		}
		if (le32toh(r.stored_len) > rd.end - off - sizeof(r))
			break;
		rd_skip(&rd, sizeof(r));
		if (!rd_has(&rd, le32toh(r.stored_len)) && (rc = hand_back(sc, &scratch)))
			goto out;
		rc = rd_peek(&rd, le32toh(r.stored_len), &p);
		if (rc)
			goto out;
		v.trusted = off < sc->trusted;
		rc = v.trusted ? trusted_data(sc, &r, p, &nkept, &v.data) : 1;
		if (rc < 0)
			goto out;
		if (rc) {
			/* Inflating overwrites @raw. */
			if (scratch && (le32toh(r.flags) & BDSNAP_REC_ZLIB) &&
			    (rc = hand_back(sc, &scratch)))
				goto out;
			why = decode(&r, p, raw, bs, &v.data);
			if (why) {
				rc = report_bad(rep, "blocks", off, why);
				goto out;
			}
			scratch |= v.data == raw;
		}
		rd_skip(&rd, le32toh(r.stored_len));
		v.block = le64toh(r.block);
		v.off = off;
		v.len = le32toh(r.raw_len);
		v.zlib = le32toh(r.flags) & BDSNAP_REC_ZLIB;
		rc = sc->fn(sc->ctx, &v);
		if (rc)
			goto out;
		rep->records++;
		rep->bytes_raw += v.len;
		progress_report(sc->prog, rd.off);
	}
	if (off < rd.end) {
		rep->torn_tail = 1;
		rep->torn_offset = off;
	}
	rc = hand_back(sc, &scratch);
	progress_report(sc->prog, rd.end);
out:
	free(raw);
	free(rd.buf);
	return rc;
}

/* store_scan()'s callback on scan_log()'s. */
struct plain {
	record_fn fn;
	void *ctx;
};

static int plain_rec(void *ctx, const struct rec *v)
{
	struct plain *pl = ctx;

	return v ? pl->fn(pl->ctx, v->block, v->data, v->len, v->off) : 0;
}

int store_scan(struct bdsnap_session *s, uint64_t from, uint64_t limit,
	       struct bdsnap_verify_report *rep, record_fn fn, void *ctx,
	       const struct progress *prog)
{
	struct plain pl = { fn, ctx };
	struct scan sc = { .from = from, .limit = limit, .fn = plain_rec, .ctx = &pl,
			   .prog = prog };
	int rc, fd = log_open(s);

	if (fd < 0)
		return fd;
	rc = scan_log(s, fd, &sc, rep);
	close(fd);
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

/*
 * Sorted by bytes, least significant first, as many as the largest member
 * has: the fingerprint sorts every block a session saved, millions at
 * times, where qsort() and its calls cost as much as hashing the sample.
 */
static void radix_sort(uint64_t *v, uint64_t *tmp, size_t n)
{
	uint64_t max = 0, *from = v, *to = tmp, *t;
	size_t count[256], i, sum, c;
	unsigned int shift;

	for (i = 0; i < n; i++)
		max |= v[i];
	for (shift = 0; shift < 64 && max >> shift; shift += 8) {
		memset(count, 0, sizeof(count));
		for (i = 0; i < n; i++)
			count[from[i] >> shift & 0xff]++;
		for (i = 0, sum = 0; i < 256; i++) {
			c = count[i];
			count[i] = sum;
			sum += c;
		}
		for (i = 0; i < n; i++)
			to[count[from[i] >> shift & 0xff]++] = from[i];
		t = from, from = to, to = t;
	}
	if (from != v)
		memcpy(v, from, n * sizeof(*v));
}

uint64_t *blockset_sorted(const struct blockset *set)
{
	uint64_t *v = malloc((set->n ? set->n : 1) * sizeof(*v)), *tmp;
	size_t i, n = 0;

	tmp = malloc((set->n ? set->n : 1) * sizeof(*tmp));
	if (!v || !tmp) {
		free(v);
		free(tmp);
		return NULL;
	}
	for (i = 0; i < set->cap; i++)
		if (set->slot[i] != UINT64_MAX)
			v[n++] = set->slot[i];
	radix_sort(v, tmp, n);
	free(tmp);
	return v;
}

/* scan_fn: the once-per-session rule; @ctx is a struct unique_ctx. */
int add_unique(void *ctx, const struct rec *v)
{
	struct unique_ctx *u = ctx;
	int rc;

	if (!v)
		return 0;
	rc = blockset_add(&u->set, v->block, v->off);
	if (rc > 0)
		return report_bad(u->rep, "blocks", v->off, "duplicate block");
	/* A raw pre-image is read again from the log: only inflating is worth sparing. */
	if (!rc && u->kept && v->zlib)
		preimages_add(u->kept, v->block, v->data, v->len);
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

int session_verify_log(struct bdsnap_session *s, int fd, const struct logmap *map,
		       struct bdsnap_verify_report *rep, const struct progress *prog,
		       struct blockset *keep, struct preimages *kept)
{
	struct unique_ctx u = { .set.offsets = keep && keep->offsets, .rep = rep, .kept = kept };
	struct scan sc = { .limit = UINT64_MAX, .map = map ? *map : (struct logmap){ 0 },
			   .fn = add_unique, .ctx = &u, .prog = prog };
	int rc, mine = -1;

	memset(rep, 0, sizeof(*rep));
	rep->meta_torn = s->meta_torn;
	if (s->meta_reason)
		return report_bad(rep, "meta", s->meta_offset, s->meta_reason);
	if (fd < 0) {
		fd = mine = log_open(s);
		if (fd < 0)
			return fd;
	}
	rc = scan_log(s, fd, &sc, rep);
	if (mine >= 0)
		close(mine);
	if (!rc && s->info.state_kind == BDSNAP_META_COMPLETE)
		rc = check_counters(s, rep);
	if (!rc && keep)
		*keep = u.set;
	else
		blockset_free(&u.set);
	return rc;
}

int session_verify(struct bdsnap_session *s, struct bdsnap_verify_report *rep,
		   const struct progress *prog, struct blockset *keep, struct preimages *kept)
{
	return session_verify_log(s, -1, NULL, rep, prog, keep, kept);
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
