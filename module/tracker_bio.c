// SPDX-License-Identifier: GPL-2.0
/*
 * V2 tracker: the block layer.  submit_bio_noacct() is redirected; a bio
 * that would change blocks whose pre-image is not yet saved (write,
 * discard, write-zeroes, secure-erase) is held, and the session's worker:
 *   1. gathers blocks of the held bios that no save has taken yet (up to a
 *      batch),
 *   2. reads them with its own bios, merged into runs and all in flight
 *      together,
 *   3. hands the pre-images to the core (bdsnap_session_save()),
 *   4. resubmits every held bio whose blocks all count as saved.
 * A save's callback wakes the worker again.  In ordered mode a save counts
 * once the store's flush made it durable: meanwhile the worker reads the
 * next batch (up to BDSNAP_SAVES_IN_FLIGHT saves wait at once), and the
 * store's flush covers all of them.  A write never reaches the device
 * before its blocks' old content has been read.  Writes to blocks already
 * saved pass straight through: one lockless bitmap test, no allocation.
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

/* ordered saves waiting for the store's flush while the next batch is read */
#define BDSNAP_SAVES_IN_FLIGHT	4

struct bdsnap_bio_tracker;

/**
 * struct bdsnap_bio_batch - one save of the worker: blocks read together.
 * @save: what the core gets; its @blocks and @pages point here.
 * @tracker: the tracker it belongs to.
 * @blocks: blocks gathered from held bios, sorted.
 * @pages: their pre-images.
 * @error: the first read error.
 * @pending: reads not yet completed, plus one for the submitter.
 * @done: completed when @pending drops to zero.
 */
struct bdsnap_bio_batch {
	struct bdsnap_save save;
	struct bdsnap_bio_tracker *tracker;
	u64 blocks[BDSNAP_BATCH_BLOCKS];
	struct page *pages[BDSNAP_BATCH_BLOCKS];
	int error;
	atomic_t pending;
	struct completion done;
};

/**
 * struct bdsnap_bio_tracker - V2's state in a session.
 * @session: the session.
 * @held_lock: protects @held.
 * @held: bios the hook held since the worker last looked.
 * @waiting: the worker's own: held bios whose blocks are not all saved.
 * @nr_held: bios on @held or @waiting (or being released).
 * @drain_wq: woken when @nr_held or @nr_saving drops to zero.
 * @work: the worker.
 * @taken: blocks a save has taken (being read, or handed to the core).
 * @resume: per held bio, where gathering's second pass goes on.
 * @idle: bit i set: @batches[i] is free.
 * @nr_saving: saves handed to the core that have not called back.
 * @batches: the saves' space.
 */
