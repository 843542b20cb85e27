/* SPDX-License-Identifier: GPL-2.0 */
/*
 * singlefilefs: in-memory structures and the interfaces between
 * super.c (mount, inodes), dir.c (root directory) and file.c (the-file).
 */
#ifndef SFS_H
#define SFS_H

#include <linux/fs.h>
#include <linux/types.h>

/**
 * struct sfs_sb_info - per-mount information
 * @nr_blocks: blocks of the file system, from the superblock
 * @capacity: largest possible file size in bytes
 */
struct sfs_sb_info {
	u64 nr_blocks;
	loff_t capacity;
};

static inline struct sfs_sb_info *SFS_SB(struct super_block *sb)
{
	return sb->s_fs_info;
}

/* super.c */
struct inode *sfs_iget(struct super_block *sb, unsigned long ino);
int sfs_write_inode_size(struct inode *inode);
void sfs_set_size(struct inode *inode, loff_t size);

/* dir.c */
extern const struct inode_operations sfs_dir_inode_operations;
extern const struct file_operations sfs_dir_operations;

/* file.c */
extern const struct inode_operations sfs_file_inode_operations;
extern const struct file_operations sfs_file_operations;

#endif /* SFS_H */
