// SPDX-License-Identifier: GPL-2.0
/* bdsnap sessions, show, verify, changed: what the store holds. */
#include <err.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

enum { S_NAME, S_DIR, S_UUID, S_PATH, S_DEVNAME, S_TRACKER, S_ORDERED, S_START, S_END, S_STATE,
       S_RESTORABLE, S_NOTE, S_FORMAT, S_DEVICE_SIZE, S_BLOCK_SIZE, S_BLOCKS, S_RAW, S_STORED,
       S_RATIO, S_ERRORS, S_FS_TYPE, S_FS_UUID, S_IMAGE_DEV, S_IMAGE_INO, S_END_SAMPLE,
       S_END_SHA256, S_ROLLBACK, S_ROLLED_BACK };
static const struct out_col session_cols[] = {
	[S_NAME] = { "NAME", OUT_STR, 0, "session name: devname_start" },
	[S_DIR] = { "DIR", OUT_STR, 0, "session directory" },
	[S_UUID] = { "UUID", OUT_STR, 0, "session id" },
	[S_PATH] = { "PATH", OUT_STR, 0, "the device or image file, as activated" },
	[S_DEVNAME] = { "DEVNAME", OUT_STR, 0, "kernel name of the device at mount" },
	[S_TRACKER] = { "TRACKER", OUT_STR, 0, "bio (V2) or vfs (V1)" },
	[S_ORDERED] = { "ORDERED", OUT_BOOL, 0, "writes waited for durable pre-images" },
	[S_START] = { "START", OUT_STR, 0, "UTC time of the mount" },
	[S_END] = { "END", OUT_STR, 0, "UTC time of the unmount" },
	[S_STATE] = { "STATE", OUT_STR, 0, "open, complete or incomplete:reason" },
	[S_RESTORABLE] = { "RESTORABLE", OUT_BOOL, 0, "restore and export take it without --force" },
	[S_NOTE] = { "NOTE", OUT_STR, 0, "why (not) restorable" },
	[S_FORMAT] = { "FORMAT", OUT_NUM, 0, "store format version" },
	[S_DEVICE_SIZE] = { "DEVICE_SIZE", OUT_SIZE, 0, "size of the device" },
	[S_BLOCK_SIZE] = { "BLOCK_SIZE", OUT_NUM, 0, "bytes per block" },
	[S_BLOCKS] = { "BLOCKS_SAVED", OUT_NUM, 0, "pre-images saved" },
	[S_RAW] = { "BYTES_RAW", OUT_SIZE, 0, "their size before compression" },
	[S_STORED] = { "BYTES_STORED", OUT_SIZE, 0, "size of the log" },
	[S_RATIO] = { "RATIO", OUT_NUM, 0, "BYTES_RAW / BYTES_STORED" },
	[S_ERRORS] = { "ERRORS", OUT_NUM, 0, "read or store errors" },
	[S_FS_TYPE] = { "FS_TYPE", OUT_STR, 0, "file system mounted" },
	[S_FS_UUID] = { "FS_UUID", OUT_STR, 0, "its UUID" },
	[S_IMAGE_DEV] = { "IMAGE_DEV", OUT_STR, 0, "image file's device (major:minor)" },
	[S_IMAGE_INO] = { "IMAGE_INO", OUT_NUM, 0, "image file's inode" },
	[S_END_SAMPLE] = { "END_SAMPLE", OUT_NUM, 0, "blocks the end fingerprint covers" },
	[S_END_SHA256] = { "END_SHA256", OUT_STR, 0, "fingerprint of the device at the end" },
	[S_ROLLBACK] = { "ROLLBACK", OUT_STR, 0,
			 "rollback mode: pending, rolled-back or failed: why" },
	[S_ROLLED_BACK] = { "ROLLED_BACK", OUT_STR, 0, "UTC time of the rollback (kept sessions)" },
};
#define SESSIONS_DEFAULT	"NAME,DEVNAME,START,STATE,BLOCKS_SAVED,BYTES_STORED"

void sessions_help(FILE *f)
{
	out_columns_help(f, session_cols, ARRAY_SIZE(session_cols));
}

/* Can restore and export use the session without --force?  Why (not)? */
static bool restorable(const struct bdsnap_session *s, const char **why)
{
	const struct bdsnap_session_info *in = bdsnap_session_info(s);

	*why = NULL;
	if (bdsnap_session_meta(s, "chain_broken")) {
		*why = "not restorable unless --force: a later session was deleted";
		return false;
	}
	switch (in->state_kind) {
	case BDSNAP_META_COMPLETE:
		return true;
	case BDSNAP_META_OPEN:
		if (in->ordered == 1) {
			*why = "ordered: restorable after a crash";
			return true;
		}
		*why = "not restorable unless --force: a crash may have lost pre-images";
		return false;
	case BDSNAP_META_INCOMPLETE:
		*why = "not restorable unless --force: pre-images were lost";
		return false;
	default:
		*why = "meta is damaged: run verify";
		return false;
	}
}

