// SPDX-License-Identifier: GPL-2.0
/*
 * V1 tracker: the VFS and the buffer cache, with kretprobes only.
 *
 * A write-like call (vfs_write, kernel_write, a truncate through
 * notify_change, ...) on a file of a V1-tracked file system opens a window
 * for the calling task.  Every __bread_gfp() of that device returning inside
 * the window copies the buffer before the caller can change it: the return
 * handler runs before __bread_gfp's caller sees the buffer.  That catches the
 * data blocks and the metadata (inode size on append) a write touches.
 *
 * It is exact only for a file system that reads every block it modifies
 * with sb_bread() inside such a call and never modifies a block otherwise:
 * singlefilefs.  Other file systems are refused at mount (session.c).
 *
 * Probe handlers run atomically: they copy into GFP_ATOMIC pages and hand
 * the copies to a work item that feeds the store.  A copy that cannot be
 * made, or a probe the kernel missed (maxactive exhausted), marks the
 * session incomplete rather than leaving a silent hole.
 */
#define pr_fmt(fmt) KBUILD_MODNAME "-vfs: " fmt

#include <linux/module.h>
#include <linux/kprobes.h>
#include <linux/ptrace.h>
#include <linux/buffer_head.h>
#include <linux/llist.h>
#include <linux/slab.h>
#include <linux/fs.h>
#include <linux/sched.h>
#include <linux/io_uring_types.h>
#include "bdsnap.h"
#include "session.h"

#define BDSNAP_WINDOWS_MAX	128
#define BDSNAP_KRETPROBE_MAXACTIVE	256

/**
 * struct bdsnap_window - a task inside a write-like call on a tracked file.
 * @task: the task; NULL when the slot is free.
 * @session: the session of the file's device.
 * @depth: nesting (a write that truncates, ...).
 */
struct bdsnap_window {
	struct task_struct *task;
	struct bdsnap_session *session;
	unsigned int depth;
};

/**
 * struct bdsnap_vfs_tracker - V1's state in a session.
 * @session: the session.
 * @lock: held around copying a block once.
 * @copies: pre-images copied by probe handlers, for @work.
 * @work: hands @copies to the core.
 * @missed: probe misses counted when the session started.
 */
struct bdsnap_vfs_tracker {
	struct bdsnap_session *session;
	spinlock_t lock;
	struct llist_head copies;
	struct work_struct work;
	unsigned long missed;
};

/**
 * struct bdsnap_vfs_copy - a pre-image taken in a probe handler.
 * @node: in bdsnap_vfs_tracker.copies.
 * @block: block number.
 * @page: the data.
 */
struct bdsnap_vfs_copy {
	struct llist_node node;
	u64 block;
	struct page *page;
};

static DEFINE_SPINLOCK(bdsnap_windows_lock);
static struct bdsnap_window bdsnap_windows[BDSNAP_WINDOWS_MAX];

static struct bdsnap_window *bdsnap_window_find(struct task_struct *task)
{
	int i;

	for (i = 0; i < BDSNAP_WINDOWS_MAX; i++)
		if (bdsnap_windows[i].task == task)
			return &bdsnap_windows[i];
	return NULL;
}

static bool bdsnap_window_open(struct bdsnap_session *s)
{
	struct bdsnap_window *w;
	unsigned long flags;

	spin_lock_irqsave(&bdsnap_windows_lock, flags);
	w = bdsnap_window_find(current);
	if (!w) {
		w = bdsnap_window_find(NULL);
		if (w) {
			w->task = current;
			w->session = s;
		}
	}
	if (w)
		w->depth++;
	spin_unlock_irqrestore(&bdsnap_windows_lock, flags);
	return w;
}

static void bdsnap_window_close(void)
{
	struct bdsnap_window *w;
	unsigned long flags;

	spin_lock_irqsave(&bdsnap_windows_lock, flags);
	w = bdsnap_window_find(current);
	if (w && !--w->depth)
		w->task = NULL;
	spin_unlock_irqrestore(&bdsnap_windows_lock, flags);
}

