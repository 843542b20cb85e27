// SPDX-License-Identifier: GPL-2.0
/*
 * Debug-kernel self-test: two mutexes taken in both orders (A then B, later
 * B then A). Never deadlocks here (one thread), but lockdep must report a
 * possible circular locking dependency.
 */
#include <linux/module.h>
#include <linux/mutex.h>

static DEFINE_MUTEX(harness_lock_a);
static DEFINE_MUTEX(harness_lock_b);

static int __init harness_lockinv_init(void)
{
	mutex_lock(&harness_lock_a);
	mutex_lock(&harness_lock_b);
	mutex_unlock(&harness_lock_b);
	mutex_unlock(&harness_lock_a);

	mutex_lock(&harness_lock_b);
	mutex_lock(&harness_lock_a);
	mutex_unlock(&harness_lock_a);
	mutex_unlock(&harness_lock_b);
	return 0;
}

static void __exit harness_lockinv_exit(void)
{
}

module_init(harness_lockinv_init);
module_exit(harness_lockinv_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("bdsnap harness test: lock-order inversion (lockdep)");
