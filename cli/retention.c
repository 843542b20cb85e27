// SPDX-License-Identifier: GPL-2.0
/*
 * bdsnap delete and prune.  Restoring a session needs the later sessions of
 * its device, so removing a session breaks the older ones: prune removes
 * only the oldest sessions of a device, and delete refuses to break an
 * older session unless forced (then it marks it, and says so).
 */
#include <err.h>
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

enum { X_SESSION, X_DIR, X_BYTES, X_RESULT, X_BROKEN };
static const struct out_col removed_cols[] = {
	[X_SESSION] = { "SESSION", OUT_STR, 0, NULL },
	[X_DIR] = { "DIR", OUT_STR, 0, NULL },
	[X_BYTES] = { "BYTES", OUT_NUM, 0, NULL },
	[X_RESULT] = { "RESULT", OUT_STR, 0, NULL },
	[X_BROKEN] = { "BROKEN", OUT_STR, 0, NULL },
};

/* One removal: in text a line, in JSON a row of @t. */
static void removed(const struct args *a, struct out_table *t, const struct bdsnap_session *s,
		    uint64_t bytes, const char *broken)
{
	const struct bdsnap_session_info *in = bdsnap_session_info(s);
	char size[24];

	if (!a->fmt.json) {
		printf("%s %s (%s)%s%s\n", a->dry_run ? "would remove" : "removed", in->name,
		       human_size(bytes, size, sizeof(size)), broken ? "; now unrestorable: " : "",
		       broken ? broken : "");
		return;
	}
	out_row(t);
	out_str(t, X_SESSION, in->name);
	out_str(t, X_DIR, in->dir);
	out_u64(t, X_BYTES, bytes);
	out_str(t, X_RESULT, a->dry_run ? "would-remove" : "removed");
	out_str(t, X_BROKEN, broken);
}

/* Remove @s (unless a dry run): 0, or an exit code after saying why not. */
static int remove_session(const struct args *a, struct bdsnap_session *s)
{
	int rc = a->dry_run ? bdsnap_session_live(s) : bdsnap_session_delete(s);

	if (rc > 0 || rc == -EBUSY) {
		warnx("%s: refused: the session is open (its device is mounted)",
		      bdsnap_session_info(s)->dir);
		return EXIT_REFUSED;
	}
	if (rc < 0) {
		warnx("%s: %s", bdsnap_session_info(s)->dir, strerror(-rc));
		return EXIT_ERROR;
	}
	return 0;
}

static bool is_named(struct bdsnap_session *const *del, size_t n, const struct bdsnap_session *s)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcmp(bdsnap_session_info(del[i])->dir, bdsnap_session_info(s)->dir))
			return true;
	return false;
}

/*
 * The sessions of @s's store that stay and need @s, as "a, b"; NULL if
 * none.  With @mark, each is marked as having lost @s.
 */
static char *needing(struct bdsnap_session *s, struct bdsnap_session *const *del, size_t ndel,
		     bool mark)
{
	char *store = strdup(bdsnap_session_info(s)->dir), *names = NULL, *more;
	struct bdsnap_session **list;
	size_t i, n;
	int rc;

	if (!store)
		errx(EXIT_ERROR, "out of memory");
	rc = bdsnap_sessions_scan(dirname(store), &list, &n);
	free(store);
	if (rc < 0)
		errx(EXIT_ERROR, "%s: %s", bdsnap_session_info(s)->dir, strerror(-rc));
	for (i = 0; i < n; i++) {
		if (!bdsnap_session_needs(list[i], s) || is_named(del, ndel, list[i]))
			continue;
		if (mark && (rc = bdsnap_session_mark_broken(list[i], bdsnap_session_info(s)->name)))
			errx(EXIT_ERROR, "%s: %s", bdsnap_session_info(list[i])->dir, strerror(-rc));
		if (asprintf(&more, "%s%s%s", names ? names : "", names ? ", " : "",
			     bdsnap_session_info(list[i])->name) < 0)
			errx(EXIT_ERROR, "out of memory");
		free(names);
		names = more;
	}
	bdsnap_sessions_free(list, n);
	return names;
}

