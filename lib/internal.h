/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libbdsnap internals shared between its files; not installed. */
#ifndef BDSNAP_INTERNAL_H
#define BDSNAP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

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
 * @fn for each valid one.  Starts at the record at @from (0: the first) and
 * reads no further than @limit bytes (UINT64_MAX: the file's size now), so a
 * second pass sees exactly what the first verified, and a growing log can be
 * followed from where the last scan stopped (@rep->torn_offset when its tail
 * was torn, else @rep->file_size).
 */
int store_scan(struct bdsnap_session *s, uint64_t from, uint64_t limit,
	       struct bdsnap_verify_report *rep, record_fn fn, void *ctx,
	       const struct progress *prog);

/* One valid record as scan_log() hands it on; @off is where its header starts. */
struct rec {
	uint64_t block, off;
	const uint8_t *data;		/* the pre-image, @len bytes */
	uint32_t len;
	bool zlib;			/* stored as a zlib stream */
	bool trusted;			/* before scan.trusted: verified by an earlier scan */
};
/*
 * Called for each record, and with NULL before the pre-images handed on so
 * far are overwritten (they lie in the scan's buffers until then, so a
 * callback may gather several into one write).  Non-zero stops the scan.
 */
typedef int (*scan_fn)(void *ctx, const struct rec *v);

/*
 * struct logmap - the first @len bytes of a log, mapped read-only, so that
 * its pages are used where they lie in the page cache instead of copied out.
 */
struct logmap {
	void *addr;
	size_t len;
};
/* log_map() - map and read in the first @len bytes of the log @fd: 0, or -errno and none. */
int log_map(int fd, size_t len, struct logmap *m);
/*
 * log_populate() - read in again what the kernel may have dropped since
 * log_map(), if anything: 0 or -errno (EIO).
 */
int log_populate(const struct logmap *m);
void log_unmap(struct logmap *m);

struct preimages;
/*
 * What scan_log() reads: @from and @limit as store_scan()'s; @map, if it
 * has a length, the log's mapping, used as far as it goes.  Records that
 * start before @trusted were verified whole by an earlier scan of the same
 * open, unchanged file: their headers are checked again, their pre-images
 * not (a raw one is handed on as read, a zlib one as that scan kept it in
 * @kept, or inflated and checked again past what it kept).
 */
struct scan {
	uint64_t from, limit, trusted;
	struct logmap map;
	const struct preimages *kept;
	scan_fn fn;
	void *ctx;
	const struct progress *prog;
};
/*
 * scan_log() - store_scan() on the open "blocks" @fd of @s.  A trusted
 * record that is not what was verified is -EIO, as is a file shorter than
 * it was when the scan started.
 */
int scan_log(struct bdsnap_session *s, int fd, const struct scan *sc,
	     struct bdsnap_verify_report *rep);
/* log_open() - a session's "blocks", read-only: the fd or -errno. */
int log_open(const struct bdsnap_session *s);
/* data_crc32() - zlib's crc32(0, @buf, @len), folded with PCLMULQDQ where the CPU has it. */
uint32_t data_crc32(const void *buf, size_t len);
/* data_crc32_folds() - does data_crc32() use PCLMULQDQ here (for the tests)? */
bool data_crc32_folds(void);

/*
 * store_read_record() - the pre-image of @block from the record at @off of
 * the "blocks" file open on @fd, checked as store_scan() checks it, into @out
 * (block_size bytes).  0, -EBADMSG when the record is not a valid one of
 * @block, -errno.
 */
int store_read_record(const struct bdsnap_session *s, int fd, uint64_t off, uint64_t block,
		      uint8_t *out);

/*
 * Block numbers seen so far: open addressing, UINT64_MAX marks a free slot
 * (it can never pass the device_size check).  With @offsets (set before the
 * first add), each block's record offset is kept too: a view's index.
 */
struct blockset {
	uint64_t *slot;
	uint64_t *off;		/* beside slot, if @offsets */
	size_t cap, n;		/* cap is a power of two */
	bool offsets;
};

/* blockset_add() - 0 added (with @off), 1 already there, -ENOMEM. */
int blockset_add(struct blockset *set, uint64_t block, uint64_t off);
/* blockset_find() - is @block in @set?  Its offset in *@off if the set keeps them. */
bool blockset_find(const struct blockset *set, uint64_t block, uint64_t *off);
void blockset_free(struct blockset *set);
/* blockset_sorted() - the members in ascending order, a new array of set->n (NULL: -ENOMEM). */
uint64_t *blockset_sorted(const struct blockset *set);

/*
 * add_unique() - scan_fn enforcing the once-per-session rule; keeps each
 * inflated pre-image in @kept if that is not NULL (preimages.c).
 */
struct unique_ctx {
	struct blockset set;
	struct bdsnap_verify_report *rep;
	struct preimages *kept;
};
int add_unique(void *ctx, const struct rec *v);

/*
 * session_verify() - meta, then store_scan() with the once-per-session rule.
 * @keep: if not NULL, receives the set of saved blocks on success (with
 *	their record offsets if @keep->offsets is set on entry).
 * @kept: if not NULL, receives the pre-images of zlib records, in log
 *	order, as far as its budget allows.
 */
int session_verify(struct bdsnap_session *s, struct bdsnap_verify_report *rep,
		   const struct progress *prog, struct blockset *keep, struct preimages *kept);
/* session_verify_log() - the same, reading "blocks" from @fd (-1: open it) or @map (NULL). */
int session_verify_log(struct bdsnap_session *s, int fd, const struct logmap *map,
		       struct bdsnap_verify_report *rep, const struct progress *prog,
		       struct blockset *keep, struct preimages *kept);
/* report_bad() - record the first violation; returns -EBADMSG. */
int report_bad(struct bdsnap_verify_report *rep, const char *file, uint64_t off,
	       const char *reason);
/*
 * meta_append() - add the line "@key=@value" to @s's meta file, synced
 * (the object @s keeps the meta it read at open).  0 or -errno.
 */
int meta_append(struct bdsnap_session *s, const char *key, const char *value);
/* meta_offset() - where @key's last line starts, or the end of meta. */
uint64_t meta_offset(const struct bdsnap_session *s, const char *key);

/* Both meta and the store header must agree on this rule. */
static inline bool valid_block_size(uint64_t bs)
{
	return bs >= 512 && bs <= 65536 && !(bs & (bs - 1));
}

/*
 * Symbol versions (libbdsnap.map): a function whose arguments changed keeps
 * its old version for old programs (compat.c) and gets a new default one,
 * each bound to an implementation of its own name.
 */
#define SYMVER(impl, versioned)	__asm__(".symver " #impl ", " versioned)

/* bdsnap_module_load@@LIBBDSNAP_0.3, in module.c or nokmod.c. */
int module_load_current(const struct bdsnap_load_opts *opts, struct bdsnap_load_report *report);

/* ---- sha256.c ---- */

struct sha256 {
	uint32_t h[8];
	uint64_t len;
	uint8_t buf[64];
};
void sha256_init(struct sha256 *c);
void sha256_update(struct sha256 *c, const void *data, size_t len);
/* sha256_hex() - finish, and the digest as 64 lowercase hex digits. */
void sha256_hex(struct sha256 *c, char out[65]);

/* ---- chain.c: a session and the later ones of its device ---- */

/* What a chain's verify pass may keep in memory for its write pass (preimages.c). */
struct preimage_budget {
	uint64_t left;
	bool exceeded;
};

/*
 * struct chain - what restore and export apply: @all[0] is the session,
 * then the later ones, oldest first; @all[n - 1] is the newest.
 * @verified, @records: per session, log bytes and records verified; the
 *	bytes end at the last whole record (an open log's torn tail is not
 *	verified: it is still being written).
 * @newest: the blocks the newest session saved (its fingerprint's blocks).
 * @opts: the caller's options, completed to this version's struct; @dry:
 *	BDSNAP_RESTORE_DRY_RUN.
 * @logs: bytes of all the logs, for the progress total.
 * @log, @log_st: per session, its "blocks" as chain_verify() opened it
 *	(and found it then): the write pass reads the very file verified,
 *	and writes nothing if a closed log changed since.
 * @map: per session, its log mapped (up to MAP_MAX for the chain), if @keep
 *	or while verifying.
 * @kept: per closed session, what verify inflated (preimages.c), if @keep.
 * @keep: a write pass follows: verify keeps for it what it can.
 * @interrupted: a rollback is being finished (rollback.c): the device may
 *	hold any mix of what the sessions left and of their pre-images, so no
 *	end fingerprint can be expected to match; the whole chain is applied,
 *	since writing a pre-image again changes nothing.
 */
struct chain {
	struct bdsnap_session **all;
	size_t n;
	bool dry;
	uint64_t logs;
	uint64_t *verified, *records, *raw;	/* per session: log size, records, bytes */
	struct blockset *saved;		/* each session's blocks, for the fingerprints */
	int *log;
	struct stat *log_st;
	struct logmap *map;
	struct preimages *kept;
	struct preimage_budget budget;
	bool keep;
	bool synced;			/* an open plain session is read through store_sync() */
	bool interrupted;
	struct bdsnap_restore_opts opts;
	struct progress prog;
};

/* chain_open() - gather the sessions and the options.  -EINVAL, -ENOMEM. */
int chain_open(struct chain *c, struct bdsnap_session *s, struct bdsnap_session *const *later,
	       size_t nlater, const struct bdsnap_restore_opts *opts);
void chain_close(struct chain *c);
/* chain_check() - every meta, state and the order: cheap, before any file is opened. */
int chain_check(struct chain *c, struct bdsnap_chain_report *rep);
/* chain_verify() - every log, streamed; fills the counts of @rep. */
int chain_verify(struct chain *c, struct bdsnap_chain_report *rep);
/*
 * chain_identity() - does @fd (@size bytes; @direct: opened O_DIRECT) hold
 * what the newest session left, or what an older session of the chain left
 * (the later ones were restored already: the chain is then cut there)?
 * -EMEDIUMTYPE with @rep->refused unless forced; -errno on a read error.
 */
int chain_identity(struct chain *c, int fd, bool direct, uint64_t size,
		   struct bdsnap_chain_report *rep);
/* chain_confirm() - ask the caller's confirm callback: 0 or -ECANCELED. */
int chain_confirm(struct chain *c, struct bdsnap_chain_report *rep);
/* chain_apply() - every pre-image onto @fd, newest session first. */
int chain_apply(struct chain *c, int fd, struct bdsnap_chain_report *rep);
/* report_give() - copy @rep to the caller's @out, as much as its size says. */
void report_give(struct bdsnap_chain_report *out, const struct bdsnap_chain_report *rep);
/*
 * opts_take() - the caller's struct of @size bytes (its first field) into
 * @dst of @dsize, zero-filled; -EINVAL when smaller than @min or larger with
 * non-zero bytes past @dsize.
 */
int opts_take(void *dst, size_t dsize, const void *src, size_t min);

/* ---- identity.c ---- */

/* fs_uuid_read() - 32 hex digits of an ext2/3/4 or XFS UUID on @fd; -ENOENT if none. */
int fs_uuid_read(int fd, bool direct, char out[33]);
/*
 * fingerprint() - meta end_sha256 of @blocks (sorted, distinct) on @fd:
 * @sample receives the number of blocks hashed.  1 when a block lies past
 * the end of @fd, -errno.
 */
int fingerprint(int fd, bool direct, const uint64_t *blocks, size_t n, uint64_t block_size,
		uint64_t size, uint64_t *sample, char out[65]);

/* ---- export.c, shared with view.c: the device now, read-only ---- */
struct source {
	int fd;
	bool direct;		/* a block device, read with O_DIRECT */
	struct stat st;
	uint64_t size;
};

/*
 * source_open() - open @path read-only and not O_EXCL (a mounted device can
 * be read), a block device with O_DIRECT.  -ENOTBLK neither a block device
 * nor a regular file; -errno.
 */
int source_open(const char *path, struct source *src);

/* ---- restore.c, shared with export.c ---- */

/*
 * target_open() - open @path read-write (read-only when @dry) unless it is
 * mounted or in use; a block device is opened O_EXCL.  *@fdp and the
 * target's *@size on success; -EBUSY with *@refused set; -ENOTBLK; -errno.
 */
int target_open(const char *path, bool dry, const char **refused, int *fdp, uint64_t *size);
/*
 * chain_restore() - bdsnap_chain_restore(), with @interrupted (struct
 * chain); @records, if not NULL, receives each session's pre-images
 * written (or, in a dry run, to write), the chain's order: @s first.
 */
int chain_restore(struct bdsnap_session *s, struct bdsnap_session *const *later, size_t nlater,
		  const char *target, const struct bdsnap_restore_opts *opts, bool interrupted,
		  uint64_t *records, struct bdsnap_chain_report *report);
/* backs_mounted_loop() - is the image file @img behind a mounted loop device? */
int backs_mounted_loop(const struct stat *img);

/*
 * struct writer - pre-images onto @fd, each at its block: those that follow
 * each other on the device are gathered, as long as they stay where they
 * are (struct rec), into one pwritev() of up to WRITER_IOV blocks.
 */
#define WRITER_IOV	256
struct writer {
	int fd;
	uint64_t block_size;
	uint64_t blocks, bytes;		/* written so far */
	struct iovec iov[WRITER_IOV];
	int n;				/* gathered, not yet written ... */
	uint64_t at, len;		/* ... from this byte of @fd on, so many bytes */
};
/* writer_add() - gather a pre-image, writing what was gathered before if it does not adjoin. */
int writer_add(struct writer *w, uint64_t block, const uint8_t *data, uint32_t len);
/* writer_flush() - write what was gathered: 0 or -errno. */
int writer_flush(struct writer *w);

/*
 * ---- preimages.c: inflated pre-images kept from the verify pass to the
 * write pass, in log order (each session's zlib records, as many as fit) ----
 */
struct preimage {
	uint64_t block;
	size_t off;			/* in struct preimages' data */
	uint32_t len;
};
struct preimages {
	struct preimage_budget *budget;	/* shared by a chain's sessions */
	struct preimage *v;
	size_t n, cap;
	uint8_t *data;
	size_t used, room;
};
/* preimage_budget_init() - how much a chain may keep. */
void preimage_budget_init(struct preimage_budget *b);
/*
 * preimages_add() - keep a copy; over the budget (or memory) the budget is
 * exceeded, and nothing more is kept, so what is kept stays a prefix.
 */
void preimages_add(struct preimages *k, uint64_t block, const uint8_t *data, uint32_t len);
void preimages_free(struct preimages *k);

/*
 * store_sync() - wait until the open session @session's log holds every
 * pre-image taken so far (BDSNAP_IOC_SYNC_STORE): 0; -ENOENT no such open
 * session (or no module); -EIO it failed; -errno.
 */
int store_sync(const char *session);

/* module_live() - a module's init state: 1 live, -1 coming or going, 0 not loaded. */
int module_live(const char *name);

/* read_small() - up to @cap - 1 bytes of a small file, NUL-terminated. */
ssize_t read_small(const char *path, char *buf, size_t cap);
/*
 * read_dev() - exactly @want bytes at @off of @fd; with @direct (O_DIRECT) the read
 * is rounded up to DIO_ALIGN, so @buf must be aligned and that large.
 * 0, 1 at the end of the file, -errno.
 */
#define DIO_ALIGN	4096U
int read_dev(int fd, bool direct, void *buf, size_t want, uint64_t off);
/* write_full() - all @len bytes to @fd at @off: 0 or -errno. */
int write_full(int fd, const void *buf, size_t len, uint64_t off);

/* refuse() - a refusal: nothing was written; *@refused says why. */
static inline int refuse(const char **refused, int err, const char *why)
{
	*refused = why;
	return err;
}

#endif /* BDSNAP_INTERNAL_H */
