// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A libbdsnap built without libkmod (WITH_KMOD=0: there is no static
 * libkmod, and a static CLI is what a minimal initramfs can run) cannot load
 * or remove modules; everything else works.
 */
#include <errno.h>

#include "internal.h"

/* bdsnap_module_load() of LIBBDSNAP_0.3: its opts start with their size. */
SYMVER(module_load_current, "bdsnap_module_load@@LIBBDSNAP_0.3");
int module_load_current(const struct bdsnap_load_opts *opts, struct bdsnap_load_report *report)
{
	(void)opts;
	(void)report;
	return -EOPNOTSUPP;
}

int bdsnap_module_unload(unsigned int flags)
{
	(void)flags;
	return -EOPNOTSUPP;
}
