// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * What identifies a device's content: the end-of-session fingerprint and
 * the file system UUID.
 *
 * The fingerprint (meta end_sample, end_sha256; docs/format.md) hashes up
 * to 256 of the blocks the session saved, as the device held them at the
 * session's end: exactly the blocks a restore is about to overwrite, so a
 * device that holds something else there is caught before it is damaged.
 *
 * The UUID is read from the superblock here rather than through libblkid:
 * the module records the kernel's s_uuid, the 16 bytes the superblock holds,
 * for the file systems bdsnap tracks (ext4 first, XFS), and reading those
 * same bytes needs no translation of blkid's formats nor another library
 * in libbdsnap (which is also linked statically).  A device whose UUID this
 * cannot read is simply not compared on it: the fingerprint is the proof.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SB_READ		4096U	/* both superblocks lie in the first 4 KiB */
#define EXT_SB		1024U	/* ext2/3/4: superblock offset */
#define EXT_MAGIC_AT	(EXT_SB + 56)
#define EXT_MAGIC	0xef53
#define EXT_UUID_AT	(EXT_SB + 104)
#define XFS_MAGIC	"XFSB"	/* sb_magicnum at 0, big-endian */
#define XFS_UUID_AT	32

static void hex16(const uint8_t *u, char out[33])
{
	int i;

	for (i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", u[i]);
}

int fs_uuid_read(int fd, bool direct, char out[33])
{
	static const uint8_t zero[16];
	const uint8_t *uuid = NULL;
	uint8_t *sb;
	uint16_t magic;
	int rc;

	out[0] = '\0';
	if (posix_memalign((void **)&sb, DIO_ALIGN, SB_READ))
		return -ENOMEM;
	rc = read_dev(fd, direct, sb, SB_READ, 0);
	if (!rc) {
		memcpy(&magic, sb + EXT_MAGIC_AT, sizeof(magic));
		if (le16toh(magic) == EXT_MAGIC)
			uuid = sb + EXT_UUID_AT;
		else if (!memcmp(sb, XFS_MAGIC, 4))
			uuid = sb + XFS_UUID_AT;
		/* The module records no UUID that is all zeros. */
		if (uuid && memcmp(uuid, zero, sizeof(zero)))
			hex16(uuid, out);
		else
			rc = -ENOENT;
	}
	free(sb);
	return rc ? (rc < 0 ? rc : -ENOENT) : 0;
}

int fingerprint(int fd, bool direct, const uint64_t *blocks, size_t n, uint64_t block_size,
		uint64_t size, uint64_t *sample, char out[65])
{
	/* A block is block_size bytes; with O_DIRECT the read is rounded up. */
	size_t cap = block_size > DIO_ALIGN ? block_size : DIO_ALIGN;
	size_t count = n <= 256 ? n : 256, i;
	uint64_t b, off;
	struct sha256 h;
	uint8_t *buf, le[8];
	size_t len;
	int rc = 0, k;

	if (posix_memalign((void **)&buf, DIO_ALIGN, cap))
		return -ENOMEM;
	sha256_init(&h);
	for (i = 0; i < count && !rc; i++) {
		/* More than 256: those at floor(i * n / 256), spread over the device. */
		b = blocks[n <= 256 ? i : (size_t)((uint64_t)i * n / 256)];
		off = b * block_size;
		if (off >= size) {
			rc = 1;
			break;
		}
		len = size - off < block_size ? size - off : block_size;
		rc = read_dev(fd, direct, buf, len, off);
		for (k = 0; k < 8; k++)
			le[k] = b >> (8 * k);
		sha256_update(&h, le, sizeof(le));
		sha256_update(&h, buf, len);
	}
	*sample = count;
	sha256_hex(&h, out);
	free(buf);
	return rc;
}
