// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Session directories: reading and checking meta, listing a store.
 *
 * meta is append-only, so the last line for a key wins and a crash can leave
 * at most one torn line (no newline) at the end, which is ignored.  Opening is
 * lenient on purpose: a damaged session can still be listed and shown, and
 * its first problem is kept for verify and restore to report.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define META_MAX	(1U << 20)	/* a real meta is well under 16 KiB */

enum meta_kind { K_STR, K_U64 };

/* Keys this library uses; @missing is the reason when a required key is absent. */
static const struct meta_key {
	const char *key;
	enum meta_kind kind;
	size_t off;
	const char *missing;
} meta_keys[] = {
#define STR(k, why) { #k, K_STR, offsetof(struct bdsnap_session_info, k), why }
#define U64(k, why) { #k, K_U64, offsetof(struct bdsnap_session_info, k), why }
	U64(format, "meta has no format"),
	STR(uuid, "meta has no uuid"),
	STR(path, "meta has no path"),
	STR(devname, "meta has no devname"),
	U64(device_size, "meta has no device_size"),
	U64(block_size, "meta has no block_size"),
	STR(tracker, NULL),
	U64(ordered, NULL),
	STR(start, "meta has no start"),
	STR(state, "meta has no state"),
	STR(end, NULL),
	U64(blocks_saved, NULL),
	U64(bytes_raw, NULL),
	U64(bytes_stored, NULL),
	U64(errors, NULL),
	STR(fs_type, NULL),
	STR(fs_uuid, NULL),
	STR(image_dev, NULL),
	U64(image_ino, NULL),
	U64(end_sample, NULL),
	STR(end_sha256, NULL),
#undef STR
#undef U64
};

static const struct meta_line *last_line(const struct bdsnap_session *s, const char *key)
{
	size_t i;

	for (i = s->nlines; i-- > 0;)
		if (!strcmp(s->lines[i].key, key))
			return &s->lines[i];
	return NULL;
}

const char *bdsnap_session_meta(const struct bdsnap_session *s, const char *key)
{
	const struct meta_line *l = last_line(s, key);

	return l ? l->value : NULL;
}

uint64_t meta_offset(const struct bdsnap_session *s, const char *key)
{
	const struct meta_line *l = last_line(s, key);

	return l ? l->off : s->meta_size;
}

static void meta_fail(struct bdsnap_session *s, uint64_t off, const char *reason)
{
	if (!s->meta_reason) {
		s->meta_reason = reason;
		s->meta_offset = off;
	}
}

