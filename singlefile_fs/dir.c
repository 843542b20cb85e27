// SPDX-License-Identifier: GPL-2.0
/*
 * singlefilefs: the root directory, which lists exactly one entry,
 * "the-file". It is not stored on disk.
 */
#include <linux/fs.h>
#include <linux/string.h>

#include "sfs.h"
#include "singlefilefs.h"

/* Directory positions: 0 ".", 1 "..", 2 "the-file", 3 end. */
#define SFS_DIR_POS_FILE	2

static int sfs_iterate(struct file *file, struct dir_context *ctx)
{
	if (!dir_emit_dots(file, ctx))
		return 0;
	if (ctx->pos == SFS_DIR_POS_FILE) {
		if (!dir_emit(ctx, SFS_FILE_NAME, sizeof(SFS_FILE_NAME) - 1,
			      SFS_FILE_INO, DT_REG))
			return 0;
		ctx->pos++;
	}
	return 0;
}

static struct dentry *sfs_lookup(struct inode *dir, struct dentry *dentry,
				 unsigned int flags)
{
	struct inode *inode = NULL;

	if (dentry->d_name.len == sizeof(SFS_FILE_NAME) - 1 &&
	    !memcmp(dentry->d_name.name, SFS_FILE_NAME, dentry->d_name.len)) {
		inode = sfs_iget(dir->i_sb, SFS_FILE_INO);
		if (IS_ERR(inode))
			return ERR_CAST(inode);
	}
	return d_splice_alias(inode, dentry);
}

const struct inode_operations sfs_dir_inode_operations = {
	.lookup = sfs_lookup,
};

const struct file_operations sfs_dir_operations = {
	.owner = THIS_MODULE,
	.llseek = generic_file_llseek,
	.read = generic_read_dir,
	.iterate_shared = sfs_iterate,
};
