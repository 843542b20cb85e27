// SPDX-License-Identifier: GPL-2.0
/*
 * bdsnap restore and export: a session and the later sessions of its
 * device (the chain), applied by the library after every check; here the
 * chain is found, the user asked on a terminal, and the outcome told.
 */
#include <err.h>
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "map.h"

/* What one restore or export is about, and its progress bar. */
struct run {
	const struct args *a;
	const char *verb;			/* "restore" or "export" */
	struct bdsnap_session *s;
	struct bdsnap_session **later;
	size_t nlater;
	const char *device;			/* restore: the target; export: the source */
	const char *target;
	char nbd[32];				/* map: the device attached */
	struct bar bar;
	bool draw;
};

static void progress(void *ctx, uint64_t done, uint64_t total)
{
	struct run *r = ctx;

	if (r->draw)
		bar_update(&r->bar, done, total);
}

/* The sessions of @s's device after it, from the store @s is in. */
static void find_later(struct run *r)
{
	char *store = strdup(bdsnap_session_info(r->s)->dir);
	int rc;

	if (!store)
		errx(EXIT_ERROR, "out of memory");
	rc = bdsnap_sessions_later(dirname(store), r->s, &r->later, &r->nlater);
	free(store);
	/* -EINVAL: meta lacks path or start; the library reports the damage. */
	if (rc == -EINVAL)
		r->later = NULL, r->nlater = 0;
	else if (rc < 0)
		errx(EXIT_ERROR, "%s: %s", bdsnap_session_info(r->s)->dir, strerror(-rc));
}

/* The session the chain's step @i applies: the newest first, @s last. */
static struct bdsnap_session *step(const struct run *r, size_t i)
{
	return i < r->nlater ? r->later[r->nlater - 1 - i] : r->s;
}

/* Ask on the terminal before anything is overwritten; the answer must be yes. */
static int confirm(void *ctx, const struct bdsnap_chain_report *plan)
{
	struct run *r = ctx;
	char answer[16] = "", size[24];
	size_t i;

	if (r->a->yes || !isatty(STDIN_FILENO))
		return 0;
	bar_done(&r->bar);
	fprintf(stderr, "%s %s overwrites %s (%s):\n", r->verb,
		bdsnap_session_info(r->s)->name, r->target,
		human_size(bdsnap_session_info(r->s)->device_size, size, sizeof(size)));
	fprintf(stderr, "  %zu session%s of %s, newest first:", plan->sessions,
		plan->sessions > 1 ? "s" : "", bdsnap_session_info(r->s)->path);
	for (i = 0; i < plan->sessions; i++)
		fprintf(stderr, " %s", bdsnap_session_info(step(r, i))->name);
	fprintf(stderr, "\n  %" PRIu64 " blocks, %" PRIu64 " bytes of pre-images%s\n",
		plan->blocks + plan->later_blocks, plan->bytes + plan->later_bytes,
		strcmp(r->verb, "export") ? "" : ", over a copy of the device");
	fputs("Proceed? [y/N] ", stderr);
	if (!fgets(answer, sizeof(answer), stdin))
		answer[0] = '\0';
	return strcmp(answer, "y\n") && strcmp(answer, "yes\n") && strcmp(answer, "Y\n");
}

/* What a refused identity check found: "size 1 bytes, the session's 2; ..." */
static void identity_details(const struct bdsnap_identity *id, const char *fs_uuid,
			     const char *end_sha256, char *buf, size_t len)
{
	size_t at = 0;

	buf[0] = '\0';
	if (id->differs & BDSNAP_ID_SIZE)
		at += snprintf(buf + at, len - at, "; size %" PRIu64 " bytes, the session's device "
			       "%" PRIu64, id->size, id->device_size);
	if ((id->differs & BDSNAP_ID_FS_UUID) && at < len)
		at += snprintf(buf + at, len - at, "; file system UUID %s, the session's %s",
			       id->fs_uuid, fs_uuid);
	if ((id->differs & BDSNAP_ID_FINGERPRINT) && at < len)
		snprintf(buf + at, len - at, "; content of the %" PRIu64 " sampled blocks "
			 "differs from the session's end (sha256 %.16s..., recorded %.16s...)",
			 id->sample, id->end_sha256, end_sha256);
}

