/* SPDX-License-Identifier: GPL-2.0 */
#ifndef BDSNAP_CLI_OUT_H
#define BDSNAP_CLI_OUT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "bdsnap.h"

/*
 * Listings and results on stdout, built with libsmartcols as util-linux's
 * lsblk and findmnt build theirs: a table (columns chosen with -o, no
 * headings with -n, raw with -r, sizes in bytes with -b), or with -J one
 * JSON object whose members are arrays of rows, one per table.  Values a
 * session does not carry (BDSNAP_UNSET, NULL) are empty in a table and null
 * in JSON.  No value is ever escaped by hand.
 */

/* struct out_col.type */
enum out_type {
	OUT_STR,	/* JSON string */
	OUT_NUM,	/* JSON number */
	OUT_SIZE,	/* bytes: "1.5M" in a table unless -b, a number in JSON */
	OUT_BOOL,	/* "yes"/"no" in a table, true/false in JSON */
};

/* struct out_col - a column: its -o name (JSON: lowercase), type and help. */
struct out_col {
	const char *name;
	enum out_type type;
	double width;		/* libsmartcols width hint: < 1 a fraction of the terminal */
	const char *help;
};

/* How the user asked for output: -o, -n, -r, -J, -b. */
struct out_fmt {
	const char *columns;
	bool noheadings, raw, json, bytes;
};

/* A table being filled; the first one of an output is what -o applies to. */
struct out_table;

/*
 * out_table_new() - a table named @name (its JSON member), of @cols[@ncols];
 * @defaults: the columns a table shows without -o (JSON shows them all).
 * @record: one row, shown as FIELD VALUE lines in a table (show, results).
 * @fmt_columns: -o applies (the first table of a command), else NULL.
 * A bad -o is a usage error (exits 2).
 */
struct out_table *out_table_new(const struct out_fmt *fmt, const char *name,
				const struct out_col *cols, size_t ncols, const char *defaults,
				bool record, bool fmt_columns);
/* out_row() - start a row; the cells are set by column index into @cols. */
void out_row(struct out_table *t);
void out_str(struct out_table *t, int col, const char *val);
void out_u64(struct out_table *t, int col, uint64_t val);
void out_size(struct out_table *t, int col, uint64_t val);
/* out_bool() - 0, 1, or BDSNAP_UNSET (null). */
void out_bool(struct out_table *t, int col, uint64_t val);
/* out_ratio() - @num / @den with two decimals, a JSON number; null when @den is 0. */
void out_ratio(struct out_table *t, int col, uint64_t num, uint64_t den);
/*
 * out_print() - print the @n tables and free them: one after the other
 * (a blank line between), or as one JSON object.
 */
void out_print(struct out_table **tables, size_t n);

/* out_columns_help() - "Available output columns:" and each column's help. */
void out_columns_help(FILE *f, const struct out_col *cols, size_t ncols);

/* human_size() - "120.6K" into @buf, as lsblk prints sizes. */
const char *human_size(uint64_t bytes, char *buf, int len);

/*
 * struct bar - a progress bar on stderr, drawn only when stderr is a
 * terminal; bar_update() is a bdsnap_progress_fn.
 */
struct bar {
	const char *verb;
	int last;	/* percent drawn, -1 before the first */
};

void bar_init(struct bar *b, const char *verb);
void bar_update(void *ctx, uint64_t done, uint64_t total);
/* bar_done() - end the bar's line, if one was drawn. */
void bar_done(struct bar *b);
/* bar_fn() - bar_update when stderr is a terminal, else NULL. */
bdsnap_progress_fn bar_fn(void);

#endif
