// SPDX-License-Identifier: GPL-2.0
/* Tables and JSON through libsmartcols, and the progress bar. */
#include <err.h>
#include <inttypes.h>
#include <libsmartcols.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cmd.h"
#include "out.h"

#define BAR_WIDTH	30
#define MAX_COLS	48

struct out_table {
	const struct out_fmt *fmt;
	const char *name;
	struct libscols_table *tb;
	const struct out_col *cols;
	size_t ncols;
	int shown[MAX_COLS];	/* index into @cols -> libsmartcols column, or -1 */
	bool record;
	struct libscols_line *ln;
};

static void *must(void *p)
{
	if (!p)
		errx(EXIT_ERROR, "out of memory");
	return p;
}

static int col_index(const struct out_col *cols, size_t n, const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strlen(cols[i].name) == len && !strncasecmp(cols[i].name, name, len))
			return i;
	return -1;
}

/* Add the columns of the comma-separated @list, in its order. */
static void add_columns(struct out_table *t, const char *list, int *order, size_t *n)
{
	const char *p = list, *end;
	int i;

	while (*p) {
		end = p + strcspn(p, ",");
		i = col_index(t->cols, t->ncols, p, end - p);
		if (i < 0)
			usage_error("unknown column: %.*s", (int)(end - p), p);
		if (*n < MAX_COLS)
			order[(*n)++] = i;
		p = *end ? end + 1 : end;
	}
}

struct out_table *out_table_new(const struct out_fmt *fmt, const char *name,
				const struct out_col *cols, size_t ncols, const char *defaults,
				bool record, bool fmt_columns)
{
	struct out_table *t = must(calloc(1, sizeof(*t)));
	struct libscols_column *c;
	int order[MAX_COLS];
	const char *list = fmt_columns ? fmt->columns : NULL;
	size_t i, n = 0;

	*t = (struct out_table){ .fmt = fmt, .name = name, .cols = cols, .ncols = ncols,
				 .record = record };
	for (i = 0; i < MAX_COLS; i++)
		t->shown[i] = -1;
	if (list) {
		/* "+COLS": the default columns and these. */
		if (*list == '+')
			add_columns(t, defaults, order, &n);
		add_columns(t, list + (*list == '+'), order, &n);
		if (!n)
			usage_error("--output: no column given");
	} else if (fmt->json) {
		for (i = 0; i < ncols && n < MAX_COLS; i++)
			order[n++] = i;
	} else {
		add_columns(t, defaults, order, &n);
	}

	t->tb = must(scols_new_table());
	scols_table_set_name(t->tb, name);
	scols_table_enable_json(t->tb, fmt->json);
	scols_table_enable_raw(t->tb, fmt->raw);
	scols_table_enable_noheadings(t->tb, fmt->noheadings);
	for (i = 0; i < n; i++) {
		const struct out_col *col = &cols[order[i]];

		if (t->shown[order[i]] >= 0)
			continue;	/* named twice */
		c = must(scols_table_new_column(t->tb, col->name, col->width,
						col->type == OUT_STR || col->type == OUT_BOOL ?
						0 : SCOLS_FL_RIGHT));
		scols_column_set_json_type(c, col->type == OUT_STR ? SCOLS_JSON_STRING :
					      col->type == OUT_BOOL ? SCOLS_JSON_BOOLEAN :
					      SCOLS_JSON_NUMBER);
		t->shown[order[i]] = scols_table_get_ncols(t->tb) - 1;
	}
	return t;
}

void out_row(struct out_table *t)
{
	t->ln = must(scols_table_new_line(t->tb, NULL));
}

