// SPDX-License-Identifier: GPL-2.0
/*
 * Sessions: one per mount cycle of an activated device.  A session begins
 * in the mount path before the file system can write (see mount.c) and ends
 * after the file system's last write at unmount, once every pre-image is in
 * the store.
 *
 * Open sessions are on an RCU list that the bio hook searches without locks;
 * the registry mutex serialises begin and end.
 */
#define pr_fmt(fmt) KBUILD_MODNAME "-session: " fmt

#include <linux/module.h>
#include <linux/blkdev.h>
#include <linux/rculist.h>
#include <linux/slab.h>
#include <linux/time64.h>
#include "bdsnap.h"

char *bdsnap_store_dir = "/snapshot";
module_param_named(store_dir, bdsnap_store_dir, charp, 0444);
MODULE_PARM_DESC(store_dir, "Directory that receives session directories (default /snapshot)");

static LIST_HEAD(bdsnap_sessions);

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

unsigned int bdsnap_session_block_len(struct bdsnap_session *s, u64 block)
{
	u64 start = block * BDSNAP_BLOCK_SIZE;

	if (start >= s->nr_bytes)
		return 0;
	return min_t(u64, BDSNAP_BLOCK_SIZE, s->nr_bytes - start);
}

static const struct bdsnap_tracker_ops *bdsnap_tracker_ops(u32 tracker)
{
	return tracker == BDSNAP_TRACKER_VFS ? &bdsnap_tracker_vfs_ops : &bdsnap_tracker_bio_ops;
}

/*
 * V1 sees only what goes through vfs_write and buffer heads: it is exact
 * only on a file system that modifies blocks nowhere else.
 */
static bool bdsnap_vfs_tracks_exactly(const char *fstype)
{
	return fstype && !strcmp(fstype, "singlefilefs");
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
	bdsnap_blockmap_init(&s->map);
	spin_lock_init(&s->held_lock);
	bio_list_init(&s->held);
	init_waitqueue_head(&s->drain_wq);

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
	dir = bdsnap_session_dir(s);
	if (!dir) {
		ret = -ENOMEM;
		goto fail_bdev;
	}
	info.name = s->dirname;
	info.devname = s->devname;
	info.device_size = s->nr_bytes;
	ret = s->ops->start(s);
	if (!ret) {
		ret = bdsnap_store_open(&s->store, dir, &info);
		if (ret)
			s->ops->stop(s);
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

/**
 * bdsnap_session_begin() - start a session if @dev is activated.
 * @dev: the device being mounted.
 * @fstype: the file system type being mounted.
 *
 * Context: process, in the mount path, before the file system writes.
 * Return: 1 when a session was started, 0 when none is needed (not
 * activated, or already mounted), -errno when the mount must fail because
 * its snapshot could not be set up: -EOPNOTSUPP when the device's tracker
 * cannot track this file system exactly, -EBUSY when the device is open in
 * a session through another block device (a second loop device over the
 * same image), or the store's error.
 */
int bdsnap_session_begin(dev_t dev, const char *fstype)
{
	struct bdsnap_session *s;
	struct bdsnap_device *d;
	int ret = 0;

	bdsnap_registry_lock();
	d = bdsnap_registry_match(dev);
	if (!d)
		goto out;
	if (d->session) {
		/*
		 * A second loop device over the same image would change the
		 * image behind the open session's back.
		 */
		if (d->session->bdev_ref.bdev->bd_dev != dev) {
			ret = -EBUSY;
			pr_err("%s: device %u:%u: already mounted through %s in session %s: mount refused\n",
			       d->path, MAJOR(dev), MINOR(dev), d->session->devname,
			       d->session->dirname);
		}
		goto out;
	}
	if (d->tracker == BDSNAP_TRACKER_VFS && !bdsnap_vfs_tracks_exactly(fstype)) {
		ret = -EOPNOTSUPP;
		pr_err("%s: the vfs tracker cannot track %s exactly: mount refused (activate with the bio tracker)\n",
		       d->path, fstype);
		goto out;
	}
	s = bdsnap_session_create(d, dev);
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
	ret = 1;
out:
	bdsnap_registry_unlock();
	return ret;
}

/**
 * bdsnap_session_end() - end the open session of @dev, if any.
 * @dev: the device whose file system is gone.
 *
 * Context: process; the file system has written its last block.
 */
void bdsnap_session_end(dev_t dev)
{
	struct bdsnap_session *s, *found = NULL;
	int error;

	bdsnap_registry_lock();
	list_for_each_entry(s, &bdsnap_sessions, node) {
		if (s->bdev_ref.bdev->bd_dev == dev) {
			found = s;
			list_del_rcu(&s->node);
			s->device->session = NULL;
			break;
		}
	}
	bdsnap_registry_unlock();
	if (!found)
		return;
	s = found;

	/* after this no bio hook can see the session: only held bios remain */
	synchronize_rcu();
	s->ops->stop(s);
	error = atomic64_read(&s->read_errors) ? -EIO : 0;
	bdsnap_store_close(&s->store, error);
	pr_info("session %s ended, %llu blocks saved\n", s->dirname,
		s->store.blocks_saved);
	bdsnap_blockmap_destroy(&s->map);
	bdsnap_bdev_close(&s->bdev_ref);
	kfree(s);
	module_put(THIS_MODULE);
}
