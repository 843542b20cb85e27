// SPDX-License-Identifier: GPL-2.0
/*
 * usctm - x86-64 system call slot installer.
 *
 * Free slots are the system call numbers below NR_syscalls whose
 * sys_call_table entry is __x64_sys_ni_syscall; usctm uses the longest run
 * of them (335-423 on Linux 6.1), leaving alone the scattered historical
 * numbers (tuxcall, security, vserver...) that user space may still know.
 * Numbers >= NR_syscalls cannot be used: do_syscall_64() answers them
 * itself.
 *
 * An installed number is routed (by the method, see kprobe.c and table.c)
 * to usctm_dispatch(), which calls the client's handler.
 *
 * Lifetime rules:
 *  - Handler calls run inside an SRCU read-side section of usctm_srcu.
 *    usctm_uninstall() unpublishes the handler, then synchronize_srcu():
 *    when it returns, no call of that handler is running, and none will
 *    start, so the client module may go away.  Handlers may sleep.
 *  - usctm_dispatch() reads the handler itself, inside that section; a
 *    task redirected before an uninstall but entering usctm_dispatch()
 *    after it finds no handler and answers -ENOSYS.
 *  - Each installed slot holds a reference on this module
 *    (try_module_get() in usctm_install(), module_put() in
 *    usctm_uninstall()), on top of the reference a symbol_get() client
 *    holds, so usctm cannot be unloaded while a slot is installed.
 *  - Code of usctm itself that a task may run outside the SRCU section
 *    (the way into and out of usctm_dispatch()) is covered at unload by
 *    synchronize_rcu_tasks(): it returns once every task that might be
 *    preempted there has passed a voluntary context switch or user mode.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bitmap.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/nospec.h>
#include <linux/rcupdate.h>
#include <linux/srcu.h>
#include <asm/unistd.h>

#include "usctm.h"
#include "usctm_internal.h"

static DEFINE_MUTEX(usctm_lock);	/* serialises install and uninstall */
static struct srcu_struct usctm_srcu;	/* protects handler calls */
static const struct usctm_method_ops *usctm_method;

/* Installed handlers; written under usctm_lock, read under usctm_srcu. */
static usctm_handler_t usctm_handlers[NR_syscalls];

/* Usable numbers: usctm_free_first..usctm_free_last, set once at load. */
static unsigned int usctm_free_first;
static unsigned int usctm_free_last;
static bool usctm_free_found;

/**
 * usctm_dispatch() - entry of every installed system call number
 * @regs: the calling task's user register frame.
 *
 * Entered in place of __x64_sys_ni_syscall(regs), with the same stack and
 * arguments, so its return value becomes the system call's return value.
 *
 * Return: the handler's return value, -ENOSYS if none is installed.
 */
long usctm_dispatch(const struct pt_regs *regs)
{
	unsigned long nr = regs->orig_ax;
	usctm_handler_t handler;
	long ret = -ENOSYS;
	int idx;

	if (nr >= NR_syscalls)
		return -ENOSYS;
	nr = array_index_nospec(nr, NR_syscalls);

	idx = srcu_read_lock(&usctm_srcu);
	handler = READ_ONCE(usctm_handlers[nr]);
	if (handler)
		ret = handler(regs);
	srcu_read_unlock(&usctm_srcu, idx);
	return ret;
}

int usctm_install(usctm_handler_t handler)
{
	unsigned int nr;
	int ret;

	if (!handler)
		return -EINVAL;
	if (!try_module_get(THIS_MODULE))
		return -ENODEV;

	mutex_lock(&usctm_lock);
	for (nr = usctm_free_first; nr <= usctm_free_last; nr++)
		if (!usctm_handlers[nr])
			break;
	if (!usctm_free_found || nr > usctm_free_last) {
		ret = -ENOSPC;
		goto fail_unlock;
	}

	WRITE_ONCE(usctm_handlers[nr], handler);
	usctm_method->arm(nr);
	mutex_unlock(&usctm_lock);

	pr_info("system call %u -> %ps\n", nr, handler);
	return nr;

fail_unlock:
	mutex_unlock(&usctm_lock);
	module_put(THIS_MODULE);
	return ret;
}
EXPORT_SYMBOL_GPL(usctm_install);

int usctm_uninstall(int nr)
{
	mutex_lock(&usctm_lock);
	if (nr < 0 || nr >= NR_syscalls || !usctm_handlers[nr]) {
		mutex_unlock(&usctm_lock);
		return -ENOENT;
	}
	usctm_method->disarm(nr);
	WRITE_ONCE(usctm_handlers[nr], NULL);
	mutex_unlock(&usctm_lock);

	/* Every call that may still see the old handler has returned. */
	synchronize_srcu(&usctm_srcu);

	pr_info("system call %d removed\n", nr);
	/* The caller holds usctm (symbol reference): safe to return into. */
	module_put(THIS_MODULE);
	return 0;
}
EXPORT_SYMBOL_GPL(usctm_uninstall);

