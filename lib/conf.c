// SPDX-License-Identifier: LGPL-2.1-or-later
/* The boot-time configuration: which devices `bdsnap load --config` activates. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define CONF_MAX	(1U << 20)

static bool blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static int conf_err(struct bdsnap_conf_error *err, unsigned int line, const char *what,
		    size_t what_len, const char *reason, int rc)
{
	if (!err)
		return rc;
	err->line = line;
	if (what_len >= sizeof(err->what))
		what_len = sizeof(err->what) - 1;
	memcpy(err->what, what ? what : "", what ? what_len : 0);
	err->what[what ? what_len : 0] = '\0';
	err->reason = reason;
	return rc;
}

/* Parsers of the values: a word of the table, its index; -1 if none. */
static int word_index(const char *val, size_t len, const char *const *words, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (strlen(words[i]) == len && !memcmp(val, words[i], len))
			return i;
	return -1;
}

/* The keys of a device line, and the words each takes (a value's index is its meaning). */
enum { KEY_TRACKER, KEY_ORDERED, KEY_ROLLBACK };
static const char *const tracker_words[] = { "bio", "vfs" };
static const char *const yesno_words[] = { "no", "yes" };
static const char *const rollback_words[] = { "no", "yes", "keep" };
#define ROLLBACK_KEEP	2	/* rollback_words[] */
static const char *const key_words[] = {
	[KEY_TRACKER] = "tracker", [KEY_ORDERED] = "ordered", [KEY_ROLLBACK] = "rollback",
};
static const struct {
	const char *const *words;
	int n;
	const char *unknown;
} key_values[] = {
	[KEY_TRACKER] = { tracker_words, 2, "unknown value (bio or vfs)" },
	[KEY_ORDERED] = { yesno_words, 2, "unknown value (yes or no)" },
	[KEY_ROLLBACK] = { rollback_words, 3, "unknown value (no, yes or keep)" },
};

/* One "key=value" word of line @line: applied to @d, or an error. */
static int conf_key(struct bdsnap_conf_dev *d, unsigned int *seen, const char *w, size_t wl,
		    unsigned int line, struct bdsnap_conf_error *err)
{
	const char *eq = memchr(w, '=', wl);
	size_t kl = eq ? (size_t)(eq - w) : wl;
	int k, v;

	k = word_index(w, kl, key_words, 3);
	if (k < 0)
		return conf_err(err, line, w, kl, "unknown key (known: tracker, ordered, rollback)",
				-EINVAL);
	if (!eq)
		return conf_err(err, line, w, wl, "missing '=value'", -EINVAL);
	if (*seen & (1U << k))
		return conf_err(err, line, w, kl, "key given twice", -EINVAL);
	*seen |= 1U << k;
	v = word_index(eq + 1, wl - kl - 1, key_values[k].words, key_values[k].n);
	if (v < 0)
		return conf_err(err, line, w, wl, key_values[k].unknown, -EINVAL);
	if (k == KEY_TRACKER)
		d->tracker = v ? BDSNAP_TRACKER_VFS : BDSNAP_TRACKER_BIO;
	else if (k == KEY_ORDERED && v)
		d->flags |= BDSNAP_ACT_ORDERED;
	else if (k == KEY_ROLLBACK && v)
		d->flags |= BDSNAP_ACT_ROLLBACK | (v == ROLLBACK_KEEP ? BDSNAP_ACT_KEEP : 0);
	return 0;
}

/*
 * The keys of a device line, together: rollback implies ordered (a crash
 * must leave the pre-images durable), so it takes ordered=yes or no
 * ordered= at all, and the bio tracker, which the kernel demands too.
 */
static int conf_keys_agree(struct bdsnap_conf_dev *d, unsigned int seen, unsigned int line,
			   struct bdsnap_conf_error *err)
{
	if (!(d->flags & BDSNAP_ACT_ROLLBACK))
		return 0;
	if ((seen & (1U << KEY_ORDERED)) && !(d->flags & BDSNAP_ACT_ORDERED))
		return conf_err(err, line, "ordered=no", 10, "rollback needs ordered", -EINVAL);
	if (d->tracker == BDSNAP_TRACKER_VFS)
		return conf_err(err, line, "tracker=vfs", 11, "rollback needs the bio tracker",
				-EINVAL);
	d->flags |= BDSNAP_ACT_ORDERED;
	return 0;
}