int cmd_delete(const struct args *a, const char *name)
{
	struct bdsnap_session **del = calloc(a->npos, sizeof(*del));
	struct out_table *t = NULL;
	uint64_t bytes;
	char *broken;
	int i, rc, ret = EXIT_SUCCESS;

	(void)name;
	if (!del)
		errx(EXIT_ERROR, "out of memory");
	for (i = 0; i < a->npos; i++)
		del[i] = open_session(a, a->pos[i]);
	/* Every refusal before the first removal: all or nothing. */
	for (i = 0; i < a->npos; i++) {
		rc = bdsnap_session_live(del[i]);
		if (rc) {
			warnx("%s: refused: %s", bdsnap_session_info(del[i])->dir, rc > 0 ?
			      "the session is open (its device is mounted)" : strerror(-rc));
			ret = rc > 0 ? EXIT_REFUSED : EXIT_ERROR;
		} else if (!a->force && (broken = needing(del[i], del, a->npos, false))) {
			warnx("%s: refused: older sessions of its device need it to be restored: %s "
			      "(delete them too, or use --force: they are then refused by restore "
			      "and export)", bdsnap_session_info(del[i])->dir, broken);
			free(broken);
			ret = EXIT_REFUSED;
		}
	}
	if (a->fmt.json)
		t = out_table_new(&a->fmt, "delete", removed_cols, ARRAY_SIZE(removed_cols), "",
				  false, false);
	for (i = 0; i < a->npos && ret == EXIT_SUCCESS; i++) {
		bytes = bdsnap_session_bytes(del[i]);
		broken = a->force ? needing(del[i], del, a->npos, !a->dry_run) : NULL;
		if (broken)
			warnx("%s: %s: older sessions of its device can no longer be restored: %s",
			      bdsnap_session_info(del[i])->dir, a->dry_run ? "would remove" :
			      "removing", broken);
		ret = remove_session(a, del[i]);
		if (!ret)
			removed(a, t, del[i], bytes, broken);
		free(broken);
	}
	if (t)
		out_print(&t, 1);
	for (i = 0; i < a->npos; i++)
		bdsnap_session_close(del[i]);
	free(del);
	return ret;
}

/* The policy: --keep and --max-size, else the configuration file's. */
static void prune_policy(const struct args *a, struct bdsnap_retention *p)
{
	const char *file = a->config ? a->config : BDSNAP_CONF_PATH;
	struct bdsnap_conf_error e = { 0 };
	int rc;

	*p = a->keep;
	if (p->keep || p->max_size)
		return;
	rc = bdsnap_conf_retention(file, p, &e);
	if (rc < 0 && e.line)
		errx(EXIT_CONFIG, "%s:%u: %s: %s", file, e.line, e.what,
		     e.reason ? e.reason : strerror(-rc));
	if (rc < 0)
		errx(EXIT_CONFIG, "%s: %s", file, e.reason ? e.reason : strerror(-rc));
	if (!p->keep && !p->max_size)
		usage_error("prune: no policy: give --keep or --max-size, or set keep= or "
			    "max_size= in %s", file);
}

int cmd_prune(const struct args *a, const char *name)
{
	struct bdsnap_retention p = BDSNAP_OPTS_INIT(p);
	struct bdsnap_session **list;
	struct out_table *t = NULL;
	uint64_t bytes, freed = 0, total = 0;
	unsigned char *remove;
	size_t i, n, gone = 0;
	char size[24];
	int rc, ret = EXIT_SUCCESS;

	(void)name;
	prune_policy(a, &p);
	rc = bdsnap_sessions_scan(a->store, &list, &n);
	if (rc < 0)
		errx(EXIT_ERROR, "%s: %s", a->store, strerror(-rc));
	remove = calloc(n ? n : 1, 1);
	if (!remove || bdsnap_retention_plan(list, n, &p, remove))
		errx(EXIT_ERROR, "out of memory");
	if (a->fmt.json)
		t = out_table_new(&a->fmt, "prune", removed_cols, ARRAY_SIZE(removed_cols), "",
				  false, false);
	for (i = 0; i < n && ret == EXIT_SUCCESS; i++) {
		bytes = bdsnap_session_bytes(list[i]);
		total += bytes;
		if (!remove[i])
			continue;
		ret = remove_session(a, list[i]);
		if (!ret) {
			removed(a, t, list[i], bytes, NULL);
			freed += bytes;
			gone++;
		}
	}
	if (t)
		out_print(&t, 1);
	else if (ret == EXIT_SUCCESS)
		printf("%s %zu of %zu sessions, %s\n", a->dry_run ? "would remove" : "removed", gone,
		       n, human_size(freed, size, sizeof(size)));
	if (ret == EXIT_SUCCESS && p.max_size && total - freed > p.max_size)
		warnx("%s: still %" PRIu64 " bytes, over max_size %" PRIu64 ": open sessions "
		      "are never removed", a->store, total - freed, p.max_size);
	free(remove);
	bdsnap_sessions_free(list, n);
	return ret;
}
