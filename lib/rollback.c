// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Rollback mode: finishing the rollbacks a crash left undone (bdsnap.h).
 *
 * The chain of the oldest unfinished session of a device is restored, so
 * that each block ends as it was before that session's mount whatever
 * came after it.  Writing a block's pre-image twice writes the same bytes,
 * so a device the kernel (or an earlier call) rolled back in part is
 * finished by the same restore; only its end fingerprint cannot match.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "internal.h"

/* A session of rollback mode that the kernel did not finish. */
static bool unfinished(const struct bdsnap_session *s)
{
	const char *mode = bdsnap_session_meta(s, "rollback");

	return mode && !strcmp(mode, "yes") && !bdsnap_session_meta(s, "rolled_back");
}

/* Is the session's meta path the device @dev, stat'ed into @st (if @have_st)? */
static bool names_device(const struct bdsnap_session *s, const char *dev, bool have_st,
			 const struct stat *st)
{
	struct stat mine;

	if (!s->info.path)
		return false;
	if (!strcmp(s->info.path, dev))
		return true;
	if (!have_st || stat(s->info.path, &mine))
		return false;
	if (S_ISBLK(st->st_mode))
		return S_ISBLK(mine.st_mode) && mine.st_rdev == st->st_rdev;
	return mine.st_dev == st->st_dev && mine.st_ino == st->st_ino;
}

/* The module is at work on the device: mounted, or its rollback running. */
static bool working(const struct bdsnap_dev_info *v)
{
	return v->session_state == BDSNAP_SESSION_OPEN ||
	       v->session_state == BDSNAP_SESSION_INCOMPLETE ||
	       v->session_state == BDSNAP_SESSION_ROLLING_BACK;
}

/* The session the module is working on: under way, not unfinished. */
static bool live(const struct bdsnap_session *s, const struct bdsnap_dev_info *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (working(&v[i]) && !strncmp(v[i].session, s->info.name, sizeof(v[i].session)))
			return true;
	return false;
}

/* Is the module at work on the device at @path (activated as meta's path says)? */
static bool busy(const char *path, const struct bdsnap_dev_info *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (working(&v[i]) && !strncmp(v[i].path, path, sizeof(v[i].path)))
			return true;
	return false;
}

/*
 * Has the session its log?  A crash while the kernel deleted it leaves
 * meta alone; any other trouble is for the restore to report.
 */
static bool has_log(const struct bdsnap_session *s)
{
	char path[BDSNAP_PATH_MAX + 8];
	struct stat st;

	snprintf(path, sizeof(path), "%s/blocks", s->dir);
	return stat(path, &st) == 0 || errno != ENOENT;
}

/* Now, as meta's start= and end= say a time. */
static void utc_now(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	size_t at;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	at = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + at, len - at, ".%09ldZ", ts.tv_nsec);
}

/* One device: its unfinished sessions @mine, among the store's @list (oldest first). */
struct device_run {
	struct bdsnap_session **list;
	size_t n;
	struct bdsnap_rollback_session *mine;
	size_t count;
	const struct bdsnap_rollback_opts *opts;
	struct bdsnap_chain_report chain;
};

/*
 * Restore the chain of the oldest unfinished session that has a log: it
 * and every later session of the device, but the unfinished ones without
 * a log (nothing to write back).
 */
static int restore_device(struct device_run *d)
{
	struct bdsnap_restore_opts ro = BDSNAP_OPTS_INIT(ro);
	struct bdsnap_session *first = NULL, **later;
	size_t i, j, nlater = 0;
	uint64_t *records;
	int rc;

	for (j = 0; j < d->count && !first; j++)
		if (has_log(d->mine[j].session))
			first = d->mine[j].session;
	if (!first)
		return 0;
	later = calloc(d->n, sizeof(*later));
	records = calloc(d->n + 1, sizeof(*records));
	if (!later || !records) {
		free(later);
		free(records);
		return -ENOMEM;
	}
	for (i = 0; i < d->n; i++)
		if (bdsnap_session_needs(first, d->list[i]) &&
		    !(unfinished(d->list[i]) && !has_log(d->list[i])))
			later[nlater++] = d->list[i];
	ro.flags = d->opts->flags & BDSNAP_ROLLBACK_DRY_RUN ? BDSNAP_RESTORE_DRY_RUN : 0;
	ro.progress = d->opts->progress;
	ro.ctx = d->opts->ctx;
	rc = chain_restore(first, later, nlater, NULL, &ro, true, records, &d->chain);
	/* records[0] is @first's, then the later sessions' in @later's order. */
	for (j = 0; !rc && j < d->count; j++) {
		if (d->mine[j].session == first)
			d->mine[j].blocks = records[0];
		for (i = 0; i < nlater; i++)
			if (later[i] == d->mine[j].session)
				d->mine[j].blocks = records[i + 1];
	}
	free(records);
	free(later);
	return rc;
}

/*
 * Does a later session of @s's device stay in the store?  Its pre-images
 * carry what @s changed, so the chains of the older sessions need @s: it
 * cannot be deleted (the kernel deletes only the newest session).
 */