/* Length of the valid UTF-8 sequence at @s, 0 if it is not one. */
static size_t utf8_len(const unsigned char *s)
{
	uint32_t cp;
	size_t n, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates and beyond U+10FFFF are not UTF-8. */
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/*
 * JSON strings must be UTF-8, and libsmartcols passes other bytes through:
 * each such byte becomes the text \xHH, as a table shows it.
 */
static char *utf8_safe(const char *s)
{
	char *out = must(malloc(4 * strlen(s) + 1)), *o = out;
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	while (*p) {
		n = utf8_len(p);
		if (n) {
			memcpy(o, p, n);
			o += n;
			p += n;
		} else {
			o += sprintf(o, "\\x%02x", *p++);
		}
	}
	*o = '\0';
	return out;
}

void out_str(struct out_table *t, int col, const char *val)
{
	int c = t->shown[col];

	if (c < 0 || !val)
		return;
	if (scols_line_refer_data(t->ln, c, t->fmt->json ? utf8_safe(val) : must(strdup(val))))
		errx(EXIT_ERROR, "out of memory");
}

void out_u64(struct out_table *t, int col, uint64_t val)
{
	char buf[24];

	if (val == BDSNAP_UNSET)
		return;
	snprintf(buf, sizeof(buf), "%" PRIu64, val);
	out_str(t, col, buf);
}

const char *human_size(uint64_t bytes, char *buf, int len)
{
	static const char unit[] = "BKMGTPE";
	double v = bytes;
	int i = 0;

	while (v >= 1024 && i < 6) {
		v /= 1024;
		i++;
	}
	if (!i)
		snprintf(buf, len, "%" PRIu64 "B", bytes);
	else if (v < 10 && (int)(v * 10) % 10)
		snprintf(buf, len, "%.1f%c", v, unit[i]);
	else
		snprintf(buf, len, "%.0f%c", v, unit[i]);
	return buf;
}

void out_size(struct out_table *t, int col, uint64_t val)
{
	char buf[24];

	if (val == BDSNAP_UNSET || t->fmt->json || t->fmt->bytes)
		out_u64(t, col, val);
	else
		out_str(t, col, human_size(val, buf, sizeof(buf)));
}

void out_bool(struct out_table *t, int col, uint64_t val)
{
	if (val != BDSNAP_UNSET)
		/* libsmartcols prints a JSON boolean false for "0" (and "" or "n..."). */
		out_str(t, col, t->fmt->json ? (val ? "1" : "0") : (val ? "yes" : "no"));
}

void out_ratio(struct out_table *t, int col, uint64_t num, uint64_t den)
{
	char buf[32];

	if (!den || num == BDSNAP_UNSET || den == BDSNAP_UNSET)
		return;
	snprintf(buf, sizeof(buf), "%.2f", (double)num / den);
	out_str(t, col, buf);
}

/*
 * A one-row table as "FIELD value" lines, as `show` reads best: no
 * headings, and only the fields that have a value.
 */
static void print_record(struct out_table *t)
{
	struct libscols_table *kv = must(scols_new_table());
	struct libscols_column *c;
	struct libscols_line *ln;
	const char *data;
	size_t i;

	scols_table_enable_raw(kv, t->fmt->raw);
	scols_table_enable_noheadings(kv, 1);
	must(scols_table_new_column(kv, "FIELD", 0, 0));
	must(scols_table_new_column(kv, "VALUE", 0, 0));
	for (i = 0; i < scols_table_get_ncols(t->tb); i++) {
		c = scols_table_get_column(t->tb, i);
		data = t->ln ? scols_cell_get_data(scols_line_get_cell(t->ln, i)) : NULL;
		if (!data || !*data)
			continue;
		ln = must(scols_table_new_line(kv, NULL));
		scols_line_set_data(ln, 0, scols_cell_get_data(scols_column_get_header(c)));
		scols_line_set_data(ln, 1, data);
	}
	scols_print_table(kv);
	scols_unref_table(kv);
}

/* JSON: the members of each table's object, joined into one object. */
static void print_json(struct out_table **tables, size_t n)
{
	char *doc, *open, *close;
	size_t i;

	fputs("{", stdout);
	for (i = 0; i < n; i++) {
		if (scols_print_table_to_string(tables[i]->tb, &doc) || !doc)
			errx(EXIT_ERROR, "out of memory");
		/* libsmartcols writes "{ "name": [ ... ] }": keep what is inside. */
		open = strchr(doc, '{');
		close = strrchr(doc, '}');
		if (open && close > open) {
			*close = '\0';
			fputs(i ? "," : "", stdout);
			fputs(open + 1, stdout);
		}
		free(doc);
	}
	fputs("}\n", stdout);
}

void out_print(struct out_table **tables, size_t n)
{
	size_t i;

	if (n && tables[0]->fmt->json)
		print_json(tables, n);
	for (i = 0; i < n; i++) {
		if (!tables[i]->fmt->json) {
			if (i)
				putchar('\n');
			if (tables[i]->record)
				print_record(tables[i]);
			else
				scols_print_table(tables[i]->tb);
		}
		scols_unref_table(tables[i]->tb);
		free(tables[i]);
	}
}

void out_columns_help(FILE *f, const struct out_col *cols, size_t ncols)
{
	size_t i;

	fputs("\nAvailable output columns (-o):\n", f);
	for (i = 0; i < ncols; i++)
		fprintf(f, " %14s  %s\n", cols[i].name, cols[i].help);
}

void bar_init(struct bar *b, const char *verb)
{
	b->verb = verb;
	b->last = -1;
}

void bar_update(void *ctx, uint64_t done, uint64_t total)
{
	struct bar *b = ctx;
	int pct = total ? (int)(done * 100 / total) : 100;
	char fill[BAR_WIDTH + 1];
	int n = pct * BAR_WIDTH / 100;

	if (pct == b->last)
		return;
	memset(fill, '#', n);
	memset(fill + n, '.', BAR_WIDTH - n);
	fill[BAR_WIDTH] = '\0';
	fprintf(stderr, "\r%s: %3d%% [%s]", b->verb, pct, fill);
	b->last = pct;
}

void bar_done(struct bar *b)
{
	if (b->last >= 0)
		fputc('\n', stderr);
	b->last = -1;
}

bdsnap_progress_fn bar_fn(void)
{
	return isatty(STDERR_FILENO) ? bar_update : NULL;
}
