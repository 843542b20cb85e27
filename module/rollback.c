// SPDX-License-Identifier: GPL-2.0
/*
 * Rollback mode (BDSNAP_ACT_ROLLBACK): when a session ends, its pre-images
 * are written back, so the device returns to what it held at the mount.
 *
 * It runs here, in the unmount that ends the session, rather than in a
 * user-space service woken by an event: when umount returns the device is
 * back, there is no service that may be missing, late or killed, and no
 * moment where the device is free but not yet restored.  While it runs the
 * session stays published: mounts of the device are refused (session.c) and
 * the bio tracker fails every write but ours (tracker_bio.c).  A crash
 * leaves an ordered session whose pre-images are durable and whose meta
 * lacks "rolled_back": the next boot's `bdsnap load` finishes it with the
 * library's restore before it activates the device.  Writing a pre-image
 * twice is harmless, so a rollback cut short by a crash is simply redone.
 *
 * Two passes over the log: the first checks every record (header CRC,
 * inflate, data CRC) and writes nothing, the second writes.  A damaged log
 * thus leaves the device as the session left it, never half rolled back.
 * The log is the one this session has just closed, so it has no torn tail:
 * any record that does not check is damage.
 */
#define pr_fmt(fmt) KBUILD_MODNAME "-rollback: " fmt

#include <linux/module.h>
#include <linux/blkdev.h>
#include <linux/bio.h>
#include <linux/fs.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <linux/wait_bit.h>
#include <linux/zlib.h>
#include "bdsnap.h"
#include "session.h"
#include "registry.h"

/* zlib's compressBound(4096) is 4110: no valid payload is longer */
#define BDSNAP_PAYLOAD_MAX	(BDSNAP_BLOCK_SIZE + 64)
/* writes in flight at once */
#define BDSNAP_ROLLBACK_INFLIGHT	256

/**
 * struct bdsnap_rollback - the two passes over a session's log.
 * @s: the session.
 * @log: its "blocks" file.
 * @pos: next byte of @log to read.
 * @end: the log's end, as the session closed it.
 * @z: inflate state.
 * @payload: one record's stored bytes.
 * @written: blocks written back (the first record of a block wins).
 * @pending: writes in flight, plus one for the submitter.
 * @done: completed when @pending drops to zero.
 * @error: the first write error.
 * @blocks: blocks written back so far (second pass).
 */
struct bdsnap_rollback {
	struct bdsnap_session *s;
	struct file *log;
	loff_t pos;
	loff_t end;
	struct z_stream_s z;
	u8 *payload;
	struct bdsnap_blockmap written;
	atomic_t pending;
	struct completion done;
	int error;
	u64 blocks;
};

static int bdsnap_rollback_read(struct bdsnap_rollback *r, void *buf, size_t len)
{
	ssize_t n;

	if (len > r->end - r->pos)
		return -EBADMSG;
	while (len) {
		n = kernel_read(r->log, buf, len, &r->pos);
		if (n <= 0)
			return n ? n : -EIO;
		buf += n;
		len -= n;
	}
	return 0;
}

static int bdsnap_rollback_header(struct bdsnap_rollback *r)
{
	struct bdsnap_store_header h;
	int ret = bdsnap_rollback_read(r, &h, sizeof(h));

	if (ret)
		return ret;
	if (le64_to_cpu(h.magic) != BDSNAP_STORE_MAGIC ||
	    le32_to_cpu(h.version) != BDSNAP_STORE_VERSION ||
	    le32_to_cpu(h.header_crc) != bdsnap_crc32(&h, offsetof(typeof(h), header_crc)) ||
	    le32_to_cpu(h.header_size) != sizeof(h) ||
	    le32_to_cpu(h.block_size) != BDSNAP_BLOCK_SIZE ||
	    le64_to_cpu(h.device_size) != r->s->nr_bytes)
		return -EBADMSG;
	return 0;
}

/* The next record's pre-image into @out; its block in @block. */
static int bdsnap_rollback_record(struct bdsnap_rollback *r, u8 *out, u64 *block)
{
	struct bdsnap_record rec;
	u32 flags, raw, stored;
	int ret;

	ret = bdsnap_rollback_read(r, &rec, sizeof(rec));
	if (ret)
		return ret;
	*block = le64_to_cpu(rec.block);
	flags = le32_to_cpu(rec.flags);
	raw = le32_to_cpu(rec.raw_len);
	stored = le32_to_cpu(rec.stored_len);
	if (le32_to_cpu(rec.magic) != BDSNAP_RECORD_MAGIC ||
	    le32_to_cpu(rec.header_crc) != bdsnap_crc32(&rec, offsetof(typeof(rec), header_crc)) ||
	    (flags & ~BDSNAP_REC_FLAGS_ALL) || !raw ||
	    raw != bdsnap_session_block_len(r->s, *block) ||
	    !stored || stored > BDSNAP_PAYLOAD_MAX ||
	    (!(flags & BDSNAP_REC_ZLIB) && stored != raw))
		return -EBADMSG;
	ret = bdsnap_rollback_read(r, r->payload, stored);
	if (ret)
		return ret;
	if (flags & BDSNAP_REC_ZLIB) {
		if (zlib_inflateReset(&r->z) != Z_OK)
			return -EBADMSG;
		r->z.next_in = r->payload;
		r->z.avail_in = stored;
		r->z.next_out = out;
		r->z.avail_out = raw;
		/* exactly raw bytes, from all of the payload */
		if (zlib_inflate(&r->z, Z_FINISH) != Z_STREAM_END || r->z.avail_out ||
		    r->z.avail_in)
			return -EBADMSG;
	} else {
		memcpy(out, r->payload, raw);
	}
	if (le32_to_cpu(rec.data_crc) != bdsnap_crc32(out, raw))
		return -EBADMSG;
	return 0;
}

