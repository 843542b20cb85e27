/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * bdsnap - copy-on-write snapshots of block devices per mount cycle.
 *
 * The single definition of everything that crosses the kernel/user boundary:
 * the /dev/snap ioctls and their structs, and the on-disk store format that
 * the kernel writes and libbdsnap reads.  The kernel, the library and the
 * tests all include this file; nothing re-declares it.
 *
 * Every request struct starts with a __u32 size (the caller's sizeof) so the
 * struct can grow at its end; the kernel accepts any size >= the first
 * version's and treats missing trailing fields as zero.  Reserved fields must
 * be zero.  Strings are NUL-terminated inside their array; an empty or
 * unterminated string is -EINVAL.
 */
#ifndef _UAPI_LINUX_BDSNAP_H
#define _UAPI_LINUX_BDSNAP_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define BDSNAP_VERSION_MAJOR	0
#define BDSNAP_VERSION_MINOR	2
#define BDSNAP_VERSION_PATCH	0

#define BDSNAP_CTL_NAME		"snap"		/* /dev/snap */
#define BDSNAP_PATH_MAX		4096
#define BDSNAP_PASSWORD_MAX	256
#define BDSNAP_NAME_MAX		64		/* kernel device name */
#define BDSNAP_SESSION_MAX	256		/* session directory name */

/* Trackers: which hook decides which blocks are about to change. */
enum bdsnap_tracker {
	BDSNAP_TRACKER_DEFAULT = 0,	/* the block-layer tracker */
	BDSNAP_TRACKER_BIO = 1,		/* V2: submit_bio_noacct, any file system */
	BDSNAP_TRACKER_VFS = 2,		/* V1: vfs_write + buffer heads */
};

/* struct bdsnap_activate.flags */
#define BDSNAP_ACT_ORDERED	(1U << 0)	/* write released only once its pre-image is durable */
/*
 * Every session is rolled back when it ends: at unmount, after the file
 * system's last write, the kernel writes the session's pre-images back, so
 * the next mount sees the pre-mount content.  Needs BDSNAP_ACT_ORDERED (a
 * crash must leave the pre-images durable: the rollback is then finished at
 * the next boot from the store) and the bio tracker.  Meta of such a session
 * says "rollback=yes" and "keep=yes|no"; a finished rollback appends
 * "rolled_back=<time>" (with BDSNAP_ACT_KEEP) or deletes the session.
 */
#define BDSNAP_ACT_ROLLBACK	(1U << 1)
#define BDSNAP_ACT_KEEP		(1U << 2)	/* keep rolled-back sessions (with ROLLBACK only) */
#define BDSNAP_ACT_FLAGS_ALL	(BDSNAP_ACT_ORDERED | BDSNAP_ACT_ROLLBACK | BDSNAP_ACT_KEEP)

/**
 * struct bdsnap_activate - argument of ACTIVATE and DEACTIVATE.
 * @size: sizeof(struct bdsnap_activate) as the caller knows it.
 * @flags: BDSNAP_ACT_* (ACTIVATE only; zero for DEACTIVATE).
 * @tracker: enum bdsnap_tracker (ACTIVATE only; zero for DEACTIVATE).
 * @reserved: must be zero.
 * @path: a block device node, or a regular file that is (or will be) the
 *	backing image of a loop device.
 * @password: the module password.
 */
struct bdsnap_activate {
	__u32 size;
	__u32 flags;
	__u32 tracker;
	__u32 reserved[5];
	char path[BDSNAP_PATH_MAX];
	char password[BDSNAP_PASSWORD_MAX];
};

/* struct bdsnap_dev_info.key_type */
#define BDSNAP_KEY_BDEV		1	/* matched by device number */
#define BDSNAP_KEY_FILE		2	/* matched by the loop backing file's identity */

/* struct bdsnap_dev_info.session_state */
enum bdsnap_session_state {
	BDSNAP_SESSION_NONE = 0,	/* activated, not mounted */
	BDSNAP_SESSION_OPEN = 1,	/* mounted, tracking */
	BDSNAP_SESSION_INCOMPLETE = 2,	/* mounted, a pre-image could not be stored */
	BDSNAP_SESSION_ROLLING_BACK = 3,	/* unmounted, its pre-images being written back */
	BDSNAP_SESSION_ROLLBACK_FAILED = 4,	/* that rollback failed: mounts refused */
};

/**
 * struct bdsnap_dev_info - one activated device, filled by LIST.
 * @size: sizeof(struct bdsnap_dev_info) as the kernel fills it.
 * @key_type: BDSNAP_KEY_*.
 * @tracker: enum bdsnap_tracker in use.
 * @flags: BDSNAP_ACT_* given at activation.
 * @session_state: enum bdsnap_session_state.
 * @reserved0: zero.
 * @dev: device number (new_encode_dev) of the tracked block device, or 0.
 * @sessions: sessions started since activation.
 * @blocks_saved: pre-images taken in the open session.
 * @bytes_raw: bytes of those pre-images before compression.
 * @bytes_stored: bytes appended to the store (records + payload).
 * @queue_depth: pre-images waiting to be written to the store.
 * @writes_held: write bios currently held for a pre-image read.
 * @errors: store or read errors in the open session.
 * @reserved: zero.
 * @path: the path given at activation.
 * @devname: kernel name of the mounted device, e.g. "loop3" (open session).
 * @session: session directory name under the store (open session).
 */
struct bdsnap_dev_info {
	__u32 size;
	__u32 key_type;
	__u32 tracker;
	__u32 flags;
	__u32 session_state;
	__u32 reserved0;
	__u64 dev;
	__u64 sessions;
	__u64 blocks_saved;
	__u64 bytes_raw;
	__u64 bytes_stored;
	__u64 queue_depth;
	__u64 writes_held;
	__u64 errors;
	__u64 reserved[5];
	char path[BDSNAP_PATH_MAX];
	char devname[BDSNAP_NAME_MAX];
	char session[BDSNAP_SESSION_MAX];
};

/**
 * struct bdsnap_list - argument of LIST.
 * @size: sizeof(struct bdsnap_list).
 * @capacity: entries the caller provided room for at @entries.
 * @count: out: number of activated devices (may exceed @capacity: only
 *	the first @capacity are written).
 * @entry_size: sizeof(struct bdsnap_dev_info) as the caller knows it.
 * @entries: user pointer to an array of @capacity entries.
 * @reserved: zero.
 */
struct bdsnap_list {
	__u32 size;
	__u32 capacity;
	__u32 count;
	__u32 entry_size;
	__u64 entries;
	__u64 reserved[2];
};

/* struct bdsnap_version.features */
#define BDSNAP_FEAT_TRACKER_BIO	(1U << 0)
#define BDSNAP_FEAT_TRACKER_VFS	(1U << 1)
#define BDSNAP_FEAT_ORDERED	(1U << 2)
#define BDSNAP_FEAT_SYSCALLS	(1U << 3)
#define BDSNAP_FEAT_SYNC_STORE	(1U << 4)
#define BDSNAP_FEAT_ROLLBACK	(1U << 5)

/**
 * struct bdsnap_version - argument of VERSION.
 * @size: sizeof(struct bdsnap_version).
 * @major: BDSNAP_VERSION_MAJOR of the module.
 * @minor: BDSNAP_VERSION_MINOR.
 * @patch: BDSNAP_VERSION_PATCH.
 * @store_format: BDSNAP_STORE_VERSION written by the module.
 * @features: BDSNAP_FEAT_*.
 * @block_size: bytes per tracked block.
 * @reserved: zero.
 */
struct bdsnap_version {
	__u32 size;
	__u32 major;
	__u32 minor;
	__u32 patch;
	__u32 store_format;
	__u32 features;
	__u32 block_size;
	__u32 reserved[5];
};

/**
 * struct bdsnap_set_password - argument of SET_PASSWORD.
 * @size: sizeof(struct bdsnap_set_password).
 * @reserved: zero.
 * @old_password: the current password.
 * @new_password: the replacement; not empty.
 */
struct bdsnap_set_password {
	__u32 size;
	__u32 reserved[3];
	char old_password[BDSNAP_PASSWORD_MAX];
	char new_password[BDSNAP_PASSWORD_MAX];
};

/**
 * struct bdsnap_sync_store - argument of SYNC_STORE.
 * @size: sizeof(struct bdsnap_sync_store) as the caller knows it.
 * @reserved: must be zero.
 * @session: the open session's directory name under the store.
 */
struct bdsnap_sync_store {
	__u32 size;
	__u32 reserved[3];
	char session[BDSNAP_SESSION_MAX];
};

#define BDSNAP_IOC_MAGIC	'S'

/*
 * BDSNAP_IOC_VERSION - module and format version.
 * Return: 0, or -EFAULT / -EINVAL (size too small).
 */
#define BDSNAP_IOC_VERSION	_IOWR(BDSNAP_IOC_MAGIC, 0x00, struct bdsnap_version)
/*
 * BDSNAP_IOC_ACTIVATE - start snapshotting a device at its next mounts.
 * Return: 0; -EPERM without CAP_SYS_ADMIN; -EACCES wrong password (after a
 * fixed delay); -EINVAL malformed request; -ENOENT no such path; -ENOTBLK
 * neither a block device nor a regular file; -EEXIST already activated;
 * -EXDEV the store directory is on the device itself.  Flags: ROLLBACK
 * without ORDERED, KEEP without ROLLBACK, or ROLLBACK with the VFS tracker
 * are -EINVAL.
 */
#define BDSNAP_IOC_ACTIVATE	_IOW(BDSNAP_IOC_MAGIC, 0x01, struct bdsnap_activate)
/*
 * BDSNAP_IOC_DEACTIVATE - stop snapshotting a device.
 * Return: 0; -EPERM; -EACCES; -EINVAL; -ENODEV not activated; -EBUSY the
 * device is mounted (a session is open) or its rollback is running: unmount
 * first.  A device whose rollback failed (BDSNAP_SESSION_ROLLBACK_FAILED)
 * refuses mounts until it is deactivated: restore that session by hand
 * first.
 */
#define BDSNAP_IOC_DEACTIVATE	_IOW(BDSNAP_IOC_MAGIC, 0x02, struct bdsnap_activate)
/*
 * BDSNAP_IOC_LIST - activated devices and their open sessions.
 * Return: 0 with @count set; -EPERM; -EINVAL; -EFAULT.
 */
#define BDSNAP_IOC_LIST		_IOWR(BDSNAP_IOC_MAGIC, 0x03, struct bdsnap_list)
/*
 * BDSNAP_IOC_SET_PASSWORD - replace the module password.
 * Return: 0; -EPERM; -EACCES wrong old password; -EINVAL.
 */
#define BDSNAP_IOC_SET_PASSWORD	_IOW(BDSNAP_IOC_MAGIC, 0x04, struct bdsnap_set_password)
/*
 * BDSNAP_IOC_SYNC_STORE - wait until every pre-image the open session has
 * taken so far is written to its log ("blocks"), readable by a reader of
 * the file (durable only in ordered mode).  A reader that reads a device
 * block and then, after this returns, finds no record of it in the log
 * read the block's content from before the mount: a plain session queues
 * a pre-image before it lets the block's write through.
 * Return: 0; -EPERM; -EINVAL; -ENOENT no open session of that name (it
 * ended: its log is complete, meta says how it ended); -EIO the session
 * has failed (a write may have gone through without its pre-image).
 */
#define BDSNAP_IOC_SYNC_STORE	_IOW(BDSNAP_IOC_MAGIC, 0x05, struct bdsnap_sync_store)

/*
 * On-disk store format, version 1 (docs/format.md has the full description).
 *
 * A session directory <store>/<devname>_<YYYYmmddTHHMMSS.nnnnnnnnnZ>/ holds:
 *
 *  meta    text, one "key=value" per line, append-only: a later line for the
 *          same key overrides an earlier one, so the kernel only ever appends
 *          (state=open at start, counters and state=complete at the end) and a
 *          crash never leaves a half-rewritten file.
 *  blocks  binary log: struct bdsnap_store_header, then records, each a
 *          struct bdsnap_record followed by stored_len payload bytes.
 *
 * All integers little-endian.  Checksums are CRC-32 (IEEE 802.3, the one zlib's
 * crc32() computes): crc = crc32(0, bytes, len).  A record whose header or data
 * checksum does not match, or that is cut short at the end of the file, is not
 * part of the session (a crash can leave one torn record at the tail).
 */
#define BDSNAP_STORE_MAGIC	0x545350414e534442ULL	/* bytes "BDSNAPST" */
#define BDSNAP_STORE_VERSION	1
#define BDSNAP_RECORD_MAGIC	0x43455242U		/* bytes "BREC" */
#define BDSNAP_BLOCK_SIZE	4096

/**
 * struct bdsnap_store_header - first 64 bytes of a "blocks" file.
 * @magic: BDSNAP_STORE_MAGIC.
 * @version: BDSNAP_STORE_VERSION.
 * @header_size: sizeof(struct bdsnap_store_header); records start here.
 * @block_size: bytes per block (BDSNAP_BLOCK_SIZE); block n covers bytes
 *	[n * block_size, (n + 1) * block_size) of the device.
 * @flags: zero in version 1.
 * @device_size: size of the device in bytes at session start.
 * @uuid: random session identifier, also in meta.
 * @reserved: zero.
 * @header_crc: CRC-32 of the bytes before this field.
 */
struct bdsnap_store_header {
	__le64 magic;
	__le32 version;
	__le32 header_size;
	__le32 block_size;
	__le32 flags;
	__le64 device_size;
	__u8 uuid[16];
	__le32 reserved[3];
	__le32 header_crc;
};

/* struct bdsnap_record.flags */
#define BDSNAP_REC_ZLIB		(1U << 0)	/* payload is a zlib stream, else raw */
#define BDSNAP_REC_FLAGS_ALL	(BDSNAP_REC_ZLIB)

/**
 * struct bdsnap_record - header of one saved block in a "blocks" file.
 * @magic: BDSNAP_RECORD_MAGIC.
 * @flags: BDSNAP_REC_*.
 * @block: block number (in block_size units, from the device's start).
 * @raw_len: bytes of the pre-image: block_size, or less for a device's
 *	last, partial block.
 * @stored_len: payload bytes that follow this header.
 * @data_crc: CRC-32 of the raw (uncompressed) pre-image.
 * @header_crc: CRC-32 of the 28 bytes before this field.
 */
struct bdsnap_record {
	__le32 magic;
	__le32 flags;
	__le64 block;
	__le32 raw_len;
	__le32 stored_len;
	__le32 data_crc;
	__le32 header_crc;
};

#ifdef __cplusplus
#define BDSNAP_STATIC_ASSERT static_assert
#else
#define BDSNAP_STATIC_ASSERT _Static_assert
#endif
BDSNAP_STATIC_ASSERT(sizeof(struct bdsnap_activate) == 32 + BDSNAP_PATH_MAX + BDSNAP_PASSWORD_MAX,
		     "bdsnap_activate layout");
BDSNAP_STATIC_ASSERT(sizeof(struct bdsnap_dev_info) == 128 + BDSNAP_PATH_MAX + BDSNAP_NAME_MAX +
		     BDSNAP_SESSION_MAX, "bdsnap_dev_info layout");
BDSNAP_STATIC_ASSERT(sizeof(struct bdsnap_list) == 40, "bdsnap_list layout");
BDSNAP_STATIC_ASSERT(sizeof(struct bdsnap_version) == 48, "bdsnap_version layout");
BDSNAP_STATIC_ASSERT(sizeof(struct bdsnap_store_header) == 64, "store header layout");
BDSNAP_STATIC_ASSERT(sizeof(struct bdsnap_record) == 32, "record layout");
#undef BDSNAP_STATIC_ASSERT

#endif /* _UAPI_LINUX_BDSNAP_H */
