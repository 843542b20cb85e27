// SPDX-License-Identifier: GPL-2.0
/*
 * bdsnap rollback, and the part of load --config that runs it before a
 * device is activated: finish the rollbacks of rollback mode that a crash
 * (or an error) left undone.  The library finds and finishes them; here
 * the outcome is told.
 */
#include <err.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd.h"

enum { B_DEVICE, B_SESSION, B_RESULT, B_BLOCKS, B_KEPT, B_REASON };
static const struct out_col rollback_cols[] = {
	[B_DEVICE] = { "DEVICE", OUT_STR, 0, NULL },
	[B_SESSION] = { "SESSION", OUT_STR, 0, NULL },
	[B_RESULT] = { "RESULT", OUT_STR, 0, NULL },
	[B_BLOCKS] = { "BLOCKS", OUT_NUM, 0, NULL },
	[B_KEPT] = { "KEPT", OUT_BOOL, 0, NULL },
	[B_REASON] = { "REASON", OUT_STR, 0, NULL },
};

/* One call of bdsnap_rollback_finish(), and what it told. */
struct finish {
	const char *who;		/* "load": lines on stderr; "rollback": on stdout */
	bool dry;
	struct out_table *t;		/* -J: a row per session */
	struct bdsnap_dev_info *v;	/* the module's devices, for the hint after a failed rollback */
	size_t nv;
	struct bar bar;
	int ret;			/* the first failure's exit status */
	size_t sessions;
};

static void progress(void *ctx, uint64_t done, uint64_t total)
{
	bar_update(&((struct finish *)ctx)->bar, done, total);
}

/* A line about a device: a warning of load (a crash is behind it), else output. */
static void __attribute__((format(printf, 2, 3))) tell(const struct finish *f, const char *fmt,
							 ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (strcmp(f->who, "load")) {
		vprintf(fmt, ap);
		putchar('\n');
	} else {
		char *line;

		if (vasprintf(&line, fmt, ap) < 0)
			errx(EXIT_ERROR, "out of memory");
		warnx("load: %s", line);
		free(line);
	}
	va_end(ap);
}

/* Why the rollback of @dev stopped; its exit status. */
static int failed(const struct finish *f, const char *dev, const struct bdsnap_rollback_result *r,
		  const char **why)
{
	const struct bdsnap_chain_report *c = r->chain;
	const struct bdsnap_identity *id = &c->identity;

	if (r->error == -EBADMSG) {
		*why = c->verify.reason;
		return session_failed(c->bad_session ? c->bad_session : dev, &c->verify, r->error);
	}
	if (r->refused) {
		*why = r->refused;
		if (r->error == -EMEDIUMTYPE && (id->differs & BDSNAP_ID_SIZE))
			warnx("%s: %s: refused: %s (size %" PRIu64 " bytes, the session's device "
			      "%" PRIu64 ")", f->who, dev, r->refused, id->size, id->device_size);
		else if (r->error == -EMEDIUMTYPE && (id->differs & BDSNAP_ID_FS_UUID))
			warnx("%s: %s: refused: %s (file system UUID %s)", f->who, dev, r->refused,
			      id->fs_uuid);
		else
			warnx("%s: %s: refused: %s%s%s", f->who, dev, r->refused,
			      c->bad_session ? ": " : "", c->bad_session ? c->bad_session : "");
		return EXIT_REFUSED;
	}
	*why = strerror(-r->error);
	warnx("%s: %s: %s", f->who, dev, *why);
	return EXIT_ERROR;
}

/* The module refuses mounts of a device whose rollback failed, until it is deactivated. */
static void failed_before(const struct finish *f, const char *path)
{
	size_t i;

	for (i = 0; i < f->nv; i++)
		if (f->v[i].session_state == BDSNAP_SESSION_ROLLBACK_FAILED &&
		    !strncmp(f->v[i].path, path, sizeof(f->v[i].path)))
			tell(f, "%s: the module refuses its mounts since its rollback failed: "
			     "deactivate it, then activate it again", path);
}

