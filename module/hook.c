// SPDX-License-Identifier: GPL-2.0
/*
 * Function redirection with ftrace.  An ftrace callback with IPMODIFY sets
 * the instruction pointer to our replacement, which has the same prototype
 * and calls the original function itself when it wants the original
 * behaviour.  That call comes from this module, so the callback lets it
 * through: the module is built with -fno-optimize-sibling-calls, so such a
 * call is a real call and its return address is inside the module.
 *
 * A hook whose decision cannot sleep makes it in the callback (->divert)
 * and only then redirects, so that every call it lets through runs the
 * original with no frame of ours on the stack: a task asleep in the original
 * can outlive the module (synchronize_rcu_tasks() does not wait for a task
 * sleeping voluntarily), a task in a replacement that never sleeps cannot.
 *
 * Why ftrace and not a kprobe: the kprobe redirect on this kernel is itself
 * an ftrace-based kprobe, with extra rules (a dummy post-handler, no mixing
 * with other probe kinds at that address); ftrace IPMODIFY says what we mean
 * and refuses a second redirector of the same function with -EBUSY.
 */
#define pr_fmt(fmt) KBUILD_MODNAME "-hook: " fmt

#include <linux/module.h>
#include <linux/ftrace.h>
#include <linux/kallsyms.h>
#include "bdsnap.h"
#include "hook.h"

static void notrace bdsnap_hook_thunk(unsigned long ip, unsigned long parent_ip,
				      struct ftrace_ops *ops, struct ftrace_regs *fregs)
{
	struct bdsnap_hook *hook = container_of(ops, struct bdsnap_hook, ops);
	struct pt_regs *regs = ftrace_get_regs(fregs);

	if (within_module(parent_ip, THIS_MODULE))
		return;
	if (hook->divert && !hook->divert(regs))
		return;
	/*
	 * A sleeping replacement pins the module until bdsnap_hook_leave(), so
	 * rmmod cannot free the code it sleeps in; once unloading has begun
	 * the original runs instead.
	 */
	if (hook->may_sleep && !try_module_get(THIS_MODULE))
		return;
	instruction_pointer_set(regs, hook->replacement);
}

void bdsnap_hook_leave(void)
{
	module_put(THIS_MODULE);
}

int bdsnap_hook_install(struct bdsnap_hook *hook)
{
	int ret;

	hook->ops.func = bdsnap_hook_thunk;
	hook->ops.flags = FTRACE_OPS_FL_SAVE_REGS | FTRACE_OPS_FL_IPMODIFY |
			  FTRACE_OPS_FL_RECURSION;
	ret = ftrace_set_filter_ip(&hook->ops, hook->target, 0, 0);
	if (ret) {
		pr_err("cannot filter %ps: error %d\n", (void *)hook->target, ret);
		return ret;
	}
	ret = register_ftrace_function(&hook->ops);
	if (ret) {
		pr_err("cannot redirect %ps (error %d): %s\n", (void *)hook->target, ret,
		       ret == -EBUSY ? "another module (a livepatch?) redirects it" :
				       "ftrace cannot modify calls on this kernel");
		ftrace_set_filter_ip(&hook->ops, hook->target, 1, 0);
	}
	return ret;
}

void bdsnap_hook_remove(struct bdsnap_hook *hook)
{
	unregister_ftrace_function(&hook->ops);
	ftrace_set_filter_ip(&hook->ops, hook->target, 1, 0);
}