/* An error or refusal of restore or export: its message and exit code. */
static int chain_failed(const struct run *r, const struct bdsnap_chain_report *rep, int rc)
{
	const struct bdsnap_session_info *in = bdsnap_session_info(r->s), *newest;
	const char *what = !rep->where ? in->dir : !strcmp(rep->where, "source") ? r->device :
			   r->target;
	char details[512];
	struct bdsnap_session *s;

	if (rc == -EBADMSG)
		return session_failed(rep->bad_session ? rep->bad_session : in->dir, &rep->verify,
				      rc);
	if (rc == -ECANCELED) {
		warnx("%s cancelled: nothing written", r->verb);
		return EXIT_ERROR;
	}
	if (!rep->refused) {
		warnx("%s: %s", what, strerror(-rc));
		return EXIT_ERROR;
	}
	if (rc == -EMEDIUMTYPE) {
		s = step(r, 0);
		newest = bdsnap_session_info(s);
		identity_details(&rep->identity, newest->fs_uuid, newest->end_sha256, details,
				 sizeof(details));
		warnx("%s: refused: %s (%s)%s; use --force to go ahead anyway", r->device,
		      rep->refused, newest->name, details);
	} else if (rc == -EINPROGRESS || rc == -ENODATA || rc == -ENOLINK) {
		warnx("%s: refused: %s; use --force to go ahead anyway",
		      rep->bad_session ? rep->bad_session : in->dir, rep->refused);
	} else {
		warnx("%s: refused: %s", what, rep->refused);
	}
	return EXIT_REFUSED;
}

/* --force went ahead on a device that is not proven to be the right one. */
static void forced_identity(const struct run *r, const struct bdsnap_chain_report *rep)
{
	const struct bdsnap_session_info *newest = bdsnap_session_info(step(r, 0));
	char details[512];

	if (!rep->identity.differs && !rep->identity.no_fingerprint)
		return;
	identity_details(&rep->identity, newest->fs_uuid, newest->end_sha256, details,
			 sizeof(details));
	warnx("%s: warning: not proven to hold what %s left (%s%s); going ahead (--force)",
	      r->device, newest->name, rep->identity.no_fingerprint ?
	      "no end fingerprint recorded" : "identity differs", details);
}

enum { R_SESSION, R_SOURCE, R_TARGET, R_RESULT, R_DRY_RUN, R_SESSIONS, R_BLOCKS, R_BYTES,
       R_LATER_BLOCKS, R_LATER_BYTES, R_IMAGE_SIZE, R_REASON, R_BAD_SESSION, R_SIZE,
       R_DEVICE_SIZE, R_FINGERPRINT, R_SAMPLE, R_END_SHA256, R_FOUND_SHA256, R_FS_UUID,
       R_FOUND_FS_UUID };
static const struct out_col result_cols[] = {
	[R_SESSION] = { "SESSION", OUT_STR, 0, NULL },
	[R_SOURCE] = { "SOURCE", OUT_STR, 0, NULL },
	[R_TARGET] = { "TARGET", OUT_STR, 0, NULL },
	[R_RESULT] = { "RESULT", OUT_STR, 0, NULL },
	[R_DRY_RUN] = { "DRY_RUN", OUT_BOOL, 0, NULL },
	[R_SESSIONS] = { "SESSIONS", OUT_NUM, 0, NULL },
	[R_BLOCKS] = { "BLOCKS", OUT_NUM, 0, NULL },
	[R_BYTES] = { "BYTES", OUT_NUM, 0, NULL },
	[R_LATER_BLOCKS] = { "LATER_BLOCKS", OUT_NUM, 0, NULL },
	[R_LATER_BYTES] = { "LATER_BYTES", OUT_NUM, 0, NULL },
	[R_IMAGE_SIZE] = { "IMAGE_SIZE", OUT_NUM, 0, NULL },
	[R_REASON] = { "REASON", OUT_STR, 0, NULL },
	[R_BAD_SESSION] = { "BAD_SESSION", OUT_STR, 0, NULL },
	[R_SIZE] = { "SIZE", OUT_NUM, 0, NULL },
	[R_DEVICE_SIZE] = { "DEVICE_SIZE", OUT_NUM, 0, NULL },
	[R_FINGERPRINT] = { "FINGERPRINT", OUT_STR, 0, NULL },
	[R_SAMPLE] = { "SAMPLE", OUT_NUM, 0, NULL },
	[R_END_SHA256] = { "END_SHA256", OUT_STR, 0, NULL },
	[R_FOUND_SHA256] = { "FOUND_SHA256", OUT_STR, 0, NULL },
	[R_FS_UUID] = { "FS_UUID", OUT_STR, 0, NULL },
	[R_FOUND_FS_UUID] = { "FOUND_FS_UUID", OUT_STR, 0, NULL },
};

