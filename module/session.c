// SPDX-License-Identifier: GPL-2.0
/*
 * Sessions: one per mount cycle of an activated device.  A session begins
 * in the mount path before the file system can write (see mount.c) and ends
 * after the file system's last write at unmount, once every pre-image is in
 * the store.
 *
 * A session belongs to the super blocks that write through it, not to one
 * mount call.  Every mount of the device takes a claim on the open session
 * (creating it if there is none) before the file system runs; when the mount
 * succeeds with a super block the session does not have yet, the claim
 * becomes that super block's, otherwise it is dropped.  The kill of a super
 * block drops its claim.  The session ends when no claim is left, so a mount
 * that races the unmount of the previous super block (the new one is
 * created once the old one is dead) keeps the session open for its writes:
 *
 *   mount A: claim (1) -> sb A (1)      umount A: kill sb A ... (1 -> 0: end)
 *   mount B during that kill: claim (2), waits for sb A to die, sb B (2)
 *   kill sb A done (1), ... umount B: kill sb B (0): end
 *
 * Open sessions are on an RCU list that the bio hook searches without locks;
 * the registry mutex serialises claims and ends.
 */
#define pr_fmt(fmt) KBUILD_MODNAME "-session: " fmt

#include <linux/module.h>
#include <linux/blkdev.h>
#include <linux/fs.h>
#include <linux/rculist.h>
#include <linux/slab.h>
#include <linux/time64.h>
#include <linux/uuid.h>
#include <crypto/sha2.h>
#include "bdsnap.h"
#include "registry.h"
#include "session.h"

char *bdsnap_store_dir = "/snapshot";
module_param_named(store_dir, bdsnap_store_dir, charp, 0444);
MODULE_PARM_DESC(store_dir, "Directory that receives session directories (default /snapshot)");

static LIST_HEAD(bdsnap_sessions);

/**
 * struct bdsnap_claim - one mount's hold on a session, then its super block's.
 * @node: in bdsnap_session.sbs once the mount succeeded with a new super block.
 * @session: the session held.
 * @sb: that super block; compared, never dereferenced.
 */
struct bdsnap_claim {
	struct list_head node;
	struct bdsnap_session *session;
	const struct super_block *sb;
};

/**
 * bdsnap_session_find_rcu() - the open session of a block device.
 * @bdev: the device a bio is for.
 * @ops: the tracker asking: each tracker only sees its own sessions.
 *
 * Context: rcu_read_lock() held; the session stays valid until it is
 * dropped.
 */
struct bdsnap_session *bdsnap_session_find_rcu(struct block_device *bdev,
					       const struct bdsnap_tracker_ops *ops)
{
	struct bdsnap_session *s;

	list_for_each_entry_rcu(s, &bdsnap_sessions, node)
		if (s->bdev_ref.bdev == bdev && s->ops == ops)
			return s;
	return NULL;
}

/**
 * bdsnap_tracker_ops() - the tracker of a BDSNAP_TRACKER_* number.
 * @tracker: BDSNAP_TRACKER_DEFAULT is the bio tracker.
 * Return: its ops, or NULL for an unknown number.
 */
const struct bdsnap_tracker_ops *bdsnap_tracker_ops(u32 tracker)
{
	switch (tracker) {
	case BDSNAP_TRACKER_DEFAULT:
	case BDSNAP_TRACKER_BIO:
		return &bdsnap_tracker_bio_ops;
	case BDSNAP_TRACKER_VFS:
		return &bdsnap_tracker_vfs_ops;
	default:
		return NULL;
	}
}

static char *bdsnap_session_dir(struct bdsnap_session *s)
{
	struct timespec64 ts;
	struct tm tm;

	ktime_get_real_ts64(&ts);
	time64_to_tm(ts.tv_sec, 0, &tm);
	snprintf(s->dirname, sizeof(s->dirname), "%s_%04ld%02d%02dT%02d%02d%02d.%09ldZ",
		 s->devname, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec);
	return kasprintf(GFP_KERNEL, "%s/%s", bdsnap_store_dir, s->dirname);
}

static struct bdsnap_session *bdsnap_session_create(struct bdsnap_device *d, dev_t dev)
{
	struct bdsnap_store_info info = {
		.path = d->path,
		.tracker = bdsnap_tracker_ops(d->tracker)->name,
		.ordered = d->flags & BDSNAP_ACT_ORDERED,
		.rollback = d->flags & BDSNAP_ACT_ROLLBACK,
		.keep = d->flags & BDSNAP_ACT_KEEP,
		.image_dev = d->file_sdev,
		.image_ino = d->file_ino,
	};
	struct bdsnap_session *s;
	char *dir;
	int ret;

