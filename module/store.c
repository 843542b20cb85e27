// SPDX-License-Identifier: GPL-2.0
/*
 * The session store: a directory with an append-only "meta" text file and
 * an append-only "blocks" log (format in include/uapi/bdsnap.h and
 * docs/format.md).  Trackers hand in pre-images with bdsnap_store_add();
 * a worker compresses them and appends them in large writes.  The number of
 * queued pre-images is bounded: producers wait when the budget is used up.
 */
#define pr_fmt(fmt) KBUILD_MODNAME "-store: " fmt

#include <linux/module.h>
#include <linux/fs.h>
#include <linux/file.h>
#include <linux/falloc.h>
#include <linux/namei.h>
#include <linux/mount.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <linux/highmem.h>
#include <linux/pagemap.h>
#include <linux/uio.h>
#include <linux/bvec.h>
#include <linux/crc32.h>
#include <linux/uuid.h>
#include <linux/sched/mm.h>
#include <linux/zlib.h>
#include <linux/blkdev.h>
#include "bdsnap.h"
#include "store.h"
#include "registry.h"

/* the store writers: the bio worker waits for them, so they too make progress under reclaim */
static struct workqueue_struct *bdsnap_store_wq;

static unsigned int store_queue_max = 4096;
module_param(store_queue_max, uint, 0444);
MODULE_PARM_DESC(store_queue_max,
		 "Pre-images (4 KiB each) queued in memory per session before writers wait (64..262144, default 4096)");

/* the log's space is reserved in steps of this much (a small store still fills) */
#define BDSNAP_STORE_RESERVE_BYTES	(64 * 1024)
/* room reserved for meta: its whole text, start and end lines, fits */
#define BDSNAP_META_RESERVE_BYTES	4096
#define BDSNAP_STORE_WRITEBACK_BYTES	(4 << 20)
/* records appended by one write: their headers fill bdsnap_store.hdr, a page */
#define BDSNAP_STORE_BATCH	128
static_assert(BDSNAP_STORE_BATCH * sizeof(struct bdsnap_record) <= PAGE_SIZE);
/*
 * Pages a session keeps for reuse, at most a quarter of store_queue_max:
 * what the worker frees before blocked writers go on, so what they ask for
 * again at once.  The pool only holds pages that were in flight together.
 */
#define BDSNAP_STORE_POOL_MAX	1024

/**
 * struct bdsnap_preimage - a block's old content on its way to the log.
 * @node: in bdsnap_store.queue.
 * @block: block number.
 * @len: valid bytes in @page.
 * @page: the data; owned by the store once queued.
 * @seq: position in the order of bdsnap_store_add() calls.
 */
struct bdsnap_preimage {
	struct list_head node;
	u64 seq;
	u64 block;
	unsigned int len;
	struct page *page;
};

/**
 * struct bdsnap_store_batch - records on their way to the log.
 * @vec: what is written: per record its header (in bdsnap_store.hdr), then
 *	its payload (at the start of its page).
 * @pages: the records' pages, back to the pool once written.
 * @nr: records in the batch.
 * @bytes: their size in the log.
 * @deflated: deflate's output, before it replaces the raw pre-image.
 */
struct bdsnap_store_batch {
	struct bio_vec vec[2 * BDSNAP_STORE_BATCH];
	struct page *pages[BDSNAP_STORE_BATCH];
	unsigned int nr;
	size_t bytes;
	u8 deflated[BDSNAP_BLOCK_SIZE];
};

int bdsnap_store_mkdir(const char *path)
{
	int ret = bdsnap_kern_mkdir(path, 0700);

	return ret == -EEXIST ? 0 : ret;
}

/* loop devices over files on loop devices ...: how deep a store is followed */
#define BDSNAP_LOOP_DEPTH_MAX	8

/*
 * Whether data written to a file of @sb's file system reaches @dev: the file
 * system is on @dev or on a partition of it, or on a loop device whose
 * backing file's does, and so on.
 */
