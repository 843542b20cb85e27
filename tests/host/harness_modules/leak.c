// SPDX-License-Identifier: GPL-2.0
/*
 * Debug-kernel self-test: memory nobody points to; kmemleak must report it.
 * The allocation is in a normal (not __init) function, like a real leak in an
 * ioctl path; the test unloads the module before the scan, as the scenarios
 * do, so the runner has to name the address itself (init.sh's modwatch).
 */
#include <linux/compiler.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>

static noinline void *harness_leak_alloc(void)
{
	char *p = kmalloc(128, GFP_KERNEL);

	/* Work after the call: kmalloc must not be a tail call from here. */
	if (p)
		strscpy(p, "leaked by harness_leak_alloc", 128);
	return p;
}

static int __init harness_leak_init(void)
{
	void *p = harness_leak_alloc();

	if (!p)
		return -ENOMEM;
	OPTIMIZER_HIDE_VAR(p);
	return 0;	/* p is forgotten: leaked */
}

static void __exit harness_leak_exit(void)
{
}

module_init(harness_leak_init);
module_exit(harness_leak_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("bdsnap harness test: memory leak (kmemleak)");