/*
 * A session of rollback mode: pending until the kernel (or bdsnap
 * rollback) rolled it back, or failed to (meta rollback_error=, an errno).
 * NULL for the other modes.
 */
static const char *rollback_word(const struct bdsnap_session *s, char *buf, size_t len)
{
	const char *mode = bdsnap_session_meta(s, "rollback");
	const char *error = bdsnap_session_meta(s, "rollback_error");
	long err;

	if (!mode || strcmp(mode, "yes"))
		return NULL;
	if (bdsnap_session_meta(s, "rolled_back"))
		return "rolled-back";
	if (!error)
		return "pending";
	err = strtol(error, NULL, 10);
	snprintf(buf, len, "failed: %s", err < 0 ? strerror(-err) : error);
	return buf;
}

static void session_row(struct out_table *t, const struct bdsnap_session *s)
{
	const struct bdsnap_session_info *in = bdsnap_session_info(s);
	const char *why;
	bool ok = restorable(s, &why);
	char failed[96];

	out_row(t);
	out_str(t, S_NAME, in->name);
	out_str(t, S_DIR, in->dir);
	out_str(t, S_UUID, in->uuid);
	out_str(t, S_PATH, in->path);
	out_str(t, S_DEVNAME, in->devname);
	out_str(t, S_TRACKER, in->tracker);
	out_bool(t, S_ORDERED, in->ordered);
	out_str(t, S_START, in->start);
	out_str(t, S_END, in->end);
	out_str(t, S_STATE, in->state);
	out_bool(t, S_RESTORABLE, ok);
	out_str(t, S_NOTE, why);
	out_u64(t, S_FORMAT, in->format);
	out_size(t, S_DEVICE_SIZE, in->device_size);
	out_u64(t, S_BLOCK_SIZE, in->block_size);
	out_u64(t, S_BLOCKS, in->blocks_saved);
	out_size(t, S_RAW, in->bytes_raw);
	out_size(t, S_STORED, in->bytes_stored);
	out_ratio(t, S_RATIO, in->bytes_raw, in->bytes_stored);
	out_u64(t, S_ERRORS, in->errors);
	out_str(t, S_FS_TYPE, in->fs_type);
	out_str(t, S_FS_UUID, in->fs_uuid);
	out_str(t, S_IMAGE_DEV, in->image_dev);
	out_u64(t, S_IMAGE_INO, in->image_ino);
	out_u64(t, S_END_SAMPLE, in->end_sample);
	out_str(t, S_END_SHA256, in->end_sha256);
	out_str(t, S_ROLLBACK, rollback_word(s, failed, sizeof(failed)));
	out_str(t, S_ROLLED_BACK, bdsnap_session_meta(s, "rolled_back"));
}

struct bdsnap_session *open_session(const struct args *a, const char *arg)
{
	struct bdsnap_session *s;
	char path[PATH_MAX];
	int rc;

	if (snprintf(path, sizeof(path), "%s%s%s", strchr(arg, '/') ? "" : a->store,
		     strchr(arg, '/') ? "" : "/", arg) >= (int)sizeof(path))
		errx(EXIT_ERROR, "%s: name too long", arg);
	rc = bdsnap_session_open(path, &s);
	if (rc == -ENOENT)
		errx(EXIT_ERROR, "%s: no such session (no meta file)", path);
	if (rc < 0)
		errx(EXIT_ERROR, "%s: %s", path, strerror(-rc));
	return s;
}

/* DEV matches a session by kernel name or by the path it was activated as. */
static bool session_matches(const struct bdsnap_session_info *in, const char *dev,
			    const char *real)
{
	return (in->devname && (!strcmp(in->devname, dev) ||
				(!strncmp(dev, "/dev/", 5) && !strcmp(in->devname, dev + 5)))) ||
	       (in->path && (!strcmp(in->path, dev) || (real && !strcmp(in->path, real))));
}

int cmd_sessions(const struct args *a, const char *name)
{
	const char *dev = a->npos ? a->pos[0] : NULL;
	char *real = dev ? realpath(dev, NULL) : NULL;
	struct bdsnap_session **list;
	struct out_table *t;
	size_t i, n;
	int rc;

	(void)name;
	/* First: a bad --output is a usage error, whatever the store holds. */
	t = out_table_new(&a->fmt, "sessions", session_cols, ARRAY_SIZE(session_cols),
			  SESSIONS_DEFAULT, false, true);
	rc = bdsnap_sessions_scan(a->store, &list, &n);
	if (rc < 0) {
		free(real);
		warnx("%s: %s", a->store, strerror(-rc));
		return EXIT_ERROR;
	}
	for (i = 0; i < n; i++)
		if (!dev || session_matches(bdsnap_session_info(list[i]), dev, real))
			session_row(t, list[i]);
	out_print(&t, 1);
	bdsnap_sessions_free(list, n);
	free(real);
	return EXIT_SUCCESS;
}

