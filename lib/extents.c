// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Changed-block extents of a session: the blocks it saved a pre-image of
 * are exactly the blocks written during the mount, so sorted and merged into
 * runs they are the change-block-tracking view of the session.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

int bdsnap_session_changed(struct bdsnap_session *s, struct bdsnap_extent **out,
			   size_t *count, bdsnap_progress_fn progress, void *ctx,
			   struct bdsnap_verify_report *report)
{
	struct bdsnap_verify_report local;
	struct progress prog = { progress, ctx, 0, blocks_size(s) };
	struct blockset set = { 0 };
	struct bdsnap_extent *ext = NULL, *e;
	uint64_t *blocks, bs, dev, end;
	size_t i, n = 0;
	int rc;

	rc = session_verify(s, report ? report : &local, &prog, &set, NULL);
	if (rc)
		return rc;
	blocks = blockset_sorted(&set);
	if (set.n && blocks)
		ext = malloc(set.n * sizeof(*ext));	/* at most one extent per block */
	if (!blocks || (set.n && !ext)) {
		free(blocks);
		blockset_free(&set);
		return -ENOMEM;
	}
	/* Verified: every block is below device_size, and only the last is partial. */
	bs = s->info.block_size;
	dev = s->info.device_size;
	for (i = 0; i < set.n; i++) {
		if (!n || blocks[i] != ext[n - 1].block + ext[n - 1].blocks)
			ext[n++] = (struct bdsnap_extent){ .block = blocks[i], .offset = blocks[i] * bs };
		e = &ext[n - 1];
		e->blocks++;
		end = (blocks[i] + 1) * bs;
		e->length = (end < dev ? end : dev) - e->offset;
	}
	free(blocks);
	blockset_free(&set);
	if (!n) {
		free(ext);
		ext = NULL;
	}
	*out = ext;
	*count = n;
	return 0;
}
