// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The LIBBDSNAP_0 entry points whose structs gained a leading size field in
 * LIBBDSNAP_0.3 (libbdsnap.map).  A program linked against the first
 * version still finds the symbols it was linked with, bound here by
 * .symver, and gets the behaviour of today (a restore applies the chain of
 * later sessions and checks the target's identity) through its old structs.
 * New programs link against the LIBBDSNAP_0.3 versions only.
 */
#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The structs of LIBBDSNAP_0, as that version's bdsnap.h declared them. */
struct restore_opts_v0 {
	unsigned int flags;
	bdsnap_progress_fn progress;
	void *ctx;
};

struct restore_report_v0 {
	struct bdsnap_verify_report verify;
	uint64_t blocks, bytes;
	const char *refused;
};

struct export_report_v0 {
	struct bdsnap_verify_report verify;
	const char *bad_session;
	uint64_t blocks, bytes, later_blocks, image_size;
	const char *refused;
	const char *where;
};

struct load_opts_v0 {
	const char *password;
	const char *from;
	const char *params;
	unsigned int flags;
};

int restore_v0(struct bdsnap_session *s, const char *target, const struct restore_opts_v0 *opts,
	       struct restore_report_v0 *report);
int export_v0(struct bdsnap_session *s, struct bdsnap_session *const *later, size_t nlater,
	      const char *source, const char *target, const struct restore_opts_v0 *opts,
	      struct export_report_v0 *report);
int module_load_v0(const struct load_opts_v0 *opts, struct bdsnap_load_report *report);

SYMVER(restore_v0, "bdsnap_session_restore@LIBBDSNAP_0");
SYMVER(export_v0, "bdsnap_session_export@LIBBDSNAP_0");
SYMVER(module_load_v0, "bdsnap_module_load@LIBBDSNAP_0");

static struct bdsnap_restore_opts opts_now(const struct restore_opts_v0 *o)
{
	struct bdsnap_restore_opts now = BDSNAP_OPTS_INIT(now);

	if (o) {
		now.flags = o->flags;
		now.progress = o->progress;
		now.ctx = o->ctx;
	}
	return now;
}

int restore_v0(struct bdsnap_session *s, const char *target, const struct restore_opts_v0 *opts,
	       struct restore_report_v0 *report)
{
	struct bdsnap_restore_opts now = opts_now(opts);
	struct bdsnap_chain_report rep = BDSNAP_OPTS_INIT(rep);
	struct bdsnap_session **later = NULL;
	size_t nlater = 0;
	char *store;
	int rc;

	/* The chain is found where the session is: its store. */
	store = strdup(s->info.dir);
	if (!store)
		return -ENOMEM;
	rc = bdsnap_sessions_later(dirname(store), s, &later, &nlater);
	free(store);
	if (rc == -EINVAL)	/* meta lacks path or start: the restore reports it */
		rc = 0;
	if (!rc)
		rc = bdsnap_chain_restore(s, later, nlater, target, &now, &rep);
	bdsnap_sessions_free(later, nlater);
	if (report)
		*report = (struct restore_report_v0){ rep.verify, rep.blocks, rep.bytes, rep.refused };
	return rc;
}

int export_v0(struct bdsnap_session *s, struct bdsnap_session *const *later, size_t nlater,
	      const char *source, const char *target, const struct restore_opts_v0 *opts,
	      struct export_report_v0 *report)
{
	struct bdsnap_restore_opts now = opts_now(opts);
	struct bdsnap_chain_report rep = BDSNAP_OPTS_INIT(rep);
	int rc;

	rc = bdsnap_chain_export(s, later, nlater, source, target, &now, &rep);
	if (report)
		*report = (struct export_report_v0){ rep.verify, rep.bad_session, rep.blocks,
						     rep.bytes, rep.later_blocks, rep.image_size,
						     rep.refused, rep.where };
	return rc;
}

int module_load_v0(const struct load_opts_v0 *opts, struct bdsnap_load_report *report)
{
	struct bdsnap_load_opts now = BDSNAP_OPTS_INIT(now);

	if (!opts)
		return module_load_current(NULL, report);
	now.password = opts->password;
	now.from = opts->from;
	now.params = opts->params;
	now.flags = opts->flags;
	return module_load_current(&now, report);
}
