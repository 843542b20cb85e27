// SPDX-License-Identifier: GPL-2.0
/*
 * usctm - "kprobe" method, for kernels with x64_sys_call().
 *
 * Since the x64_sys_call() switch (6.9, backported to 6.1.85+ and Debian
 * 6.1), sys_call_table is not used for dispatch: unassigned numbers below
 * NR_syscalls reach __x64_sys_ni_syscall(regs) from the switch.  A kprobe on
 * that function redirects the numbers usctm has armed:
 *
 *   do_syscall_64()
 *     x64_sys_call(regs, nr)
 *       __x64_sys_ni_syscall(regs)     <- probe hit at the function entry
 *         pre-handler: regs->ip = usctm_dispatch, return 1
 *       usctm_dispatch(regs)           <- entered instead, same stack and
 *                                         same %rdi (= user pt_regs)
 *     regs->ax = <its return value>
 *
 * At the probe point nothing of __x64_sys_ni_syscall has run yet: the stack
 * holds the return address into the caller and %rdi the user pt_regs, the
 * only argument.  Resuming at usctm_dispatch, whose prototype is the same,
 * is therefore an ordinary call of usctm_dispatch(regs) by x64_sys_call, and
 * its return value lands in regs->ax exactly like a system call's.
 *
 * The probe has a (no-op) post-handler on purpose:
 *  - on Debian 6.1 the function has no ftrace call (arch/x86/entry/common.o
 *    is built without it), so the probe is an int3 one; kprobes replaces an
 *    int3 probe without a post-handler by a jump to a detour buffer
 *    (OPTPROBES) shortly after registration, and the detour ignores a
 *    changed regs->ip;
 *  - on a kernel where the entry is an ftrace location (KPROBES_ON_FTRACE),
 *    only a probe with a post-handler uses the IPMODIFY ftrace ops, which
 *    honour a changed regs->ip.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bitmap.h>
#include <linux/kprobes.h>
#include <linux/nospec.h>
#include <linux/sched/task_stack.h>
#include <asm/ibt.h>
#include <asm/unistd.h>

#include "usctm_internal.h"

/* Numbers redirected to usctm_dispatch(); atomic bit operations. */
static DECLARE_BITMAP(usctm_kprobe_armed, NR_syscalls);

static int usctm_kprobe_pre(struct kprobe *p, struct pt_regs *regs)
{
	const struct pt_regs *uregs = (const struct pt_regs *)regs->di;
	unsigned long nr;

	/*
	 * __x64_sys_ni_syscall() is also called for unassigned x32 numbers
	 * and for numbers >= NR_syscalls; its argument is always the
	 * current task's user frame.  Anything else is not ours.
	 */
	if (uregs != task_pt_regs(current))
		return 0;
	nr = uregs->orig_ax;
	if (nr >= NR_syscalls)
		return 0;
	nr = array_index_nospec(nr, NR_syscalls);
	if (!test_bit(nr, usctm_kprobe_armed))
		return 0;

	instruction_pointer_set(regs, (unsigned long)usctm_dispatch);
	return 1;	/* ip changed: kprobes must not single-step */
}

static void usctm_kprobe_post(struct kprobe *p, struct pt_regs *regs,
			      unsigned long flags)
{
	/* Never called for redirected calls; see the comment at the top. */
}

static struct kprobe usctm_kp = {
	.symbol_name	= "__x64_sys_ni_syscall",
	.pre_handler	= usctm_kprobe_pre,
	.post_handler	= usctm_kprobe_post,
};

static int usctm_kprobe_init(const struct usctm_syms *syms)
{
	unsigned long addr;
	int ret;

	ret = register_kprobe(&usctm_kp);
	if (ret) {
		pr_err("cannot probe __x64_sys_ni_syscall: %d\n", ret);
		return ret;
	}

	/* The probe must sit on the function entry (maybe after ENDBR64). */
	addr = (unsigned long)usctm_kp.addr;
	if (addr != syms->ni && addr != syms->ni + ENDBR_INSN_SIZE) {
		pr_err("probe at %pS, not at the entry of __x64_sys_ni_syscall\n",
		       usctm_kp.addr);
		unregister_kprobe(&usctm_kp);
		return -EINVAL;
	}
	return 0;
}

static void usctm_kprobe_done(void)
{
	/* Waits for running pre-handlers; no new redirection after this. */
	unregister_kprobe(&usctm_kp);
}

static void usctm_kprobe_arm(unsigned int nr)
{
	/* Publish the handler (stored by the caller) before the number. */
	smp_mb__before_atomic();
	set_bit(nr, usctm_kprobe_armed);
}

static void usctm_kprobe_disarm(unsigned int nr)
{
	/* No ordering needed: usctm_dispatch() copes with a NULL handler. */
	clear_bit(nr, usctm_kprobe_armed);
}

const struct usctm_method_ops usctm_kprobe_ops = {
	.name	= "kprobe",
	.init	= usctm_kprobe_init,
	.done	= usctm_kprobe_done,
	.arm	= usctm_kprobe_arm,
	.disarm	= usctm_kprobe_disarm,
};