static void bdsnap_rollback_write_end(struct bio *bio)
{
	struct bdsnap_rollback *r = bio->bi_private;

	if (bio->bi_status)
		cmpxchg(&r->error, 0, blk_status_to_errno(bio->bi_status));
	__free_page(bio_first_page_all(bio));
	bio_put(bio);
	if (atomic_dec_and_test(&r->pending))
		complete(&r->done);
	else
		wake_up_var(&r->pending);
}

static void bdsnap_rollback_write(struct bdsnap_rollback *r, struct page *page, u64 block)
{
	unsigned int len = bdsnap_session_block_len(r->s, block);
	struct bio *bio;

	bio = bio_alloc(r->s->bdev_ref.bdev, 1, REQ_OP_WRITE, GFP_KERNEL);
	bio->bi_iter.bi_sector = block * BDSNAP_SECTORS_PER_BLOCK;
	__bio_add_page(bio, page, len, 0);
	bio->bi_private = r;
	bio->bi_end_io = bdsnap_rollback_write_end;
	atomic_inc(&r->pending);
	submit_bio(bio);
	wait_var_event(&r->pending, atomic_read(&r->pending) <= BDSNAP_ROLLBACK_INFLIGHT);
}

/* One pass from the header to the end: check every record, or write it back. */
static int bdsnap_rollback_pass(struct bdsnap_rollback *r, bool write)
{
	struct page *page = NULL;
	u64 block;
	int ret;

	r->pos = 0;
	r->blocks = 0;
	ret = bdsnap_rollback_header(r);
	while (!ret && r->pos < r->end) {
		if (!page)
			page = alloc_page(GFP_KERNEL);
		if (!page)
			return -ENOMEM;
		ret = bdsnap_rollback_record(r, page_address(page), &block);
		if (ret || !write)
			continue;
		if (bdsnap_blockmap_all_set(&r->written, block, block))
			continue;
		ret = bdsnap_blockmap_set(&r->written, block, GFP_KERNEL);
		if (ret)
			break;
		bdsnap_rollback_write(r, page, block);
		page = NULL;
		r->blocks++;
	}
	if (page)
		__free_page(page);
	return ret;
}

static int bdsnap_rollback_run(struct bdsnap_rollback *r)
{
	int ret = bdsnap_rollback_pass(r, false);

	if (ret) {
		pr_err("session %s: its log is damaged at byte %lld (error %d): nothing written back\n",
		       r->s->dirname, r->pos, ret);
		return ret;
	}
	pr_info("session %s: log checked, writing it back\n", r->s->dirname);
	atomic_set(&r->pending, 1);
	init_completion(&r->done);
	ret = bdsnap_rollback_pass(r, true);
	if (!atomic_dec_and_test(&r->pending))
		wait_for_completion(&r->done);
	ret = ret ?: r->error;
	if (!ret)
		ret = blkdev_issue_flush(r->s->bdev_ref.bdev);
	/*
	 * The writes went around the device's page cache: an opener other than
	 * the file system (it is gone) may have cached what we overwrote.
	 */
	invalidate_bdev(r->s->bdev_ref.bdev);
	if (ret)
		pr_err("session %s: writing back failed after %llu blocks (error %d): the device is partly rolled back\n",
		       r->s->dirname, r->blocks, ret);
	return ret;
}

/**
 * bdsnap_rollback() - write an ended session's pre-images back.
 * @s: the session; its store is closed, and only this task writes to its
 *	device (@s->rollback_task).
 * @dir: its session directory.
 *
 * Context: process, sleeps.
 * Return: 0 when the device holds its content from the session's start
 * again and that is flushed; -EBADMSG a damaged log (nothing written);
 * another -errno (the device may be partly rolled back).
 */
int bdsnap_rollback(struct bdsnap_session *s, const char *dir)
{
	struct bdsnap_rollback r = { .s = s, .end = s->store.pos };
	char *path;
	int ret;

	if (bdev_read_only(s->bdev_ref.bdev))
		return -EROFS;
	path = kasprintf(GFP_KERNEL, "%s/blocks", dir);
	if (!path)
		return -ENOMEM;
	r.log = filp_open(path, O_RDONLY | O_LARGEFILE, 0);
	kfree(path);
	if (IS_ERR(r.log))
		return PTR_ERR(r.log);
	bdsnap_blockmap_init(&r.written);
	r.payload = kmalloc(BDSNAP_PAYLOAD_MAX, GFP_KERNEL);
	r.z.workspace = vmalloc(zlib_inflate_workspacesize());
	ret = -ENOMEM;
	if (!r.payload || !r.z.workspace)
		goto out;
	ret = zlib_inflateInit2(&r.z, MAX_WBITS) == Z_OK ? 0 : -EINVAL;
	if (ret)
		goto out;
	ret = bdsnap_rollback_run(&r);
	zlib_inflateEnd(&r.z);
	if (!ret)
		pr_info("session %s rolled back: %llu blocks written back\n", s->dirname, r.blocks);
out:
	vfree(r.z.workspace);
	kfree(r.payload);
	bdsnap_blockmap_destroy(&r.written);
	fput(r.log);
	return ret;
}