struct bdsnap_bio_tracker {
	struct bdsnap_session *session;
	spinlock_t held_lock;
	struct bio_list held;
	struct bio_list waiting;
	atomic_t nr_held;
	wait_queue_head_t drain_wq;
	struct work_struct work;
	struct bdsnap_blockmap taken;
	u64 resume[BDSNAP_BATCH_BLOCKS];
	unsigned long idle;
	atomic_t nr_saving;
	struct bdsnap_bio_batch batches[BDSNAP_SAVES_IN_FLIGHT];
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
	struct bdsnap_bio_tracker *t;
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
			t = s->tracker;
			atomic_inc(&t->nr_held);
			spin_lock_irqsave(&t->held_lock, flags);
			bio_list_add(&t->held, bio);
			spin_unlock_irqrestore(&t->held_lock, flags);
			queue_work(bdsnap_bio_wq, &t->work);
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
 * Collect up to a batch of distinct blocks of the waiting bios that no save
 * has taken, fairly: first a share of BDSNAP_FAIR_BLOCKS for every bio in
 * turn, then the rest of the batch in order.  Taken in order alone, one huge
 * discard (fstrim, -o discard) would fill every batch until all its
 * pre-images are saved while the small writes behind it (jbd2's) wait.
 */
static unsigned int bdsnap_bio_gather(struct bdsnap_bio_tracker *t, u64 *blocks)
{
	struct bdsnap_session *s = t->session;
	unsigned int n = 0, i, unique, pass, nr;
	struct bio *bio;

	for (pass = 0; pass < 2 && n < BDSNAP_BATCH_BLOCKS; pass++) {
		nr = 0;
		bio_list_for_each(bio, &t->waiting) {
			unsigned int taken = 0;
			u64 first, last, block;

			bdsnap_bio_range(s, bio, &first, &last);
			/* the second pass goes on where the first one stopped */
			if (pass && nr < BDSNAP_BATCH_BLOCKS)
				first = t->resume[nr];
			block = bdsnap_blockmap_next_clear(&t->taken, first, last);
			while (block <= last && n < BDSNAP_BATCH_BLOCKS &&
			       (pass || taken < BDSNAP_FAIR_BLOCKS)) {
				blocks[n++] = block;
				taken++;
				block = bdsnap_blockmap_next_clear(&t->taken, block + 1, last);
			}
			if (!pass && nr < BDSNAP_BATCH_BLOCKS)
				t->resume[nr] = block;
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

		batch->pages[i] = bdsnap_store_page(&s->store);
		if (!batch->pages[i] || bio_add_page(bio, batch->pages[i], bytes, 0) != bytes) {
			bio_put(bio);
			return -ENOMEM;
		}
	}
	atomic_inc(&batch->pending);
	submit_bio(bio);
	return 0;
}

/* Read the old content of the batch's @n sorted blocks; 0 or -errno. */
static int bdsnap_bio_read(struct bdsnap_session *s, struct bdsnap_bio_batch *batch,
			   unsigned int n)
{
	unsigned int i, run;
	int error = 0;

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
	if (error) {
		for (i = 0; i < n; i++)
			if (batch->pages[i])
				__free_page(batch->pages[i]);
		bdsnap_session_fail(s, error == -ENOMEM ? "out of memory for pre-images" :
				       "reading pre-images failed");
	}
	return error;
}

/*
 * The batch is free again.  The worker, if it is to look again, is queued
 * after the batch is free (or it could find none and stop) and before the
 * count drops (or stop() could flush the work before it is queued).
 */
static void bdsnap_bio_batch_put(struct bdsnap_bio_tracker *t, struct bdsnap_bio_batch *batch,
				 bool wake_worker)
{
	set_bit(batch - t->batches, &t->idle);
	if (wake_worker)
		queue_work(bdsnap_bio_wq, &t->work);
	if (atomic_dec_and_test(&t->nr_saving))
		wake_up(&t->drain_wq);
}

/* The core's callback: the blocks count as saved, their bios may go. */
static void bdsnap_bio_saved(struct bdsnap_save *save, int error)
{
	struct bdsnap_bio_batch *batch = container_of(save, struct bdsnap_bio_batch, save);

	bdsnap_bio_batch_put(batch->tracker, batch, true);
}

/*
 * Save the next batch of blocks the waiting bios need.
 * Return: false when there is nothing to start now (every block needed is
 * being saved, or every batch is in flight): a save's callback wakes the
 * worker again.
 */
static bool bdsnap_bio_save_next(struct bdsnap_bio_tracker *t)
{
	struct bdsnap_session *s = t->session;
	struct bdsnap_bio_batch *batch;
	unsigned int i, n, idle;

	idle = find_first_bit(&t->idle, BDSNAP_SAVES_IN_FLIGHT);
	if (idle >= BDSNAP_SAVES_IN_FLIGHT)
		return false;
	batch = &t->batches[idle];
	n = bdsnap_bio_gather(t, batch->blocks);
	if (!n)
		return false;
	clear_bit(idle, &t->idle);
	atomic_inc(&t->nr_saving);
	if (bdsnap_bio_read(s, batch, n)) {
		bdsnap_bio_batch_put(t, batch, false);
		return true;
	}
	for (i = 0; i < n; i++) {
		if (bdsnap_blockmap_set(&t->taken, batch->blocks[i], GFP_NOIO)) {
			bdsnap_session_fail(s, "out of memory for the block map");
			break;
		}
	}
	batch->save.n = n;
	bdsnap_session_save(s, &batch->save);
	return true;
}

/*
 * Resubmit the waiting bios whose blocks are all saved; keep the others.
 * Once pre-images can no longer be taken, a non-ordered session lets every
 * write through (the session is marked incomplete), while an ordered one
 * fails them: it promises that no block changes without its durable
 * pre-image.
 */
static void bdsnap_bio_release(struct bdsnap_bio_tracker *t)
{
	struct bdsnap_session *s = t->session;
	bool failed = READ_ONCE(s->failed);
	struct bio_list keep;
	struct bio *bio;

	bio_list_init(&keep);
	while ((bio = bio_list_pop(&t->waiting))) {
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
		if (atomic_dec_and_test(&t->nr_held))
			wake_up(&t->drain_wq);
	}
	t->waiting = keep;
}

/*
 * A write to a device whose session is being rolled back would change it
 * behind the rollback (a resubmitted held write too: its file system is
 * gone, so only a raw writer racing the unmount can have one).
 */
static void bdsnap_bio_refuse(struct bdsnap_bio_tracker *t)
{
	struct bdsnap_session *s = t->session;
	struct bio *bio;

	while ((bio = bio_list_pop(&t->waiting))) {
		pr_err_ratelimited("%s: write refused: session %s is being rolled back\n",
				   s->devname, s->dirname);
		bio_io_error(bio);
		if (atomic_dec_and_test(&t->nr_held))
			wake_up(&t->drain_wq);
	}
}

static void bdsnap_bio_work(struct work_struct *work)
{
	struct bdsnap_bio_tracker *t = container_of(work, struct bdsnap_bio_tracker, work);
	struct bdsnap_session *s = t->session;
	bool more = true;

	while (more) {
		spin_lock_irq(&t->held_lock);
		bio_list_merge(&t->waiting, &t->held);
		bio_list_init(&t->held);
		spin_unlock_irq(&t->held_lock);
		if (READ_ONCE(s->rollback_task)) {
			bdsnap_bio_refuse(t);
			break;
		}
		bdsnap_bio_release(t);
		more = !bio_list_empty(&t->waiting) && !READ_ONCE(s->failed) &&
		       bdsnap_bio_save_next(t);
	}
}

static unsigned int bdsnap_tracker_bio_held(struct bdsnap_session *s)
{
	struct bdsnap_bio_tracker *t = s->tracker;

	return atomic_read(&t->nr_held);
}

static int bdsnap_tracker_bio_start(struct bdsnap_session *s)
{
	struct bdsnap_bio_tracker *t = kzalloc(sizeof(*t), GFP_KERNEL);
	unsigned int i;

	if (!t)
		return -ENOMEM;
	t->session = s;
	spin_lock_init(&t->held_lock);
	bio_list_init(&t->held);
	bio_list_init(&t->waiting);
	init_waitqueue_head(&t->drain_wq);
	INIT_WORK(&t->work, bdsnap_bio_work);
	bdsnap_blockmap_init(&t->taken);
	for (i = 0; i < BDSNAP_SAVES_IN_FLIGHT; i++) {
		struct bdsnap_bio_batch *batch = &t->batches[i];

		batch->tracker = t;
		batch->save.blocks = batch->blocks;
		batch->save.pages = batch->pages;
		batch->save.saved = bdsnap_bio_saved;
		init_completion(&batch->done);
		set_bit(i, &t->idle);
	}
	s->tracker = t;
	return 0;
}

/*
 * Context: the session is no longer visible to the hook, or it is being
 * rolled back (the hook then holds writes only to refuse them); then again
 * once it is no longer visible.
 */
static void bdsnap_tracker_bio_stop(struct bdsnap_session *s)
{
	struct bdsnap_bio_tracker *t = s->tracker;

	wait_event(t->drain_wq, !atomic_read(&t->nr_held) && !atomic_read(&t->nr_saving));
	flush_work(&t->work);
}

/* Context: after bdsnap_store_close(): no save's callback can still run. */
static void bdsnap_tracker_bio_destroy(struct bdsnap_session *s)
{
	struct bdsnap_bio_tracker *t = s->tracker;

	bdsnap_blockmap_destroy(&t->taken);
	kfree(t);
	s->tracker = NULL;
}

const struct bdsnap_tracker_ops bdsnap_tracker_bio_ops = {
	.name = "bio",
	.start = bdsnap_tracker_bio_start,
	.stop = bdsnap_tracker_bio_stop,
	.destroy = bdsnap_tracker_bio_destroy,
	.held = bdsnap_tracker_bio_held,
	.can_order = true,
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
