// SPDX-License-Identifier: GPL-2.0
/* Debug-kernel self-test: a use-after-free read that KASAN must report. */
#include <linux/compiler.h>
#include <linux/module.h>
#include <linux/slab.h>

static int __init harness_uaf_init(void)
{
	char *p = kmalloc(64, GFP_KERNEL);

	if (!p)
		return -ENOMEM;
	p[8] = 42;
	kfree(p);
	OPTIMIZER_HIDE_VAR(p);	/* no compile-time use-after-free warning */
	pr_info("uaf: read %d after kfree\n", READ_ONCE(p[8]));
	return 0;
}

static void __exit harness_uaf_exit(void)
{
}

module_init(harness_uaf_init);
module_exit(harness_uaf_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("bdsnap harness test: use-after-free (KASAN)");
