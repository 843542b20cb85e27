// SPDX-License-Identifier: GPL-2.0
/*
 * Session boundaries.  A file system writes inside its mount call (ext4:
 * superblock, journal recovery), so a session must exist before its
 * get_tree runs: vfs_get_tree(), which every mount of every kernel version
 * goes through (mount(2), fsmount(2), kernel-internal mounts; the fs_context
 * file systems, the legacy mount_bdev() ones and btrfs alike), is redirected
 * to a wrapper that resolves the device, claims its session and then
 * mounts.  A super block is gone once kill_block_super() (every block-device
 * file system) or kill_anon_super() (btrfs and other multi-device ones)
 * returns: its file system has written and synced its last block, and its
 * claim on the session is dropped (session.c).
 */
#define pr_fmt(fmt) KBUILD_MODNAME "-mount: " fmt

#include <linux/module.h>
#include <linux/fs.h>
#include <linux/fs_context.h>
#include <linux/blkdev.h>
#include "bdsnap.h"
#include "session.h"
#include "registry.h"
#include "hook.h"

static int bdsnap_vfs_get_tree(struct fs_context *fc)
{
	struct bdsnap_claim *claim = NULL;
	dev_t dev;
	int ret;

	if ((fc->fs_type->fs_flags & FS_REQUIRES_DEV) && fc->source &&
	    !bdsnap_registry_empty() && !lookup_bdev(fc->source, &dev))
		claim = bdsnap_session_claim(dev, fc->fs_type->name);
	if (IS_ERR(claim)) {
		ret = PTR_ERR(claim);
		goto out;
	}
	ret = vfs_get_tree(fc);
	if (claim && ret)
		bdsnap_session_release(claim);
	else if (claim)
		bdsnap_session_mounted(claim, fc->root->d_sb);
out:
	bdsnap_hook_leave();
	return ret;
}

static void bdsnap_kill_block_super(struct super_block *sb)
{
	kill_block_super(sb);
	bdsnap_session_sb_gone(sb);
	bdsnap_hook_leave();
}

static void bdsnap_kill_anon_super(struct super_block *sb)
{
	kill_anon_super(sb);
	bdsnap_session_sb_gone(sb);
	bdsnap_hook_leave();
}

static struct bdsnap_hook bdsnap_mount_hooks[] = {
	{
		.target = (unsigned long)vfs_get_tree,
		.replacement = (unsigned long)bdsnap_vfs_get_tree,
		.may_sleep = true,
	}, {
		.target = (unsigned long)kill_block_super,
		.replacement = (unsigned long)bdsnap_kill_block_super,
		.may_sleep = true,
	}, {
		.target = (unsigned long)kill_anon_super,
		.replacement = (unsigned long)bdsnap_kill_anon_super,
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