static bool bdsnap_window_covers(struct bdsnap_session *s)
{
	struct bdsnap_window *w;
	unsigned long flags;
	bool covers;

	spin_lock_irqsave(&bdsnap_windows_lock, flags);
	w = bdsnap_window_find(current);
	covers = w && w->session == s;
	spin_unlock_irqrestore(&bdsnap_windows_lock, flags);
	return covers;
}

static struct bdsnap_session *bdsnap_vfs_session(struct block_device *bdev)
{
	return bdev ? bdsnap_session_find_rcu(bdev, &bdsnap_tracker_vfs_ops) : NULL;
}

/* Entry of a write-like call; @file_arg is the index of its file or dentry argument. */
static int bdsnap_window_entry(struct pt_regs *regs, struct super_block *sb)
{
	struct bdsnap_session *s;
	int skip = 1;

	if (!sb)
		return 1;
	rcu_read_lock();
	s = bdsnap_vfs_session(sb->s_bdev);
	if (s) {
		if (bdsnap_window_open(s))
			skip = 0;
		else
			bdsnap_session_fail(s, "too many concurrent writers to track");
	}
	rcu_read_unlock();
	return skip;	/* non-zero: no return handler for this call */
}

static int bdsnap_file_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct file *file = (struct file *)regs_get_kernel_argument(regs, 0);

	return bdsnap_window_entry(regs, file ? file_inode(file)->i_sb : NULL);
}

/* io_uring: io_write(struct io_kiocb *req, ...), req->file. */
static int bdsnap_io_uring_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct io_kiocb *req = (struct io_kiocb *)regs_get_kernel_argument(regs, 0);
	struct file *file = req ? req->file : NULL;

	return bdsnap_window_entry(regs, file ? file_inode(file)->i_sb : NULL);
}

/* Linux AIO: aio_write(struct kiocb *req, ...), req->ki_filp. */
static int bdsnap_kiocb_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct kiocb *req = (struct kiocb *)regs_get_kernel_argument(regs, 0);
	struct file *file = req ? req->ki_filp : NULL;

	return bdsnap_window_entry(regs, file ? file_inode(file)->i_sb : NULL);
}

static int bdsnap_dentry_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct dentry *dentry = (struct dentry *)regs_get_kernel_argument(regs, 1);

	return bdsnap_window_entry(regs, dentry ? dentry->d_sb : NULL);
}

static int bdsnap_window_exit(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	bdsnap_window_close();
	return 0;
}

/*
 * Copy a buffer the window's task is about to modify, once per block.  The
 * copy counts as saved at once (V1 is never ordered): the block is marked
 * here, in atomic context, so no second copy is taken; the core marks it
 * again when the work item saves the copy.
 */
static void bdsnap_vfs_copy(struct bdsnap_session *s, struct buffer_head *bh)
{
	struct bdsnap_vfs_tracker *t = s->tracker;
	struct bdsnap_vfs_copy *copy;
	unsigned long flags;
	u64 block;

	if (bh->b_size != BDSNAP_BLOCK_SIZE) {
		bdsnap_session_fail(s, "buffer size is not the tracked block size");
		return;
	}
	block = bh->b_blocknr;
	/* the lock makes a second reader of the block wait until the copy exists */
	spin_lock_irqsave(&t->lock, flags);
	if (bdsnap_blockmap_all_set(&s->map, block, block))
		goto out;
	copy = kmalloc(sizeof(*copy), GFP_ATOMIC);
	if (copy)
		copy->page = alloc_page(GFP_ATOMIC);
	if (!copy || !copy->page || bdsnap_blockmap_set(&s->map, block, GFP_ATOMIC)) {
		if (copy && copy->page)
			__free_page(copy->page);
		kfree(copy);
		bdsnap_session_fail(s, "out of memory for a pre-image");
		goto out;
	}
	memcpy(page_address(copy->page), bh->b_data, BDSNAP_BLOCK_SIZE);
	copy->block = block;
	llist_add(&copy->node, &t->copies);
	queue_work(system_unbound_wq, &t->work);
out:
	spin_unlock_irqrestore(&t->lock, flags);
}

static int bdsnap_bread_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct block_device *bdev = (struct block_device *)regs_get_kernel_argument(regs, 0);
	int skip = 1;

	rcu_read_lock();
	if (bdsnap_vfs_session(bdev))
		skip = 0;
	rcu_read_unlock();
	return skip;
}

