/* SPDX-License-Identifier: GPL-2.0 */
/* What the commands of bdsnap share: parsed arguments and exit codes. */
#ifndef BDSNAP_CLI_CMD_H
#define BDSNAP_CLI_CMD_H

#include <stdbool.h>

#include "bdsnap.h"

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
	bool json, dry_run, force, no_syscalls, module;
};

/* ctl_hint() - " (wrong password)" and the like for an errno of the module. */
const char *ctl_hint(int err);

/* load.c */
int cmd_load(const struct args *a, const char *name);
int cmd_unload(const struct args *a, const char *name);
/* cmd_module_status() - the module's state (status --module), or before the devices. */
int cmd_module_status(const struct args *a, bool devices_follow);

#endif
