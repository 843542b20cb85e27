/* SPDX-License-Identifier: GPL-2.0 */
/*
 * singlefilefs on-disk format, shared by the kernel module and mkfs.
 *
 * A singlefilefs image holds exactly one regular file, "the-file", in the
 * root directory. All blocks are SFS_BLOCK_SIZE (4096) bytes; every field is
 * little-endian and fixed width.
 *
 *   block 0       superblock (struct sfs_disk_super, rest of block zero)
 *   block 1       inode of the-file (struct sfs_disk_inode, rest zero)
 *   block 2 ..    data of the-file, contiguous: byte N of the file lives
 *                 in block 2 + N / 4096 at offset N % 4096
 *
 * Superblock (block 0):
 *
 *   offset size field       meaning
 *   0      4    magic       SFS_MAGIC ("SFFS" in byte order)
 *   4      4    version     SFS_VERSION
 *   8      4    block_size  must be SFS_BLOCK_SIZE
 *   12     4    flags       reserved, written as 0, ignored by readers
 *   16     8    nr_blocks   blocks of the file system, superblock and inode
 *                           block included; at most the device size
 *   24     40   reserved    written as 0, ignored by readers
 *
 * Inode (block 1):
 *
 *   offset size field       meaning
 *   0      8    size        file size in bytes, at most the capacity
 *                           (nr_blocks - 2) * SFS_BLOCK_SIZE
 *   8      56   reserved    written as 0, ignored by readers
 *
 * Bytes of the data blocks past the file size are undefined; the module
 * zero-fills them when the file grows (write past EOF, truncate up).
 */
#ifndef SINGLEFILEFS_H
#define SINGLEFILEFS_H

#include <linux/types.h>
#ifdef __KERNEL__
#include <linux/build_bug.h>
#else
#include <assert.h>
#endif

#define SFS_MAGIC		0x53464653U
#define SFS_VERSION		1U
#define SFS_BLOCK_SHIFT		12
#define SFS_BLOCK_SIZE		(1U << SFS_BLOCK_SHIFT)

#define SFS_SUPER_BLOCK		0
#define SFS_INODE_BLOCK		1
#define SFS_DATA_BLOCK		2
/* Superblock, inode block and at least one data block. */
#define SFS_MIN_BLOCKS		3

#define SFS_ROOT_INO		1
#define SFS_FILE_INO		2
#define SFS_FILE_NAME		"the-file"

/**
 * struct sfs_disk_super - superblock, at offset 0 of block 0
 * @magic: SFS_MAGIC
 * @version: SFS_VERSION
 * @block_size: SFS_BLOCK_SIZE
 * @flags: reserved, 0
 * @nr_blocks: blocks of the file system, metadata blocks included
 * @reserved: 0
 */
struct sfs_disk_super {
	__le32 magic;
	__le32 version;
	__le32 block_size;
	__le32 flags;
	__le64 nr_blocks;
	__le64 reserved[5];
};

/**
 * struct sfs_disk_inode - inode of the-file, at offset 0 of block 1
 * @size: file size in bytes
 * @reserved: 0
 */
struct sfs_disk_inode {
	__le64 size;
	__le64 reserved[7];
};

static_assert(sizeof(struct sfs_disk_super) == 64,
	      "sfs_disk_super must be 64 bytes");
static_assert(sizeof(struct sfs_disk_inode) == 64,
	      "sfs_disk_inode must be 64 bytes");

#endif /* SINGLEFILEFS_H */
