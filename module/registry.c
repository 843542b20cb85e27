// SPDX-License-Identifier: GPL-2.0
/*
 * Registry of activated devices.  A device is activated by a block device
 * path (matched by device number) or by a regular file that is the backing
 * image of a loop device (matched by the file's identity, so the loop
 * number may differ from mount to mount, and the image may be attached to a
 * loop device only after activation).
 */
#define pr_fmt(fmt) KBUILD_MODNAME "-registry: " fmt

#include <linux/module.h>
#include <linux/fs.h>
#include <linux/file.h>
#include <linux/namei.h>
#include <linux/major.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/blkdev.h>
#include "bdsnap.h"
#include "registry.h"
#include "session.h"

#define BDSNAP_DEVICES_MAX	256

static struct bdsnap_registry {
	struct mutex lock;
	struct list_head devices;
	unsigned int count;
} bdsnap_registry = {
	.lock = __MUTEX_INITIALIZER(bdsnap_registry.lock),
	.devices = LIST_HEAD_INIT(bdsnap_registry.devices),
};

void bdsnap_registry_lock(void)
{
	mutex_lock(&bdsnap_registry.lock);
}

void bdsnap_registry_unlock(void)
{
	mutex_unlock(&bdsnap_registry.lock);
}

/* What a path names: a block device number, or a regular file's identity. */
struct bdsnap_key {
	u32 type;
	dev_t dev;
	dev_t sdev;
	unsigned long ino;
};

static int bdsnap_key_from(const struct path *path, struct bdsnap_key *key)
{
	struct inode *inode = d_backing_inode(path->dentry);

	memset(key, 0, sizeof(*key));
	if (S_ISBLK(inode->i_mode)) {
		key->type = BDSNAP_KEY_BDEV;
		key->dev = inode->i_rdev;
	} else if (S_ISREG(inode->i_mode)) {
		key->type = BDSNAP_KEY_FILE;
		key->sdev = inode->i_sb->s_dev;
		key->ino = inode->i_ino;
	} else {
		return -ENOTBLK;
	}
	return 0;
}

static int bdsnap_key_from_path(const char *name, struct bdsnap_key *key)
{
	struct path path;
	int ret;

	ret = kern_path(name, LOOKUP_FOLLOW, &path);
	if (ret)
		return ret;
	ret = bdsnap_key_from(&path, key);
	path_put(&path);
	return ret;
}

static bool bdsnap_key_equal(const struct bdsnap_device *d, const struct bdsnap_key *key)
{
	if (d->key_type != key->type)
		return false;
	if (key->type == BDSNAP_KEY_BDEV)
		return d->dev == key->dev;
	return d->file_sdev == key->sdev && d->file_ino == key->ino;
}

static struct bdsnap_device *bdsnap_registry_find(const struct bdsnap_key *key)
{
	struct bdsnap_device *d;

	list_for_each_entry(d, &bdsnap_registry.devices, node)
		if (bdsnap_key_equal(d, key))
			return d;
	return NULL;
}

/**
 * bdsnap_loop_backing_path() - the file behind a loop device.
 * @dev: the loop device (whole disk).
 * @path: out: its backing file; the caller path_put()s it.
 *
 * The loop driver keeps its backing file private; its sysfs attribute is
 * the stable interface that names it.
 *
 * Return: 0, or -errno (-ENOENT: not a loop device, or none attached).
 */
int bdsnap_loop_backing_path(dev_t dev, struct path *path)
{
	char *attr, *buf;
	struct file *file;
	loff_t pos = 0;
	ssize_t len;
	int ret;

	if (MAJOR(dev) != LOOP_MAJOR)
		return -ENOENT;
	attr = kasprintf(GFP_KERNEL, "/sys/dev/block/%u:%u/loop/backing_file",
			 MAJOR(dev), MINOR(dev));
	buf = kmalloc(PATH_MAX, GFP_KERNEL);
	if (!attr || !buf) {
		ret = -ENOMEM;
		goto out;
	}
	file = filp_open(attr, O_RDONLY, 0);
	if (IS_ERR(file)) {
		ret = PTR_ERR(file);
		goto out;
	}
	len = kernel_read(file, buf, PATH_MAX - 1, &pos);
	fput(file);
	if (len <= 0) {
		ret = len ? len : -ENOENT;
		goto out;
	}
	buf[len] = '\0';
	ret = kern_path(strim(buf), LOOKUP_FOLLOW, path);
out:
	kfree(buf);
	kfree(attr);
	return ret;
}

