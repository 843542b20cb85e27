/* SPDX-License-Identifier: GPL-2.0 */
/* What the commands of bdsnap share: parsed arguments and exit codes. */
#ifndef BDSNAP_CLI_CMD_H
#define BDSNAP_CLI_CMD_H

#include <stdbool.h>
#include <stdio.h>

#include "bdsnap.h"
#include "out.h"

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof(*(a)))

/* Exit status; the man page's EXIT STATUS repeats these. */
enum {
	EXIT_ERROR = 1,		/* I/O, permission, wrong password, ... */
	EXIT_USAGE = 2,
	EXIT_CORRUPT = 3,	/* the session store is corrupt */
	EXIT_REFUSED = 4,	/* refused: in use, open, too small, already loaded */
	EXIT_MODULE = 5,	/* module file missing or built for another kernel */
	EXIT_CONFIG = 6,	/* configuration or password file unusable */
};

struct args {
	char **pos;
	int npos;
	unsigned int tracker, flags;
	enum bdsnap_via via;
	const char *passfile, *store, *to, *from, *config;
	int passfd;
	unsigned int wait;
	bool dry_run, force, no_syscalls, module, yes;
	struct out_fmt fmt;		/* -o, -n, -r, -J, -b */
	struct bdsnap_retention keep;	/* prune --keep, --max-size */
};

/* usage_error() - "bdsnap: <what>" and "Try 'bdsnap --help'", exit 2. */
void __attribute__((noreturn, format(printf, 1, 2))) usage_error(const char *fmt, ...);

/* ctl_hint() - " (wrong password)" and the like for an errno of the module. */
const char *ctl_hint(int err);

#define DEFAULT_STORE	"/snapshot"

/* sessions.c: listings and checks of sessions */
int cmd_sessions(const struct args *a, const char *name);
int cmd_show(const struct args *a, const char *name);
int cmd_verify(const struct args *a, const char *name);
int cmd_changed(const struct args *a, const char *name);
void sessions_help(FILE *f);
void extents_help(FILE *f);
/* open_session() - SESSION: a path, or a name under the store; exits on failure. */
struct bdsnap_session *open_session(const struct args *a, const char *arg);
/* session_failed() - an error of the store: its message, and the exit code. */
int session_failed(const char *dir, const struct bdsnap_verify_report *r, int rc);
/* note_torn() - warn about a torn record or meta line that was ignored. */
void note_torn(const struct bdsnap_session_info *in, const struct bdsnap_verify_report *r);

/* chain.c: restore and export */
int cmd_restore(const struct args *a, const char *name);
int cmd_export(const struct args *a, const char *name);
int cmd_map(const struct args *a, const char *name);
int cmd_mount(const struct args *a, const char *name);

/* retention.c: delete and prune */
int cmd_delete(const struct args *a, const char *name);
int cmd_prune(const struct args *a, const char *name);

/* rollback.c: finishing the rollbacks a crash left undone */
int cmd_rollback(const struct args *a, const char *name);
/*
 * rollback_config_device() - load --config: finish @dev's unfinished
 * rollbacks in @store before it is activated, one line per session; the
 * exit status (0: done, or nothing to do; a failure was reported).
 */
int rollback_config_device(const char *store, const char *dev, bool dry);

/* load.c */
int cmd_load(const struct args *a, const char *name);
int cmd_unload(const struct args *a, const char *name);
/* module_table() - the module's state (status, status --module) as a table. */
struct out_table *module_table(const struct args *a);
/* module_columns_help() - the columns of module_table(), for status --help. */
void module_columns_help(FILE *f);

#endif
