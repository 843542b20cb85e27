/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Internal interfaces between the parts of bdsnap.ko.  Each .c file owns one
 * object; this header only declares what crosses file boundaries.
 */
#ifndef BDSNAP_H
#define BDSNAP_H

#include <linux/types.h>
#include <linux/list.h>
#include <linux/spinlock.h>
#include <linux/bio.h>
#include <linux/workqueue.h>
#include <linux/wait.h>
#include <linux/xarray.h>
#include <linux/ftrace.h>
#include <linux/llist.h>
#include <linux/mutex.h>
#include <linux/crc32.h>
#include <uapi/bdsnap.h>
#include "compat.h"

struct block_device;
struct file;
struct file_system_type;
struct pt_regs;
struct page;
struct bdsnap_bio_batch;

/* Blocks are tracked in units of BDSNAP_BLOCK_SIZE; sectors per block: */
#define BDSNAP_SECTORS_PER_BLOCK	(BDSNAP_BLOCK_SIZE >> SECTOR_SHIFT)

/* The store format's CRC-32: zlib's crc32(0, buf, len). */
static inline u32 bdsnap_crc32(const void *buf, size_t len)
{
	return ~crc32_le(~0U, buf, len);
}

/* auth.c */
int bdsnap_auth_init(char *password);
void bdsnap_auth_done(void);
int bdsnap_auth_check(const char *password);
int bdsnap_auth_set(const char *old_password, const char *new_password);

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

/* compress.c */
struct bdsnap_deflate {
	void *workspace;
	void *stream;
};

int bdsnap_deflate_init(struct bdsnap_deflate *z);
void bdsnap_deflate_done(struct bdsnap_deflate *z);
int bdsnap_deflate(struct bdsnap_deflate *z, const void *src, unsigned int len,
		   void *dst, unsigned int cap);

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
};

/**
 * struct bdsnap_store - writer of one session directory.
 * @blocks: the "blocks" log, appended at @pos.
 * @writeback_pos: @pos when writeback of @blocks was last started.
 * @reserved: @blocks has space allocated up to here (fallocate).
 * @meta: the "meta" file, appended at @meta_pos.
 * @meta_lock: serialises appends to @meta.
 * @lock: protects @queue, @queued, @error.
 * @queue: pre-images (struct bdsnap_preimage) waiting to be written.
 * @queued: number of entries on @queue.
 * @space_wq: producers wait here while @queued is at the budget.
 * @work: drains @queue into the log.
 * @name: the session's name in log lines.
 * @z: deflate state, used by @work only.
 * @deflate_skip: blocks still to store raw without trying deflate.
 * @deflate_backoff: length of the last such run (doubles while blocks do
 *	not compress).
 * @buf: staging buffer so the log is written in large appends.
 * @buf_len: bytes staged in @buf.
 * @error: first write error; once set, pre-images are dropped.
 * @blocks_saved: records written.
 * @bytes_raw: raw bytes of those records.
 * @ordered: every append is followed by a flush before @seq_durable moves.
 * @seq_added: sequence number of the last pre-image queued.
 * @seq_durable: every pre-image up to this one is written and flushed.
 * @durable_wq: woken when @seq_durable moves or @error is set.
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
	u8 *buf;
	size_t buf_len;
	int error;
	u64 blocks_saved;
	u64 bytes_raw;
	bool ordered;
	u64 seq_added;
	u64 seq_durable;
	wait_queue_head_t durable_wq;
};

int bdsnap_store_open(struct bdsnap_store *st, const char *dir,
		      const struct bdsnap_store_info *info);
int bdsnap_store_add(struct bdsnap_store *st, u64 block, struct page *page,
		     unsigned int len, u64 *seq);
int bdsnap_store_wait_durable(struct bdsnap_store *st, u64 seq);
u64 bdsnap_store_last_added(struct bdsnap_store *st);
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

/* registry.c: activated devices */
/**
 * struct bdsnap_device - one activated device.
 * @node: in the registry list.
 * @path: as given at activation.
 * @key_type: BDSNAP_KEY_BDEV (match @dev) or BDSNAP_KEY_FILE (match the
 *	loop backing file @file_sdev/@file_ino).
 * @tracker: enum bdsnap_tracker.
 * @flags: BDSNAP_ACT_*.
 * @nr_sessions: sessions started since activation.
 * @session: the open session (mounted, or being rolled back), or NULL.
 * @rollback_failed: the session whose rollback failed, or "": mounts are
 *	refused until the device is deactivated.
 */
