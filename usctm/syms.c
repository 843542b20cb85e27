// SPDX-License-Identifier: GPL-2.0
/*
 * usctm - finding the unexported kernel symbols.
 *
 * kallsyms_lookup_name() is not exported since 5.7.  Its address is still
 * known to kprobes: registering a kprobe by symbol name resolves it, so a
 * probe is registered only to read kp.addr and removed again at once.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kprobes.h>
#include <linux/uaccess.h>
#include <asm/ibt.h>
#include <asm/unistd.h>

#include "usctm_internal.h"

typedef unsigned long (*usctm_lookup_t)(const char *name);

/* Start address of a probe-able function, 0 if it cannot be probed. */
static unsigned long usctm_kprobe_addr(const char *name)
{
	struct kprobe kp = { .symbol_name = name };
	unsigned long addr;
	u32 insn;

	if (register_kprobe(&kp))
		return 0;
	addr = (unsigned long)kp.addr;
	unregister_kprobe(&kp);

	/*
	 * With IBT, kprobes places an entry probe after the ENDBR64; an
	 * indirect call must land on the ENDBR64 itself.
	 */
	if (ENDBR_INSN_SIZE &&
	    !copy_from_kernel_nofault(&insn, (void *)(addr - ENDBR_INSN_SIZE),
				      sizeof(insn)) &&
	    is_endbr(insn))
		addr -= ENDBR_INSN_SIZE;
	return addr;
}

/**
 * usctm_syms_lookup() - find sys_call_table and friends
 * @syms: filled in on success.
 *
 * Return: 0, -ENOENT if a required symbol is missing, -EINVAL if the table
 * found does not look like the x86-64 system call table.
 */
int usctm_syms_lookup(struct usctm_syms *syms)
{
	usctm_lookup_t lookup;
	unsigned long read_fn;

	lookup = (usctm_lookup_t)usctm_kprobe_addr("kallsyms_lookup_name");
	if (!lookup) {
		pr_err("cannot locate kallsyms_lookup_name with a kprobe\n");
		return -ENOENT;
	}

	syms->table = (const sys_call_ptr_t *)lookup("sys_call_table");
	syms->ni = lookup("__x64_sys_ni_syscall");
	syms->x64_sys_call = lookup("x64_sys_call");
	read_fn = lookup("__x64_sys_read");
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
