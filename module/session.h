/* SPDX-License-Identifier: GPL-2.0 */
/* One mount cycle of an activated device, and the core's save operation. */
#ifndef BDSNAP_SESSION_H
#define BDSNAP_SESSION_H

#include <linux/types.h>
#include <linux/list.h>
#include <linux/spinlock.h>
#include <uapi/bdsnap.h>
#include "compat.h"
#include "blockmap.h"
#include "store.h"
#include "tracker.h"

/* session.c: one mount cycle of an activated device */
/**
 * struct bdsnap_session - pre-images of one mount cycle.
 * @node: in the RCU list of open sessions, searched by the hooks.
 * @device: the activated device this session belongs to.
 * @claims: mounts in progress and super blocks writing through the
 *	session (registry lock); the session ends when none is left.
 * @sbs: the super blocks' claims (struct bdsnap_claim).
 * @ops: the tracker.
 * @tracker: the tracker's own state, from @ops->start.
 * @bdev_ref: the mounted device, held open for reading pre-images.
 * @nr_bytes: device size at mount.
 * @ordered: BDSNAP_ACT_ORDERED.
 * @rollback: BDSNAP_ACT_ROLLBACK: written back when the last claim is gone.
 * @keep: BDSNAP_ACT_KEEP: the session directory outlives its rollback.
 * @rollback_task: the task writing the pre-images back, once the session
 *	ended; the bio tracker fails every other write to the device.
 * @devname: kernel name, e.g. "loop3".
 * @dirname: session directory name under the store.
 * @map: blocks whose pre-image counts as saved: a write to them may pass.
 * @store: where pre-images go.
 * @save_lock: protects @saves.
 * @saves: ordered mode: saves waiting for the store's flush, in order.
 * @errors: pre-images the session failed to take.
 * @failed: pre-images can no longer be taken; the session ends
 *	incomplete (see bdsnap_session_fail()).
 */
struct bdsnap_session {
	struct list_head node;
	struct bdsnap_device *device;
	unsigned int claims;
	struct list_head sbs;
	const struct bdsnap_tracker_ops *ops;
	void *tracker;
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
	spinlock_t save_lock;
	struct list_head saves;
	atomic64_t errors;
	bool failed;
};

/**
 * struct bdsnap_save - one save operation: pre-images a tracker hands to
 * the core (save.c).
 * @node: in bdsnap_session.saves while it waits for the store's flush.
 * @blocks: the blocks, each once.
 * @pages: their pre-images, bdsnap_session_block_len() bytes each; the
 *	store owns them from bdsnap_session_save() on.
 * @n: number of blocks.
 * @seq: the store's sequence number of the last of them.
 * @saved: called once, when every block counts as saved (0) or the session
 *	failed instead (-errno).  Context: process, from the caller of
 *	bdsnap_session_save() or from the store's worker; must not wait for
 *	another save.
 */
struct bdsnap_save {
	struct list_head node;
	u64 *blocks;
	struct page **pages;
	unsigned int n;
	u64 seq;
	void (*saved)(struct bdsnap_save *save, int error);
};

struct bdsnap_claim;
struct super_block;
struct bdsnap_claim *bdsnap_session_claim(dev_t dev, const char *fstype);
void bdsnap_session_release(struct bdsnap_claim *claim);
void bdsnap_session_mounted(struct bdsnap_claim *claim, const struct super_block *sb);
void bdsnap_session_sb_gone(const struct super_block *sb);
struct bdsnap_session *bdsnap_session_find_rcu(struct block_device *bdev,
					       const struct bdsnap_tracker_ops *ops);
int bdsnap_session_sync_store(const char *name);

/* save.c: the core's one save operation */
void bdsnap_session_save(struct bdsnap_session *s, struct bdsnap_save *save);
void bdsnap_session_durable(struct bdsnap_store *st);
unsigned int bdsnap_session_block_len(struct bdsnap_session *s, u64 block);
void bdsnap_session_fail(struct bdsnap_session *s, const char *why);

#endif /* BDSNAP_SESSION_H */
