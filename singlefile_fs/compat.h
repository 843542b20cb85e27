/* SPDX-License-Identifier: GPL-2.0 */
/*
 * singlefilefs: the kernel-version differences of the VFS interfaces it
 * uses, behind names that say what they do (see module/compat.h for the
 * supported kernels and docs/kernels.md for the table).
 */
#ifndef SFS_COMPAT_H
#define SFS_COMPAT_H

#include <linux/version.h>
#include <linux/fs.h>

/* setattr's first argument: the mount's id mapping (6.3+) or user namespace. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
#define sfs_mnt_idmap	mnt_idmap
#define SFS_NOP_IDMAP	(&nop_mnt_idmap)
#else
#define sfs_mnt_idmap	user_namespace
#define SFS_NOP_IDMAP	(&init_user_ns)
#endif

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 5, 0)
#define sfs_splice_read	filemap_splice_read
#else
#define sfs_splice_read	generic_file_splice_read
#endif

/* Whether iget_locked() returned an inode that still needs filling in. */
static inline bool sfs_inode_is_new(struct inode *inode)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(7, 0, 0)
	return inode_state_read_once(inode) & I_NEW;
#else
	return READ_ONCE(inode->i_state) & I_NEW;
#endif
}

/* Set access, modification and change time to now. */
static inline void sfs_inode_init_times(struct inode *inode)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 7, 0)
	simple_inode_init_ts(inode);
#else
	inode->i_atime = current_time(inode);
	inode->i_mtime = inode->i_atime;
	inode->i_ctime = inode->i_atime;
#endif
}

/* Set modification and change time to now: the content changed. */
static inline void sfs_inode_touch(struct inode *inode)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 7, 0)
	inode_set_mtime_to_ts(inode, inode_set_ctime_current(inode));
#else
	inode->i_mtime = current_time(inode);
	inode->i_ctime = inode->i_mtime;
#endif
}

#endif /* SFS_COMPAT_H */