static int bdsnap_loop_backing_key(dev_t dev, struct bdsnap_key *key)
{
	struct path path;
	int ret = bdsnap_loop_backing_path(dev, &path);

	if (ret)
		return ret;
	ret = bdsnap_key_from(&path, key);
	path_put(&path);
	if (!ret && key->type != BDSNAP_KEY_FILE)
		ret = -ENOENT;
	return ret;
}

/* The loop backing file, or the device itself. */
static struct bdsnap_device *bdsnap_registry_match_dev(dev_t dev)
{
	struct bdsnap_key key = { .type = BDSNAP_KEY_BDEV, .dev = dev };
	struct bdsnap_device *d;

	d = bdsnap_registry_find(&key);
	if (d || bdsnap_loop_backing_key(dev, &key))
		return d;
	return bdsnap_registry_find(&key);
}

/* The whole disk of a partition; @dev itself for a whole disk or on error. */
static dev_t bdsnap_whole_dev(dev_t dev)
{
	struct bdsnap_bdev_ref ref;
	dev_t whole = dev;

	if (!bdsnap_bdev_open_read(dev, &ref)) {
		whole = bdev_whole(ref.bdev)->bd_dev;
		bdsnap_bdev_close(&ref);
	}
	return whole;
}

/**
 * bdsnap_registry_match() - the activated device a mounted device stands for.
 * @dev: the device being mounted.
 * @tracked: out: the device a session reads and restores: @dev, or the
 *	whole disk when @dev is a partition of an activated disk.
 *
 * Context: registry lock held; may sleep.
 * Return: the entry or NULL.
 */
struct bdsnap_device *bdsnap_registry_match(dev_t dev, dev_t *tracked)
{
	struct bdsnap_device *d;
	dev_t whole;

	lockdep_assert_held(&bdsnap_registry.lock);
	*tracked = dev;
	d = bdsnap_registry_match_dev(dev);
	if (d)
		return d;
	whole = bdsnap_whole_dev(dev);
	if (whole == dev)
		return NULL;
	*tracked = whole;
	return bdsnap_registry_match_dev(whole);
}

/* Whether no device is activated: lets every mount skip the registry. */
bool bdsnap_registry_empty(void)
{
	return !READ_ONCE(bdsnap_registry.count);
}

/*
 * A zoned device changes data with zone operations (reset, finish, append)
 * that carry no sectors to save: not supported.  A store on the device
 * would overwrite what it saves.
 */
static int bdsnap_check_bdev(const char *path, dev_t dev)
{
	struct bdsnap_bdev_ref ref;
	bool zoned;
	int ret;

	ret = bdsnap_bdev_open_read(dev, &ref);
	if (ret)
		return ret;
	zoned = bdev_is_zoned(ref.bdev);
	bdsnap_bdev_close(&ref);
	if (zoned) {
		pr_err("%s: zoned block devices are not supported: not activated\n", path);
		return -EOPNOTSUPP;
	}
	return bdsnap_store_check_dev(bdsnap_store_dir, dev);
}

/**
 * bdsnap_registry_add() - activate a device.
 * @path: block device node or loop backing image.
 * @tracker: enum bdsnap_tracker, already validated.
 * @flags: BDSNAP_ACT_*, already validated.
 *
 * Return: 0; -ENOENT and other lookup errors; -ENOTBLK neither block device
 * nor regular file; -EEXIST already active; -EXDEV the store is on the
 * device; -EOPNOTSUPP a zoned device; -ENOSPC too many devices.
 */
int bdsnap_registry_add(const char *path, u32 tracker, u32 flags)
{
	struct bdsnap_device *d;
	struct bdsnap_key key;
	int ret;

	ret = bdsnap_key_from_path(path, &key);
	if (ret)
		return ret;
	if (key.type == BDSNAP_KEY_BDEV) {
		ret = bdsnap_check_bdev(path, key.dev);
		if (ret)
			return ret;
	}
	d = kzalloc(sizeof(*d), GFP_KERNEL);
	if (!d)
		return -ENOMEM;
	d->path = kstrdup(path, GFP_KERNEL);
	if (!d->path) {
		kfree(d);
		return -ENOMEM;
	}
	d->key_type = key.type;
	d->dev = key.dev;
	d->file_sdev = key.sdev;
	d->file_ino = key.ino;
	d->tracker = tracker;
	d->flags = flags;

	bdsnap_registry_lock();
	if (bdsnap_registry_find(&key))
		ret = -EEXIST;
	else if (bdsnap_registry.count >= BDSNAP_DEVICES_MAX)
		ret = -ENOSPC;
	if (!ret) {
		list_add_tail(&d->node, &bdsnap_registry.devices);
		WRITE_ONCE(bdsnap_registry.count, bdsnap_registry.count + 1);
	}
	bdsnap_registry_unlock();
	if (ret) {
		kfree(d->path);
		kfree(d);
		return ret;
	}
	pr_info("%s activated\n", path);
	return 0;
}

