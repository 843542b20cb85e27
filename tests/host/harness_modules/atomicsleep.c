// SPDX-License-Identifier: GPL-2.0
/*
 * Debug-kernel self-test: a GFP_KERNEL allocation (which may sleep) under a
 * spinlock. DEBUG_ATOMIC_SLEEP must report "sleeping function called from
 * invalid context" even though this allocation does not actually sleep.
 */
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/spinlock.h>

static DEFINE_SPINLOCK(harness_lock);

static int __init harness_atomicsleep_init(void)
{
	void *p;

	spin_lock(&harness_lock);
	p = kmalloc(32, GFP_KERNEL);
	spin_unlock(&harness_lock);
	kfree(p);
	return 0;
}

static void __exit harness_atomicsleep_exit(void)
{
}

module_init(harness_atomicsleep_init);
module_exit(harness_atomicsleep_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("bdsnap harness test: sleeping allocation in atomic context");
