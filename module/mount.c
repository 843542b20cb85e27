// SPDX-License-Identifier: GPL-2.0
/*
 * Session boundaries.  A file system writes inside its mount call (ext4:
 * superblock, journal recovery), so a session must exist before the real
 * mount function runs: the function every block-device mount goes through
 * (get_tree_bdev_flags()/get_tree_bdev(), see compat.h; mount_bdev() in
 * mount_legacy.c where the kernel still has it) is redirected to a wrapper
 * that resolves the device, begins the session and then mounts.
 * kill_block_super() is the common end of every block-device file system;
 * once it returns the file system has written and synced its last block,
 * and the session ends.
 */
#define pr_fmt(fmt) KBUILD_MODNAME "-mount: " fmt

#include <linux/module.h>
#include <linux/fs.h>
#include <linux/fs_context.h>
#include <linux/blkdev.h>
#include "bdsnap.h"
#include "compat.h"

/* Return: whether this call started a session for @name's device. */
int bdsnap_mount_begin(const char *name, struct file_system_type *type, dev_t *dev)
{
	if (!name || lookup_bdev(name, dev))
		return 0;
	return bdsnap_session_begin(*dev, type->name);
}

void bdsnap_mount_failed(int started, dev_t dev)
{
	/* a failed mount may have written (journal replay): keep what was saved */
	if (started > 0)
		bdsnap_session_end(dev);
}

static int bdsnap_get_tree(struct fs_context *fc, bdsnap_fill_super_fc_t fill_super,
			   unsigned int flags)
{
	dev_t dev = 0;
	int started = bdsnap_mount_begin(fc->source, fc->fs_type, &dev);
	int ret = started;

	if (started >= 0) {
		ret = bdsnap_get_tree_bdev(fc, fill_super, flags);
		if (ret)
			bdsnap_mount_failed(started, dev);
	}
	bdsnap_hook_leave();
	return ret;
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
		.target = (unsigned long)BDSNAP_GET_TREE_BDEV,
		.replacement = (unsigned long)bdsnap_get_tree,
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
	ret = bdsnap_mount_legacy_init();
	if (ret)
		goto fail;
	return 0;
fail:
	while (--i >= 0)
		bdsnap_hook_remove(&bdsnap_mount_hooks[i]);
	return ret;
}

void bdsnap_mount_done(void)
{
	int i;

	bdsnap_mount_legacy_done();
	for (i = ARRAY_SIZE(bdsnap_mount_hooks) - 1; i >= 0; i--)
		bdsnap_hook_remove(&bdsnap_mount_hooks[i]);
}