static int bdsnap_bread_return(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct buffer_head *bh = (struct buffer_head *)regs_return_value(regs);
	struct bdsnap_session *s;

	if (!bh)
		return 0;
	rcu_read_lock();
	s = bdsnap_vfs_session(bh->b_bdev);
	if (s && !READ_ONCE(s->failed) && bdsnap_window_covers(s))
		bdsnap_vfs_copy(s, bh);
	rcu_read_unlock();
	return 0;
}

/*
 * Calls that modify a file; the first two are required, the rest widen
 * coverage (__kernel_write: kernel_write(), process accounting; io_write:
 * io_uring; aio_write: Linux AIO).  A write through a call missing here (or
 * on a kernel without it) dirties a buffer with no pre-image taken, which
 * bdsnap_dirty_probe catches: the session ends incomplete, never wrong.
 */
static struct kretprobe bdsnap_vfs_probes[] = {
	{ .kp.symbol_name = "__bread_gfp",
	  .entry_handler = bdsnap_bread_entry, .handler = bdsnap_bread_return },
	{ .kp.symbol_name = "vfs_write",
	  .entry_handler = bdsnap_file_entry, .handler = bdsnap_window_exit },
	{ .kp.symbol_name = "__kernel_write",
	  .entry_handler = bdsnap_file_entry, .handler = bdsnap_window_exit },
	{ .kp.symbol_name = "io_write",
	  .entry_handler = bdsnap_io_uring_entry, .handler = bdsnap_window_exit },
	{ .kp.symbol_name = "aio_write",
	  .entry_handler = bdsnap_kiocb_entry, .handler = bdsnap_window_exit },
	{ .kp.symbol_name = "vfs_iter_write",
	  .entry_handler = bdsnap_file_entry, .handler = bdsnap_window_exit },
	{ .kp.symbol_name = "do_iter_write",
	  .entry_handler = bdsnap_file_entry, .handler = bdsnap_window_exit },
	{ .kp.symbol_name = "notify_change",
	  .entry_handler = bdsnap_dentry_entry, .handler = bdsnap_window_exit },
};

/*
 * Every buffer a tracked file system dirties must have its pre-image: one
 * dirtied without is a write V1 did not see (a path without a window), and
 * the session can no longer restore exactly.
 */
static int bdsnap_dirty_pre(struct kprobe *kp, struct pt_regs *regs)
{
	struct buffer_head *bh = (struct buffer_head *)regs_get_kernel_argument(regs, 0);
	struct bdsnap_session *s;

	rcu_read_lock();
	s = bh ? bdsnap_vfs_session(bh->b_bdev) : NULL;
	if (s && !READ_ONCE(s->failed) &&
	    (bh->b_size != BDSNAP_BLOCK_SIZE ||
	     !bdsnap_blockmap_all_set(&s->map, bh->b_blocknr, bh->b_blocknr)))
		bdsnap_session_fail(s, "a block was changed outside every tracked write call");
	rcu_read_unlock();
	return 0;
}

static struct kprobe bdsnap_dirty_probe = {
	.symbol_name = "mark_buffer_dirty",
	.pre_handler = bdsnap_dirty_pre,
};

#define BDSNAP_VFS_REQUIRED	2
static bool bdsnap_vfs_registered[ARRAY_SIZE(bdsnap_vfs_probes)];

static unsigned long bdsnap_vfs_missed(void)
{
	unsigned long missed = 0;
	int i;

	for (i = 0; i < ARRAY_SIZE(bdsnap_vfs_probes); i++)
		missed += bdsnap_vfs_probes[i].nmissed + bdsnap_vfs_probes[i].kp.nmissed;
	return missed + bdsnap_dirty_probe.nmissed;
}

/* V1's copies are saved at once: nothing to wait for. */
static void bdsnap_vfs_saved(struct bdsnap_save *save, int error)
{
}

static void bdsnap_vfs_work(struct work_struct *work)
{
	struct bdsnap_vfs_tracker *t = container_of(work, struct bdsnap_vfs_tracker, work);
	struct llist_node *list = llist_reverse_order(llist_del_all(&t->copies));
	struct bdsnap_vfs_copy *copy, *next;
	struct bdsnap_save save = { .n = 1, .saved = bdsnap_vfs_saved };

	llist_for_each_entry_safe(copy, next, list, node) {
		save.blocks = &copy->block;
		save.pages = &copy->page;
		bdsnap_session_save(t->session, &save);
		kfree(copy);
	}
}

