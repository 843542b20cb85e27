// SPDX-License-Identifier: GPL-2.0
/* Text and JSON listings, and the progress bar. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bdsnap.h"
#include "out.h"

#define KEY_WIDTH	14
#define BAR_WIDTH	30

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void out_key(struct out *o, const char *key)
{
	if (!o->json) {
		printf("%s:%*s", key, (int)(KEY_WIDTH - strlen(key)), "");
		return;
	}
	if (o->more[o->depth])
		putchar(',');
	o->more[o->depth] = true;
	json_string(key);
	putchar(':');
}

void out_begin(struct out *o, const char *key, char bracket)
{
	if (key) {
		out_key(o, key);
		if (!o->json)
			putchar('\n');
	} else {
		/* In text, the objects of a list are separated by a blank line. */
		if (o->more[o->depth])
			fputs(o->json ? "," : "\n", stdout);
		o->more[o->depth] = true;
	}
	if (o->json)
		putchar(bracket);
	o->more[++o->depth] = false;
}

void out_end(struct out *o, char bracket)
{
	o->depth--;
	if (o->json) {
		putchar(bracket);
		if (!o->depth)
			putchar('\n');
	}
}

/* A value already formatted: quoted or bare in JSON, as it is in text. */
static void out_raw(struct out *o, const char *key, const char *json, const char *text)
{
	out_key(o, key);
	if (o->json)
		fputs(json, stdout);
	else
		printf("%s\n", text);
}

void out_str(struct out *o, const char *key, const char *val)
{
	if (o->json && val) {
		out_key(o, key);
		json_string(val);
		return;
	}
	out_raw(o, key, "null", val ? val : "-");
}

void out_u64(struct out *o, const char *key, uint64_t val)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%" PRIu64, val);
	out_raw(o, key, val == BDSNAP_UNSET ? "null" : buf, val == BDSNAP_UNSET ? "-" : buf);
}

const char *human_size(uint64_t bytes, char *buf, int len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double v = bytes;
	int i = 0;

	while (v >= 1024 && i < 6) {
		v /= 1024;
		i++;
	}
	if (i)
		snprintf(buf, len, "%.1f %s", v, unit[i]);
	else
		snprintf(buf, len, "%" PRIu64 " B", bytes);
	return buf;
}

void out_size(struct out *o, const char *key, uint64_t val)
{
	char num[24], text[48], human[24];

	if (val == BDSNAP_UNSET) {
		out_raw(o, key, "null", "-");
		return;
	}
	snprintf(num, sizeof(num), "%" PRIu64, val);
	snprintf(text, sizeof(text), "%s (%s)", num, human_size(val, human, sizeof(human)));
	out_raw(o, key, num, val < 1024 ? num : text);
}

void out_flag(struct out *o, const char *key, uint64_t val)
{
	if (val == BDSNAP_UNSET)
		out_raw(o, key, "null", "-");
	else
		out_bool(o, key, val);
}

void out_bool(struct out *o, const char *key, bool val)
{
	out_raw(o, key, val ? "true" : "false", val ? "yes" : "no");
}

void out_ratio(struct out *o, const char *key, uint64_t num, uint64_t den)
{
	char buf[32];

	if (!den || num == BDSNAP_UNSET || den == BDSNAP_UNSET) {
		out_raw(o, key, "null", "-");
		return;
	}
	snprintf(buf, sizeof(buf), "%.2f", (double)num / den);
	out_raw(o, key, buf, buf);
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
