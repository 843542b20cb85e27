// SPDX-License-Identifier: GPL-2.0
/*
 * Session start for file systems that still mount through mount_bdev()
 * (vfat and ext2 on 6.1, ...): the same wrapper as mount.c's, for the
 * legacy entry point.  The kernel removed mount_bdev() in 7.0; there this
 * file is empty (compat.h).
 */
#define pr_fmt(fmt) KBUILD_MODNAME "-mount: " fmt

#include <linux/module.h>
#include <linux/fs.h>
#include "bdsnap.h"
#include "compat.h"

#ifdef BDSNAP_HAVE_MOUNT_BDEV
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

static struct bdsnap_hook bdsnap_mount_bdev_hook = {
	.target = (unsigned long)mount_bdev,
	.replacement = (unsigned long)bdsnap_mount_bdev,
	.may_sleep = true,
};

int bdsnap_mount_legacy_init(void)
{
	return bdsnap_hook_install(&bdsnap_mount_bdev_hook);
}

void bdsnap_mount_legacy_done(void)
{
	bdsnap_hook_remove(&bdsnap_mount_bdev_hook);
}
#endif /* BDSNAP_HAVE_MOUNT_BDEV */
