// SPDX-License-Identifier: GPL-2.0
/* Harness self-test: an oops at load time must fail the run. */
#include <linux/module.h>

static int __init harness_oops_init(void)
{
	/* volatile: the compiler may not prove the pointer NULL and drop the store. */
	int *volatile p = NULL;

	*p = 1;
	return 0;
}

static void __exit harness_oops_exit(void)
{
}

module_init(harness_oops_init);
module_exit(harness_oops_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("bdsnap harness test: NULL dereference in init");