static bool bdsnap_store_reaches(struct super_block *sb, dev_t dev)
{
	struct path backing = {};
	bool reaches = false;
	int depth;

	for (depth = 0; sb->s_bdev && depth < BDSNAP_LOOP_DEPTH_MAX; depth++) {
		dev_t whole = bdev_whole(sb->s_bdev)->bd_dev;
		struct path next;

		if (sb->s_bdev->bd_dev == dev || whole == dev) {
			reaches = true;
			break;
		}
		if (bdsnap_loop_backing_path(whole, &next))
			break;
		path_put(&backing);
		backing = next;
		sb = d_real_inode(backing.dentry)->i_sb;
	}
	path_put(&backing);
	return reaches;
}

/**
 * bdsnap_store_check_dev() - refuse a store that lives on the tracked device.
 * @dir: store directory (it or an ancestor must exist).
 * @dev: the tracked device.
 *
 * Saving a device's pre-images onto the device itself would overwrite the
 * blocks being saved (and in ordered mode the store's flush would wait for
 * writes held until it is done).  bdsnap_store_open() checks the file the
 * log is written to again, through overlayfs.
 *
 * Return: 0, -EXDEV when @dir is on @dev, or the path lookup error.
 */
int bdsnap_store_check_dev(const char *dir, dev_t dev)
{
	char *buf = kstrdup(dir, GFP_KERNEL);
	struct path path;
	int ret;

	if (!buf)
		return -ENOMEM;
	/* the nearest existing ancestor, "/" included, holds what will be created */
	for (;;) {
		char *slash;

		ret = kern_path(buf, LOOKUP_FOLLOW, &path);
		if (ret != -ENOENT)
			break;
		slash = strrchr(buf, '/');
		if (!slash || (slash == buf && !slash[1]))
			break;
		slash[slash == buf] = '\0';
	}
	kfree(buf);
	if (ret)
		return ret;
	if (bdsnap_store_reaches(d_real_inode(path.dentry)->i_sb, dev))
		ret = -EXDEV;
	path_put(&path);
	return ret;
}

static int bdsnap_store_sync_dir(const char *path)
{
	struct file *dir = filp_open(path, O_RDONLY | O_DIRECTORY, 0);
	int ret;

	if (IS_ERR(dir))
		return PTR_ERR(dir);
	ret = vfs_fsync(dir, 0);
	fput(dir);
	/* some file systems cannot sync a directory: their entries are durable anyway */
	return ret == -EINVAL ? 0 : ret;
}

static struct file *bdsnap_store_create(const char *dir, const char *name)
{
	char *path = kasprintf(GFP_KERNEL, "%s/%s", dir, name);
	struct file *file;

	if (!path)
		return ERR_PTR(-ENOMEM);
	file = filp_open(path, O_WRONLY | O_CREAT | O_EXCL | O_LARGEFILE, 0600);
	kfree(path);
	return file;
}

/*
 * Reserve [start, end) of @file beyond its size (KEEP_SIZE: readers still
 * find the log's end at the file size).  A write into reserved space never
 * fails for lack of it, so a full store is seen here, between two appends,
 * and never as a write cut short inside a record: a short write at ENOSPC
 * was seen to leave a record's data wrong on 7.2's ext4.
 * Return: 0 (also when the file system cannot reserve), or -ENOSPC and the like.
 */
static int bdsnap_store_reserve(struct file *file, loff_t start, loff_t end)
{
	int ret = vfs_fallocate(file, FALLOC_FL_KEEP_SIZE, start, end - start);

	return ret == -EOPNOTSUPP ? 0 : ret;
}

/* What a write of @len bytes that returned @ret means: a short one, a full store. */
static int bdsnap_store_wrote(ssize_t ret, size_t len)
{
	if (ret < 0)
		return ret;
	return ret == len ? 0 : -ENOSPC;
}

static int bdsnap_store_write(struct file *file, const void *buf, size_t len, loff_t *pos)
{
	return bdsnap_store_wrote(kernel_write(file, buf, len, pos), len);
}

/**
 * bdsnap_store_fail() - the store can no longer be written.
 * @st: an open store.
 * @error: the first error; later ones are not logged.
 *
 * One log line per session however many writes fail after it: the session
 * ends incomplete:<error>.
 *
 * Context: process.
 */
