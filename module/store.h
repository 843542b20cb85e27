/* SPDX-License-Identifier: GPL-2.0 */
/* The writer of one session's directory: meta and the blocks log. */
#ifndef BDSNAP_STORE_H
#define BDSNAP_STORE_H

#include <linux/types.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include "compress.h"

struct file;
struct page;
struct bdsnap_store;
struct bdsnap_record;
struct bdsnap_store_batch;

/* store.c: the on-disk log of one session */
struct bdsnap_store_info {
	const char *name;	/* for log lines; must outlive the store */
	const char *path;
	const char *devname;
	u64 device_size;
	const char *tracker;
	bool ordered;
	bool rollback;		/* BDSNAP_ACT_ROLLBACK */
	bool keep;		/* BDSNAP_ACT_KEEP */
	dev_t tracked;		/* the device whose pre-images go here */
	dev_t image_dev;	/* an activated image file: its file system */
	unsigned long image_ino;	/* ... and inode; 0 for a block device */
	void (*durable)(struct bdsnap_store *st);
};

/**
 * struct bdsnap_store - writer of one session directory.
 * @blocks: the "blocks" log, appended at @pos.
 * @writeback_pos: @pos when writeback of @blocks was last started.
 * @reserved: @blocks has space allocated up to here (fallocate).
 * @meta: the "meta" file, appended at @meta_pos.
 * @meta_lock: serialises appends to @meta.
 * @lock: protects @queue, @queued, @pool, @pool_nr, @error.
 * @queue: pre-images (struct bdsnap_preimage) waiting to be written.
 * @queued: number of entries on @queue.
 * @space_wq: producers wait here while @queued is at the budget.
 * @work: drains @queue into the log.
 * @name: the session's name in log lines.
 * @z: deflate state, used by @work only.
 * @deflate_skip: blocks still to store raw without trying deflate.
 * @deflate_backoff: length of the last such run (doubles while blocks do
 *	not compress).
 * @batch: records on their way to the log, appended by one write.
 * @hdr: their headers, in a page of their own.
 * @pool: pages of written pre-images for reuse, @pool_nr of them, at most
 *	@pool_max.
 * @recycle: a tracker takes its pages from @pool (bdsnap_store_page()).
 * @error: first write error; once set, pre-images are dropped.
 * @blocks_saved: records written.
 * @bytes_raw: raw bytes of those records.
 * @ordered: every append is followed by a flush before @seq_durable moves.
 * @seq_added: sequence number of the last pre-image queued.
 * @seq_durable: every pre-image up to this one is written and flushed.
 * @durable_wq: woken when @seq_durable moves or @error is set.
 * @durable: called by the store's worker after @seq_durable moved (also when
 *	@error is set: the pre-images up to it then are dropped, never durable).
 */
struct bdsnap_store {
	struct file *blocks;
	struct file *meta;
	loff_t pos;
	loff_t writeback_pos;
	loff_t reserved;
	loff_t meta_pos;
	struct mutex meta_lock;
	spinlock_t lock;
	struct list_head queue;
	unsigned int queued;
	wait_queue_head_t space_wq;
	struct work_struct work;
	const char *name;
	struct bdsnap_deflate z;
	unsigned int deflate_skip;
	unsigned int deflate_backoff;
	struct bdsnap_store_batch *batch;
	struct bdsnap_record *hdr;
	struct page **pool;
	unsigned int pool_nr;
	unsigned int pool_max;
	bool recycle;
	int error;
	u64 blocks_saved;
	u64 bytes_raw;
	bool ordered;
	u64 seq_added;
	u64 seq_durable;
	wait_queue_head_t durable_wq;
	void (*durable)(struct bdsnap_store *st);
};

int bdsnap_store_open(struct bdsnap_store *st, const char *dir,
		      const struct bdsnap_store_info *info);
struct page *bdsnap_store_page(struct bdsnap_store *st);
int bdsnap_store_add(struct bdsnap_store *st, u64 block, struct page *page,
		     unsigned int len, u64 *seq);
int bdsnap_store_wait_durable(struct bdsnap_store *st, u64 seq);
u64 bdsnap_store_last_added(struct bdsnap_store *st);
u64 bdsnap_store_last_durable(struct bdsnap_store *st);
void bdsnap_store_close(struct bdsnap_store *st, int error);
void bdsnap_store_fail(struct bdsnap_store *st, int error);
__printf(2, 3) int bdsnap_store_note(struct bdsnap_store *st, const char *fmt, ...);
unsigned int bdsnap_store_queued(struct bdsnap_store *st);
int bdsnap_store_mkdir(const char *path);
int bdsnap_store_note_rollback(const char *dir, int error);
int bdsnap_store_remove(const char *name);
int bdsnap_store_init(void);
/* store_quota.c: the store's size cap */
int bdsnap_store_quota_recount(const char *dir);
int bdsnap_store_quota_take(u64 bytes);
void bdsnap_store_quota_give(u64 bytes);
void bdsnap_store_done(void);
int bdsnap_store_check_dev(const char *dir, dev_t dev);

#endif /* BDSNAP_STORE_H */
