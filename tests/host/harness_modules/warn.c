// SPDX-License-Identifier: GPL-2.0
/* Harness self-test: a kernel warning at load time must fail the run. */
#include <linux/bug.h>
#include <linux/module.h>

static int __init harness_warn_init(void)
{
	WARN_ON(1);
	return 0;
}

static void __exit harness_warn_exit(void)
{
}

module_init(harness_warn_init);
module_exit(harness_warn_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("bdsnap harness test: WARN_ON in init");
