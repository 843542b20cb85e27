/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Every kernel-version difference bdsnap.ko meets, behind a name that says
 * what it does, so that the rest of the module reads as code of one kernel.
 * Keyed on LINUX_VERSION_CODE at the upstream release that changed the API.
 *
 * Supported and tested: Debian 12 (6.1), Debian 13 (6.12), Debian sid (7.x);
 * docs/kernels.md has the table.  Kernels between the series we test are
 * accepted where the API is known; 6.5-6.8 (three short-lived ways of
 * opening a block device) are refused at build time rather than guessed.
 */
#ifndef BDSNAP_COMPAT_H
#define BDSNAP_COMPAT_H

#include <linux/version.h>
#include <linux/blkdev.h>
#include <linux/fs.h>
#include <linux/file.h>
#include <linux/mount.h>
#include <linux/namei.h>

#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 1, 0)
#error "bdsnap needs Linux 6.1 or later"
#endif
#if !IS_ENABLED(CONFIG_KPROBES) || !IS_ENABLED(CONFIG_KRETPROBES)
#error "bdsnap needs CONFIG_KPROBES and CONFIG_KRETPROBES (the V1 tracker)"
#endif
#if !IS_ENABLED(CONFIG_DYNAMIC_FTRACE_WITH_REGS)
#error "bdsnap needs CONFIG_DYNAMIC_FTRACE_WITH_REGS (function redirection with ftrace)"
#endif
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 5, 0) && \
	LINUX_VERSION_CODE < KERNEL_VERSION(6, 9, 0)
#error "bdsnap does not support Linux 6.5-6.8 (see docs/kernels.md)"
#endif

/**
 * struct bdsnap_bdev_ref - a block device held open for reading.
 * @bdev: the device.
 * @file: what closes it (6.9+: block devices are opened as files).
 */
struct bdsnap_bdev_ref {
	struct block_device *bdev;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 9, 0)
	struct file *file;
#endif
};

static inline int bdsnap_bdev_open_read(dev_t dev, struct bdsnap_bdev_ref *ref)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 9, 0)
	ref->file = bdev_file_open_by_dev(dev, BLK_OPEN_READ, NULL, NULL);
	if (IS_ERR(ref->file))
		return PTR_ERR(ref->file);
	ref->bdev = file_bdev(ref->file);
#else
	ref->bdev = blkdev_get_by_dev(dev, FMODE_READ, NULL);
	if (IS_ERR(ref->bdev))
		return PTR_ERR(ref->bdev);
#endif
	return 0;
}

static inline void bdsnap_bdev_close(struct bdsnap_bdev_ref *ref)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 9, 0)
	fput(ref->file);
#else
	blkdev_put(ref->bdev, FMODE_READ);
#endif
}

/*
 * Make directory @name with @mode, as mkdir(2) would for root.
 * Return: 0, -EEXIST, or the lookup or file system's error.
 */
static inline int bdsnap_kern_mkdir(const char *name, umode_t mode)
{
	struct dentry *dentry;
	struct path parent;
	int ret;

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 18, 0)
	dentry = start_creating_path(AT_FDCWD, name, &parent, LOOKUP_DIRECTORY);
#else
	dentry = kern_path_create(AT_FDCWD, name, &parent, LOOKUP_DIRECTORY);
#endif
	if (IS_ERR(dentry))
		return PTR_ERR(dentry);
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 19, 0)
	dentry = vfs_mkdir(mnt_idmap(parent.mnt), d_inode(parent.dentry), dentry, mode, NULL);
	ret = PTR_ERR_OR_ZERO(dentry);
#elif LINUX_VERSION_CODE >= KERNEL_VERSION(6, 15, 0)
	dentry = vfs_mkdir(mnt_idmap(parent.mnt), d_inode(parent.dentry), dentry, mode);
	ret = PTR_ERR_OR_ZERO(dentry);
#elif LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
	ret = vfs_mkdir(mnt_idmap(parent.mnt), d_inode(parent.dentry), dentry, mode);
#else
	ret = vfs_mkdir(mnt_user_ns(parent.mnt), d_inode(parent.dentry), dentry, mode);
#endif
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 18, 0)
	end_creating_path(&parent, dentry);
#else
	done_path_create(&parent, dentry);
#endif
	return ret;
}

/*
 * Remove @name from the directory @parent: a file, or an empty directory
 * when @is_dir, as unlink(2)/rmdir(2) would for root.
 * Return: 0, -ENOENT, or the file system's error.
 */
static inline int bdsnap_kern_remove(const struct path *parent, const char *name, bool is_dir)
{
	struct inode *dir = d_inode(parent->dentry);
	struct dentry *dentry;
	int ret;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
	struct mnt_idmap *idmap = mnt_idmap(parent->mnt);
#else
	struct user_namespace *idmap = mnt_user_ns(parent->mnt);
#endif

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 19, 0)
	dentry = start_removing(idmap, parent->dentry, &QSTR(name));
	if (IS_ERR(dentry))
		return PTR_ERR(dentry);
	ret = is_dir ? vfs_rmdir(idmap, dir, dentry, NULL) : vfs_unlink(idmap, dir, dentry, NULL);
	end_removing(dentry);
#else
	inode_lock_nested(dir, I_MUTEX_PARENT);
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 16, 0)
	dentry = lookup_noperm(&QSTR(name), parent->dentry);
#else
	dentry = lookup_one_len(name, parent->dentry, strlen(name));
#endif
	ret = PTR_ERR_OR_ZERO(dentry);
	if (!ret && d_is_negative(dentry))
		ret = -ENOENT;
	if (!ret)
		ret = is_dir ? vfs_rmdir(idmap, dir, dentry) : vfs_unlink(idmap, dir, dentry, NULL);
	if (!IS_ERR(dentry))
		dput(dentry);
	inode_unlock(dir);
#endif
	return ret;
}

/*
 * Write @iter at *@pos of @file (advanced by what was written) as pwritev(2)
 * would, freeze protection of the file system included: 6.8 moved
 * file_start_write() from the callers into vfs_iter_write().
 * Return: bytes written or -errno.
 */
static inline ssize_t bdsnap_iter_write(struct file *file, struct iov_iter *iter, loff_t *pos)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 8, 0)
	return vfs_iter_write(file, iter, pos, 0);
#else
	ssize_t ret;

	file_start_write(file);
	ret = vfs_iter_write(file, iter, pos, 0);
	file_end_write(file);
	return ret;
#endif
}

#endif /* BDSNAP_COMPAT_H */
