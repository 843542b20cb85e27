/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What every part of bdsnap.ko shares, and the small objects' interfaces.
 * The larger objects have a header each: blockmap.h, compress.h, store.h,
 * registry.h, tracker.h, session.h, hook.h (docs/architecture.md).
 */
#ifndef BDSNAP_H
#define BDSNAP_H

#include <linux/types.h>
#include <linux/blkdev.h>
#include <linux/crc32.h>
#include <uapi/bdsnap.h>
#include "compat.h"

struct bdsnap_session;

/* Blocks are tracked in units of BDSNAP_BLOCK_SIZE; sectors per block: */
#define BDSNAP_SECTORS_PER_BLOCK	(BDSNAP_BLOCK_SIZE >> SECTOR_SHIFT)

/* The store format's CRC-32: zlib's crc32(0, buf, len). */
static inline u32 bdsnap_crc32(const void *buf, size_t len)
{
	return ~crc32_le(~0U, buf, len);
}

/* the store directory (module parameter store_dir, session.c) */
extern char *bdsnap_store_dir;

/* auth.c */
int bdsnap_auth_init(char *password);
void bdsnap_auth_done(void);
int bdsnap_auth_check(const char *password);
int bdsnap_auth_set(const char *old_password, const char *new_password);

/* rollback.c: write a session's pre-images back to its device */
int bdsnap_rollback(struct bdsnap_session *s, const char *dir);

/* fingerprint.c: what the device holds at a session's end */
int bdsnap_fingerprint(struct bdsnap_session *s, unsigned int *nr_sample, u8 *digest);

/* mount.c: sessions start at mount, end at unmount */
int bdsnap_mount_init(void);
void bdsnap_mount_done(void);

/* ctl.c: /dev/snap */
int bdsnap_ctl_init(void);
void bdsnap_ctl_done(void);
int bdsnap_ctl_activate(const char *path, const char *password, u32 tracker, u32 flags);
int bdsnap_ctl_deactivate(const char *path, const char *password);

/* syscalls.c: activate_snapshot()/deactivate_snapshot() through usctm */
void bdsnap_syscalls_init(void);
void bdsnap_syscalls_done(void);
bool bdsnap_syscalls_installed(void);

#endif /* BDSNAP_H */