struct bdsnap_device {
	struct list_head node;
	char *path;
	u32 key_type;
	dev_t dev;
	dev_t file_sdev;
	unsigned long file_ino;
	u32 tracker;
	u32 flags;
	u64 nr_sessions;
	struct bdsnap_session *session;
	char rollback_failed[BDSNAP_SESSION_MAX];
};

void bdsnap_registry_lock(void);
void bdsnap_registry_unlock(void);
int bdsnap_registry_add(const char *path, u32 tracker, u32 flags);
int bdsnap_registry_remove(const char *path);
struct bdsnap_device *bdsnap_registry_match(dev_t dev, dev_t *tracked);
bool bdsnap_registry_empty(void);
struct path;
int bdsnap_loop_backing_path(dev_t dev, struct path *path);
int bdsnap_registry_list(struct bdsnap_dev_info *info, u32 capacity, u32 *count);
void bdsnap_registry_done(void);

/**
 * struct bdsnap_tracker_ops - what a tracker does for a session.
 * @name: as in meta's "tracker" key.
 * @start: prepare a new session, before it becomes visible to the hooks.
 * @stop: the session is no longer visible to the hooks: hand every
 *	pre-image still in flight to the store.
 * @accepts: whether a mount of file system @fstype of the device activated
 *	as @path (of a partition of it if @partition) can be tracked exactly;
 *	0, or -errno with one log line.  NULL: every mount can.
 */
struct bdsnap_tracker_ops {
	const char *name;
	int (*start)(struct bdsnap_session *s);
	void (*stop)(struct bdsnap_session *s);
	int (*accepts)(const char *path, const char *fstype, bool partition);
};

extern const struct bdsnap_tracker_ops bdsnap_tracker_bio_ops;
extern const struct bdsnap_tracker_ops bdsnap_tracker_vfs_ops;

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

extern char *bdsnap_store_dir;

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

/* rollback.c: write a session's pre-images back to its device */
int bdsnap_rollback(struct bdsnap_session *s, const char *dir);

/* fingerprint.c: what the device holds at a session's end */
int bdsnap_fingerprint(struct bdsnap_session *s, unsigned int *nr_sample, u8 *digest);

/* hook.c: redirect a kernel function to a replacement with ftrace */
/**
 * struct bdsnap_hook - one redirected function.
 * @ops: the ftrace callback registration.
 * @target: entry of the hooked function.
 * @replacement: our function with the same prototype.
 * @may_sleep: the replacement sleeps, so it pins the module while it runs
 *	(it then calls bdsnap_hook_leave()).
 * @divert: if set, decides in the ftrace callback (atomic context, the
 *	hooked function's registers) whether this call goes to @replacement;
 *	calls it declines run the original untouched.
 */
struct bdsnap_hook {
	struct ftrace_ops ops;
	unsigned long target;
	unsigned long replacement;
	bool may_sleep;
	bool (*divert)(struct pt_regs *regs);
};

int bdsnap_hook_install(struct bdsnap_hook *hook);
void bdsnap_hook_remove(struct bdsnap_hook *hook);
void bdsnap_hook_leave(void);

/* mount.c: sessions start at mount, end at unmount */
int bdsnap_mount_init(void);
void bdsnap_mount_done(void);

/* tracker_bio.c: V2, the block-layer tracker */
int bdsnap_tracker_bio_init(void);
void bdsnap_tracker_bio_done(void);

/* tracker_vfs.c: V1, vfs_write + buffer heads */
int bdsnap_tracker_vfs_init(void);
void bdsnap_tracker_vfs_done(void);

/* ctl.c: /dev/snap */
int bdsnap_ctl_init(void);
void bdsnap_ctl_done(void);
int bdsnap_ctl_activate(const char *path, const char *password, u32 tracker, u32 flags);
int bdsnap_ctl_deactivate(const char *path, const char *password);

/* syscalls.c: activate_snapshot()/deactivate_snapshot() through usctm */
void bdsnap_syscalls_init(void);
void bdsnap_syscalls_done(void);
bool bdsnap_syscalls_installed(void);

#endif /* BDSNAP_H */
