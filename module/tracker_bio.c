// SPDX-License-Identifier: GPL-2.0
/*
 * V2 tracker: the block layer.  submit_bio_noacct() is redirected; a bio
 * that would change blocks whose pre-image is not yet taken (write,
 * discard, write-zeroes, secure-erase) is held on its session and a worker:
 *   1. gathers the unsaved blocks of all held bios (up to a batch),
 *   2. reads them with its own bios, merged into runs and all in flight
 *      together,
 *   3. hands the pre-images to the store and marks the blocks saved,
 *   4. resubmits every held bio whose blocks are now all saved.
 * A write never reaches the device before its blocks' old content has been
 * read.  Writes to blocks already saved pass straight through: one lockless
 * bitmap test, no allocation.
 *
 * The hook runs in the submitter's context, which may hold current->bio_list
 * (split remainders): reading there would only queue the read behind the
 * write and deadlock, so all reading happens in the worker.
 */
#define pr_fmt(fmt) KBUILD_MODNAME "-bio: " fmt

#include <linux/module.h>
#include <linux/blkdev.h>
#include <linux/bio.h>
#include <linux/sort.h>
#include <linux/slab.h>
#include <linux/completion.h>
#include "bdsnap.h"
#include "session.h"
#include "hook.h"

#define BDSNAP_BATCH_BLOCKS	256
/* what each held bio gets of a batch before any gets more */
#define BDSNAP_FAIR_BLOCKS	16
#define BDSNAP_RUN_BLOCKS	BIO_MAX_VECS

/**
 * struct bdsnap_bio_batch - scratch space of one session's worker.
 * @blocks: unsaved blocks gathered from held bios, sorted.
 * @resume: per held bio, where gathering's second pass goes on.
 * @pages: their pre-images.
 * @error: the first read error.
 * @pending: reads not yet completed, plus one for the submitter.
 * @done: completed when @pending drops to zero.
 */
struct bdsnap_bio_batch {
	u64 blocks[BDSNAP_BATCH_BLOCKS];
	u64 resume[BDSNAP_BATCH_BLOCKS];
	struct page *pages[BDSNAP_BATCH_BLOCKS];
	int error;
	atomic_t pending;
	struct completion done;
};

static struct workqueue_struct *bdsnap_bio_wq;
/* pre-image reads: a reserve that frees itself, see bdsnap_bio_read_end() */
static struct bio_set bdsnap_read_bioset;
#define BDSNAP_READ_BIOS_RESERVED	16

static bool bdsnap_bio_changes_data(const struct bio *bio)
{
	switch (bio_op(bio)) {
	case REQ_OP_WRITE:
	case REQ_OP_DISCARD:
	case REQ_OP_SECURE_ERASE:
	case REQ_OP_WRITE_ZEROES:
		return bio->bi_iter.bi_size != 0;
	default:
		return false;
	}
}

/*
 * The blocks of the session's device a bio touches; a sub-block write
 * touches the whole block.  The bio may be for a partition of that device
 * (its sector is then relative to the partition, unless the block layer
 * already remapped it: split remainders come back with BIO_REMAPPED and a
 * whole-disk sector).  We see bios before the block layer's end-of-device
 * check: blocks past the end hold nothing to save (the write will be failed).
 */
static void bdsnap_bio_range(struct bdsnap_session *s, struct bio *bio, u64 *first, u64 *last)
{
	sector_t sector = bio->bi_iter.bi_sector;
	u64 end = s->nr_bytes ? (s->nr_bytes - 1) / BDSNAP_BLOCK_SIZE : 0;

	if (!bio_flagged(bio, BIO_REMAPPED))
		sector += bio->bi_bdev->bd_start_sect;
	sector -= s->bdev_ref.bdev->bd_start_sect;
	*first = sector / BDSNAP_SECTORS_PER_BLOCK;
	*last = min((sector + bio_sectors(bio) - 1) / BDSNAP_SECTORS_PER_BLOCK, end);
}

/* The session tracking the device of @bdev: its own, or its whole disk's. */
static struct bdsnap_session *bdsnap_bio_session_rcu(struct block_device *bdev)
{
	struct bdsnap_session *s = bdsnap_session_find_rcu(bdev, &bdsnap_tracker_bio_ops);

