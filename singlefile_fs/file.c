// SPDX-License-Identifier: GPL-2.0
/*
 * singlefilefs: read, write, truncate and fsync of the-file.
 *
 * There is no page cache for the file: read_iter and write_iter copy
 * straight between the user buffer and buffer heads of the data blocks.
 * The write path reads every block it modifies with sb_bread() inside the
 * write call, then modifies it and marks it dirty: the data blocks, the
 * blocks zero-filled when writing past EOF, and the inode block when the
 * size changes. A tracker that hooks vfs_write() and __bread_gfp() thus
 * sees each block before it changes.
 */
#include <linux/blkdev.h>
#include <linux/buffer_head.h>
#include <linux/fs.h>
#include <linux/sched.h>
#include <linux/uio.h>

#include "compat.h"
#include "sfs.h"
#include "singlefilefs.h"

static inline sector_t sfs_pos_to_block(loff_t pos)
{
	return SFS_DATA_BLOCK + (pos >> SFS_BLOCK_SHIFT);
}

static inline unsigned int sfs_pos_to_offset(loff_t pos)
{
	return pos & (SFS_BLOCK_SIZE - 1);
}

/* Zero the file bytes [@from, @to) in the data blocks. */
static int sfs_zero_range(struct inode *inode, loff_t from, loff_t to)
{
	struct buffer_head *bh;
	unsigned int off;
	size_t n;

	while (from < to) {
		off = sfs_pos_to_offset(from);
		n = min_t(loff_t, SFS_BLOCK_SIZE - off, to - from);
		bh = sb_bread(inode->i_sb, sfs_pos_to_block(from));
		if (!bh)
			return -EIO;
		memset(bh->b_data + off, 0, n);
		mark_buffer_dirty(bh);
		brelse(bh);
		from += n;
		cond_resched();
	}
	return 0;
}

static ssize_t sfs_read_iter(struct kiocb *iocb, struct iov_iter *to)
{
	struct inode *inode = file_inode(iocb->ki_filp);
	struct buffer_head *bh;
	loff_t pos = iocb->ki_pos;
	size_t count, copied, n;
	ssize_t done = 0;
	unsigned int off;
	int ret = 0;

	inode_lock_shared(inode);
	if (pos >= i_size_read(inode))
		goto out_unlock;
	count = min_t(loff_t, iov_iter_count(to), i_size_read(inode) - pos);

	while (done < count) {
		off = sfs_pos_to_offset(pos);
		n = min_t(size_t, SFS_BLOCK_SIZE - off, count - done);
		bh = sb_bread(inode->i_sb, sfs_pos_to_block(pos));
		if (!bh) {
			ret = -EIO;
			break;
		}
		copied = copy_to_iter(bh->b_data + off, n, to);
		brelse(bh);
		done += copied;
		pos += copied;
		if (copied < n) {
			ret = -EFAULT;
			break;
		}
		cond_resched();
	}
	iocb->ki_pos = pos;
out_unlock:
	inode_unlock_shared(inode);
	return done ? done : ret;
}

/* Copy @from into the data blocks at @pos; returns bytes copied or -errno. */
static ssize_t sfs_write_blocks(struct inode *inode, loff_t pos,
				struct iov_iter *from)
{
	size_t count = iov_iter_count(from);
	struct buffer_head *bh;
	size_t copied, n;
	ssize_t done = 0;
	unsigned int off;
	int ret = 0;

	while (done < count) {
		off = sfs_pos_to_offset(pos);
		n = min_t(size_t, SFS_BLOCK_SIZE - off, count - done);
		bh = sb_bread(inode->i_sb, sfs_pos_to_block(pos));
		if (!bh) {
			ret = -EIO;
			break;
		}
		copied = copy_from_iter(bh->b_data + off, n, from);
		if (copied)
			mark_buffer_dirty(bh);
		brelse(bh);
		done += copied;
		pos += copied;
		if (copied < n) {
			ret = -EFAULT;
			break;
		}
		cond_resched();
	}
	return done ? done : ret;
}

