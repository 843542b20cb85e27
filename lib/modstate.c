// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The modules' state as sysfs shows it: no libkmod needed, so that a build
 * without it (WITH_KMOD=0, e.g. a static CLI) still reports the module.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SYSFS_MODULE	"/sys/module/bdsnap/"

int module_live(const char *name)
{
	char path[128], state[16];

	snprintf(path, sizeof(path), "/sys/module/%s/initstate", name);
	if (read_small(path, state, sizeof(state)) <= 0)
		return 0;
	return strncmp(state, "live", 4) ? -1 : 1;
}

static long param_long(const char *path)
{
	char buf[32], *end;
	long v;

	if (read_small(path, buf, sizeof(buf)) <= 0)
		return -1;
	v = strtol(buf, &end, 10);
	return end == buf ? -1 : v;
}

static void param_str(const char *file, char *buf, size_t cap)
{
	char *nl;

	if (read_small(file, buf, cap) < 0)
		buf[0] = '\0';
	nl = strchr(buf, '\n');
	if (nl)
		*nl = '\0';
}

int bdsnap_module_state(struct bdsnap_module_state *st)
{
	struct bdsnap_dev_info *v;
	size_t i, n;

	if (!st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	st->sys_activate_nr = st->sys_deactivate_nr = -1;
	st->loaded = module_live("bdsnap");
	st->usctm_loaded = module_live("usctm") == 1;
	if (st->loaded != 1)
		return 0;
	st->refcnt = (int)param_long(SYSFS_MODULE "refcnt");
	param_str(SYSFS_MODULE "version", st->modversion, sizeof(st->modversion));
	param_str(SYSFS_MODULE "parameters/store_dir", st->store_dir, sizeof(st->store_dir));
	st->sys_activate_nr = param_long(SYSFS_MODULE "parameters/sys_activate_nr");
	st->sys_deactivate_nr = param_long(SYSFS_MODULE "parameters/sys_deactivate_nr");
	if (bdsnap_version(&st->version) < 0)
		memset(&st->version, 0, sizeof(st->version));
	if (bdsnap_list(&v, &n) == 0) {
		st->devices = n;
		for (i = 0; i < n; i++)
			st->sessions += v[i].session_state != BDSNAP_SESSION_NONE;
		free(v);
	}
	return 0;
}
