// SPDX-License-Identifier: GPL-2.0
/*
 * The core's one save operation.  A tracker decides which blocks need their
 * pre-image and gets it (the bio tracker reads the device, the vfs tracker
 * copies a buffer); the core owns what happens next: the pre-images go to
 * the store, and the blocks count as saved (a write to them may pass) once
 * they are queued there, or in ordered mode once the store's flush made
 * them durable.  Then the core marks them in the session's map and calls the
 * tracker back.  An ordered save does not wait: the tracker goes on with the
 * next blocks while the store writes and flushes, and one flush covers every
 * save queued before it (group commit).
 */
#define pr_fmt(fmt) KBUILD_MODNAME "-session: " fmt

#include <linux/mm.h>
#include "bdsnap.h"
#include "session.h"

/**
 * bdsnap_session_fail() - pre-images can no longer be taken.
 * @s: the session; it ends incomplete.
 * @why: what went wrong, logged once per session; NULL when the failure is
 *	logged already (the store logs its own).
 *
 * The one way a session becomes incomplete on the trackers' side.  A plain
 * session lets writes through untracked from now on; an ordered one fails
 * the writes whose pre-image it does not have (tracker_bio.c).
 *
 * Context: any: probe handlers, atomic context.
 */
void bdsnap_session_fail(struct bdsnap_session *s, const char *why)
{
	if (why && !READ_ONCE(s->failed))
		pr_err("%s: %s: session %s is incomplete\n", s->devname, why, s->dirname);
	atomic64_inc(&s->errors);
	WRITE_ONCE(s->failed, true);
}

unsigned int bdsnap_session_block_len(struct bdsnap_session *s, u64 block)
{
	u64 start = block * BDSNAP_BLOCK_SIZE;

	if (start >= s->nr_bytes)
		return 0;
	return min_t(u64, BDSNAP_BLOCK_SIZE, s->nr_bytes - start);
}

static void bdsnap_save_done(struct bdsnap_session *s, struct bdsnap_save *save, int error)
{
	unsigned int i;

	for (i = 0; i < save->n && !error; i++)
		error = bdsnap_blockmap_set(&s->map, save->blocks[i], GFP_NOIO);
	if (error == -ENOMEM)
		bdsnap_session_fail(s, "out of memory for the block map");
	else if (error)
		bdsnap_session_fail(s, NULL);
	save->saved(save, error);
}

/**
 * bdsnap_session_durable() - the store's flush moved: finish the saves it
 * made durable.
 * @st: the session's store.
 *
 * Context: the store's worker (or bdsnap_session_save(), when the flush came
 * before the save was listed).
 */
void bdsnap_session_durable(struct bdsnap_store *st)
{
	struct bdsnap_session *s = container_of(st, struct bdsnap_session, store);
	u64 durable = bdsnap_store_last_durable(st);
	int error = READ_ONCE(st->error);
	struct bdsnap_save *save, *next;
	LIST_HEAD(done);

	spin_lock(&s->save_lock);
	list_for_each_entry_safe(save, next, &s->saves, node) {
		/* saves are listed in the order of their sequence numbers */
		if (save->seq > durable)
			break;
		list_move_tail(&save->node, &done);
	}
	spin_unlock(&s->save_lock);
	list_for_each_entry_safe(save, next, &done, node) {
		list_del(&save->node);
		bdsnap_save_done(s, save, error);
	}
}

/**
 * bdsnap_session_save() - save pre-images.
 * @s: the session.
 * @save: the blocks and their pre-images; @save->saved is called once, maybe
 *	before this returns.
 *
 * Context: process, may sleep while the store's queue is at its budget.
 * Calls for one session must not run concurrently (each tracker has one
 * worker): ordered saves are listed in the order the store numbered them.
 */
void bdsnap_session_save(struct bdsnap_session *s, struct bdsnap_save *save)
{
	unsigned int i;
	int error = 0;

	save->seq = 0;
	for (i = 0; i < save->n; i++) {
		if (error) {
			__free_page(save->pages[i]);
			continue;
		}
		error = bdsnap_store_add(&s->store, save->blocks[i], save->pages[i],
					 bdsnap_session_block_len(s, save->blocks[i]), &save->seq);
	}
	if (error || !s->ordered || !save->n) {
		bdsnap_save_done(s, save, error);
		return;
	}
	spin_lock(&s->save_lock);
	list_add_tail(&save->node, &s->saves);
	spin_unlock(&s->save_lock);
	/*
	 * The store's worker may have flushed these pre-images before the save
	 * was listed, and found nothing to finish: its seq_durable is visible
	 * here (save_lock orders it), so finish them now.
	 */
	if (bdsnap_store_last_durable(&s->store) >= save->seq)
		bdsnap_session_durable(&s->store);
}