	s = kzalloc(sizeof(*s), GFP_KERNEL);
	if (!s)
		return ERR_PTR(-ENOMEM);
	s->device = d;
	s->ops = bdsnap_tracker_ops(d->tracker);
	s->ordered = info.ordered;
	s->rollback = info.rollback;
	s->keep = info.keep;
	INIT_LIST_HEAD(&s->sbs);
	bdsnap_blockmap_init(&s->map);
	spin_lock_init(&s->save_lock);
	INIT_LIST_HEAD(&s->saves);

	ret = bdsnap_bdev_open_read(dev, &s->bdev_ref);
	if (ret)
		goto fail_free;
	s->nr_bytes = bdev_nr_bytes(s->bdev_ref.bdev);
	snprintf(s->devname, sizeof(s->devname), "%pg", s->bdev_ref.bdev);

	ret = bdsnap_store_mkdir(bdsnap_store_dir);
	if (ret)
		goto fail_bdev;
	ret = bdsnap_store_check_dev(bdsnap_store_dir, dev);
	if (ret)
		goto fail_bdev;
	/*
	 * An ordered session could not save a single pre-image: every write
	 * would fail.  A plain one starts, and goes incomplete at once.
	 */
	ret = bdsnap_store_quota_recount(bdsnap_store_dir);
	if (ret == -EDQUOT && info.ordered) {
		pr_err("%s: the store %s is over its cap (store_max_mb): prune sessions first\n",
		       d->path, bdsnap_store_dir);
		goto fail_bdev;
	}
	dir = bdsnap_session_dir(s);
	if (!dir) {
		ret = -ENOMEM;
		goto fail_bdev;
	}
	info.name = s->dirname;
	info.tracked = dev;
	info.devname = s->devname;
	info.device_size = s->nr_bytes;
	if (info.ordered)
		info.durable = bdsnap_session_durable;
	ret = s->ops->start(s);
	if (!ret) {
		ret = bdsnap_store_open(&s->store, dir, &info);
		if (ret)
			s->ops->destroy(s);
	}
	kfree(dir);
	if (ret)
		goto fail_bdev;
	return s;

fail_bdev:
	bdsnap_bdev_close(&s->bdev_ref);
fail_free:
	kfree(s);
	return ERR_PTR(ret);
}

/* A second loop device over the same image would change it behind @s's back. */
static int bdsnap_session_may_join(struct bdsnap_session *s, dev_t dev, dev_t tracked)
{
	if (s->bdev_ref.bdev->bd_dev == tracked)
		return 0;
	pr_err("%s: device %u:%u: already mounted through %s in session %s: mount refused\n",
	       s->device->path, MAJOR(dev), MINOR(dev), s->devname, s->dirname);
	return -EBUSY;
}

/*
 * Never a window between a rollback session and the next one: a mount is
 * refused while the previous session is written back (it ended: no claim
 * is left, yet it is still the device's), and after a failed rollback until
 * an administrator deactivates the device.
 */
static int bdsnap_session_rollback_pending(struct bdsnap_device *d)
{
	if (d->rollback_failed[0]) {
		pr_err("%s: the rollback of session %s failed: mount refused (restore that session, then deactivate the device)\n",
		       d->path, d->rollback_failed);
		return -EBUSY;
	}
	if (d->session && !d->session->claims) {
		pr_err("%s: session %s is being rolled back: mount refused\n", d->path,
		       d->session->dirname);
		return -EBUSY;
	}
	return 0;
}

/**
 * bdsnap_session_claim() - take a claim on the session of @dev's device.
 * @dev: the device being mounted (maybe a partition of the activated one).
 * @fstype: the file system type being mounted.
 *
 * Starts the session if the device is activated and has none.  The caller
 * passes the claim on with bdsnap_session_mounted() or drops it with
 * bdsnap_session_release().
 *
 * Context: process, in the mount path, before the file system writes.
 * Return: the claim; NULL when the device is not activated; an ERR_PTR when
 * the mount must fail because its snapshot could not be set up: -EOPNOTSUPP
 * when the device's tracker cannot track this mount exactly, -EBUSY when the
 * device is open in a session through another block device (a second loop
 * device over the same image) or its rollback is unfinished, -ENOMEM, or the
 * store's error.
 */
struct bdsnap_claim *bdsnap_session_claim(dev_t dev, const char *fstype)
{
	const struct bdsnap_tracker_ops *ops;
	struct bdsnap_claim *claim;
	struct bdsnap_session *s;
	struct bdsnap_device *d;
	dev_t tracked;
	int ret = 0;

