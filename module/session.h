/* SPDX-License-Identifier: GPL-2.0 */
/* One mount cycle of an activated device, and the core's save operation. */
#ifndef BDSNAP_SESSION_H
#define BDSNAP_SESSION_H

#include <linux/types.h>
#include <linux/list.h>
#include <linux/spinlock.h>
#include <linux/bio.h>
#include <linux/workqueue.h>
#include <linux/wait.h>
#include <linux/llist.h>
#include <uapi/bdsnap.h>
#include "compat.h"
#include "blockmap.h"
#include "store.h"
#include "tracker.h"

/* session.c: one mount cycle of an activated device */
/**
 * struct bdsnap_session - pre-images of one mount cycle.
 * @node: in the RCU list of open sessions, searched by the bio hook.
 * @device: the activated device this session belongs to.
 * @claims: mounts in progress and super blocks writing through the
 *	session (registry lock); the session ends when none is left.
 * @sbs: the super blocks' claims (struct bdsnap_claim).
 * @ops: the tracker.
 * @bdev_ref: the mounted device, held open for reading pre-images.
 * @nr_bytes: device size at mount.
 * @ordered: BDSNAP_ACT_ORDERED.
 * @rollback: BDSNAP_ACT_ROLLBACK: written back when the last claim is gone.
 * @keep: BDSNAP_ACT_KEEP: the session directory outlives its rollback.
 * @rollback_task: the task writing the pre-images back, once the session
 *	ended; the bio tracker fails every other write to the device.
 * @devname: kernel name, e.g. "loop3".
 * @dirname: session directory name under the store.
 * @map: blocks whose pre-image is taken.
 * @store: where pre-images go.
 * @held_lock: protects @held.
 * @held: write bios waiting for their pre-images.
 * @nr_held: bios on @held or being processed by @read_work.
 * @drain_wq: woken when @nr_held drops to zero.
 * @read_work: reads pre-images for @held and releases the bios.
 * @read_errors: pre-image reads that failed.
 * @failed: pre-images can no longer be taken; writes pass untracked and
 *	the session ends incomplete.
 * @batch: the bio tracker's scratch space for @read_work.
 * @vfs_lock: the vfs tracker's lock around copying a block once.
 * @vfs_copies: pre-images copied by vfs probe handlers.
 * @vfs_work: moves @vfs_copies to the store.
 * @vfs_missed: probe misses counted when the session started.
 */
struct bdsnap_session {
	struct list_head node;
	struct bdsnap_device *device;
	unsigned int claims;
	struct list_head sbs;
	const struct bdsnap_tracker_ops *ops;
	struct bdsnap_bdev_ref bdev_ref;
	u64 nr_bytes;
	bool ordered;
	bool rollback;
	bool keep;
	struct task_struct *rollback_task;
	char devname[BDSNAP_NAME_MAX];
	char dirname[BDSNAP_SESSION_MAX];
	struct bdsnap_blockmap map;
	struct bdsnap_store store;
	spinlock_t held_lock;
	struct bio_list held;
	atomic_t nr_held;
	wait_queue_head_t drain_wq;
	struct work_struct read_work;
	atomic64_t read_errors;
	bool failed;
	struct bdsnap_bio_batch *batch;
	spinlock_t vfs_lock;
	struct llist_head vfs_copies;
	struct work_struct vfs_work;
	unsigned long vfs_missed;
};

struct bdsnap_claim;
struct super_block;
struct bdsnap_claim *bdsnap_session_claim(dev_t dev, const char *fstype);
void bdsnap_session_release(struct bdsnap_claim *claim);
void bdsnap_session_mounted(struct bdsnap_claim *claim, const struct super_block *sb);
void bdsnap_session_sb_gone(const struct super_block *sb);
struct bdsnap_session *bdsnap_session_find_rcu(struct block_device *bdev,
					       const struct bdsnap_tracker_ops *ops);
unsigned int bdsnap_session_block_len(struct bdsnap_session *s, u64 block);
void bdsnap_session_fail(struct bdsnap_session *s, const char *why);
int bdsnap_session_sync_store(const char *name);

#endif /* BDSNAP_SESSION_H */