	if (!s && bdev_is_partition(bdev))
		s = bdsnap_session_find_rcu(bdev_whole(bdev), &bdsnap_tracker_bio_ops);
	return s;
}

/*
 * The hook's decision, in the ftrace callback: atomic context, so it only
 * queues.  Held bios are redirected to bdsnap_bio_held(), which returns at
 * once; all others run submit_bio_noacct() with no frame of ours.
 */
static bool bdsnap_bio_hold(struct pt_regs *regs)
{
	struct bio *bio = (struct bio *)regs_get_kernel_argument(regs, 0);
	struct bdsnap_session *s;
	bool held = false;
	unsigned long flags;
	u64 first, last;

	if (!bdsnap_bio_changes_data(bio))
		return false;
	rcu_read_lock();
	s = bdsnap_bio_session_rcu(bio->bi_bdev);
	/* the rollback's own writes */
	if (s && READ_ONCE(s->rollback_task) == current)
		s = NULL;
	/* a failed non-ordered session lets writes through untracked */
	if (s && !(READ_ONCE(s->failed) && !s->ordered)) {
		bdsnap_bio_range(s, bio, &first, &last);
		/* while it is rolled back, every other write is held to fail */
		if (READ_ONCE(s->rollback_task) ||
		    !bdsnap_blockmap_all_set(&s->map, first, last)) {
			atomic_inc(&s->nr_held);
			spin_lock_irqsave(&s->held_lock, flags);
			bio_list_add(&s->held, bio);
			spin_unlock_irqrestore(&s->held_lock, flags);
			queue_work(bdsnap_bio_wq, &s->read_work);
			held = true;
		}
	}
	rcu_read_unlock();
	return held;
}

/* The held bio is the worker's now: submit_bio_noacct() returns at once. */
static void bdsnap_bio_held(struct bio *bio)
{
}

static struct bdsnap_hook bdsnap_bio_hook = {
	.target = (unsigned long)submit_bio_noacct,
	.replacement = (unsigned long)bdsnap_bio_held,
	.divert = bdsnap_bio_hold,
};

static int bdsnap_u64_cmp(const void *a, const void *b)
{
	u64 x = *(const u64 *)a, y = *(const u64 *)b;

	return x < y ? -1 : x > y;
}

/*
 * Collect up to a batch of distinct unsaved blocks of the held bios, fairly:
 * first a share of BDSNAP_FAIR_BLOCKS for every held bio in turn, then the
 * rest of the batch in order.  Taken in order alone, one huge discard
 * (fstrim, -o discard) would fill every batch until all its pre-images are
 * saved while the small writes behind it (jbd2's) wait.
 */
static unsigned int bdsnap_bio_gather(struct bdsnap_session *s, struct bio_list *held,
				      struct bdsnap_bio_batch *batch)
{
	u64 *blocks = batch->blocks;
	unsigned int n = 0, i, unique, pass, nr;
	struct bio *bio;

	for (pass = 0; pass < 2 && n < BDSNAP_BATCH_BLOCKS; pass++) {
		nr = 0;
		bio_list_for_each(bio, held) {
			unsigned int taken = 0;
			u64 first, last, block;

			bdsnap_bio_range(s, bio, &first, &last);
			/* the second pass goes on where the first one stopped */
			if (pass && nr < BDSNAP_BATCH_BLOCKS)
				first = batch->resume[nr];
			block = bdsnap_blockmap_next_clear(&s->map, first, last);
			while (block <= last && n < BDSNAP_BATCH_BLOCKS &&
			       (pass || taken < BDSNAP_FAIR_BLOCKS)) {
				blocks[n++] = block;
				taken++;
				block = bdsnap_blockmap_next_clear(&s->map, block + 1, last);
			}
			if (!pass && nr < BDSNAP_BATCH_BLOCKS)
				batch->resume[nr] = block;
			nr++;
			if (n == BDSNAP_BATCH_BLOCKS)
				break;
		}
	}
	sort(blocks, n, sizeof(*blocks), bdsnap_u64_cmp, NULL);
	for (i = 0, unique = 0; i < n; i++)
		if (!unique || blocks[unique - 1] != blocks[i])
			blocks[unique++] = blocks[i];
	return unique;
}

