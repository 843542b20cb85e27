// SPDX-License-Identifier: GPL-2.0
/*
 * singlefilefs: superblock, inodes and module registration.
 *
 * Every block is accessed through the buffer cache (sb_bread,
 * mark_buffer_dirty, brelse); see singlefilefs.h for the on-disk format.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/blkdev.h>
#include <linux/buffer_head.h>
#include <linux/fs.h>
#include <linux/fs_context.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/statfs.h>

#include "compat.h"
#include "sfs.h"
#include "singlefilefs.h"

/**
 * sfs_set_size() - set the in-memory size of the-file
 * @inode: the file inode
 * @size: new size in bytes
 */
void sfs_set_size(struct inode *inode, loff_t size)
{
	i_size_write(inode, size);
	inode->i_blocks = (blkcnt_t)DIV_ROUND_UP(size, SFS_BLOCK_SIZE) <<
			  (SFS_BLOCK_SHIFT - 9);
}

/**
 * sfs_write_inode_size() - store the in-memory size in the inode block
 * @inode: the file inode
 *
 * Reads the inode block with sb_bread(), updates the size field and marks
 * the buffer dirty. Called inside write and setattr whenever the size
 * changes.
 *
 * Return: 0 or -EIO.
 */
int sfs_write_inode_size(struct inode *inode)
{
	struct buffer_head *bh;
	struct sfs_disk_inode *di;

	bh = sb_bread(inode->i_sb, SFS_INODE_BLOCK);
	if (!bh)
		return -EIO;
	di = (struct sfs_disk_inode *)bh->b_data;
	di->size = cpu_to_le64(i_size_read(inode));
	mark_buffer_dirty(bh);
	brelse(bh);
	return 0;
}

/* Read the file size from the inode block. */
static int sfs_read_inode_size(struct super_block *sb, loff_t *size)
{
	struct buffer_head *bh;
	struct sfs_disk_inode *di;
	u64 disk_size;

	bh = sb_bread(sb, SFS_INODE_BLOCK);
	if (!bh)
		return -EIO;
	di = (struct sfs_disk_inode *)bh->b_data;
	disk_size = le64_to_cpu(di->size);
	brelse(bh);

	if (disk_size > SFS_SB(sb)->capacity) {
		pr_err("%pg: file size %llu exceeds the capacity %lld\n",
		       sb->s_bdev, disk_size, SFS_SB(sb)->capacity);
		return -EFBIG;
	}
	*size = disk_size;
	return 0;
}

/**
 * sfs_iget() - get the root directory or the-file inode
 * @sb: the super block
 * @ino: SFS_ROOT_INO or SFS_FILE_INO
 *
 * Return: the inode with a reference, or an ERR_PTR.
 */
struct inode *sfs_iget(struct super_block *sb, unsigned long ino)
{
	struct inode *inode;
	loff_t size;
	int ret;

	inode = iget_locked(sb, ino);
	if (!inode)
		return ERR_PTR(-ENOMEM);
	if (!sfs_inode_is_new(inode))
		return inode;

	if (ino == SFS_ROOT_INO) {
		inode_init_owner(SFS_NOP_IDMAP, inode, NULL, S_IFDIR | 0755);
		inode->i_op = &sfs_dir_inode_operations;
		inode->i_fop = &sfs_dir_operations;
		set_nlink(inode, 2);
	} else {
		ret = sfs_read_inode_size(sb, &size);
		if (ret)
			goto fail;
		inode_init_owner(SFS_NOP_IDMAP, inode, NULL, S_IFREG | 0644);
		inode->i_op = &sfs_file_inode_operations;
		inode->i_fop = &sfs_file_operations;
		set_nlink(inode, 1);
		sfs_set_size(inode, size);
	}
	sfs_inode_init_times(inode);
	unlock_new_inode(inode);
	return inode;

fail:
	iget_failed(inode);
	return ERR_PTR(ret);
}

static void sfs_put_super(struct super_block *sb)
{
	kfree(sb->s_fs_info);
	sb->s_fs_info = NULL;
}

static int sfs_statfs(struct dentry *dentry, struct kstatfs *buf)
{
	struct super_block *sb = dentry->d_sb;
	struct sfs_sb_info *sbi = SFS_SB(sb);
	struct inode *file;
	u64 used = 0;

	file = ilookup(sb, SFS_FILE_INO);
	if (file) {
		used = DIV_ROUND_UP(i_size_read(file), SFS_BLOCK_SIZE);
		iput(file);
	}
	buf->f_type = SFS_MAGIC;
	buf->f_bsize = SFS_BLOCK_SIZE;
	buf->f_blocks = sbi->nr_blocks;
	buf->f_bfree = sbi->nr_blocks - SFS_DATA_BLOCK - used;
	buf->f_bavail = buf->f_bfree;
	buf->f_files = 1;
	buf->f_ffree = 0;
	buf->f_namelen = sizeof(SFS_FILE_NAME) - 1;
	return 0;
}

static const struct super_operations sfs_super_operations = {
	.put_super = sfs_put_super,
	.statfs = sfs_statfs,
};

/* Check the on-disk superblock against the device; fills @sbi. */
static int sfs_check_super(struct super_block *sb,
			   const struct sfs_disk_super *dsb, int silent,
			   struct sfs_sb_info *sbi)
{
	u64 dev_blocks = bdev_nr_bytes(sb->s_bdev) >> SFS_BLOCK_SHIFT;
	u64 nr_blocks = le64_to_cpu(dsb->nr_blocks);

