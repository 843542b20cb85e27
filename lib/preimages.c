// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Inflated pre-images kept from the verify pass to the write pass.
 *
 * Restore and export verify every log before they write a byte, then read
 * the logs again to write (chain.c).  A raw pre-image costs that second
 * read only; a zlib one would cost a second inflate, which is most of the
 * CPU a restore of compressible blocks takes.  So what verify inflated is
 * kept here, in log order, up to a budget shared by the sessions of a
 * chain; past the budget the write pass inflates (and checks) the rest again.
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
		/* Not an error: the write pass inflates the rest again. */
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