/* Decimal only: no sign, no spaces, no overflow. */
static bool parse_u64(const char *p, uint64_t *out)
{
	uint64_t v = 0;

	if (!*p)
		return false;
	for (; *p; p++) {
		if (*p < '0' || *p > '9' || v > (UINT64_MAX - (*p - '0')) / 10)
			return false;
		v = v * 10 + (*p - '0');
	}
	*out = v;
	return true;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool is_hex(const char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (hexval(p[i]) < 0)
			return false;
	return !p[len];
}

static bool parse_uuid(const char *p, uint8_t uuid[16])
{
	int i, hi, lo;

	if (strlen(p) != 32)
		return false;
	for (i = 0; i < 16; i++) {
		hi = hexval(p[2 * i]);
		lo = hexval(p[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		uuid[i] = hi << 4 | lo;
	}
	return true;
}

/* Split the text into lines; a final line without newline is torn and dropped. */
static int split_lines(struct bdsnap_session *s)
{
	char *p = s->text, *end = s->text + s->meta_size, *nl, *eq;
	size_t n = 0;

	for (nl = p; (nl = memchr(nl, '\n', end - nl)); nl++)
		n++;
	s->lines = calloc(n ? n : 1, sizeof(*s->lines));
	if (!s->lines)
		return -ENOMEM;
	for (; (nl = memchr(p, '\n', end - p)); p = nl + 1) {
		uint64_t off = p - s->text;

		*nl = '\0';
		eq = strchr(p, '=');
		if (strlen(p) != (size_t)(nl - p))
			meta_fail(s, off, "NUL byte in meta");
		else if (!eq || eq == p)
			meta_fail(s, off, "meta line is not key=value");
		else {
			*eq = '\0';
			s->lines[s->nlines++] = (struct meta_line){ p, eq + 1, off };
		}
	}
	s->meta_torn = p != end;
	return 0;
}

static void fill_info(struct bdsnap_session *s)
{
	struct bdsnap_session_info *in = &s->info;
	const struct meta_key *k;
	const struct meta_line *l;
	const char *st;

	for (k = meta_keys; k < meta_keys + sizeof(meta_keys) / sizeof(*meta_keys); k++) {
		char *field = (char *)in + k->off;

		l = last_line(s, k->key);
		if (k->kind == K_STR)
			*(const char **)field = l ? l->value : NULL;
		else if (!l || !parse_u64(l->value, (uint64_t *)field))
			*(uint64_t *)field = BDSNAP_UNSET;
		if (!l && k->missing)
			meta_fail(s, s->meta_size, k->missing);
		else if (l && k->kind == K_U64 && *(uint64_t *)field == BDSNAP_UNSET)
			meta_fail(s, l->off, "malformed number in meta");
	}

	st = in->state;
	if (!st)
		in->state_kind = BDSNAP_META_UNKNOWN;
	else if (!strcmp(st, "open"))
		in->state_kind = BDSNAP_META_OPEN;
	else if (!strcmp(st, "complete"))
		in->state_kind = BDSNAP_META_COMPLETE;
	else if (!strncmp(st, "incomplete:", 11))
		in->state_kind = BDSNAP_META_INCOMPLETE;
	else
		meta_fail(s, meta_offset(s, "state"), "unknown state in meta");

	if (in->format != BDSNAP_UNSET && in->format != BDSNAP_STORE_VERSION)
		meta_fail(s, meta_offset(s, "format"), "unsupported format version in meta");
	if (in->uuid && !parse_uuid(in->uuid, s->uuid))
		meta_fail(s, meta_offset(s, "uuid"), "uuid in meta is not 32 hex digits");
	if (in->block_size != BDSNAP_UNSET && !valid_block_size(in->block_size))
		meta_fail(s, meta_offset(s, "block_size"), "block_size in meta is not a power of two in 512..65536");
	if (in->fs_uuid && !is_hex(in->fs_uuid, 32))
		meta_fail(s, meta_offset(s, "fs_uuid"), "fs_uuid in meta is not 32 hex digits");
	if (in->end_sha256 && !is_hex(in->end_sha256, 64))
		meta_fail(s, meta_offset(s, "end_sha256"), "end_sha256 in meta is not 64 hex digits");
	if (in->end_sha256 && (in->end_sample == BDSNAP_UNSET || in->end_sample > 256))
		meta_fail(s, meta_offset(s, "end_sha256"), "end_sha256 in meta without an end_sample of 0..256");
	if (in->ordered != BDSNAP_UNSET && in->ordered > 1)
		meta_fail(s, meta_offset(s, "ordered"), "ordered in meta is not 0 or 1");
}

static int read_meta(struct bdsnap_session *s)
{
	char path[BDSNAP_PATH_MAX + 8];
	struct stat st;
	int fd, rc;

	if (snprintf(path, sizeof(path), "%s/meta", s->dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st))
		rc = -errno;
	else if (!S_ISREG(st.st_mode))
		rc = -EINVAL;
	else if (st.st_size > META_MAX)
		rc = -EFBIG;
	else if (!(s->text = malloc(st.st_size + 1)))
		rc = -ENOMEM;
	else {
		s->meta_size = st.st_size;
		rc = read_dev(fd, false, s->text, st.st_size, 0);
		rc = rc > 0 ? -EIO : rc;	/* shrank under us */
		s->text[st.st_size] = '\0';
	}
	close(fd);
	return rc;
}

int meta_append(struct bdsnap_session *s, const char *key, const char *value)
{
	char path[BDSNAP_PATH_MAX + 8], *line;
	int fd, rc, len;

	if (snprintf(path, sizeof(path), "%s/meta", s->dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	len = asprintf(&line, "%s=%s\n", key, value);
	if (len < 0)
		return -ENOMEM;
	/* meta is append-only: a line is added, nothing is rewritten. */
	fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
	} else {
		rc = write(fd, line, len) == len ? 0 : -EIO;
		if (!rc && fsync(fd))
			rc = -errno;
		close(fd);
	}
	free(line);
	return rc;
}

int bdsnap_session_open(const char *dir, struct bdsnap_session **out)
{
	struct bdsnap_session *s;
	size_t len;
	char *slash;
	int rc;

	s = calloc(1, sizeof(*s));
	if (!s || !(s->dir = strdup(dir))) {
		free(s);
		return -ENOMEM;
	}
	/* "store/name/" names the same session as "store/name". */
	len = strlen(s->dir);
	while (len > 1 && s->dir[len - 1] == '/')
		s->dir[--len] = '\0';
	slash = strrchr(s->dir, '/');
	s->info.dir = s->dir;
	s->info.name = slash && slash[1] ? slash + 1 : s->dir;

	rc = read_meta(s);
	if (!rc)
		rc = split_lines(s);
	if (rc) {
		bdsnap_session_close(s);
		return rc;
	}
	fill_info(s);
	*out = s;
	return 0;
}

void bdsnap_session_close(struct bdsnap_session *s)
{
	if (!s)
		return;
	free(s->lines);
	free(s->text);
	free(s->dir);
	free(s);
}

const struct bdsnap_session_info *bdsnap_session_info(const struct bdsnap_session *s)
{
	return &s->info;
}

static int by_start(const void *a, const void *b)
{
	const struct bdsnap_session_info *x = &(*(struct bdsnap_session *const *)a)->info;
	const struct bdsnap_session_info *y = &(*(struct bdsnap_session *const *)b)->info;
	int c = strcmp(x->start ? x->start : "", y->start ? y->start : "");

	/* ISO 8601 UTC with fixed width sorts as text. */
	return c ? c : strcmp(x->name, y->name);
}

void bdsnap_sessions_free(struct bdsnap_session **list, size_t count)
{
	while (count)
		bdsnap_session_close(list[--count]);
	free(list);
}

int bdsnap_sessions_scan(const char *store_dir, struct bdsnap_session ***out, size_t *count)
{
	struct bdsnap_session **list = NULL, **nl, *s;
	char path[BDSNAP_PATH_MAX];
	size_t n = 0, cap = 0;
	struct dirent *de;
	int rc = 0;
	DIR *d;

	d = opendir(store_dir);
	if (!d)
		return -errno;
	while ((errno = 0, de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", store_dir, de->d_name) >= (int)sizeof(path)) {
			rc = -ENAMETOOLONG;
			break;
		}
		rc = bdsnap_session_open(path, &s);
		if (rc == -ENOENT || rc == -ENOTDIR) {	/* not a session */
			rc = 0;
			continue;
		}
		if (rc)
			break;
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			nl = reallocarray(list, cap, sizeof(*list));
			if (!nl) {
				bdsnap_session_close(s);
				rc = -ENOMEM;
				break;
			}
			list = nl;
		}
		list[n++] = s;
	}
	if (!rc && errno)
		rc = -errno;
	closedir(d);
	if (rc) {
		bdsnap_sessions_free(list, n);
		return rc;
	}
	if (n)
		qsort(list, n, sizeof(*list), by_start);
	*out = list;
	*count = n;
	return 0;
}

int bdsnap_sessions_later(const char *store_dir, const struct bdsnap_session *s,
			  struct bdsnap_session ***out, size_t *count)
{
	const struct bdsnap_session_info *me = &s->info, *in;
	struct bdsnap_session **list;
	size_t i, n, kept = 0;
	int rc;

	if (!me->path || !me->start)
		return -EINVAL;
	rc = bdsnap_sessions_scan(store_dir, &list, &n);
	if (rc)
		return rc;
	/* The list is sorted by start: keep the later ones of this device, in order. */
	for (i = 0; i < n; i++) {
		in = &list[i]->info;
		if (in->path && in->start && !strcmp(in->path, me->path) &&
		    strcmp(in->start, me->start) > 0)
			list[kept++] = list[i];
		else
			bdsnap_session_close(list[i]);
	}
	*out = list;
	*count = kept;
	return 0;
}
