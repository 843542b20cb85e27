// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Pre-images kept in memory from the verify pass to the write pass.
 *
 * Restore and export verify every log before they write a byte.  Reading and
 * inflating every record a second time to write it was half of a restore's
 * time (inflate is most of its CPU).  What verify inflated is kept here, up to
 * a budget shared by the sessions of a chain; a chain that fits is written
 * from memory (chain.c), the bytes verified and no others, in device order and
 * large writes.  Over the budget everything kept is dropped and the write pass
 * reads the logs again, as it always did.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* At most this much, and a quarter of the memory available now. */
#define PREIMAGES_MAX_BYTES	(256ULL << 20)

void preimage_budget_init(struct preimage_budget *b)
{
	long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	uint64_t avail = pages > 0 && page > 0 ? (uint64_t)pages * page / 4 : 0;

	b->left = avail < PREIMAGES_MAX_BYTES ? avail : PREIMAGES_MAX_BYTES;
	b->exceeded = false;
}

static int grow(void **p, size_t *cap, size_t need, size_t unit)
{
	size_t n = *cap ? *cap : 64;
	void *q;

	while (n < need)
		n *= 2;
	q = realloc(*p, n * unit);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

void preimages_add(struct preimages *k, uint64_t block, const uint8_t *data, uint32_t len)
{
	struct preimage_budget *b = k->budget;
	size_t cost = len + sizeof(*k->v);

	if (b->exceeded)
		return;
	if (cost > b->left || grow((void **)&k->v, &k->cap, k->n + 1, sizeof(*k->v)) ||
	    grow((void **)&k->data, &k->room, k->used + len, 1)) {
		/* Not an error: the write pass reads the logs again. */
		b->exceeded = true;
		return;
	}
	b->left -= cost;
	k->v[k->n++] = (struct preimage){ .block = block, .off = k->used, .len = len };
	memcpy(k->data + k->used, data, len);
	k->used += len;
}

void preimages_free(struct preimages *k)
{
	free(k->v);
	free(k->data);
	*k = (struct preimages){ .budget = k->budget };
}

struct pick {
	uint64_t block;
	const uint8_t *data;
	uint32_t len;
};

static int by_block(const void *a, const void *b)
{
	const struct pick *x = a, *y = b;

	return x->block < y->block ? -1 : x->block > y->block;
}

/* Contiguous full blocks are gathered up to this size per write. */
#define RUN_BYTES	(1U << 20)

/* Write picks [@i, @end) that follow each other on the device as one run. */
static int write_run(const struct pick *p, size_t i, size_t end, uint8_t *buf,
		     struct writer *w)
{
	size_t used = 0, j;

	for (j = i; j < end; j++) {
		memcpy(buf + used, p[j].data, p[j].len);
		used += p[j].len;
	}
	return write_full(w->fd, buf, used, p[i].block * w->block_size);
}

int preimages_write(struct preimages *kept, size_t n, struct writer *w,
		    const struct progress *prog, uint64_t span)
{
	struct blockset seen = { 0 };
	struct pick *p = NULL;
	size_t i, j, total = 0, np = 0;
	uint8_t *buf = NULL;
	uint64_t bytes;
	int rc = 0, added;

	for (i = 0; i < n; i++)
		total += kept[i].n;
	p = malloc((total ? total : 1) * sizeof(*p));
	buf = malloc(RUN_BYTES);
	if (!p || !buf) {
		rc = -ENOMEM;
		goto out;
	}
	/* Oldest session first: a block ends as before the oldest that saved it. */
	for (i = 0; i < n; i++) {
		for (j = 0; j < kept[i].n; j++) {
			const struct preimage *e = &kept[i].v[j];

			added = blockset_add(&seen, e->block, 0);
			if (added < 0) {
				rc = added;
				goto out;
			}
			if (added == 0)
				p[np++] = (struct pick){ e->block, kept[i].data + e->off, e->len };
		}
	}
	qsort(p, np, sizeof(*p), by_block);
	for (i = 0; i < np && !rc; i = j) {
		bytes = p[i].len;
		for (j = i + 1; j < np && p[j - 1].len == w->block_size &&
		     p[j].block == p[j - 1].block + 1 && bytes + p[j].len <= RUN_BYTES; j++)
			bytes += p[j].len;
		rc = write_run(p, i, j, buf, w);
		progress_report(prog, span * j / np);
	}
out:
	blockset_free(&seen);
	free(buf);
	free(p);
	return rc;
}
