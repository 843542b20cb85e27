// SPDX-License-Identifier: GPL-2.0
/*
 * The end fingerprint of a session: what a restore checks before writing a
 * byte, so that it writes only onto a device that holds what the session
 * left (docs/format.md, "end_sha256").  SHA-256 over a sample of the blocks
 * the session saved, each as its block number (8 bytes, little endian)
 * followed by its content on the device at the session's end: all of them
 * up to BDSNAP_FINGERPRINT_BLOCKS, else that many spread evenly over them in
 * block order.  Those are exactly the blocks a restore rewrites, so a
 * device that holds something else there is the wrong target, and the check
 * costs a restore a few hundred reads.
 */
#define pr_fmt(fmt) KBUILD_MODNAME "-fingerprint: " fmt

#include <linux/module.h>
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/highmem.h>
#include <linux/math64.h>
#include <crypto/hash.h>
#include "bdsnap.h"
#include "session.h"

#define BDSNAP_FINGERPRINT_BLOCKS	256

static int bdsnap_fingerprint_block(struct bdsnap_session *s, struct shash_desc *desc,
				    struct page *page, u64 block)
{
	unsigned int len = bdsnap_session_block_len(s, block);
	__le64 nr = cpu_to_le64(block);
	struct bio bio;
	struct bio_vec bvec;
	void *data;
	int ret;

	bio_init(&bio, s->bdev_ref.bdev, &bvec, 1, REQ_OP_READ);
	bio.bi_iter.bi_sector = block * BDSNAP_SECTORS_PER_BLOCK;
	__bio_add_page(&bio, page, len, 0);
	ret = submit_bio_wait(&bio);
	bio_uninit(&bio);
	if (ret)
		return ret;
	data = kmap_local_page(page);
	ret = crypto_shash_update(desc, (const u8 *)&nr, sizeof(nr)) ?:
	      crypto_shash_update(desc, data, len);
	kunmap_local(data);
	return ret;
}

/**
 * bdsnap_fingerprint() - fingerprint the device at the end of session @s.
 * @s: the session; its file systems are gone, its map no longer changes.
 * @nr_sample: out: number of blocks covered.
 * @digest: out: SHA256_DIGEST_SIZE bytes.
 *
 * Context: process, sleeps (reads up to BDSNAP_FINGERPRINT_BLOCKS blocks).
 * Return: 0 or -errno.
 */
int bdsnap_fingerprint(struct bdsnap_session *s, unsigned int *nr_sample, u8 *digest)
{
	u64 total = bdsnap_blockmap_weight(&s->map), index = 0, block = 0;
	unsigned int sampled = 0;
	struct crypto_shash *tfm;
	struct shash_desc *desc;
	struct page *page;
	int ret;

	tfm = crypto_alloc_shash("sha256", 0, 0);
	if (IS_ERR(tfm))
		return PTR_ERR(tfm);
	desc = kzalloc(sizeof(*desc) + crypto_shash_descsize(tfm), GFP_KERNEL);
	page = alloc_page(GFP_KERNEL);
	ret = -ENOMEM;
	if (!desc || !page)
		goto out;
	desc->tfm = tfm;
	ret = crypto_shash_init(desc);
	while (!ret && sampled < min_t(u64, total, BDSNAP_FINGERPRINT_BLOCKS)) {
		/* the index of the next sample among the saved blocks, in order */
		u64 want = total <= BDSNAP_FINGERPRINT_BLOCKS ? sampled :
			   div64_u64((u64)sampled * total, BDSNAP_FINGERPRINT_BLOCKS);

		for (;;) {
			block = bdsnap_blockmap_next_set(&s->map, block);
			if (index == want)
				break;
			index++;
			block++;
		}
		ret = bdsnap_fingerprint_block(s, desc, page, block);
		sampled++;
		index++;
		block++;
	}
	if (!ret)
		ret = crypto_shash_final(desc, digest);
	*nr_sample = sampled;
out:
	if (page)
		__free_page(page);
	kfree_sensitive(desc);
	crypto_free_shash(tfm);
	return ret;
}
