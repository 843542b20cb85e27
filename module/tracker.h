/* SPDX-License-Identifier: GPL-2.0 */
/* What a tracker does for the core: the contract of docs/architecture.md. */
#ifndef BDSNAP_TRACKER_H
#define BDSNAP_TRACKER_H

#include <linux/types.h>

struct bdsnap_session;

/**
 * struct bdsnap_tracker_ops - what a tracker does for a session.
 * @name: as in meta's "tracker" key.
 * @start: prepare a new session, before it becomes visible to the hooks.
 * @stop: the session is no longer visible to the hooks: hand every
 *	pre-image still in flight to the store.
 * @accepts: whether a mount of file system @fstype of the device activated
 *	as @path (of a partition of it if @partition) can be tracked exactly;
 *	0, or -errno with one log line.  NULL: every mount can.
 */
struct bdsnap_tracker_ops {
	const char *name;
	int (*start)(struct bdsnap_session *s);
	void (*stop)(struct bdsnap_session *s);
	int (*accepts)(const char *path, const char *fstype, bool partition);
};

extern const struct bdsnap_tracker_ops bdsnap_tracker_bio_ops;
extern const struct bdsnap_tracker_ops bdsnap_tracker_vfs_ops;

/* tracker_bio.c: V2, the block-layer tracker */
int bdsnap_tracker_bio_init(void);
void bdsnap_tracker_bio_done(void);

/* tracker_vfs.c: V1, vfs_write + buffer heads */
int bdsnap_tracker_vfs_init(void);
void bdsnap_tracker_vfs_done(void);

#endif /* BDSNAP_TRACKER_H */
