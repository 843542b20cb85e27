// SPDX-License-Identifier: GPL-2.0
/*
 * Sparse "pre-image already taken" map of a session.  The device is cut
 * into chunks of one page of bits (32768 blocks = 128 MiB at 4 KiB); a chunk
 * is allocated the first time one of its blocks is saved, so memory grows
 * with what the session touched, not with the device size.
 *
 * Bits are only ever set during a session, and chunks are only freed when
 * the session is gone, so the bio hook can test bits locklessly (xa_load is
 * RCU-safe and the session is freed after an RCU grace period).
 */
#include <linux/xarray.h>
#include <linux/bitops.h>
#include <linux/bitmap.h>
#include <linux/gfp.h>
#include <linux/slab.h>
#include "bdsnap.h"
#include "blockmap.h"

#define BDSNAP_CHUNK_BITS	(PAGE_SIZE * BITS_PER_BYTE)

void bdsnap_blockmap_init(struct bdsnap_blockmap *map)
{
	xa_init(&map->chunks);
}

void bdsnap_blockmap_destroy(struct bdsnap_blockmap *map)
{
	unsigned long index;
	void *chunk;

	xa_for_each(&map->chunks, index, chunk)
		free_page((unsigned long)chunk);
	xa_destroy(&map->chunks);
}

/**
 * bdsnap_blockmap_next_clear() - first block in [first, last] not yet saved.
 * @map: the session's map.
 * @first: first block.
 * @last: last block, inclusive.
 *
 * Context: any; does not sleep.
 * Return: the block, or @last + 1 when all are saved.
 */
u64 bdsnap_blockmap_next_clear(struct bdsnap_blockmap *map, u64 first, u64 last)
{
	while (first <= last) {
		unsigned long *chunk = xa_load(&map->chunks, first / BDSNAP_CHUNK_BITS);
		unsigned long start = first % BDSNAP_CHUNK_BITS;
		unsigned long end = BDSNAP_CHUNK_BITS;
		unsigned long bit;

		if (!chunk)
			return first;
		if (last - first < end - start)
			end = start + (last - first) + 1;
		bit = find_next_zero_bit(chunk, end, start);
		if (bit < end)
			return first + (bit - start);
		first += end - start;
	}
	return last + 1;
}

bool bdsnap_blockmap_all_set(struct bdsnap_blockmap *map, u64 first, u64 last)
{
	return bdsnap_blockmap_next_clear(map, first, last) > last;
}

/**
 * bdsnap_blockmap_set() - mark a block saved.
 * @map: the session's map.
 * @block: the block.
 * @gfp: allocation flags for a new chunk.
 *
 * Return: 0 or -ENOMEM.
 */
int bdsnap_blockmap_set(struct bdsnap_blockmap *map, u64 block, gfp_t gfp)
{
	unsigned long index = block / BDSNAP_CHUNK_BITS;
	unsigned long *chunk = xa_load(&map->chunks, index);

	if (!chunk) {
		unsigned long *fresh = (unsigned long *)get_zeroed_page(gfp);
		void *old;

		if (!fresh)
			return -ENOMEM;
		old = xa_cmpxchg(&map->chunks, index, NULL, fresh, gfp);
		if (xa_is_err(old)) {
			free_page((unsigned long)fresh);
			return xa_err(old);
		}
		if (old) {
			free_page((unsigned long)fresh);
			chunk = old;
		} else {
			chunk = fresh;
		}
	}
	set_bit(block % BDSNAP_CHUNK_BITS, chunk);
	return 0;
}

/**
 * bdsnap_blockmap_next_set() - first saved block at or after @first.
 * @map: the session's map, no longer changing.
 * @first: where to start.
 *
 * Return: the block, or U64_MAX when there is none.
 */
u64 bdsnap_blockmap_next_set(struct bdsnap_blockmap *map, u64 first)
{
	unsigned long index = first / BDSNAP_CHUNK_BITS;
	unsigned long *chunk;

	xa_for_each_start(&map->chunks, index, chunk, index) {
		unsigned long start = 0, bit;

		if (index == first / BDSNAP_CHUNK_BITS)
			start = first % BDSNAP_CHUNK_BITS;
		bit = find_next_bit(chunk, BDSNAP_CHUNK_BITS, start);
		if (bit < BDSNAP_CHUNK_BITS)
			return (u64)index * BDSNAP_CHUNK_BITS + bit;
	}
	return U64_MAX;
}

/* Number of saved blocks; @map no longer changes. */
u64 bdsnap_blockmap_weight(struct bdsnap_blockmap *map)
{
	unsigned long index;
	unsigned long *chunk;
	u64 n = 0;

	xa_for_each(&map->chunks, index, chunk)
		n += bitmap_weight(chunk, BDSNAP_CHUNK_BITS);
	return n;
}