/* The file's settings that are about no device: the retention policy. */
struct conf_global {
	struct bdsnap_retention *ret;
	unsigned int seen;
};

/* One "keep=N" or "max_size=SIZE" word of line @line. */
static int conf_global_key(struct conf_global *g, const char *w, size_t wl, unsigned int line,
			   struct bdsnap_conf_error *err)
{
	static const char *const keys[] = { "keep", "max_size" };
	const char *eq = memchr(w, '=', wl);
	size_t kl = eq - w;
	char val[32];
	uint64_t v;
	int k;

	k = word_index(w, kl, keys, 2);
	if (k < 0)
		return conf_err(err, line, w, kl, "unknown setting (known: keep, max_size)",
				-EINVAL);
	if (g->seen & (1U << k))
		return conf_err(err, line, w, kl, "setting given twice", -EINVAL);
	g->seen |= 1U << k;
	if (wl - kl - 1 >= sizeof(val))
		return conf_err(err, line, w, wl, "value too long", -EINVAL);
	memcpy(val, eq + 1, wl - kl - 1);
	val[wl - kl - 1] = '\0';
	/* keep is a count: digits only; max_size may have a unit. */
	if (bdsnap_parse_size(val, &v) ||
	    (k == 0 && (strspn(val, "0123456789") != strlen(val) || v > UINT32_MAX)))
		return conf_err(err, line, w, wl, k ? "not a size (e.g. 20G)" : "not a number",
				-EINVAL);
	if (k == 0)
		g->ret->keep = v;
	else
		g->ret->max_size = v;
	return 0;
}

/*
 * Line @ln, [@p, @end): appends a device to the array, sets a setting of
 * @g, or nothing for a blank line.
 */
static int conf_line(const char *p, const char *end, unsigned int ln, struct conf_global *g,
		     struct bdsnap_conf_dev **v, size_t *n, struct bdsnap_conf_error *err)
{
	struct bdsnap_conf_dev d = { .line = ln }, *nv;
	unsigned int seen = 0;
	bool settings = false;
	size_t i, wl;
	int rc;

	for (;;) {
		while (p < end && blank(*p))
			p++;
		if (p == end || *p == '#')
			break;
		for (wl = 0; p + wl < end && !blank(p[wl]); wl++)
			if (!p[wl])
				return conf_err(err, ln, NULL, 0, "NUL byte in the line", -EINVAL);
		/* A line of settings starts with one: "keep=10 max_size=20G". */
		if (!d.path && (settings || (*p != '/' && memchr(p, '=', wl)))) {
			settings = true;
			if (!memchr(p, '=', wl))
				return conf_err(err, ln, p, wl, "missing '=value'", -EINVAL);
			rc = conf_global_key(g, p, wl, ln, err);
			if (rc < 0)
				return rc;
		} else if (d.path) {
			rc = conf_key(&d, &seen, p, wl, ln, err);
			if (rc < 0)
				goto fail;
		} else {
			if (*p != '/') {
				rc = conf_err(err, ln, p, wl, "not an absolute path", -EINVAL);
				goto fail;
			}
			if (wl >= BDSNAP_PATH_MAX) {
				rc = conf_err(err, ln, p, wl, "path too long", -EINVAL);
				goto fail;
			}
			for (i = 0; i < *n; i++)
				if (strlen((*v)[i].path) == wl && !memcmp((*v)[i].path, p, wl)) {
					rc = conf_err(err, ln, p, wl, "device listed twice", -EINVAL);
					goto fail;
				}
			d.path = strndup(p, wl);
			if (!d.path)
				return -ENOMEM;
		}
		p += wl;
	}
	if (!d.path)
		return 0;
	rc = conf_keys_agree(&d, seen, ln, err);
	if (rc < 0)
		goto fail;
	nv = reallocarray(*v, *n + 1, sizeof(**v));
	if (!nv) {
		rc = -ENOMEM;
		goto fail;
	}
	*v = nv;
	(*v)[(*n)++] = d;
	return 0;
fail:
	free(d.path);
	return rc;
}

