/* SPDX-License-Identifier: GPL-2.0 */
/* Redirecting a kernel function with ftrace. */
#ifndef BDSNAP_HOOK_H
#define BDSNAP_HOOK_H

#include <linux/types.h>
#include <linux/ftrace.h>

struct pt_regs;

/* hook.c: redirect a kernel function to a replacement with ftrace */
/**
 * struct bdsnap_hook - one redirected function.
 * @ops: the ftrace callback registration.
 * @target: entry of the hooked function.
 * @replacement: our function with the same prototype.
 * @may_sleep: the replacement sleeps, so it pins the module while it runs
 *	(it then calls bdsnap_hook_leave()).
 * @divert: if set, decides in the ftrace callback (atomic context, the
 *	hooked function's registers) whether this call goes to @replacement;
 *	calls it declines run the original untouched.
 */
struct bdsnap_hook {
	struct ftrace_ops ops;
	unsigned long target;
	unsigned long replacement;
	bool may_sleep;
	bool (*divert)(struct pt_regs *regs);
};

int bdsnap_hook_install(struct bdsnap_hook *hook);
void bdsnap_hook_remove(struct bdsnap_hook *hook);
void bdsnap_hook_leave(void);

#endif /* BDSNAP_HOOK_H */