/* Longest run of table entries equal to __x64_sys_ni_syscall. */
static int usctm_find_free(const struct usctm_syms *syms)
{
	unsigned int nr, start = 0, len = 0, best_len = 0;

	for (nr = 0; nr < NR_syscalls; nr++) {
		if ((unsigned long)READ_ONCE(syms->table[nr]) != syms->ni) {
			len = 0;
			continue;
		}
		if (!len++)
			start = nr;
		if (len > best_len) {
			best_len = len;
			usctm_free_first = start;
			usctm_free_last = nr;
		}
	}
	if (!best_len)
		return -ENOSPC;
	usctm_free_found = true;
	return 0;
}

/* Read-only parameters: they report state and refuse to be set. */
static int usctm_param_set_ro(const char *val, const struct kernel_param *kp)
{
	return -EPERM;
}

static int usctm_method_get(char *buf, const struct kernel_param *kp)
{
	return scnprintf(buf, PAGE_SIZE, "%s\n",
			 usctm_method ? usctm_method->name : "none");
}

static int usctm_slots_get(char *buf, const struct kernel_param *kp)
{
	unsigned int nr;
	int len = 0;

	mutex_lock(&usctm_lock);
	for (nr = 0; nr < NR_syscalls; nr++)
		if (usctm_handlers[nr])
			len += scnprintf(buf + len, PAGE_SIZE - len, "%s%u",
					 len ? " " : "", nr);
	mutex_unlock(&usctm_lock);
	len += scnprintf(buf + len, PAGE_SIZE - len, "\n");
	return len;
}

static int usctm_free_get(char *buf, const struct kernel_param *kp)
{
	if (!usctm_free_found)
		return scnprintf(buf, PAGE_SIZE, "\n");
	return scnprintf(buf, PAGE_SIZE, "%u-%u\n",
			 usctm_free_first, usctm_free_last);
}

static int usctm_nr_syscalls_get(char *buf, const struct kernel_param *kp)
{
	return scnprintf(buf, PAGE_SIZE, "%u\n", NR_syscalls);
}

static const struct kernel_param_ops usctm_method_ops = {
	.set = usctm_param_set_ro,
	.get = usctm_method_get,
};

static const struct kernel_param_ops usctm_slots_ops = {
	.set = usctm_param_set_ro,
	.get = usctm_slots_get,
};

static const struct kernel_param_ops usctm_free_ops = {
	.set = usctm_param_set_ro,
	.get = usctm_free_get,
};

static const struct kernel_param_ops usctm_nr_syscalls_ops = {
	.set = usctm_param_set_ro,
	.get = usctm_nr_syscalls_get,
};

/* "kprobe" (x64_sys_call kernels) or "table"; chosen at load time. */
module_param_cb(method, &usctm_method_ops, NULL, 0444);
MODULE_PARM_DESC(method, "Dispatch method in use: kprobe or table (read-only)");

/* Installed system call numbers, space separated. */
module_param_cb(slots, &usctm_slots_ops, NULL, 0444);
MODULE_PARM_DESC(slots, "Installed system call numbers (read-only)");

/* The usable range, "first-last". */
module_param_cb(free, &usctm_free_ops, NULL, 0444);
MODULE_PARM_DESC(free, "Range of system call numbers usctm hands out (read-only)");

/* Numbers from this one on never reach a handler: the kernel answers ENOSYS itself. */
module_param_cb(nr_syscalls, &usctm_nr_syscalls_ops, NULL, 0444);
MODULE_PARM_DESC(nr_syscalls, "NR_syscalls of this kernel (read-only)");

static int __init usctm_init(void)
{
	const struct usctm_method_ops *method;
	struct usctm_syms syms;
	int ret;

	ret = usctm_syms_lookup(&syms);
	if (ret)
		return ret;
	ret = usctm_find_free(&syms);
	if (ret) {
		pr_err("no unused system call number below %d\n", NR_syscalls);
		return ret;
	}

	method = syms.x64_sys_call ? &usctm_kprobe_ops : &usctm_table_ops;
	ret = init_srcu_struct(&usctm_srcu);
	if (ret)
		return ret;
	ret = method->init(&syms);
	if (ret)
		goto fail_srcu;
	usctm_method = method;

	pr_info("method %s, free system call numbers %u-%u\n",
		method->name, usctm_free_first, usctm_free_last);
	return 0;

fail_srcu:
	cleanup_srcu_struct(&usctm_srcu);
	return ret;
}

static void __exit usctm_exit(void)
{
	unsigned int nr;

	/*
	 * Slots hold module references, so only a forced unload finds one
	 * here.  Route its number back to ni_syscall; the client is broken
	 * either way (its usctm_uninstall() symbol is gone).
	 */
	for (nr = 0; nr < NR_syscalls; nr++) {
		if (!usctm_handlers[nr])
			continue;
		pr_warn("forced unload: removing system call %u\n", nr);
		usctm_method->disarm(nr);
		WRITE_ONCE(usctm_handlers[nr], NULL);
	}

	usctm_method->done();
	synchronize_srcu(&usctm_srcu);
	/* Tasks preempted on the way into or out of usctm_dispatch(). */
	synchronize_rcu_tasks();
	cleanup_srcu_struct(&usctm_srcu);
	pr_info("unloaded\n");
}

module_init(usctm_init);
module_exit(usctm_exit);

MODULE_DESCRIPTION("x86-64 system call slot installer");
MODULE_AUTHOR("bdsnap project");
MODULE_LICENSE("GPL");