int cmd_show(const struct args *a, const char *name)
{
	struct bdsnap_session *s;
	struct out_table *t;
	char all[1024] = "";
	size_t i;

	(void)name;
	for (i = 0; i < ARRAY_SIZE(session_cols); i++)
		snprintf(all + strlen(all), sizeof(all) - strlen(all), "%s%s", i ? "," : "",
			 session_cols[i].name);
	t = out_table_new(&a->fmt, "sessions", session_cols, ARRAY_SIZE(session_cols), all, true,
			  true);
	s = open_session(a, a->pos[0]);
	session_row(t, s);
	out_print(&t, 1);
	bdsnap_session_close(s);
	return EXIT_SUCCESS;
}

int session_failed(const char *dir, const struct bdsnap_verify_report *r, int rc)
{
	if (rc == -EBADMSG) {
		warnx("%s/%s: offset %" PRIu64 ": %s", dir, r->bad_file, r->bad_offset, r->reason);
		return EXIT_CORRUPT;
	}
	warnx("%s: %s", dir, strerror(-rc));
	return EXIT_ERROR;
}

void note_torn(const struct bdsnap_session_info *in, const struct bdsnap_verify_report *r)
{
	if (r->torn_tail)
		warnx("%s/blocks: offset %" PRIu64 ": torn record at the end ignored "
		      "(crash during append)", in->dir, r->torn_offset);
	if (r->meta_torn)
		warnx("%s/meta: torn last line ignored", in->dir);
}

enum { V_SESSION, V_DIR, V_STATE, V_OK, V_RECORDS, V_BYTES, V_TORN, V_TORN_OFFSET,
       V_META_TORN, V_BAD_FILE, V_BAD_OFFSET, V_REASON };
static const struct out_col verify_cols[] = {
	[V_SESSION] = { "SESSION", OUT_STR, 0, NULL },
	[V_DIR] = { "DIR", OUT_STR, 0, NULL },
	[V_STATE] = { "STATE", OUT_STR, 0, NULL },
	[V_OK] = { "OK", OUT_BOOL, 0, NULL },
	[V_RECORDS] = { "RECORDS", OUT_NUM, 0, NULL },
	[V_BYTES] = { "BYTES", OUT_NUM, 0, NULL },
	[V_TORN] = { "TORN_TAIL", OUT_BOOL, 0, NULL },
	[V_TORN_OFFSET] = { "TORN_OFFSET", OUT_NUM, 0, NULL },
	[V_META_TORN] = { "META_TORN", OUT_BOOL, 0, NULL },
	[V_BAD_FILE] = { "BAD_FILE", OUT_STR, 0, NULL },
	[V_BAD_OFFSET] = { "BAD_OFFSET", OUT_NUM, 0, NULL },
	[V_REASON] = { "REASON", OUT_STR, 0, NULL },
};

int cmd_verify(const struct args *a, const char *name)
{
	struct bdsnap_session *s = open_session(a, a->pos[0]);
	const struct bdsnap_session_info *in = bdsnap_session_info(s);
	struct bdsnap_verify_report r;
	struct out_table *t;
	struct bar bar;
	int rc, ret = EXIT_SUCCESS;

	(void)name;
	bar_init(&bar, "verifying");
	rc = bdsnap_session_verify_progress(s, &r, bar_fn(), &bar);
	bar_done(&bar);
	if (rc < 0)
		ret = session_failed(in->dir, &r, rc);
	else
		note_torn(in, &r);
	if (a->fmt.json) {
		t = out_table_new(&a->fmt, "verify", verify_cols, ARRAY_SIZE(verify_cols), "",
				  true, false);
		out_row(t);
		out_str(t, V_SESSION, in->name);
		out_str(t, V_DIR, in->dir);
		out_str(t, V_STATE, in->state);
		out_bool(t, V_OK, !rc);
		out_u64(t, V_RECORDS, rc ? BDSNAP_UNSET : r.records);
		out_u64(t, V_BYTES, rc ? BDSNAP_UNSET : r.bytes_raw);
		out_bool(t, V_TORN, r.torn_tail);
		out_u64(t, V_TORN_OFFSET, r.torn_tail ? r.torn_offset : BDSNAP_UNSET);
		out_bool(t, V_META_TORN, r.meta_torn);
		out_str(t, V_BAD_FILE, rc == -EBADMSG ? r.bad_file : NULL);
		out_u64(t, V_BAD_OFFSET, rc == -EBADMSG ? r.bad_offset : BDSNAP_UNSET);
		out_str(t, V_REASON, rc == -EBADMSG ? r.reason : rc ? strerror(-rc) : NULL);
		out_print(&t, 1);
	} else if (!rc) {
		printf("%s: ok: %" PRIu64 " blocks (%" PRIu64 " bytes), state %s\n", in->dir,
		       r.records, r.bytes_raw, in->state);
	}
	bdsnap_session_close(s);
	return ret;
}