void bdsnap_store_fail(struct bdsnap_store *st, int error)
{
	spin_lock(&st->lock);
	if (!st->error) {
		st->error = error;
		pr_err("session %s: writing the store failed (error %d): session is incomplete, pre-images are dropped from now on\n",
		       st->name, error);
	}
	spin_unlock(&st->lock);
	wake_up_all(&st->space_wq);
	wake_up_all(&st->durable_wq);
}

/**
 * bdsnap_store_note() - append lines to meta.
 * @st: an open store.
 * @fmt: "key=value\n" lines.
 *
 * Context: process; appends are serialised (mounts of two partitions of one
 * session may note their file systems at once).
 * Return: 0 or -errno.
 */
__printf(2, 3) int bdsnap_store_note(struct bdsnap_store *st, const char *fmt, ...)
{
	va_list args;
	char *text;
	int ret;

	va_start(args, fmt);
	text = kvasprintf(GFP_KERNEL, fmt, args);
	va_end(args);
	if (!text)
		return -ENOMEM;
	mutex_lock(&st->meta_lock);
	ret = bdsnap_store_write(st->meta, text, strlen(text), &st->meta_pos);
	mutex_unlock(&st->meta_lock);
	kfree(text);
	return ret;
}

static void bdsnap_store_time(char *buf, size_t size)
{
	struct timespec64 ts;
	struct tm tm;

	ktime_get_real_ts64(&ts);
	time64_to_tm(ts.tv_sec, 0, &tm);
	snprintf(buf, size, "%04ld-%02d-%02dT%02d:%02d:%02d.%09ldZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, ts.tv_nsec);
}

static int bdsnap_store_start(struct bdsnap_store *st, const struct bdsnap_store_info *info)
{
	struct bdsnap_store_header hdr = {};
	char now[40];
	u8 uuid[16];
	int ret;

	generate_random_uuid(uuid);
	hdr.magic = cpu_to_le64(BDSNAP_STORE_MAGIC);
	hdr.version = cpu_to_le32(BDSNAP_STORE_VERSION);
	hdr.header_size = cpu_to_le32(sizeof(hdr));
	hdr.block_size = cpu_to_le32(BDSNAP_BLOCK_SIZE);
	hdr.device_size = cpu_to_le64(info->device_size);
	memcpy(hdr.uuid, uuid, sizeof(uuid));
	hdr.header_crc = cpu_to_le32(bdsnap_crc32(&hdr, offsetof(typeof(hdr), header_crc)));
	ret = bdsnap_store_write(st->blocks, &hdr, sizeof(hdr), &st->pos);
	if (ret)
		return ret;

	bdsnap_store_time(now, sizeof(now));
	ret = bdsnap_store_note(st,
		"format=%u\nuuid=%16phN\npath=%s\ndevname=%s\ndevice_size=%llu\n"
		"block_size=%u\ntracker=%s\nordered=%d\nstart=%s\n",
		BDSNAP_STORE_VERSION, uuid, info->path, info->devname,
		info->device_size, BDSNAP_BLOCK_SIZE, info->tracker,
		info->ordered, now);
	/* an image is known by its file: another loop device may carry it later */
	if (!ret && info->image_ino)
		ret = bdsnap_store_note(st, "image_dev=%u:%u\nimage_ino=%lu\n",
					MAJOR(info->image_dev), MINOR(info->image_dev),
					info->image_ino);
	/* a crash leaves this for the next boot's `bdsnap load` to finish */
	if (!ret && info->rollback)
		ret = bdsnap_store_note(st, "rollback=yes\nkeep=%s\n", info->keep ? "yes" : "no");
	return ret ?: bdsnap_store_note(st, "state=open\n");
}

/* Reserve the log's space for @len bytes more, taken from the store's quota. */
static int bdsnap_store_make_room(struct bdsnap_store *st, size_t len)
{
	loff_t end;
	int ret;

	if (st->pos + len <= st->reserved)
		return 0;
	end = round_up(st->pos + len, BDSNAP_STORE_RESERVE_BYTES);
	ret = bdsnap_store_quota_take(end - st->reserved);
	if (ret)
		return ret;
	ret = bdsnap_store_reserve(st->blocks, st->reserved, end);
	if (ret) {
		bdsnap_store_quota_give(end - st->reserved);
		return ret;
	}
	st->reserved = end;
	return 0;
}

/*
 * After a block that does not compress, the next ones are stored raw
 * without trying (1, 3, 7 ... up to this many): deflate is most of the
 * worker's time, and blocks of one stream tend to be alike, so an
 * incompressible stream costs one deflate in 64 blocks.
 */
#define BDSNAP_DEFLATE_BACKOFF_MAX 63

/* Return: bytes of zlib stream at @dst, or -ENOSPC to store @data raw. */
static int bdsnap_store_compress(struct bdsnap_store *st, const void *data,
				 unsigned int len, void *dst)
{
	int stored;

	if (st->deflate_skip) {
		st->deflate_skip--;
		return -ENOSPC;
	}
	/*
	 * Compressed only when that saves an eighth: a nearly incompressible
	 * block costs an inflate at restore for little space, and deflate
	 * gives up on it sooner with the smaller output room.
	 */
	stored = bdsnap_deflate(&st->z, data, len, dst, len - len / 8);
	if (stored < 0) {
		st->deflate_backoff = min(2 * st->deflate_backoff + 1,
					  BDSNAP_DEFLATE_BACKOFF_MAX);
		st->deflate_skip = st->deflate_backoff;
	} else {
		st->deflate_backoff = 0;
	}
	return stored;
}

/* Add @pre's record to the batch, which has room for it; its page goes with it. */
static void bdsnap_store_stage(struct bdsnap_store *st, struct bdsnap_preimage *pre)
{
	struct bdsnap_store_batch *b = st->batch;
	struct bdsnap_record *rec = &st->hdr[b->nr];
	void *data = kmap_local_page(pre->page);
	u32 flags = 0;
	int stored;

	rec->data_crc = cpu_to_le32(bdsnap_crc32(data, pre->len));
	stored = bdsnap_store_compress(st, data, pre->len, b->deflated);
	if (stored >= 0) {
		/* the raw bytes are checksummed: their page can carry the stream */
		memcpy(data, b->deflated, stored);
		flags = BDSNAP_REC_ZLIB;
	} else {
		stored = pre->len;
	}
	kunmap_local(data);
	rec->magic = cpu_to_le32(BDSNAP_RECORD_MAGIC);
	rec->flags = cpu_to_le32(flags);
	rec->block = cpu_to_le64(pre->block);
	rec->raw_len = cpu_to_le32(pre->len);
	rec->stored_len = cpu_to_le32(stored);
	rec->header_crc = cpu_to_le32(bdsnap_crc32(rec, offsetof(typeof(*rec), header_crc)));
	b->vec[2 * b->nr] = (struct bio_vec){ .bv_page = virt_to_page(rec),
					      .bv_len = sizeof(*rec),
					      .bv_offset = offset_in_page(rec) };
	b->vec[2 * b->nr + 1] = (struct bio_vec){ .bv_page = pre->page, .bv_len = stored };
	b->pages[b->nr++] = pre->page;
	b->bytes += sizeof(*rec) + stored;
	st->blocks_saved++;
	st->bytes_raw += pre->len;
}

/*
 * Pages whose pre-images are written (or dropped): back to the pool for the
 * tracker's next reads, freed once it is full.
 */
static void bdsnap_store_recycle(struct bdsnap_store *st, struct page **pages, unsigned int n)
{
	unsigned int i = 0;

	spin_lock(&st->lock);
	while (st->recycle && i < n && st->pool_nr < st->pool_max)
		st->pool[st->pool_nr++] = pages[i++];
	spin_unlock(&st->lock);
	while (i < n)
		__free_page(pages[i++]);
}

static void bdsnap_preimage_free(struct bdsnap_store *st, struct bdsnap_preimage *pre)
{
	bdsnap_store_recycle(st, &pre->page, 1);
	kfree(pre);
}

/*
 * Append the batch's records with one write, straight from their pages
 * (no copy into a buffer first), then give the pages back.  After an error
 * nothing more is written.
 */
static void bdsnap_store_write_batch(struct bdsnap_store *st)
{
	struct bdsnap_store_batch *b = st->batch;
	struct iov_iter iter;
	int ret;

	if (!b->nr)
		return;
	ret = READ_ONCE(st->error) ?: bdsnap_store_make_room(st, b->bytes);
	if (!ret) {
		iov_iter_bvec(&iter, ITER_SOURCE, b->vec, 2 * b->nr, b->bytes);
		ret = bdsnap_store_wrote(bdsnap_iter_write(st->blocks, &iter, &st->pos), b->bytes);
	}
	bdsnap_store_recycle(st, b->pages, b->nr);
	b->nr = 0;
	b->bytes = 0;
	if (ret) {
		bdsnap_store_fail(st, ret);
		return;
	}
	/*
	 * Start writeback of the log every few MiB: left to the flusher, a
	 * long session's dirty log pages throttle this worker in
	 * balance_dirty_pages(), and with it every writer waiting for room.
	 * Ordered stores are flushed after every drain anyway.
	 */
	if (!st->ordered && st->pos - st->writeback_pos >= BDSNAP_STORE_WRITEBACK_BYTES) {
		filemap_flush(st->blocks->f_mapping);
		st->writeback_pos = st->pos;
	}
}

/*
 * Write everything queued.  In ordered mode one flush then covers every
 * pre-image written since the last one (group commit), and only then do
 * the writers waiting for those pre-images go on.
 */
static void bdsnap_store_drain(struct bdsnap_store *st)
{
	unsigned int noio = memalloc_noio_save();
	u64 last = 0;
	bool room;

	for (;;) {
		struct bdsnap_preimage *pre;
		int error;

		spin_lock(&st->lock);
		pre = list_first_entry_or_null(&st->queue, struct bdsnap_preimage, node);
		if (pre)
			list_del(&pre->node);
		error = st->error;
		spin_unlock(&st->lock);
		if (!pre)
			break;
		last = pre->seq;
		if (error) {
			bdsnap_preimage_free(st, pre);
		} else {
			bdsnap_store_stage(st, pre);
			kfree(pre);
			if (st->batch->nr == BDSNAP_STORE_BATCH)
				bdsnap_store_write_batch(st);
		}
		spin_lock(&st->lock);
		room = --st->queued <= store_queue_max - store_queue_max / 4;
		spin_unlock(&st->lock);
		/*
		 * Writers blocked on a full queue go on once a quarter of it is
		 * free, not at every record: waking them per record costs a
		 * context switch per block while the store is the bottleneck.
		 */
		if (room)
			wake_up(&st->space_wq);
	}
	bdsnap_store_write_batch(st);
	if (st->ordered && last && !READ_ONCE(st->error)) {
		int ret = vfs_fsync(st->blocks, 1);

		if (ret)
			bdsnap_store_fail(st, ret);
	}
	if (last) {
		spin_lock(&st->lock);
		st->seq_durable = last;
		spin_unlock(&st->lock);
		wake_up_all(&st->durable_wq);
		if (st->durable)
			st->durable(st);
	}
	memalloc_noio_restore(noio);
}

static void bdsnap_store_work(struct work_struct *work)
{
	unsigned int throttle = current->flags & PF_LOCAL_THROTTLE;

	/*
	 * As loop's worker: dirty pages of the log throttle this writer against
	 * the store's device only, not against the tracked device whose
	 * writeback waits for it.
	 */
	current->flags |= PF_LOCAL_THROTTLE;
	bdsnap_store_drain(container_of(work, struct bdsnap_store, work));
	current->flags = (current->flags & ~PF_LOCAL_THROTTLE) | throttle;
}

/**
 * bdsnap_store_open() - create a session directory and start its files.
 * @st: zeroed store.
 * @dir: the session directory to create.
 * @info: what meta records about the session.
 *
 * Return: 0 or -errno (the directory is left behind on failure; it holds
 * nothing a restore would use).
 */
int bdsnap_store_open(struct bdsnap_store *st, const char *dir,
		      const struct bdsnap_store_info *info)
{
	struct super_block *sb;
	int ret;

	spin_lock_init(&st->lock);
	INIT_LIST_HEAD(&st->queue);
	init_waitqueue_head(&st->space_wq);
	init_waitqueue_head(&st->durable_wq);
	INIT_WORK(&st->work, bdsnap_store_work);
	mutex_init(&st->meta_lock);
	st->ordered = info->ordered;
	st->durable = info->durable;
	st->name = info->name;
	store_queue_max = clamp(store_queue_max, 64U, 262144U);

	ret = bdsnap_store_mkdir(dir);
	if (ret)
		return ret;
	st->batch = kvzalloc(sizeof(*st->batch), GFP_KERNEL);
	if (!st->batch)
		return -ENOMEM;
	/* a page: each header's bvec lies within one page */
	st->hdr = (struct bdsnap_record *)__get_free_page(GFP_KERNEL);
	if (!st->hdr) {
		ret = -ENOMEM;
		goto fail_batch;
	}
	st->pool_max = min(store_queue_max / 4, BDSNAP_STORE_POOL_MAX);
	st->pool = kvmalloc_array(st->pool_max, sizeof(*st->pool), GFP_KERNEL);
	if (!st->pool) {
		ret = -ENOMEM;
		goto fail_hdr;
	}
	ret = bdsnap_deflate_init(&st->z);
	if (ret)
		goto fail_pool;
	st->blocks = bdsnap_store_create(dir, "blocks");
	if (IS_ERR(st->blocks)) {
		ret = PTR_ERR(st->blocks);
		goto fail_deflate;
	}
	/* what the log's writes really reach, through overlayfs and loop devices */
	sb = d_real_inode(st->blocks->f_path.dentry)->i_sb;
	if (bdsnap_store_reaches(sb, info->tracked)) {
		pr_err("session %s: the store %s is on the tracked device: mount refused\n",
		       st->name, dir);
		ret = -EXDEV;
		goto fail_blocks;
	}
	if (st->ordered && !sb->s_bdev)
		pr_warn("session %s: ordered, but the store %s is not on a block device (%s): its pre-images will not survive a crash\n",
			st->name, dir, sb->s_type->name);
	st->meta = bdsnap_store_create(dir, "meta");
	if (IS_ERR(st->meta)) {
		ret = PTR_ERR(st->meta);
		goto fail_blocks;
	}
	/* the end of the session is recorded even when the store fills up */
	ret = bdsnap_store_reserve(st->meta, 0, BDSNAP_META_RESERVE_BYTES);
	if (ret)
		goto fail_meta;
	ret = bdsnap_store_start(st, info);
	if (ret)
		goto fail_meta;
	/* a crash from now on must leave a session that names itself "open" */
	ret = vfs_fsync(st->blocks, 0) ?: vfs_fsync(st->meta, 0) ?:
	      bdsnap_store_sync_dir(dir) ?: bdsnap_store_sync_dir(bdsnap_store_dir);
	if (ret)
		goto fail_meta;
	return 0;

fail_meta:
	fput(st->meta);
fail_blocks:
	fput(st->blocks);
fail_deflate:
	bdsnap_deflate_done(&st->z);
fail_pool:
	kvfree(st->pool);
fail_hdr:
	free_page((unsigned long)st->hdr);
fail_batch:
	kvfree(st->batch);
	return ret;
}

/**
 * bdsnap_store_page() - a page for a pre-image, to hand to bdsnap_store_add().
 * @st: an open store.
 *
 * One the store has written already if it kept one, else a new one: either
 * way its content is stale, and only the length given to bdsnap_store_add()
 * is ever read from it.  The store keeps pages for reuse only once its
 * tracker takes them from here.
 *
 * Context: process; allocates with GFP_NOIO.
 * Return: the page, or NULL when out of memory.
 */
struct page *bdsnap_store_page(struct bdsnap_store *st)
{
	struct page *page = NULL;

	spin_lock(&st->lock);
	st->recycle = true;
	if (st->pool_nr)
		page = st->pool[--st->pool_nr];
	spin_unlock(&st->lock);
	return page ?: alloc_page(GFP_NOIO);
}

/**
 * bdsnap_store_add() - queue a pre-image for the log.
 * @st: the store.
 * @block: block number.
 * @page: the data; the store owns and frees it, also on error (from
 *	bdsnap_store_page(), or any page the caller allocated).
 * @len: valid bytes at the start of @page.
 * @seq: out, if not NULL: what to pass to bdsnap_store_wait_durable().
 *
 * Context: process, may sleep while the queue is at its budget.
 * Return: 0, or the store's error (the pre-image is then dropped).
 */
int bdsnap_store_add(struct bdsnap_store *st, u64 block, struct page *page,
		     unsigned int len, u64 *seq)
{
	struct bdsnap_preimage *pre = kmalloc(sizeof(*pre), GFP_NOIO);
	int ret;

	if (!pre) {
		bdsnap_store_recycle(st, &page, 1);
		bdsnap_store_fail(st, -ENOMEM);
		return -ENOMEM;
	}
	pre->block = block;
	pre->len = len;
	pre->page = page;

	wait_event(st->space_wq, READ_ONCE(st->queued) < store_queue_max ||
				 READ_ONCE(st->error));
	spin_lock(&st->lock);
	ret = st->error;
	if (!ret) {
		pre->seq = ++st->seq_added;
		list_add_tail(&pre->node, &st->queue);
		st->queued++;
		if (seq)
			*seq = pre->seq;
	}
	spin_unlock(&st->lock);
	if (ret) {
		bdsnap_preimage_free(st, pre);
		return ret;
	}
	queue_work(bdsnap_store_wq, &st->work);
	return 0;
}

/**
 * bdsnap_store_wait_durable() - wait until a pre-image is on stable storage.
 * @st: an ordered store.
 * @seq: from bdsnap_store_add().
 *
 * Context: process, sleeps.
 * Return: 0, or the store's error.
 */
int bdsnap_store_wait_durable(struct bdsnap_store *st, u64 seq)
{
	queue_work(bdsnap_store_wq, &st->work);
	wait_event(st->durable_wq, READ_ONCE(st->seq_durable) >= seq || READ_ONCE(st->error));
	return READ_ONCE(st->error);
}

/* A 64-bit sequence number of @st, read whole (a 32-bit CPU needs the lock). */
static u64 bdsnap_store_read_seq(struct bdsnap_store *st, const u64 *seq)
{
	u64 val;

	spin_lock(&st->lock);
	val = *seq;
	spin_unlock(&st->lock);
	return val;
}

/* The sequence number of the last pre-image queued, 0 if none. */
u64 bdsnap_store_last_added(struct bdsnap_store *st)
{
	return bdsnap_store_read_seq(st, &st->seq_added);
}

/* Every pre-image up to this sequence number is durable (or dropped: error). */
u64 bdsnap_store_last_durable(struct bdsnap_store *st)
{
	return bdsnap_store_read_seq(st, &st->seq_durable);
}

unsigned int bdsnap_store_queued(struct bdsnap_store *st)
{
	return READ_ONCE(st->queued);
}

static const char *bdsnap_store_reason(int error)
{
	switch (error) {
	case -ENOSPC:
		return "ENOSPC";
	case -EIO:
		return "EIO";
	case -ENOMEM:
		return "ENOMEM";
	case -EDQUOT:
		return "EDQUOT";
	case -EROFS:
		return "EROFS";
	default:
		return "error";
	}
}

/**
 * bdsnap_store_close() - write everything queued, close the session.
 * @st: the store; no producer may add any more.
 * @error: an error the caller saw (a failed pre-image read), or 0.
 *
 * Every queued pre-image is written and the files are synced before meta
 * says "complete".
 */
void bdsnap_store_close(struct bdsnap_store *st, int error)
{
	char now[40];
	int ret;

	flush_work(&st->work);
	bdsnap_store_drain(st);
	ret = vfs_fsync(st->blocks, 0);
	if (ret)
		bdsnap_store_fail(st, ret);
	if (error)
		bdsnap_store_fail(st, error);

	bdsnap_store_time(now, sizeof(now));
	bdsnap_store_note(st, "blocks_saved=%llu\nbytes_raw=%llu\nbytes_stored=%lld\nerrors=%d\nend=%s\nstate=%s%s\n",
			  st->blocks_saved, st->bytes_raw, st->pos, st->error ? 1 : 0, now,
			  st->error ? "incomplete:" : "complete",
			  st->error ? bdsnap_store_reason(st->error) : "");
	vfs_fsync(st->meta, 0);
	/* give back the space reserved beyond the log's end */
	if (st->reserved > st->pos) {
		vfs_fallocate(st->blocks, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, st->pos,
			      st->reserved - st->pos);
		bdsnap_store_quota_give(st->reserved - st->pos);
	}
	fput(st->meta);
	fput(st->blocks);
	bdsnap_deflate_done(&st->z);
	while (st->pool_nr)
		__free_page(st->pool[--st->pool_nr]);
	kvfree(st->pool);
	free_page((unsigned long)st->hdr);
	kvfree(st->batch);
}

/**
 * bdsnap_store_note_rollback() - say in a closed session's meta how its
 * rollback ended: "rolled_back=<time>", or "rollback_error=<-errno>".
 * @dir: the session directory.
 * @error: 0, or the rollback's error.
 *
 * Return: 0 or -errno (the line is synced before 0).
 */
int bdsnap_store_note_rollback(const char *dir, int error)
{
	char *path = kasprintf(GFP_KERNEL, "%s/meta", dir);
	char line[64], now[40];
	struct file *meta;
	loff_t pos = 0;
	int ret;

	if (!path)
		return -ENOMEM;
	meta = filp_open(path, O_WRONLY | O_APPEND | O_LARGEFILE, 0);
	kfree(path);
	if (IS_ERR(meta))
		return PTR_ERR(meta);
	bdsnap_store_time(now, sizeof(now));
	if (error)
		snprintf(line, sizeof(line), "rollback_error=%d\n", error);
	else
		snprintf(line, sizeof(line), "rolled_back=%s\n", now);
	ret = bdsnap_store_write(meta, line, strlen(line), &pos);
	if (!ret)
		ret = vfs_fsync(meta, 0);
	fput(meta);
	return ret;
}

/**
 * bdsnap_store_remove() - delete a closed session directory of the store.
 * @name: the session's directory name under bdsnap_store_dir.
 *
 * Return: 0 or -errno; on an error some of its files may be gone, and a
 * reader then refuses what is left (meta or blocks missing).
 */
int bdsnap_store_remove(const char *name)
{
	static const char *const files[] = { "blocks", "meta" };
	char *dir = kasprintf(GFP_KERNEL, "%s/%s", bdsnap_store_dir, name);
	struct path path;
	int i, ret;

	if (!dir)
		return -ENOMEM;
	ret = kern_path(dir, LOOKUP_DIRECTORY, &path);
	kfree(dir);
	if (ret)
		return ret;
	for (i = 0; i < ARRAY_SIZE(files) && !ret; i++)
		ret = bdsnap_kern_remove(&path, files[i], false);
	path_put(&path);
	if (ret)
		return ret;
	ret = kern_path(bdsnap_store_dir, LOOKUP_DIRECTORY, &path);
	if (ret)
		return ret;
	ret = bdsnap_kern_remove(&path, name, true);
	path_put(&path);
	return ret ?: bdsnap_store_sync_dir(bdsnap_store_dir);
}

int bdsnap_store_init(void)
{
	bdsnap_store_wq = alloc_workqueue("bdsnap_store", WQ_MEM_RECLAIM | WQ_UNBOUND, 0);
	return bdsnap_store_wq ? 0 : -ENOMEM;
}

void bdsnap_store_done(void)
{
	destroy_workqueue(bdsnap_store_wq);
}
