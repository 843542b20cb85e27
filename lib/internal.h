/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libbdsnap internals shared between its files; not installed. */
#ifndef BDSNAP_INTERNAL_H
#define BDSNAP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "bdsnap.h"

/* One "key=value" line of meta, split in place; @off is where it starts. */
struct meta_line {
	const char *key, *value;
	uint64_t off;
};

struct bdsnap_session {
	struct bdsnap_session_info info;
	char *dir;
	char *text;			/* meta, split into @lines */
	struct meta_line *lines;
	size_t nlines;
	uint64_t meta_size;
	uint8_t uuid[16];		/* parsed meta uuid */
	bool meta_torn;
	/* The first problem in meta, reported by verify and restore. */
	const char *meta_reason;
	uint64_t meta_offset;
};

/*
 * Progress of a whole operation in bytes read or written: a step reports
 * @base + what it has done so far, out of the operation's estimated @total.
 */
struct progress {
	bdsnap_progress_fn fn;
	void *ctx;
	uint64_t base, total;
};

void progress_report(const struct progress *p, uint64_t done);
/* blocks_size() - size of a session's "blocks" now, 0 if it cannot be read. */
uint64_t blocks_size(const struct bdsnap_session *s);

/* Called for each valid record, in file order; a negative return stops the scan. */
typedef int (*record_fn)(void *ctx, uint64_t block, const uint8_t *data, uint32_t len,
			 uint64_t off);

/*
 * store_scan() - stream "blocks", check the header and every record, and call
 * @fn for each valid one.  Reads no further than @limit bytes (UINT64_MAX: the
 * file's size now), so a second pass sees exactly what the first verified.
 */
int store_scan(struct bdsnap_session *s, uint64_t limit, struct bdsnap_verify_report *rep,
	       record_fn fn, void *ctx, const struct progress *prog);

/*
 * Block numbers seen so far: open addressing, UINT64_MAX marks a free slot
 * (it can never pass the device_size check).
 */
struct blockset {
	uint64_t *slot;
	size_t cap, n;		/* cap is a power of two */
};

/* blockset_add() - 0 added, 1 already there, -ENOMEM. */
int blockset_add(struct blockset *set, uint64_t block);
void blockset_free(struct blockset *set);

/* add_unique() - record_fn enforcing the once-per-session rule. */
struct unique_ctx {
	struct blockset set;
	struct bdsnap_verify_report *rep;
};
int add_unique(void *ctx, uint64_t block, const uint8_t *data, uint32_t len, uint64_t off);

/*
 * session_verify() - meta, then store_scan() with the once-per-session rule.
 * @keep: if not NULL, receives the set of saved blocks on success.
 */
int session_verify(struct bdsnap_session *s, struct bdsnap_verify_report *rep,
		   const struct progress *prog, struct blockset *keep);
/* report_bad() - record the first violation; returns -EBADMSG. */
int report_bad(struct bdsnap_verify_report *rep, const char *file, uint64_t off,
	       const char *reason);
/* meta_offset() - where @key's last line starts, or the end of meta. */
uint64_t meta_offset(const struct bdsnap_session *s, const char *key);

/* Both meta and the store header must agree on this rule. */
static inline bool valid_block_size(uint64_t bs)
{
	return bs >= 512 && bs <= 65536 && !(bs & (bs - 1));
}

/* ---- restore.c, shared with export.c ---- */

/*
 * check_state() - may this session be restored or exported?  An open session
 * only if it is ordered, an incomplete one never, unless BDSNAP_RESTORE_FORCE.
 * Return: 0, or -EINPROGRESS / -ENODATA with *@refused set.
 */
int check_state(const struct bdsnap_session *s, unsigned int flags, const char **refused);
/*
 * target_open() - open @path for writing (read-only when @dry) unless it is
 * mounted or in use; a block device is opened O_EXCL.  *@fdp and the
 * target's *@size on success; -EBUSY with *@refused set; -ENOTBLK; -errno.
 */
int target_open(const char *path, bool dry, const char **refused, int *fdp, uint64_t *size);
/* backs_mounted_loop() - is the image file @img behind a mounted loop device? */
int backs_mounted_loop(const struct stat *img);

/* write_block() - record_fn writing each pre-image at its place in @fd. */
struct writer {
	int fd;
	uint64_t block_size;
	uint64_t blocks, bytes;		/* written so far */
};
int write_block(void *ctx, uint64_t block, const uint8_t *data, uint32_t len, uint64_t off);

/* module_live() - a module's init state: 1 live, -1 coming or going, 0 not loaded. */
int module_live(const char *name);

/* read_small() - up to @cap - 1 bytes of a small file, NUL-terminated. */
ssize_t read_small(const char *path, char *buf, size_t cap);
/* read_full() - exactly @len bytes from @fd at @off: 0, 1 at end of file, -errno. */
int read_full(int fd, void *buf, size_t len, uint64_t off);
/* write_full() - all @len bytes to @fd at @off: 0 or -errno. */
int write_full(int fd, const void *buf, size_t len, uint64_t off);

/* refuse() - a refusal: nothing was written; *@refused says why. */
static inline int refuse(const char **refused, int err, const char *why)
{
	*refused = why;
	return err;
}

#endif /* BDSNAP_INTERNAL_H */