static void bdsnap_device_free(struct bdsnap_device *d)
{
	list_del(&d->node);
	WRITE_ONCE(bdsnap_registry.count, bdsnap_registry.count - 1);
	kfree(d->path);
	kfree(d);
}

/**
 * bdsnap_registry_remove() - deactivate a device.
 * @path: as given to activation, or another path to the same device.
 *
 * Return: 0; -ENODEV not active; -EBUSY mounted (a session is open) or
 * being rolled back.  A device whose rollback failed is deactivated: that
 * is how an administrator who restored the session by hand lets it go.
 */
int bdsnap_registry_remove(const char *path)
{
	struct bdsnap_device *d, *found = NULL;
	struct bdsnap_key key;
	bool by_key;
	int ret = 0;

	/* a deleted image can still be deactivated by the path it was given */
	by_key = !bdsnap_key_from_path(path, &key);
	bdsnap_registry_lock();
	list_for_each_entry(d, &bdsnap_registry.devices, node) {
		if (by_key ? bdsnap_key_equal(d, &key) : !strcmp(d->path, path)) {
			found = d;
			break;
		}
	}
	if (!found)
		ret = -ENODEV;
	else if (found->session)
		ret = -EBUSY;
	else
		bdsnap_device_free(found);
	bdsnap_registry_unlock();
	if (!ret)
		pr_info("%s deactivated\n", path);
	return ret;
}

static void bdsnap_registry_fill(const struct bdsnap_device *d, struct bdsnap_dev_info *info)
{
	struct bdsnap_session *s = d->session;

	info->size = sizeof(*info);
	info->key_type = d->key_type;
	info->tracker = d->tracker;
	info->flags = d->flags;
	info->sessions = d->nr_sessions;
	strscpy(info->path, d->path, sizeof(info->path));
	if (d->key_type == BDSNAP_KEY_BDEV)
		info->dev = new_encode_dev(d->dev);
	if (d->rollback_failed[0]) {
		info->session_state = BDSNAP_SESSION_ROLLBACK_FAILED;
		strscpy(info->session, d->rollback_failed, sizeof(info->session));
	}
	if (!s)
		return;
	info->dev = new_encode_dev(s->bdev_ref.bdev->bd_dev);
	if (!s->claims)
		info->session_state = BDSNAP_SESSION_ROLLING_BACK;
	else if (READ_ONCE(s->store.error) || atomic64_read(&s->errors))
		info->session_state = BDSNAP_SESSION_INCOMPLETE;
	else
		info->session_state = BDSNAP_SESSION_OPEN;
	info->blocks_saved = READ_ONCE(s->store.blocks_saved);
	info->bytes_raw = READ_ONCE(s->store.bytes_raw);
	info->bytes_stored = READ_ONCE(s->store.pos);
	info->queue_depth = bdsnap_store_queued(&s->store);
	info->writes_held = s->ops->held ? s->ops->held(s) : 0;
	info->errors = atomic64_read(&s->errors) + (READ_ONCE(s->store.error) ? 1 : 0);
	strscpy(info->devname, s->devname, sizeof(info->devname));
	strscpy(info->session, s->dirname, sizeof(info->session));
}

/**
 * bdsnap_registry_list() - describe activated devices.
 * @info: room for @capacity entries (zeroed by the caller).
 * @capacity: entries at @info.
 * @count: out: number of activated devices.
 *
 * Return: 0.
 */
int bdsnap_registry_list(struct bdsnap_dev_info *info, u32 capacity, u32 *count)
{
	struct bdsnap_device *d;
	u32 n = 0;

	bdsnap_registry_lock();
	list_for_each_entry(d, &bdsnap_registry.devices, node) {
		if (n < capacity)
			bdsnap_registry_fill(d, &info[n]);
		n++;
	}
	bdsnap_registry_unlock();
	*count = n;
	return 0;
}

/* Context: module exit; sessions pin the module, so none is open. */
void bdsnap_registry_done(void)
{
	struct bdsnap_device *d, *tmp;

	bdsnap_registry_lock();
	list_for_each_entry_safe(d, tmp, &bdsnap_registry.devices, node)
		bdsnap_device_free(d);
	bdsnap_registry_unlock();
}
