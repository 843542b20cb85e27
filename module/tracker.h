/* SPDX-License-Identifier: GPL-2.0 */
/* What a tracker does for the core: the contract of docs/architecture.md. */
#ifndef BDSNAP_TRACKER_H
#define BDSNAP_TRACKER_H

#include <linux/types.h>

struct bdsnap_session;

/**
 * struct bdsnap_tracker_ops - what a tracker does for a session.
 * @name: as in meta's "tracker" key.
 * @start: set up the tracker's state (bdsnap_session.tracker) for a new
 *	session, before the session becomes visible to the hooks.
 * @stop: the hooks can no longer see the session unchanged: let every
 *	write held so far go (or fail it) and return once every save the
 *	tracker started has called back.  Called again when a rolled-back
 *	session is unpublished.
 * @destroy: free the tracker's state; the session is about to be freed.
 * @accepts: whether a mount of file system @fstype of the device activated
 *	as @path (of a partition of it if @partition) can be tracked exactly;
 *	0, or -errno with one log line.  NULL: every mount can.
 * @held: writes waiting for their pre-images now (LIST's writes_held);
 *	NULL: the tracker never holds a write.
 * @can_order: it can hold a write until its pre-image is durable
 *	(BDSNAP_ACT_ORDERED); V1 copies in probe handlers, which cannot wait.
 */
struct bdsnap_tracker_ops {
	const char *name;
	int (*start)(struct bdsnap_session *s);
	void (*stop)(struct bdsnap_session *s);
	void (*destroy)(struct bdsnap_session *s);
	int (*accepts)(const char *path, const char *fstype, bool partition);
	unsigned int (*held)(struct bdsnap_session *s);
	bool can_order;
};

extern const struct bdsnap_tracker_ops bdsnap_tracker_bio_ops;
extern const struct bdsnap_tracker_ops bdsnap_tracker_vfs_ops;
const struct bdsnap_tracker_ops *bdsnap_tracker_ops(u32 tracker);

/* tracker_bio.c: V2, the block-layer tracker */
int bdsnap_tracker_bio_init(void);
void bdsnap_tracker_bio_done(void);

/* tracker_vfs.c: V1, vfs_write + buffer heads */
int bdsnap_tracker_vfs_init(void);
void bdsnap_tracker_vfs_done(void);

#endif /* BDSNAP_TRACKER_H */