	claim = kzalloc(sizeof(*claim), GFP_KERNEL);
	if (!claim)
		return ERR_PTR(-ENOMEM);
	bdsnap_registry_lock();
	d = bdsnap_registry_match(dev, &tracked);
	if (!d)
		goto out;
	ops = bdsnap_tracker_ops(d->tracker);
	ret = ops->accepts ? ops->accepts(d->path, fstype, dev != tracked) : 0;
	if (ret)
		goto out;
	ret = bdsnap_session_rollback_pending(d);
	if (ret)
		goto out;
	s = d->session;
	if (s) {
		ret = bdsnap_session_may_join(s, dev, tracked);
		goto out;
	}
	s = bdsnap_session_create(d, tracked);
	if (IS_ERR(s)) {
		ret = PTR_ERR(s);
		pr_err("%s: cannot start a session in %s (error %d): mount refused\n",
		       d->path, bdsnap_store_dir, ret);
		goto out;
	}
	/* an open session pins the module: rmmod must not drop its pre-images */
	__module_get(THIS_MODULE);
	d->session = s;
	d->nr_sessions++;
	list_add_tail_rcu(&s->node, &bdsnap_sessions);
	pr_info("%s: session %s started\n", d->path, s->dirname);
out:
	if (d && !ret) {
		s->claims++;
		claim->session = s;
	}
	bdsnap_registry_unlock();
	if (claim->session)
		return claim;
	kfree(claim);
	return ret ? ERR_PTR(ret) : NULL;
}

static void bdsnap_session_unpublish_locked(struct bdsnap_session *s)
{
	list_del_rcu(&s->node);
	s->device->session = NULL;
}

/*
 * Drop a claim; the last one unpublishes the session for bdsnap_session_end(),
 * unless it is to be rolled back: it stays the device's until then.
 */
static bool bdsnap_session_put_locked(struct bdsnap_session *s)
{
	if (--s->claims)
		return false;
	if (!s->rollback)
		bdsnap_session_unpublish_locked(s);
	return true;
}

/*
 * What the device holds now that the last file system is gone: a restore
 * checks it before writing (fingerprint.c).  Without it a restore needs
 * --force, so a failure to read the device is logged.  A failure to write
 * meta is the store's: by then the store has usually failed and said so, and
 * one failure gets one log line.
 */
static void bdsnap_session_note_end(struct bdsnap_session *s)
{
	u8 digest[SHA256_DIGEST_SIZE];
	unsigned int n;
	int ret;

	ret = bdsnap_fingerprint(s, &n, digest);
	if (ret) {
		pr_err("session %s: cannot record the device's end fingerprint (error %d): a restore will need --force\n",
		       s->dirname, ret);
		return;
	}
	ret = bdsnap_store_note(&s->store, "end_sample=%u\nend_sha256=%*phN\n", n,
				SHA256_DIGEST_SIZE, digest);
	if (ret)
		bdsnap_store_fail(&s->store, ret);
}

/*
 * Write @s's pre-images back, then let the device go: to the next mount, or,
 * if that failed, to no mount until it is deactivated.
 */
static void bdsnap_session_roll_back(struct bdsnap_session *s)
{
	char *dir = kasprintf(GFP_KERNEL, "%s/%s", bdsnap_store_dir, s->dirname);
	int ret = -ENOMEM;

	if (dir)
		ret = bdsnap_rollback(s, dir);
	if (ret) {
		pr_err("%s: session %s is not rolled back (error %d): mounts are refused until the device is deactivated\n",
		       s->device->path, s->dirname, ret);
		if (dir)
			bdsnap_store_note_rollback(dir, ret);
	} else if (s->keep || bdsnap_store_remove(s->dirname)) {
		/* a session left behind must not be rolled back again at boot */
		if (bdsnap_store_note_rollback(dir, 0))
			pr_err("session %s: cannot record that it is rolled back: the next boot rolls it back again\n",
			       s->dirname);
	}
	kfree(dir);
	bdsnap_registry_lock();
	if (ret)
		strscpy(s->device->rollback_failed, s->dirname,
			sizeof(s->device->rollback_failed));
	bdsnap_session_unpublish_locked(s);
	bdsnap_registry_unlock();
	/* no hook sees the session now: fail the writes it held meanwhile */
	synchronize_rcu();
	s->ops->stop(s);
}

/*
 * Context: process; the session is unpublished (or, to be rolled back,
 * without claims), its last writer is gone.
 */
static void bdsnap_session_end(struct bdsnap_session *s)
{
	int error;

	/* from here on, writes to a device being rolled back are ours only */
	if (s->rollback)
		WRITE_ONCE(s->rollback_task, current);
	/* after this no bio hook can see the session unchanged: only held bios remain */
	synchronize_rcu();
	s->ops->stop(s);
	bdsnap_session_note_end(s);
	error = atomic64_read(&s->errors) ? -EIO : 0;
	bdsnap_store_close(&s->store, error);
	pr_info("session %s ended, %llu blocks saved\n", s->dirname,
		s->store.blocks_saved);
	if (s->rollback)
		bdsnap_session_roll_back(s);
	s->ops->destroy(s);
	bdsnap_blockmap_destroy(&s->map);
	bdsnap_bdev_close(&s->bdev_ref);
	kfree(s);
	module_put(THIS_MODULE);
}

