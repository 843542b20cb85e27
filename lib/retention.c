// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Retention: which sessions may go, and removing them.
 *
 * Restoring a session needs every later session of its device (chain.c),
 * so removing a session breaks every older session of that device, and
 * removing the oldest breaks none.  A policy therefore only ever removes
 * the oldest sessions of a device; an explicit delete that would break an
 * older session says so, and when forced marks it (meta chain_broken=), so
 * that its restore is refused rather than silently wrong.
 *
 * A live session (the module lists it as the open session of an activated
 * device: its device is mounted) is never removed.  A session whose meta
 * says open but that the module does not list was left by a crash, and may
 * be removed like any other.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

int bdsnap_parse_size(const char *s, uint64_t *out)
{
	static const char units[] = "KMGTPE";
	uint64_t v = 0, mul = 1;
	const char *u;
	int i;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (UINT64_MAX - (*s - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (*s - '0');
	}
	if (*s && (u = strchr(units, *s & ~0x20))) {
		for (i = 0; i <= u - units; i++)
			mul *= 1024;
		s++;
		if (!strcmp(s, "iB") || !strcmp(s, "B"))
			s += strlen(s);
	} else if (!strcmp(s, "B")) {
		s++;
	}
	if (*s)
		return -EINVAL;
	if (v > UINT64_MAX / mul)
		return -ERANGE;
	*out = v * mul;
	return 0;
}

int bdsnap_session_needs(const struct bdsnap_session *older, const struct bdsnap_session *newer)
{
	const struct bdsnap_session_info *o = &older->info, *n = &newer->info;

	return o->path && n->path && o->start && n->start && !strcmp(o->path, n->path) &&
	       strcmp(o->start, n->start) < 0;
}

int bdsnap_session_live(const struct bdsnap_session *s)
{
	struct bdsnap_dev_info *v;
	size_t i, n;
	int rc, live = 0;

	if (s->info.state_kind != BDSNAP_META_OPEN)
		return 0;
	rc = bdsnap_list(&v, &n);
	if (rc == -ENOENT)
		return 0;	/* no module: no session can be open */
	if (rc < 0)
		return rc;
	for (i = 0; i < n && !live; i++)
		live = v[i].session_state != BDSNAP_SESSION_NONE &&
		       !strncmp(v[i].session, s->info.name, sizeof(v[i].session));
	free(v);
	return live;
}

uint64_t bdsnap_session_bytes(const struct bdsnap_session *s)
{
	return s->meta_size + blocks_size(s);
}

int bdsnap_retention_plan(struct bdsnap_session *const *list, size_t n,
			  const struct bdsnap_retention *policy, unsigned char *remove)
{
	struct bdsnap_retention p;
	uint64_t total = 0;
	size_t i, j, newer;
	int rc, live;

	/* The first struct had size, keep and max_size. */
	rc = opts_take(&p, sizeof(p), policy, sizeof(p));
	if (rc || !policy)
		return -EINVAL;
	memset(remove, 0, n);
	for (i = 0; i < n; i++)
		total += bdsnap_session_bytes(list[i]);
	/* Oldest first, so only ever the oldest remaining session of a device goes. */
	for (i = 0; i < n; i++) {
		live = bdsnap_session_live(list[i]);
		if (live)	/* live, or it cannot be told: keep it */
			continue;
		for (newer = 0, j = i + 1; j < n; j++)
			newer += bdsnap_session_needs(list[i], list[j]);
		if ((p.keep && newer >= p.keep) || (p.max_size && total > p.max_size)) {
			remove[i] = 1;
			total -= bdsnap_session_bytes(list[i]);
		}
	}
	return 0;
}

int bdsnap_session_mark_broken(struct bdsnap_session *s, const char *deleted)
{
	return meta_append(s, "chain_broken", deleted);
}

int bdsnap_session_delete(struct bdsnap_session *s)
{
	static const char *const files[] = { "blocks", "meta" };
	char path[BDSNAP_PATH_MAX + 8];
	int rc, dfd;
	size_t i;

	rc = bdsnap_session_live(s);
	if (rc)
		return rc < 0 ? rc : -EBUSY;
	/* The log first: a session without it is no longer shown as restorable. */
	for (i = 0; i < sizeof(files) / sizeof(*files); i++) {
		if (snprintf(path, sizeof(path), "%s/%s", s->dir, files[i]) >= (int)sizeof(path))
			return -ENAMETOOLONG;
		if (unlink(path) && errno != ENOENT)
			return -errno;
	}
	if (rmdir(s->dir))
		return -errno;
	if (snprintf(path, sizeof(path), "%s/..", s->dir) < (int)sizeof(path)) {
		dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	return 0;
}
