/* SPDX-License-Identifier: GPL-2.0 */
#ifndef BDSNAP_CLI_OUT_H
#define BDSNAP_CLI_OUT_H

#include <stdbool.h>
#include <stdint.h>

#include "bdsnap.h"

/*
 * Listings on stdout: "key:  value" lines (objects separated by a blank
 * line), or JSON with --json.  Numbers the session does not carry
 * (BDSNAP_UNSET) are "-" in text and null in JSON.
 */
struct out {
	bool json;
	int depth;
	bool more[6];	/* something was already written at this depth */
};

/* out_begin() - an object '{' or array '['; @key names it inside an object. */
void out_begin(struct out *o, const char *key, char bracket);
void out_end(struct out *o, char bracket);
void out_str(struct out *o, const char *key, const char *val);
void out_u64(struct out *o, const char *key, uint64_t val);
/* out_size() - bytes: a number in JSON, "4096 (4.0 KiB)" in text. */
void out_size(struct out *o, const char *key, uint64_t val);
/* out_flag() - 0/1/unset: false/true/null in JSON, no/yes/- in text. */
void out_flag(struct out *o, const char *key, uint64_t val);
/* out_bool() - true/false in JSON, yes/no in text. */
void out_bool(struct out *o, const char *key, bool val);
/* out_ratio() - @num / @den with two decimals; null or "-" when @den is 0. */
void out_ratio(struct out *o, const char *key, uint64_t num, uint64_t den);

/* human_size() - "120.6 KiB" into @buf. */
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