/*
 * Each read goes back to the bio set as soon as it completes, so a few
 * reserved bios always come free again: the reads of every session make
 * progress under memory pressure, one batch after the other.
 */
static void bdsnap_bio_read_end(struct bio *bio)
{
	struct bdsnap_bio_batch *batch = bio->bi_private;

	if (bio->bi_status)
		cmpxchg(&batch->error, 0, blk_status_to_errno(bio->bi_status));
	bio_put(bio);
	if (atomic_dec_and_test(&batch->pending))
		complete(&batch->done);
}

/* Start reading blocks[start, start + len), adjacent on the device. */
static int bdsnap_bio_read_run(struct bdsnap_session *s, struct bdsnap_bio_batch *batch,
			       unsigned int start, unsigned int len)
{
	struct bio *bio;
	unsigned int i;

	bio = bio_alloc_bioset(s->bdev_ref.bdev, len, REQ_OP_READ, GFP_NOIO, &bdsnap_read_bioset);
	bio->bi_iter.bi_sector = batch->blocks[start] * BDSNAP_SECTORS_PER_BLOCK;
	bio->bi_private = batch;
	bio->bi_end_io = bdsnap_bio_read_end;
	for (i = start; i < start + len; i++) {
		unsigned int bytes = bdsnap_session_block_len(s, batch->blocks[i]);

		batch->pages[i] = alloc_page(GFP_NOIO);
		if (!batch->pages[i] || bio_add_page(bio, batch->pages[i], bytes, 0) != bytes) {
			bio_put(bio);
			return -ENOMEM;
		}
	}
	atomic_inc(&batch->pending);
	submit_bio(bio);
	return 0;
}

/*
 * Read the old content of @n sorted blocks and hand it to the store.  A
 * block counts as saved (and later writes to it pass straight through) once
 * its pre-image is queued, or in ordered mode once it is durable.
 */
static void bdsnap_bio_save(struct bdsnap_session *s, struct bdsnap_bio_batch *batch,
			    unsigned int n)
{
	unsigned int i, run;
	int error = 0, store_error = 0;
	u64 seq = 0;

	memset(batch->pages, 0, sizeof(batch->pages[0]) * n);
	batch->error = 0;
	atomic_set(&batch->pending, 1);
	reinit_completion(&batch->done);
	for (i = 0; i < n; i += run) {
		for (run = 1; i + run < n && run < BDSNAP_RUN_BLOCKS; run++)
			if (batch->blocks[i + run] != batch->blocks[i] + run)
				break;
		if (bdsnap_bio_read_run(s, batch, i, run)) {
			error = -ENOMEM;
			break;
		}
	}
	if (!atomic_dec_and_test(&batch->pending))
		wait_for_completion(&batch->done);
	error = error ?: batch->error;

	for (i = 0; i < n; i++) {
		u64 block = batch->blocks[i];

		if (!batch->pages[i])
			continue;
		if (error || store_error)
			__free_page(batch->pages[i]);
		else
			store_error = bdsnap_store_add(&s->store, block, batch->pages[i],
						       bdsnap_session_block_len(s, block), &seq);
	}
	if (!error && !store_error && s->ordered)
		store_error = bdsnap_store_wait_durable(&s->store, seq);
	/* the store logs its own failures */
	if (error || store_error)
		bdsnap_session_fail(s, error == -ENOMEM ? "out of memory for pre-images" :
				       error ? "reading pre-images failed" : NULL);
	if (error || store_error)
		return;
	for (i = 0; i < n && !error; i++)
		error = bdsnap_blockmap_set(&s->map, batch->blocks[i], GFP_NOIO);
	if (error)
		bdsnap_session_fail(s, "out of memory for the block map");
}

/*
 * Resubmit the held bios whose blocks are all saved; keep the others.  Once
 * pre-images can no longer be taken, a non-ordered session lets every write
 * through (the session is marked incomplete), while an ordered one fails
 * them: it promises that no block changes without its durable pre-image.
 */