/* The devices into @out, @count, and the settings into @ret. */
static int conf_parse(const char *text, size_t len, struct bdsnap_conf_dev **out,
		      size_t *count, struct bdsnap_retention *ret, struct bdsnap_conf_error *err)
{
	struct conf_global g = { .ret = ret };
	struct bdsnap_conf_dev *v = NULL;
	const char *p = text, *end = text + len, *nl;
	unsigned int ln = 0;
	size_t n = 0;
	int rc = 0;

	if (!text || !out || !count)
		return -EINVAL;
	while (p < end) {
		nl = memchr(p, '\n', end - p);
		rc = conf_line(p, nl ? nl : end, ++ln, &g, &v, &n, err);
		if (rc < 0) {
			bdsnap_conf_free(v, n);
			return rc;
		}
		p = nl ? nl + 1 : end;
	}
	*out = v;
	*count = n;
	return 0;
}

int bdsnap_conf_parse(const char *text, size_t len, struct bdsnap_conf_dev **out,
		      size_t *count, struct bdsnap_conf_error *err)
{
	struct bdsnap_retention ignored;

	return conf_parse(text, len, out, count, &ignored, err);
}

/* Read and parse @file: its devices, and the settings into @ret. */
static int conf_read(const char *file, struct bdsnap_conf_dev **out, size_t *count,
		     struct bdsnap_retention *ret, struct bdsnap_conf_error *err)
{
	struct stat st;
	char *text;
	int fd, rc;

	fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st)) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		return conf_err(err, 0, NULL, 0, NULL, rc);
	}
	rc = 0;
	if (!S_ISREG(st.st_mode))
		rc = conf_err(err, 0, NULL, 0, "not a regular file", -EINVAL);
	else if (st.st_mode & 022)
		rc = conf_err(err, 0, NULL, 0, "writable by group or others: chmod go-w it",
			      -EPERM);
	else if ((uint64_t)st.st_size > CONF_MAX)
		rc = conf_err(err, 0, NULL, 0, "larger than 1 MiB", -EFBIG);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	text = malloc(st.st_size + 1);
	if (!text) {
		close(fd);
		return -ENOMEM;
	}
	rc = read_dev(fd, false, text, st.st_size, 0);
	close(fd);
	if (rc)		/* 1: shrank while being read */
		rc = conf_err(err, 0, NULL, 0, NULL, rc < 0 ? rc : -EIO);
	else
		rc = conf_parse(text, st.st_size, out, count, ret, err);
	free(text);
	return rc;
}

int bdsnap_conf_read(const char *file, struct bdsnap_conf_dev **out, size_t *count,
		     struct bdsnap_conf_error *err)
{
	struct bdsnap_retention ignored;

	return conf_read(file, out, count, &ignored, err);
}

int bdsnap_conf_retention(const char *file, struct bdsnap_retention *ret,
			  struct bdsnap_conf_error *err)
{
	struct bdsnap_retention found = BDSNAP_OPTS_INIT(found);
	struct bdsnap_conf_dev *devs;
	size_t n;
	int rc;

	if (!ret || ret->size < sizeof(found))
		return -EINVAL;
	rc = conf_read(file, &devs, &n, &found, err);
	if (rc)
		return rc;
	bdsnap_conf_free(devs, n);
	found.size = ret->size;
	memcpy(ret, &found, sizeof(found));
	return 0;
}

int bdsnap_conf_check(const struct bdsnap_conf_dev *devs, size_t count,
		      struct bdsnap_conf_error *err)
{
	struct stat *st;
	size_t i, j;
	int rc = 0;

	st = calloc(count ? count : 1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	for (i = 0; i < count && !rc; i++) {
		const char *p = devs[i].path;
		size_t pl = strlen(p);

		if (stat(p, &st[i]))
			rc = conf_err(err, devs[i].line, p, pl, errno == ENOENT ?
				      "no such device or file" : NULL, -errno);
		else if (!S_ISBLK(st[i].st_mode) && !S_ISREG(st[i].st_mode))
			rc = conf_err(err, devs[i].line, p, pl,
				      "neither a block device nor a regular file", -ENOTBLK);
		for (j = 0; j < i && !rc; j++)
			if (S_ISBLK(st[i].st_mode) ? st[j].st_rdev == st[i].st_rdev &&
			    S_ISBLK(st[j].st_mode) : st[j].st_dev == st[i].st_dev &&
			    st[j].st_ino == st[i].st_ino)
				rc = conf_err(err, devs[i].line, p, pl,
					      "the same device as an earlier line", -EINVAL);
	}
	free(st);
	return rc;
}

void bdsnap_conf_free(struct bdsnap_conf_dev *devs, size_t count)
{
	size_t i;

	for (i = 0; i < count && devs; i++)
		free(devs[i].path);
	free(devs);
}
