// SPDX-License-Identifier: GPL-2.0
/*
 * usctm_test_client - throwaway usctm client for tests/scenarios/test_usctm.py.
 *
 * Installs "count" slots (default 1) with one handler, reports them in
 * /sys/module/usctm_test_client/parameters/nrs.  Binds usctm with
 * symbol_get(), so it loads (and fails cleanly) without usctm.
 *
 * The handler, by first argument a:
 *   TC_OP_NR     returns the system call number (regs->orig_ax)
 *   TC_OP_SUM6   returns b + c + d + e + f (the other five arguments)
 *   TC_OP_SLEEP  sleeps b milliseconds (at most 5000), returns TC_SLEPT
 *   otherwise    returns a + b
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/delay.h>
#include <linux/minmax.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <asm/ptrace.h>

#include "usctm.h"

#define TC_MAX_SLOTS	128
#define TC_OP_NR	0x7573637400000001UL
#define TC_OP_SUM6	0x7573637400000002UL
#define TC_OP_SLEEP	0x7573637400000003UL
#define TC_SLEPT	0x5eedL

/* How many system call numbers to install. */
static int count = 1;
module_param(count, int, 0444);
MODULE_PARM_DESC(count, "Number of slots to install (0-128, default 1)");

/* The installed numbers (output). */
static int nrs[TC_MAX_SLOTS];
static int nr_nrs;
module_param_array(nrs, int, &nr_nrs, 0444);
MODULE_PARM_DESC(nrs, "Installed system call numbers (read-only)");

static int (*tc_install)(usctm_handler_t handler);
static int (*tc_uninstall)(int nr);

static long tc_handler(const struct pt_regs *regs)
{
	switch (regs->di) {
	case TC_OP_NR:
		return regs->orig_ax;
	case TC_OP_SUM6:
		return regs->si + regs->dx + regs->r10 + regs->r8 + regs->r9;
	case TC_OP_SLEEP:
		msleep(min(regs->si, 5000UL));
		return TC_SLEPT;
	default:
		return regs->di + regs->si;
	}
}

static void tc_remove_all(void)
{
	int ret;

	while (nr_nrs) {
		ret = tc_uninstall(nrs[--nr_nrs]);
		if (ret)
			pr_err("uninstall %d: %d\n", nrs[nr_nrs], ret);
	}
}

static int __init tc_init(void)
{
	int ret;

	if (count < 0 || count > TC_MAX_SLOTS)
		return -EINVAL;

	tc_install = symbol_get(usctm_install);
	if (!tc_install)
		return -ENXIO;
	tc_uninstall = symbol_get(usctm_uninstall);
	if (!tc_uninstall) {
		ret = -ENXIO;
		goto fail_put_install;
	}

	/* The error returns of the API. */
	if (tc_install(NULL) != -EINVAL || tc_uninstall(-1) != -ENOENT ||
	    tc_uninstall(0) != -ENOENT) {
		pr_err("usctm API error returns are wrong\n");
		ret = -EPROTO;
		goto fail_put_uninstall;
	}

	nr_nrs = 0;
	while (nr_nrs < count) {
		ret = tc_install(tc_handler);
		if (ret < 0)
			goto fail_remove;
		nrs[nr_nrs++] = ret;
	}
	return 0;

fail_remove:
	pr_info("install %d of %d failed: %d\n", nr_nrs + 1, count, ret);
	tc_remove_all();
fail_put_uninstall:
	symbol_put(usctm_uninstall);
fail_put_install:
	symbol_put(usctm_install);
	return ret;
}

static void __exit tc_exit(void)
{
	tc_remove_all();
	symbol_put(usctm_uninstall);
	symbol_put(usctm_install);
}

module_init(tc_init);
module_exit(tc_exit);

MODULE_DESCRIPTION("usctm test client");
MODULE_LICENSE("GPL");