enum { E_OFFSET, E_LENGTH, E_BLOCK, E_BLOCKS, E_RANGE };
static const struct out_col extent_cols[] = {
	[E_OFFSET] = { "OFFSET", OUT_NUM, 0, "first byte of the extent" },
	[E_LENGTH] = { "LENGTH", OUT_NUM, 0, "its bytes" },
	[E_BLOCK] = { "BLOCK", OUT_NUM, 0, "its first block" },
	[E_BLOCKS] = { "BLOCKS", OUT_NUM, 0, "its blocks" },
	[E_RANGE] = { "RANGE", OUT_STR, 0, "its blocks, first-last" },
};

enum { C_SESSION, C_STATE, C_BLOCK_SIZE, C_DEVICE_SIZE, C_EXTENTS, C_BLOCKS, C_BYTES };
static const struct out_col changed_cols[] = {
	[C_SESSION] = { "SESSION", OUT_STR, 0, NULL },
	[C_STATE] = { "STATE", OUT_STR, 0, NULL },
	[C_BLOCK_SIZE] = { "BLOCK_SIZE", OUT_NUM, 0, NULL },
	[C_DEVICE_SIZE] = { "DEVICE_SIZE", OUT_NUM, 0, NULL },
	[C_EXTENTS] = { "EXTENTS", OUT_NUM, 0, NULL },
	[C_BLOCKS] = { "BLOCKS", OUT_NUM, 0, NULL },
	[C_BYTES] = { "BYTES", OUT_NUM, 0, NULL },
};

void extents_help(FILE *f)
{
	out_columns_help(f, extent_cols, ARRAY_SIZE(extent_cols));
}

int cmd_changed(const struct args *a, const char *name)
{
	struct out_table *t[2] = { out_table_new(&a->fmt, "extents", extent_cols,
						 ARRAY_SIZE(extent_cols), "OFFSET,LENGTH,RANGE",
						 false, true) };
	struct bdsnap_session *s = open_session(a, a->pos[0]);
	const struct bdsnap_session_info *in = bdsnap_session_info(s);
	struct bdsnap_verify_report r;
	struct bdsnap_extent *ext;
	uint64_t blocks = 0, bytes = 0;
	char range[48];
	struct bar bar;
	size_t i, n;
	int rc;

	(void)name;
	bar_init(&bar, "reading");
	rc = bdsnap_session_changed(s, &ext, &n, bar_fn(), &bar, &r);
	bar_done(&bar);
	if (rc < 0) {
		rc = session_failed(in->dir, &r, rc);
		bdsnap_session_close(s);
		return rc;
	}
	note_torn(in, &r);
	if (in->state_kind == BDSNAP_META_OPEN)
		warnx("%s: session is open: the extents changed so far", in->dir);
	for (i = 0; i < n; i++) {
		blocks += ext[i].blocks;
		bytes += ext[i].length;
		snprintf(range, sizeof(range), ext[i].blocks > 1 ? "%" PRIu64 "-%" PRIu64 :
			 "%" PRIu64, ext[i].block, ext[i].block + ext[i].blocks - 1);
		out_row(t[0]);
		out_u64(t[0], E_OFFSET, ext[i].offset);
		out_u64(t[0], E_LENGTH, ext[i].length);
		out_u64(t[0], E_BLOCK, ext[i].block);
		out_u64(t[0], E_BLOCKS, ext[i].blocks);
		out_str(t[0], E_RANGE, range);
	}
	if (!a->fmt.json) {
		/* A table shows the summary as a sentence under the extents. */
		out_print(t, 1);
		printf("%zu extents, %" PRIu64 " blocks, %" PRIu64 " bytes changed\n", n, blocks,
		       bytes);
	} else {
		t[1] = out_table_new(&a->fmt, "changed", changed_cols, ARRAY_SIZE(changed_cols),
				     "", true, false);
		out_row(t[1]);
		out_str(t[1], C_SESSION, in->name);
		out_str(t[1], C_STATE, in->state);
		out_u64(t[1], C_BLOCK_SIZE, in->block_size);
		out_u64(t[1], C_DEVICE_SIZE, in->device_size);
		out_u64(t[1], C_EXTENTS, n);
		out_u64(t[1], C_BLOCKS, blocks);
		out_u64(t[1], C_BYTES, bytes);
		out_print(t, 2);
	}
	free(ext);
	bdsnap_session_close(s);
	return EXIT_SUCCESS;
}
