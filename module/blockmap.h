/* SPDX-License-Identifier: GPL-2.0 */
/* The set of blocks of a session that have a saved pre-image. */
#ifndef BDSNAP_BLOCKMAP_H
#define BDSNAP_BLOCKMAP_H

#include <linux/types.h>
#include <linux/xarray.h>

/* blockmap.c: which blocks of a session already have their pre-image */
struct bdsnap_blockmap {
	struct xarray chunks;
};

void bdsnap_blockmap_init(struct bdsnap_blockmap *map);
void bdsnap_blockmap_destroy(struct bdsnap_blockmap *map);
u64 bdsnap_blockmap_next_clear(struct bdsnap_blockmap *map, u64 first, u64 last);
bool bdsnap_blockmap_all_set(struct bdsnap_blockmap *map, u64 first, u64 last);
int bdsnap_blockmap_set(struct bdsnap_blockmap *map, u64 block, gfp_t gfp);
u64 bdsnap_blockmap_next_set(struct bdsnap_blockmap *map, u64 first);
u64 bdsnap_blockmap_weight(struct bdsnap_blockmap *map);

#endif /* BDSNAP_BLOCKMAP_H */