/* Set the size in memory and in the inode block; undo on failure. */
static int sfs_update_size(struct inode *inode, loff_t size)
{
	loff_t old_size = i_size_read(inode);
	int ret;

	sfs_set_size(inode, size);
	ret = sfs_write_inode_size(inode);
	if (ret)
		sfs_set_size(inode, old_size);
	return ret;
}

static ssize_t sfs_write_iter(struct kiocb *iocb, struct iov_iter *from)
{
	struct file *file = iocb->ki_filp;
	struct inode *inode = file_inode(file);
	loff_t capacity = SFS_SB(inode->i_sb)->capacity;
	loff_t pos, old_size;
	ssize_t ret;
	int err;

	inode_lock(inode);
	/* Handles O_APPEND (ki_pos = i_size), rlimits and zero counts. */
	ret = generic_write_checks(iocb, from);
	if (ret <= 0)
		goto out_unlock;
	pos = iocb->ki_pos;
	if (pos >= capacity) {
		ret = -ENOSPC;
		goto out_unlock;
	}
	iov_iter_truncate(from, capacity - pos);

	ret = file_remove_privs(file);
	if (ret)
		goto out_unlock;

	old_size = i_size_read(inode);
	if (pos > old_size) {
		ret = sfs_zero_range(inode, old_size, pos);
		if (ret)
			goto out_unlock;
	}

	ret = sfs_write_blocks(inode, pos, from);
	if (ret <= 0)
		goto out_unlock;

	if (pos + ret > old_size) {
		err = sfs_update_size(inode, pos + ret);
		if (err) {
			ret = err;
			goto out_unlock;
		}
	}
	iocb->ki_pos = pos + ret;
	sfs_inode_touch(inode);

out_unlock:
	inode_unlock(inode);
	if (ret > 0)
		ret = generic_write_sync(iocb, ret);
	return ret;
}

/* Change the file size; called with the inode lock held. */
static int sfs_truncate(struct inode *inode, loff_t size)
{
	loff_t old_size = i_size_read(inode);
	int ret;

	if (size > SFS_SB(inode->i_sb)->capacity)
		return -EFBIG;
	if (size > old_size) {
		ret = sfs_zero_range(inode, old_size, size);
		if (ret)
			return ret;
	}
	return sfs_update_size(inode, size);
}

static int sfs_setattr(struct sfs_mnt_idmap *idmap,
		       struct dentry *dentry, struct iattr *attr)
{
	struct inode *inode = d_inode(dentry);
	int ret;

	ret = setattr_prepare(idmap, dentry, attr);
	if (ret)
		return ret;

	if ((attr->ia_valid & ATTR_SIZE) &&
	    attr->ia_size != i_size_read(inode)) {
		ret = sfs_truncate(inode, attr->ia_size);
		if (ret)
			return ret;
	}
	/* Mode, owner and times live in memory only. */
	setattr_copy(idmap, inode, attr);
	return 0;
}

/* Write every dirty buffer of the device and flush its cache. */
static int sfs_fsync(struct file *file, loff_t start, loff_t end,
		     int datasync)
{
	struct block_device *bdev = file_inode(file)->i_sb->s_bdev;
	int ret;

	ret = sync_blockdev(bdev);
	if (ret)
		return ret;
	return blkdev_issue_flush(bdev);
}

const struct inode_operations sfs_file_inode_operations = {
	.setattr = sfs_setattr,
};

/*
 * No .splice_write and no .mmap: every modification of the file goes
 * through write_iter.
 */
const struct file_operations sfs_file_operations = {
	.owner = THIS_MODULE,
	.open = generic_file_open,
	.llseek = generic_file_llseek,
	.read_iter = sfs_read_iter,
	.write_iter = sfs_write_iter,
	.splice_read = sfs_splice_read,
	.fsync = sfs_fsync,
};