	if (le32_to_cpu(dsb->magic) != SFS_MAGIC) {
		if (!silent)
			pr_err("%pg: bad magic 0x%08x (expected 0x%08x)\n",
			       sb->s_bdev, le32_to_cpu(dsb->magic), SFS_MAGIC);
		return -EINVAL;
	}
	if (le32_to_cpu(dsb->version) != SFS_VERSION) {
		pr_err("%pg: unsupported version %u (supported: %u)\n",
		       sb->s_bdev, le32_to_cpu(dsb->version), SFS_VERSION);
		return -EINVAL;
	}
	if (le32_to_cpu(dsb->block_size) != SFS_BLOCK_SIZE) {
		pr_err("%pg: unsupported block size %u (supported: %u)\n",
		       sb->s_bdev, le32_to_cpu(dsb->block_size),
		       SFS_BLOCK_SIZE);
		return -EINVAL;
	}
	if (nr_blocks < SFS_MIN_BLOCKS) {
		pr_err("%pg: file system of %llu blocks is too small (minimum %u)\n",
		       sb->s_bdev, nr_blocks, SFS_MIN_BLOCKS);
		return -EINVAL;
	}
	if (nr_blocks > dev_blocks) {
		pr_err("%pg: file system of %llu blocks exceeds the device of %llu blocks\n",
		       sb->s_bdev, nr_blocks, dev_blocks);
		return -EINVAL;
	}
	sbi->nr_blocks = nr_blocks;
	sbi->capacity = (loff_t)(nr_blocks - SFS_DATA_BLOCK) << SFS_BLOCK_SHIFT;
	return 0;
}

static int sfs_fill_super(struct super_block *sb, struct fs_context *fc)
{
	bool silent = fc->sb_flags & SB_SILENT;
	struct sfs_sb_info *sbi;
	struct buffer_head *bh;
	struct inode *root;
	loff_t size;
	int ret;

	if (!sb_set_blocksize(sb, SFS_BLOCK_SIZE)) {
		pr_err("%pg: cannot use a block size of %u\n",
		       sb->s_bdev, SFS_BLOCK_SIZE);
		return -EINVAL;
	}
	if (bdev_nr_bytes(sb->s_bdev) < SFS_MIN_BLOCKS * SFS_BLOCK_SIZE) {
		pr_err("%pg: device of %lld bytes is too small (minimum %u)\n",
		       sb->s_bdev, bdev_nr_bytes(sb->s_bdev),
		       SFS_MIN_BLOCKS * SFS_BLOCK_SIZE);
		return -EINVAL;
	}

	sbi = kzalloc(sizeof(*sbi), GFP_KERNEL);
	if (!sbi)
		return -ENOMEM;
	sb->s_fs_info = sbi;

	bh = sb_bread(sb, SFS_SUPER_BLOCK);
	if (!bh) {
		pr_err("%pg: cannot read the superblock\n", sb->s_bdev);
		ret = -EIO;
		goto fail_free;
	}
	ret = sfs_check_super(sb, (struct sfs_disk_super *)bh->b_data,
			      silent, sbi);
	brelse(bh);
	if (ret)
		goto fail_free;

	/* Validate the file size now so a bad image fails the mount. */
	ret = sfs_read_inode_size(sb, &size);
	if (ret)
		goto fail_free;

	sb->s_magic = SFS_MAGIC;
	sb->s_op = &sfs_super_operations;
	sb->s_maxbytes = MAX_LFS_FILESIZE;
	sb->s_time_gran = 1;

	root = sfs_iget(sb, SFS_ROOT_INO);
	if (IS_ERR(root)) {
		ret = PTR_ERR(root);
		goto fail_free;
	}
	sb->s_root = d_make_root(root);
	if (!sb->s_root) {
		ret = -ENOMEM;
		goto fail_free;
	}
	return 0;

fail_free:
	sb->s_fs_info = NULL;
	kfree(sbi);
	return ret;
}

static int sfs_get_tree(struct fs_context *fc)
{
	return get_tree_bdev(fc, sfs_fill_super);
}

static const struct fs_context_operations sfs_context_operations = {
	.get_tree = sfs_get_tree,
};

/* No mount options of its own: the generic ones (ro, sync, ...) suffice. */
static int sfs_init_fs_context(struct fs_context *fc)
{
	fc->ops = &sfs_context_operations;
	return 0;
}

static struct file_system_type sfs_fs_type = {
	.owner = THIS_MODULE,
	.name = "singlefilefs",
	.init_fs_context = sfs_init_fs_context,
	.kill_sb = kill_block_super,
	.fs_flags = FS_REQUIRES_DEV,
};

static int __init sfs_init(void)
{
	int ret;

	ret = register_filesystem(&sfs_fs_type);
	if (ret)
		pr_err("cannot register the file system: %d\n", ret);
	return ret;
}

static void __exit sfs_exit(void)
{
	unregister_filesystem(&sfs_fs_type);
}

module_init(sfs_init);
module_exit(sfs_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("singlefilefs: a one-file file system on buffer heads");
MODULE_ALIAS_FS("singlefilefs");
