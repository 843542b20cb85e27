// SPDX-License-Identifier: GPL-2.0
/*
 * usctm - finding the unexported kernel symbols.
 *
 * kallsyms_lookup_name() is not exported since 5.7.  Its address is still
 * known to kprobes: registering a kprobe by symbol name resolves it, so a
 * probe is registered only to read kp.addr and removed again at once.
 *
 * That address must never be called indirectly.  Kernels built with
 * CONFIG_X86_KERNEL_IBT (Debian 6.12 and later) seal at boot the ENDBR of
 * every function whose address the kernel never takes, kallsyms_lookup_name()
 * among them: on a CPU that enforces IBT an indirect call to it is a #CP
 * oops.  So usctm calls a stub of its own, directly, and an ftrace callback
 * with IPMODIFY moves the stub's entry to kallsyms_lookup_name(): ftrace
 * resumes at the new address with a return, which IBT does not check, and
 * kallsyms_lookup_name() then returns straight to the stub's caller.  This
 * is how livepatch redirects functions on the same kernels.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/ftrace.h>
#include <linux/kprobes.h>
#include <linux/uaccess.h>
#include <asm/unistd.h>

#include "usctm_internal.h"

/*
 * The stub must stay a real function that every lookup calls with its
 * argument: no inlining, no clone, no assumption about its result.
 */
#if __has_attribute(__noipa__)
#define usctm_opaque	__attribute__((__noipa__))
#else
#define usctm_opaque	noinline
#endif

static unsigned long usctm_kallsyms_addr;

/* Start address of a probe-able function, 0 if it cannot be probed. */
static unsigned long usctm_kprobe_addr(const char *name)
{
	struct kprobe kp = { .symbol_name = name };
	unsigned long addr;

	if (register_kprobe(&kp))
		return 0;
	addr = (unsigned long)kp.addr;
	unregister_kprobe(&kp);
	return addr;
}

/* Never runs while the redirection below is registered. */
static usctm_opaque unsigned long usctm_lookup_name(const char *name)
{
	return 0;
}

static void notrace usctm_lookup_redirect(unsigned long ip, unsigned long parent_ip,
					  struct ftrace_ops *ops, struct ftrace_regs *fregs)
{
	instruction_pointer_set(ftrace_get_regs(fregs), usctm_kallsyms_addr);
}

static struct ftrace_ops usctm_lookup_ops = {
	.func = usctm_lookup_redirect,
	.flags = FTRACE_OPS_FL_SAVE_REGS | FTRACE_OPS_FL_IPMODIFY | FTRACE_OPS_FL_RECURSION,
};

static int usctm_lookup_begin(void)
{
	int ret;

	usctm_kallsyms_addr = usctm_kprobe_addr("kallsyms_lookup_name");
	if (!usctm_kallsyms_addr) {
		pr_err("cannot locate kallsyms_lookup_name with a kprobe (CONFIG_KPROBES?)\n");
		return -ENOENT;
	}
	ret = ftrace_set_filter_ip(&usctm_lookup_ops, (unsigned long)usctm_lookup_name, 0, 0);
	if (!ret) {
		ret = register_ftrace_function(&usctm_lookup_ops);
		if (ret)
			ftrace_set_filter_ip(&usctm_lookup_ops,
					     (unsigned long)usctm_lookup_name, 1, 0);
	}
	if (ret)
		pr_err("cannot redirect a function with ftrace (error %d): this kernel lacks DYNAMIC_FTRACE_WITH_REGS or another module redirects ours\n",
		       ret);
	return ret;
}

static void usctm_lookup_end(void)
{
	unregister_ftrace_function(&usctm_lookup_ops);
	ftrace_set_filter_ip(&usctm_lookup_ops, (unsigned long)usctm_lookup_name, 1, 0);
}

/**
 * usctm_syms_lookup() - find sys_call_table and friends
 * @syms: filled in on success.
 *
 * Return: 0, -ENOENT if a required symbol is missing, -EINVAL if the table
 * found does not look like the x86-64 system call table, or the error of
 * setting up the ftrace redirection.
 */
int usctm_syms_lookup(struct usctm_syms *syms)
{
	unsigned long read_fn;
	int ret;

	ret = usctm_lookup_begin();
	if (ret)
		return ret;
	syms->table = (const sys_call_ptr_t *)usctm_lookup_name("sys_call_table");
	syms->ni = usctm_lookup_name("__x64_sys_ni_syscall");
	syms->x64_sys_call = usctm_lookup_name("x64_sys_call");
	read_fn = usctm_lookup_name("__x64_sys_read");
	usctm_lookup_end();

	if (!syms->table || !syms->ni || !read_fn) {
		pr_err("sys_call_table, __x64_sys_ni_syscall or __x64_sys_read not found\n");
		return -ENOENT;
	}

	/* Entry 0 must be read(); anything else means a wrong table. */
	if ((unsigned long)READ_ONCE(syms->table[__NR_read]) != read_fn) {
		pr_err("sys_call_table[__NR_read] is %ps, not __x64_sys_read\n",
		       READ_ONCE(syms->table[__NR_read]));
		return -EINVAL;
	}
	return 0;
}
