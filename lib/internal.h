/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libbdsnap internals shared between its files; not installed. */
#ifndef BDSNAP_INTERNAL_H
#define BDSNAP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
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

/* Progress over @passes reads of "blocks"; this is pass number @pass. */
struct progress {
	bdsnap_progress_fn fn;
	void *ctx;
	unsigned int pass, passes;
};

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
/* session_verify() - meta, then store_scan() with the once-per-session rule. */
int session_verify(struct bdsnap_session *s, struct bdsnap_verify_report *rep,
		   const struct progress *prog);
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

/* read_small() - up to @cap - 1 bytes of a small file, NUL-terminated. */
ssize_t read_small(const char *path, char *buf, size_t cap);
/* read_full() - exactly @len bytes from @fd at @off: 0, 1 at end of file, -errno. */
int read_full(int fd, void *buf, size_t len, uint64_t off);

#endif /* BDSNAP_INTERNAL_H */
