// SPDX-License-Identifier: GPL-2.0
/*
 * Harness self-test: a module whose init never returns must fail the run,
 * through the hung-task detector (default: insmod sleeps uninterruptibly),
 * the soft-lockup detector (spin=1: busy loop without scheduling), or the
 * runner's timeout.
 */
#include <linux/module.h>
#include <linux/sched.h>

static bool spin;
module_param(spin, bool, 0444);
MODULE_PARM_DESC(spin, "busy-loop instead of sleeping in D state");

static int __init harness_hang_init(void)
{
	pr_info("hang: init blocks forever (spin=%d)\n", spin);
	for (;;) {
		if (spin) {
			cpu_relax();
			continue;
		}
		set_current_state(TASK_UNINTERRUPTIBLE);
		schedule();	/* nobody wakes us; loop on spurious wakeups */
	}
	return 0;
}

static void __exit harness_hang_exit(void)
{
}

module_init(harness_hang_init);
module_exit(harness_hang_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("bdsnap harness test: init never returns");
