/* SPDX-License-Identifier: GPL-2.0 */
/* Activated devices. */
#ifndef BDSNAP_REGISTRY_H
#define BDSNAP_REGISTRY_H

#include <linux/types.h>
#include <linux/list.h>
#include <uapi/bdsnap.h>

struct bdsnap_session;

/* registry.c: activated devices */
/**
 * struct bdsnap_device - one activated device.
 * @node: in the registry list.
 * @path: as given at activation.
 * @key_type: BDSNAP_KEY_BDEV (match @dev) or BDSNAP_KEY_FILE (match the
 *	loop backing file @file_sdev/@file_ino).
 * @tracker: enum bdsnap_tracker.
 * @flags: BDSNAP_ACT_*.
 * @nr_sessions: sessions started since activation.
 * @session: the open session (mounted, or being rolled back), or NULL.
 * @rollback_failed: the session whose rollback failed, or "": mounts are
 *	refused until the device is deactivated.
 */
struct bdsnap_device {
	struct list_head node;
	char *path;
	u32 key_type;
	dev_t dev;
	dev_t file_sdev;
	unsigned long file_ino;
	u32 tracker;
	u32 flags;
	u64 nr_sessions;
	struct bdsnap_session *session;
	char rollback_failed[BDSNAP_SESSION_MAX];
};

void bdsnap_registry_lock(void);
void bdsnap_registry_unlock(void);
int bdsnap_registry_add(const char *path, u32 tracker, u32 flags);
int bdsnap_registry_remove(const char *path);
struct bdsnap_device *bdsnap_registry_match(dev_t dev, dev_t *tracked);
bool bdsnap_registry_empty(void);
struct path;
int bdsnap_loop_backing_path(dev_t dev, struct path *path);
int bdsnap_registry_list(struct bdsnap_dev_info *info, u32 capacity, u32 *count);
void bdsnap_registry_done(void);

#endif /* BDSNAP_REGISTRY_H */