enum { K_ORDER, K_SESSION, K_START, K_STATE, K_BLOCKS };
static const struct out_col chain_cols[] = {
	[K_ORDER] = { "ORDER", OUT_NUM, 0, NULL },
	[K_SESSION] = { "SESSION", OUT_STR, 0, NULL },
	[K_START] = { "START", OUT_STR, 0, NULL },
	[K_STATE] = { "STATE", OUT_STR, 0, NULL },
	[K_BLOCKS] = { "BLOCKS_SAVED", OUT_NUM, 0, NULL },
};

/* The chain, in the order it is applied. */
static struct out_table *chain_table(const struct run *r)
{
	struct out_table *t = out_table_new(&r->a->fmt, "chain", chain_cols,
					    ARRAY_SIZE(chain_cols),
					    "ORDER,SESSION,START,STATE,BLOCKS_SAVED", false, false);
	const struct bdsnap_session_info *in;
	size_t i;

	for (i = 0; i <= r->nlater; i++) {
		in = bdsnap_session_info(step(r, i));
		out_row(t);
		out_u64(t, K_ORDER, i + 1);
		out_str(t, K_SESSION, in->name);
		out_str(t, K_START, in->start);
		out_str(t, K_STATE, in->state);
		out_u64(t, K_BLOCKS, in->blocks_saved);
	}
	return t;
}

static const char *result_word(const struct run *r, int rc, int ret)
{
	if (!rc)
		return r->a->dry_run ? "checked" : strcmp(r->verb, "export") ? "restored" :
		       "exported";
	return ret == EXIT_CORRUPT ? "corrupt" : ret == EXIT_REFUSED ? "refused" :
	       rc == -ECANCELED ? "cancelled" : "failed";
}