static bool outlived(const struct device_run *d, const struct bdsnap_session *s)
{
	size_t i, j;
	bool deleted;

	for (i = 0; i < d->n; i++) {
		if (!bdsnap_session_needs(s, d->list[i]))
			continue;
		for (deleted = false, j = 0; j < d->count; j++)
			deleted |= d->mine[j].session == d->list[i] && !d->mine[j].keep;
		if (!deleted)
			return true;
	}
	return false;
}

/* Which sessions are kept: the newest first, as they are marked. */
static void decide_keep(struct device_run *d)
{
	size_t j;

	/* One without a log changed nothing: no chain needs it. */
	for (j = d->count; j-- > 0;)
		if (!d->mine[j].keep && has_log(d->mine[j].session) &&
		    outlived(d, d->mine[j].session))
			d->mine[j].keep = 1;
}

/*
 * Mark or delete the device's unfinished sessions, the newest first: a
 * crash in between leaves the oldest unfinished, whose chain still undoes
 * them all (the other way round, a later one would be left, and rolling it
 * back would bring back what the earlier ones changed).
 */
static int mark_device(struct device_run *d)
{
	char now[40];
	size_t j;
	int rc = 0;

	utc_now(now, sizeof(now));
	for (j = d->count; j-- > 0 && !rc;) {
		struct bdsnap_rollback_session *m = &d->mine[j];

		rc = m->keep ? meta_append(m->session, "rolled_back", now) :
			       bdsnap_session_delete(m->session);
		m->done = !rc;
	}
	return rc;
}

/* The unfinished sessions of @list[@i]'s device, from @i on, into @d; taken off @todo. */
static void gather(struct device_run *d, size_t i, bool *todo)
{
	const char *path = d->list[i]->info.path, *keep;
	size_t j;

	for (j = i; j < d->n; j++) {
		if (!todo[j] || (j > i && (!path || !d->list[j]->info.path ||
					   strcmp(path, d->list[j]->info.path))))
			continue;
		todo[j] = false;
		keep = bdsnap_session_meta(d->list[j], "keep");
		d->mine[d->count++] = (struct bdsnap_rollback_session){
			.session = d->list[j], .keep = !keep || strcmp(keep, "no") };
	}
}

/* Finish one device's rollback; what the result callback is told. */
static void finish_device(struct device_run *d, const struct bdsnap_dev_info *v, size_t nv,
			  struct bdsnap_rollback_result *res)
{
	*res = (struct bdsnap_rollback_result){ .path = d->mine[0].session->info.path,
						.sessions = d->mine, .count = d->count,
						.chain = &d->chain };
	decide_keep(d);
	if (res->path && busy(res->path, v, nv))
		res->error = refuse(&res->refused, -EBUSY,
				    "the device is mounted, or the kernel is rolling it back");
	else
		res->error = restore_device(d);
	if (!res->error && !(d->opts->flags & BDSNAP_ROLLBACK_DRY_RUN))
		res->error = mark_device(d);
	if (!res->refused)
		res->refused = d->chain.refused;
}

int bdsnap_rollback_finish(const char *store_dir, const char *dev,
			   const struct bdsnap_rollback_opts *opts)
{
	struct bdsnap_rollback_session *mine = NULL;
	struct bdsnap_rollback_result res;
	struct bdsnap_rollback_opts o;
	struct bdsnap_dev_info *v = NULL;
	struct bdsnap_session **list;
	struct device_run d;
	bool have_st, dry, *todo = NULL;
	size_t n, nv = 0, i, j;
	int rc, first_err = 0, finished = 0;
	struct stat st;

	/* The first struct had size, flags, progress, result and ctx. */
	rc = opts_take(&o, sizeof(o), opts, sizeof(struct bdsnap_rollback_opts));
	if (rc || !store_dir)
		return -EINVAL;
	dry = o.flags & BDSNAP_ROLLBACK_DRY_RUN;
	have_st = dev && !stat(dev, &st);
	rc = bdsnap_sessions_scan(store_dir, &list, &n);
	if (rc)
		return rc;
	rc = bdsnap_list(&v, &nv);
	if (rc == -ENOENT)	/* no module: no device is mounted with a session */
		rc = 0;
	if (!rc) {
		todo = calloc(n ? n : 1, sizeof(*todo));
		mine = calloc(n ? n : 1, sizeof(*mine));
		if (!todo || !mine)
			rc = -ENOMEM;
	}
	for (i = 0; !rc && i < n; i++)
		todo[i] = unfinished(list[i]) && !live(list[i], v, nv) &&
			  (!dev || names_device(list[i], dev, have_st, &st));
	/* Oldest first: each device's group starts at its oldest unfinished session. */
	for (i = 0; !rc && i < n; i++) {
		if (!todo[i])
			continue;
		d = (struct device_run){ .list = list, .n = n, .mine = mine, .opts = &o,
					 .chain = BDSNAP_OPTS_INIT(d.chain) };
		gather(&d, i, todo);
		finish_device(&d, v, nv, &res);
		if (o.result)
			o.result(o.ctx, &res);
		if (res.error && !first_err)
			first_err = res.error;
		for (j = 0; j < d.count; j++)
			finished += dry ? !res.error : mine[j].done;
	}
	free(mine);
	free(todo);
	free(v);
	bdsnap_sessions_free(list, n);
	return rc ? rc : first_err ? first_err : finished;
}