static int bdsnap_tracker_vfs_start(struct bdsnap_session *s)
{
	struct bdsnap_vfs_tracker *t = kzalloc(sizeof(*t), GFP_KERNEL);

	if (!t)
		return -ENOMEM;
	t->session = s;
	spin_lock_init(&t->lock);
	init_llist_head(&t->copies);
	INIT_WORK(&t->work, bdsnap_vfs_work);
	t->missed = bdsnap_vfs_missed();
	s->tracker = t;
	return 0;
}

/* Context: the session is no longer visible to the probes. */
static void bdsnap_tracker_vfs_stop(struct bdsnap_session *s)
{
	struct bdsnap_vfs_tracker *t = s->tracker;

	if (bdsnap_vfs_missed() != t->missed)
		bdsnap_session_fail(s, "the kernel missed tracking probes");
	flush_work(&t->work);
	bdsnap_vfs_work(&t->work);
}

static void bdsnap_tracker_vfs_destroy(struct bdsnap_session *s)
{
	kfree(s->tracker);
	s->tracker = NULL;
}

/*
 * V1 sees only what goes through vfs_write and buffer heads: it is exact
 * only on a file system that modifies blocks nowhere else, and its block
 * numbers are those of the device mounted, so it tracks the activated device
 * itself, not a partition of it.
 */
static int bdsnap_tracker_vfs_accepts(const char *path, const char *fstype, bool partition)
{
	if (!fstype || strcmp(fstype, "singlefilefs")) {
		pr_err("%s: the vfs tracker cannot track %s exactly: mount refused (activate with the bio tracker)\n",
		       path, fstype);
		return -EOPNOTSUPP;
	}
	if (partition) {
		pr_err("%s: the vfs tracker cannot track a partition of it: mount refused (activate the partition, or use the bio tracker)\n",
		       path);
		return -EOPNOTSUPP;
	}
	return 0;
}

const struct bdsnap_tracker_ops bdsnap_tracker_vfs_ops = {
	.name = "vfs",
	.accepts = bdsnap_tracker_vfs_accepts,
	.start = bdsnap_tracker_vfs_start,
	.stop = bdsnap_tracker_vfs_stop,
	.destroy = bdsnap_tracker_vfs_destroy,
};

void bdsnap_tracker_vfs_done(void)
{
	int i;

	if (bdsnap_dirty_probe.addr)
		unregister_kprobe(&bdsnap_dirty_probe);
	bdsnap_dirty_probe.addr = NULL;

	for (i = 0; i < ARRAY_SIZE(bdsnap_vfs_probes); i++) {
		if (bdsnap_vfs_registered[i])
			unregister_kretprobe(&bdsnap_vfs_probes[i]);
		bdsnap_vfs_registered[i] = false;
	}
}

int bdsnap_tracker_vfs_init(void)
{
	int i, ret;

	ret = register_kprobe(&bdsnap_dirty_probe);
	if (ret) {
		pr_err("cannot probe %s: error %d\n", bdsnap_dirty_probe.symbol_name, ret);
		bdsnap_dirty_probe.addr = NULL;
		return ret;
	}

	for (i = 0; i < ARRAY_SIZE(bdsnap_vfs_probes); i++) {
		bdsnap_vfs_probes[i].maxactive = BDSNAP_KRETPROBE_MAXACTIVE;
		ret = register_kretprobe(&bdsnap_vfs_probes[i]);
		bdsnap_vfs_registered[i] = !ret;
		if (!ret)
			continue;
		if (i < BDSNAP_VFS_REQUIRED) {
			pr_err("cannot probe %s: error %d\n",
			       bdsnap_vfs_probes[i].kp.symbol_name, ret);
			goto fail;
		}
		pr_info("%s not probed (error %d): writes through it are not tracked by V1\n",
			bdsnap_vfs_probes[i].kp.symbol_name, ret);
	}
	return 0;
fail:
	bdsnap_tracker_vfs_done();
	return ret;
}