static void print_json(const struct run *r, const struct bdsnap_chain_report *rep, int rc,
		       int ret)
{
	const struct bdsnap_session_info *newest = bdsnap_session_info(step(r, 0));
	const struct bdsnap_identity *id = &rep->identity;
	struct out_table *t[2];
	bool exp = !strcmp(r->verb, "export");

	t[0] = out_table_new(&r->a->fmt, r->verb, result_cols, ARRAY_SIZE(result_cols), "", true,
			     false);
	out_row(t[0]);
	out_str(t[0], R_SESSION, bdsnap_session_info(r->s)->name);
	out_str(t[0], R_SOURCE, exp ? r->device : NULL);
	out_str(t[0], R_TARGET, r->target);
	out_str(t[0], R_RESULT, result_word(r, rc, ret));
	out_bool(t[0], R_DRY_RUN, r->a->dry_run);
	out_u64(t[0], R_SESSIONS, r->nlater + 1);
	out_u64(t[0], R_BLOCKS, rep->blocks);
	out_u64(t[0], R_BYTES, rep->bytes);
	out_u64(t[0], R_LATER_BLOCKS, rep->later_blocks);
	out_u64(t[0], R_LATER_BYTES, rep->later_bytes);
	out_u64(t[0], R_IMAGE_SIZE, exp && !rc && !r->a->dry_run ? rep->image_size : BDSNAP_UNSET);
	out_str(t[0], R_REASON, rc == -EBADMSG ? rep->verify.reason : rep->refused ? rep->refused :
		rc ? strerror(-rc) : NULL);
	out_str(t[0], R_BAD_SESSION, rep->bad_session);
	if (id->checked) {
		out_u64(t[0], R_SIZE, id->size);
		out_u64(t[0], R_DEVICE_SIZE, id->device_size);
		out_str(t[0], R_FINGERPRINT, id->no_fingerprint ? "unavailable" :
			id->differs & BDSNAP_ID_FINGERPRINT ? "differs" : "matches");
		out_u64(t[0], R_SAMPLE, id->no_fingerprint ? BDSNAP_UNSET : id->sample);
		out_str(t[0], R_END_SHA256, newest->end_sha256);
		out_str(t[0], R_FOUND_SHA256, id->end_sha256[0] ? id->end_sha256 : NULL);
		out_str(t[0], R_FS_UUID, newest->fs_uuid);
		out_str(t[0], R_FOUND_FS_UUID, id->fs_uuid[0] ? id->fs_uuid : NULL);
	}
	t[1] = chain_table(r);
	out_print(t, 2);
}

/* Find the chain, run @fn, and tell what happened. */
static int run_chain(struct run *r, int (*fn)(struct run *, const struct bdsnap_restore_opts *,
					      struct bdsnap_chain_report *))
{
	struct bdsnap_restore_opts opts = BDSNAP_OPTS_INIT(opts);
	struct bdsnap_chain_report rep = BDSNAP_OPTS_INIT(rep);
	const struct bdsnap_session_info *in = bdsnap_session_info(r->s);
	char note[96] = "";
	int rc, ret = EXIT_SUCCESS;

	find_later(r);
	opts.flags = (r->a->dry_run ? BDSNAP_RESTORE_DRY_RUN : 0) |
		     (r->a->force ? BDSNAP_RESTORE_FORCE : 0);
	opts.progress = progress;
	opts.ctx = r;
	opts.confirm = confirm;
	r->draw = bar_fn() != NULL;
	bar_init(&r->bar, !strcmp(r->verb, "restore") ? "restoring" :
		 !strcmp(r->verb, "export") ? "exporting" : "verifying");
	rc = fn(r, &opts, &rep);
	bar_done(&r->bar);
	if (rc < 0) {
		ret = chain_failed(r, &rep, rc);
	} else {
		note_torn(in, &rep.verify);
		if (r->a->force)
			forced_identity(r, &rep);
	}
	/* Only a log changing under us or an I/O error can stop a restore midway. */
	if (rc < 0 && rep.wrote && strcmp(r->verb, "export"))
		warnx("%s: partly restored: %" PRIu64 " blocks written", r->target,
		      rep.blocks + rep.later_blocks);
	if (r->a->fmt.json) {
		print_json(r, &rep, rc, ret);
	} else if (!rc) {
		if (r->a->dry_run) {
			struct out_table *t = chain_table(r);

			out_print(&t, 1);
		}
		/* the device may hold what an older session left: the later ones are undone */
		if (rep.sessions > 1)
			snprintf(note, sizeof(note), ", after %" PRIu64 " from %zu later session%s",
				 rep.later_blocks, rep.sessions - 1, rep.sessions > 2 ? "s" : "");
		else if (r->nlater)
			snprintf(note, sizeof(note), " (the later session%s %s already undone)",
				 r->nlater > 1 ? "s" : "", r->nlater > 1 ? "were" : "was");
		if (!strcmp(r->verb, "map"))
			printf("%s\n", r->target);	/* for dev=$(bdsnap map ...) */
		else if (!strcmp(r->verb, "mount"))
			printf("mounted %s on %s (read-only)\n", r->target, r->a->pos[1]);
		else if (strcmp(r->verb, "export"))
			printf("%s %" PRIu64 " blocks (%" PRIu64 " bytes) to %s%s%s\n",
			       r->a->dry_run ? "would restore" : "restored", rep.blocks, rep.bytes,
			       r->target, note, r->a->dry_run ? " (dry run: nothing written)" : "");
		else
			printf("%s %s: %" PRIu64 " bytes to %s (%" PRIu64 " pre-images applied%s)%s\n",
			       r->a->dry_run ? "would export" : "exported", in->name,
			       r->a->dry_run ? in->device_size : rep.image_size, r->target,
			       rep.blocks, note, r->a->dry_run ? " (dry run: nothing written)" : "");
	}
	bdsnap_sessions_free(r->later, r->nlater);
	bdsnap_session_close(r->s);
	return ret;
}