/* Drop @claim, which the caller has taken off any list. */
static void bdsnap_claim_drop(struct bdsnap_claim *claim)
{
	struct bdsnap_session *s = claim->session;
	bool last;

	bdsnap_registry_lock();
	if (claim->sb)
		list_del(&claim->node);
	last = bdsnap_session_put_locked(s);
	bdsnap_registry_unlock();
	kfree(claim);
	if (last)
		bdsnap_session_end(s);
}

/**
 * bdsnap_session_release() - drop a claim whose mount failed.
 * @claim: from bdsnap_session_claim().
 *
 * A failed mount may have written (journal replay): what was saved is kept,
 * and the session ends if nothing else writes through it.
 */
void bdsnap_session_release(struct bdsnap_claim *claim)
{
	bdsnap_claim_drop(claim);
}

/**
 * bdsnap_session_mounted() - the claimed mount succeeded with @sb.
 * @claim: from bdsnap_session_claim().
 * @sb: the mount's super block, new or one the session already serves.
 */
void bdsnap_session_mounted(struct bdsnap_claim *claim, const struct super_block *sb)
{
	struct bdsnap_session *s = claim->session;
	struct bdsnap_claim *other;
	bool known = false;
	int ret;

	bdsnap_registry_lock();
	list_for_each_entry(other, &s->sbs, node)
		known |= other->sb == sb;
	if (!known) {
		claim->sb = sb;
		list_add_tail(&claim->node, &s->sbs);
	}
	bdsnap_registry_unlock();
	/* a bind mount, or a mount of a device already mounted: sb has its claim */
	if (known) {
		bdsnap_claim_drop(claim);
		return;
	}
	/* what a restore target is compared with; a partition's is not the device's */
	if (sb->s_bdev == s->bdev_ref.bdev && !uuid_is_null(&sb->s_uuid))
		ret = bdsnap_store_note(&s->store, "fs_type=%s\nfs_uuid=%16phN\n",
					sb->s_type->name, sb->s_uuid.b);
	else
		ret = bdsnap_store_note(&s->store, "fs_type=%s\n", sb->s_type->name);
	if (ret)
		bdsnap_store_fail(&s->store, ret);
}

/**
 * bdsnap_session_sb_gone() - a super block was killed.
 * @sb: the super block; its file system has written its last block.
 *
 * Ends the session the super block wrote through once nothing else does.
 */
void bdsnap_session_sb_gone(const struct super_block *sb)
{
	struct bdsnap_claim *claim, *found = NULL;
	struct bdsnap_session *s;

	if (list_empty(&bdsnap_sessions))
		return;
	bdsnap_registry_lock();
	list_for_each_entry(s, &bdsnap_sessions, node) {
		list_for_each_entry(claim, &s->sbs, node) {
			if (claim->sb == sb) {
				found = claim;
				break;
			}
		}
		if (found)
			break;
	}
	bdsnap_registry_unlock();
	if (found)
		bdsnap_claim_drop(found);
}

/**
 * bdsnap_session_sync_store() - wait until the open session @name's log
 * holds every pre-image taken so far (BDSNAP_IOC_SYNC_STORE).
 * @name: the session's directory name.
 *
 * A claim keeps the session alive while we wait; if the device is unmounted
 * meanwhile, dropping it ends the session here.
 *
 * Context: process, sleeps.
 * Return: 0; -ENOENT no open session of that name; -EIO the session failed.
 */
int bdsnap_session_sync_store(const char *name)
{
	struct bdsnap_session *s, *found = NULL;
	int ret;
	bool last;
	u64 seq;

	bdsnap_registry_lock();
	list_for_each_entry(s, &bdsnap_sessions, node) {
		/* one without claims has ended: it is being rolled back */
		if (s->claims && !strcmp(s->dirname, name)) {
			found = s;
			found->claims++;
			break;
		}
	}
	bdsnap_registry_unlock();
	if (!found)
		return -ENOENT;
	seq = bdsnap_store_last_added(&found->store);
	ret = seq ? bdsnap_store_wait_durable(&found->store, seq) : 0;
	/* a failed plain session lets writes through without pre-images */
	if (ret || READ_ONCE(found->failed))
		ret = -EIO;
	bdsnap_registry_lock();
	last = bdsnap_session_put_locked(found);
	bdsnap_registry_unlock();
	if (last)
		bdsnap_session_end(found);
	return ret;
}
