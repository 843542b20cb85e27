// SPDX-License-Identifier: GPL-2.0
/* Harness self-test: a well-behaved module must pass the run. */
#include <linux/module.h>

static int __init harness_clean_init(void)
{
	pr_info("clean: loaded\n");
	return 0;
}

static void __exit harness_clean_exit(void)
{
	pr_info("clean: unloaded\n");
}

module_init(harness_clean_init);
module_exit(harness_clean_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("bdsnap harness test: loads and unloads quietly");