static int do_restore(struct run *r, const struct bdsnap_restore_opts *opts,
		      struct bdsnap_chain_report *rep)
{
	return bdsnap_chain_restore(r->s, r->later, r->nlater, r->target, opts, rep);
}

static int do_export(struct run *r, const struct bdsnap_restore_opts *opts,
		     struct bdsnap_chain_report *rep)
{
	return bdsnap_chain_export(r->s, r->later, r->nlater, r->a->from, r->target, opts, rep);
}

int cmd_restore(const struct args *a, const char *name)
{
	struct run r = { .a = a, .verb = name, .s = open_session(a, a->pos[0]) };

	r.target = a->to ? a->to : bdsnap_session_info(r.s)->path;
	if (!r.target)
		r.target = bdsnap_session_info(r.s)->dir;	/* meta lacks path: reported */
	r.device = r.target;
	return run_chain(&r, do_restore);
}

int cmd_export(const struct args *a, const char *name)
{
	struct run r = { .a = a, .verb = name };

	if (!a->to)
		usage_error("%s: --to FILE is required", name);
	r.s = open_session(a, a->pos[0]);
	r.target = a->to;
	r.device = a->from ? a->from : bdsnap_session_info(r.s)->path;
	if (!r.device)
		r.device = bdsnap_session_info(r.s)->dir;	/* meta lacks path: reported */
	return run_chain(&r, do_export);
}

static int do_map(struct run *r, const struct bdsnap_restore_opts *opts,
		  struct bdsnap_chain_report *rep)
{
	struct bdsnap_view *v;
	int rc;

	rc = bdsnap_view_open(r->s, r->later, r->nlater, r->a->from, opts, &v, rep);
	if (rc)
		return rc;
	rc = map_attach(v, bdsnap_session_info(r->s), r->device, r->nbd, sizeof(r->nbd),
			&rep->refused);
	bdsnap_view_close(v);
	if (r->nbd[0])
		r->target = r->nbd;
	if (rc)
		rep->where = "target";
	return rc;
}

/* map, then mount; a view that cannot be mounted is detached again. */
static int do_mount(struct run *r, const struct bdsnap_restore_opts *opts,
		    struct bdsnap_chain_report *rep)
{
	int rc = do_map(r, opts, rep);

	if (rc)
		return rc;
	rc = map_mount(r->nbd, r->a->pos[1], &rep->refused);
	if (rc) {
		map_detach(r->nbd);
		r->target = r->a->pos[1];
		rep->where = "target";
	}
	return rc;
}

/* map and mount: the chain of SESSION, as export finds it, served as a view. */
static int run_view(const struct args *a, const char *name,
		    int (*fn)(struct run *, const struct bdsnap_restore_opts *,
			      struct bdsnap_chain_report *))
{
	struct run r = { .a = a, .verb = name };

	r.s = open_session(a, a->pos[0]);
	r.device = a->from ? a->from : bdsnap_session_info(r.s)->path;
	if (!r.device)
		r.device = bdsnap_session_info(r.s)->dir;	/* meta lacks path: reported */
	r.target = "NBD device";
	return run_chain(&r, fn);
}

int cmd_mount(const struct args *a, const char *name)
{
	return run_view(a, name, do_mount);
}

int cmd_map(const struct args *a, const char *name)
{
	return run_view(a, name, do_map);
}