static void result(void *ctx, const struct bdsnap_rollback_result *r)
{
	struct finish *f = ctx;
	/* A meta without path is reported by the restore; the session names it meanwhile. */
	const char *dev = r->path ? r->path : bdsnap_session_info(r->sessions[0].session)->dir;
	const char *why = NULL, *word;
	int ret = EXIT_SUCCESS;
	size_t i;

	bar_done(&f->bar);
	if (r->error)
		ret = failed(f, dev, r, &why);
	word = ret == EXIT_CORRUPT ? "corrupt" : ret == EXIT_REFUSED ? "refused" :
	       ret ? "failed" : f->dry ? "would-roll-back" : "rolled-back";
	for (i = 0; i < r->count; i++) {
		const struct bdsnap_rollback_session *s = &r->sessions[i];
		const char *name = bdsnap_session_info(s->session)->name;
		/* An error while marking leaves the newer sessions marked. */
		bool told = s->done || (f->dry && !ret);

		f->sessions += told;
		if (f->t) {
			out_row(f->t);
			out_str(f->t, B_DEVICE, dev);
			out_str(f->t, B_SESSION, name);
			out_str(f->t, B_RESULT, s->done ? "rolled-back" : word);
			out_u64(f->t, B_BLOCKS, told ? s->blocks : BDSNAP_UNSET);
			out_bool(f->t, B_KEPT, s->keep);
			out_str(f->t, B_REASON, s->done ? NULL : why);
		} else if (told) {
			tell(f, "%s: %s session %s (%" PRIu64 " blocks%s)", dev,
			     f->dry ? "would roll back" : "rolled back", name, s->blocks,
			     s->keep ? "; kept" : "");
		}
	}
	if (!ret && !f->dry)
		failed_before(f, dev);
	if (ret && !f->ret)
		f->ret = ret;
}

/*
 * Finish the rollbacks of @dev (every device when NULL) in @store; @json:
 * a row per session, printed at the end.  The exit status of the first
 * failure, else 0; how many sessions were finished in *@sessions.
 */
static int finish(const char *who, const char *store, const char *dev, bool dry,
		  const struct out_fmt *json, size_t *sessions)
{
	struct bdsnap_rollback_opts o = BDSNAP_OPTS_INIT(o);
	struct finish f = { .who = who, .dry = dry };
	int rc;

	if (json)
		f.t = out_table_new(json, "rollback", rollback_cols, ARRAY_SIZE(rollback_cols), "",
				    false, false);
	/* For the hint after a failed rollback: without the module, there is none. */
	(void)bdsnap_list(&f.v, &f.nv);
	o.flags = dry ? BDSNAP_ROLLBACK_DRY_RUN : 0;
	o.progress = bar_fn() ? progress : NULL;
	o.result = result;
	o.ctx = &f;
	bar_init(&f.bar, "rolling back");
	rc = bdsnap_rollback_finish(store, dev, &o);
	bar_done(&f.bar);
	if (f.t)
		out_print(&f.t, 1);
	free(f.v);
	/* Else the result callback told, device by device. */
	if (rc < 0 && !f.ret) {
		warnx("%s: %s: %s", who, store, strerror(-rc));
		f.ret = EXIT_ERROR;
	}
	*sessions = f.sessions;
	return f.ret;
}

int rollback_config_device(const char *store, const char *dev, bool dry)
{
	size_t sessions;
	struct stat st;

	/* No store yet, no session yet. */
	if (stat(store, &st) && errno == ENOENT)
		return EXIT_SUCCESS;
	return finish("load", store, dev, dry, NULL, &sessions);
}

/* Is @dev mounted with a session, or being rolled back?  Then refuse. */
static int refuse_busy(const char *dev)
{
	char *real = realpath(dev, NULL);
	struct bdsnap_dev_info *v;
	int ret = EXIT_SUCCESS;
	size_t i, n;
	int rc;

	rc = bdsnap_list(&v, &n);
	if (rc == -ENOENT)	/* no module: no session */
		n = 0, v = NULL;
	else if (rc < 0)
		errx(EXIT_ERROR, "rollback: /dev/%s: %s", BDSNAP_CTL_NAME, strerror(-rc));
	for (i = 0; i < n && !ret; i++) {
		if (strncmp(v[i].path, dev, sizeof(v[i].path)) &&
		    (!real || strncmp(v[i].path, real, sizeof(v[i].path))))
			continue;
		if (v[i].session_state == BDSNAP_SESSION_ROLLING_BACK) {
			warnx("rollback: %s: refused: the module is rolling it back: wait for it", dev);
			ret = EXIT_REFUSED;
		} else if (v[i].session_state == BDSNAP_SESSION_OPEN ||
			   v[i].session_state == BDSNAP_SESSION_INCOMPLETE) {
			warnx("rollback: %s: refused: it is mounted (session %.*s is open): "
			      "unmount it first", dev, (int)sizeof(v[i].session), v[i].session);
			ret = EXIT_REFUSED;
		}
	}
	free(v);
	free(real);
	return ret;
}

int cmd_rollback(const struct args *a, const char *name)
{
	const char *dev = a->npos ? a->pos[0] : NULL;
	size_t sessions;
	int ret;

	(void)name;
	if (dev && (ret = refuse_busy(dev)))
		return ret;
	ret = finish("rollback", a->store, dev, a->dry_run, a->fmt.json ? &a->fmt : NULL,
		     &sessions);
	if (!ret && !sessions && !a->fmt.json)
		printf("nothing to roll back%s%s\n", dev ? " on " : "", dev ? dev : "");
	return ret;
}