static void bdsnap_bio_release(struct bdsnap_session *s, struct bio_list *held)
{
	bool failed = READ_ONCE(s->failed);
	struct bio_list keep;
	struct bio *bio;

	bio_list_init(&keep);
	while ((bio = bio_list_pop(held))) {
		u64 first, last;
		bool saved;

		bdsnap_bio_range(s, bio, &first, &last);
		saved = bdsnap_blockmap_all_set(&s->map, first, last);
		if (!failed && !saved) {
			bio_list_add(&keep, bio);
			continue;
		}
		if (saved || !s->ordered)
			submit_bio_noacct(bio);
		else
			bio_io_error(bio);
		if (atomic_dec_and_test(&s->nr_held))
			wake_up(&s->drain_wq);
	}
	*held = keep;
}

/*
 * A write to a device whose session is being rolled back would change it
 * behind the rollback (a resubmitted held write too: its file system is
 * gone, so only a raw writer racing the unmount can have one).
 */
static void bdsnap_bio_refuse(struct bdsnap_session *s, struct bio_list *held)
{
	struct bio *bio;

	while ((bio = bio_list_pop(held))) {
		pr_err_ratelimited("%s: write refused: session %s is being rolled back\n",
				   s->devname, s->dirname);
		bio_io_error(bio);
		if (atomic_dec_and_test(&s->nr_held))
			wake_up(&s->drain_wq);
	}
}

static void bdsnap_bio_read_work(struct work_struct *work)
{
	struct bdsnap_session *s = container_of(work, struct bdsnap_session, read_work);
	struct bio_list held;

	bio_list_init(&held);
	for (;;) {
		unsigned int n;

		spin_lock_irq(&s->held_lock);
		bio_list_merge(&held, &s->held);
		bio_list_init(&s->held);
		spin_unlock_irq(&s->held_lock);
		if (bio_list_empty(&held))
			break;
		if (READ_ONCE(s->rollback_task)) {
			bdsnap_bio_refuse(s, &held);
			continue;
		}
		n = bdsnap_bio_gather(s, &held, s->batch);
		if (n && !READ_ONCE(s->failed))
			bdsnap_bio_save(s, s->batch, n);
		bdsnap_bio_release(s, &held);
	}
}

static int bdsnap_tracker_bio_start(struct bdsnap_session *s)
{
	s->batch = kzalloc(sizeof(*s->batch), GFP_KERNEL);
	if (!s->batch)
		return -ENOMEM;
	init_completion(&s->batch->done);
	INIT_WORK(&s->read_work, bdsnap_bio_read_work);
	return 0;
}

/*
 * Context: the session is no longer visible to the hook, or it is being
 * rolled back (the hook then holds writes only to refuse them, without
 * @s->batch); then again once it is no longer visible.
 */
static void bdsnap_tracker_bio_stop(struct bdsnap_session *s)
{
	wait_event(s->drain_wq, !atomic_read(&s->nr_held));
	flush_work(&s->read_work);
	kfree(s->batch);
	s->batch = NULL;
}

const struct bdsnap_tracker_ops bdsnap_tracker_bio_ops = {
	.name = "bio",
	.start = bdsnap_tracker_bio_start,
	.stop = bdsnap_tracker_bio_stop,
};

int bdsnap_tracker_bio_init(void)
{
	int ret;

	/* writeback under memory pressure must make progress through us */
	bdsnap_bio_wq = alloc_workqueue("bdsnap_bio", WQ_MEM_RECLAIM | WQ_UNBOUND, 0);
	if (!bdsnap_bio_wq)
		return -ENOMEM;
	ret = bioset_init(&bdsnap_read_bioset, BDSNAP_READ_BIOS_RESERVED, 0, BIOSET_NEED_BVECS);
	if (ret)
		goto fail_wq;
	ret = bdsnap_hook_install(&bdsnap_bio_hook);
	if (ret)
		goto fail_bioset;
	return 0;

fail_bioset:
	bioset_exit(&bdsnap_read_bioset);
fail_wq:
	destroy_workqueue(bdsnap_bio_wq);
	return ret;
}

void bdsnap_tracker_bio_done(void)
{
	bdsnap_hook_remove(&bdsnap_bio_hook);
	/* no task may still run the replacement when the module text goes */
	synchronize_rcu_tasks();
	destroy_workqueue(bdsnap_bio_wq);
	bioset_exit(&bdsnap_read_bioset);
}
