// SPDX-License-Identifier: GPL-2.0
/*
 * Session boundaries.  A file system writes inside its mount call (ext4:
 * superblock, journal recovery), so a session must exist before the real
 * get_tree_bdev()/mount_bdev() runs: both are redirected to wrappers that
 * resolve the device, begin the session and then mount.  kill_block_super()
 * is the common end of every block-device file system; once it returns the
 * file system has written and synced its last block, and the session ends.
 */
#define pr_fmt(fmt) KBUILD_MODNAME "-mount: " fmt

#include <linux/module.h>
#include <linux/fs.h>
#include <linux/fs_context.h>
#include <linux/blkdev.h>
#include "bdsnap.h"

/* Return: whether this call started a session for @name's device. */
static int bdsnap_mount_begin(const char *name, struct file_system_type *type, dev_t *dev)
{
	if (!name || lookup_bdev(name, dev))
		return 0;
	return bdsnap_session_begin(*dev, type->name);
}

static void bdsnap_mount_failed(int started, dev_t dev)
{
	/* a failed mount may have written (journal replay): keep what was saved */
	if (started > 0)
		bdsnap_session_end(dev);
}

static int bdsnap_get_tree_bdev(struct fs_context *fc,
				int (*fill_super)(struct super_block *, struct fs_context *))
{
	dev_t dev = 0;
	int started = bdsnap_mount_begin(fc->source, fc->fs_type, &dev);
	int ret = started;

	if (started >= 0) {
		ret = get_tree_bdev(fc, fill_super);
		if (ret)
			bdsnap_mount_failed(started, dev);
	}
	bdsnap_hook_leave();
	return ret;
}

static struct dentry *bdsnap_mount_bdev(struct file_system_type *fs_type, int flags,
					const char *dev_name, void *data,
					int (*fill_super)(struct super_block *, void *, int))
{
	dev_t dev = 0;
	int started = bdsnap_mount_begin(dev_name, fs_type, &dev);
	struct dentry *root = ERR_PTR(started);

	if (started >= 0) {
		root = mount_bdev(fs_type, flags, dev_name, data, fill_super);
		if (IS_ERR(root))
			bdsnap_mount_failed(started, dev);
	}
	bdsnap_hook_leave();
	return root;
}

static void bdsnap_kill_block_super(struct super_block *sb)
{
	dev_t dev = sb->s_bdev->bd_dev;

	kill_block_super(sb);
	bdsnap_session_end(dev);
	bdsnap_hook_leave();
}

static struct bdsnap_hook bdsnap_mount_hooks[] = {
	{
		.target = (unsigned long)get_tree_bdev,
		.replacement = (unsigned long)bdsnap_get_tree_bdev,
		.may_sleep = true,
	}, {
		.target = (unsigned long)mount_bdev,
		.replacement = (unsigned long)bdsnap_mount_bdev,
		.may_sleep = true,
	}, {
		.target = (unsigned long)kill_block_super,
		.replacement = (unsigned long)bdsnap_kill_block_super,
		.may_sleep = true,
	},
};

int bdsnap_mount_init(void)
{
	int i, ret;

	for (i = 0; i < ARRAY_SIZE(bdsnap_mount_hooks); i++) {
		ret = bdsnap_hook_install(&bdsnap_mount_hooks[i]);
		if (ret)
			goto fail;
	}
	return 0;
fail:
	while (--i >= 0)
		bdsnap_hook_remove(&bdsnap_mount_hooks[i]);
	return ret;
}

void bdsnap_mount_done(void)
{
	int i;

	for (i = ARRAY_SIZE(bdsnap_mount_hooks) - 1; i >= 0; i--)
		bdsnap_hook_remove(&bdsnap_mount_hooks[i]);
}
