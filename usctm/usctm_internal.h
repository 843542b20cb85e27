/* SPDX-License-Identifier: GPL-2.0 */
/*
 * usctm internals shared by main.c, syms.c and the two dispatch methods.
 */
#ifndef _USCTM_INTERNAL_H
#define _USCTM_INTERNAL_H

#include <linux/types.h>
#include <asm/syscall.h>

/**
 * struct usctm_syms - kernel symbols usctm needs, found at load time
 * @table: sys_call_table (x86-64 native table, NR_syscalls entries).
 * @ni: address of __x64_sys_ni_syscall.
 * @x64_sys_call: address of x64_sys_call, 0 if this kernel has none.  When
 *	present, system calls are dispatched by a switch statement and
 *	@table is only informational.
 */
struct usctm_syms {
	const sys_call_ptr_t *table;
	unsigned long ni;
	unsigned long x64_sys_call;
};

/**
 * struct usctm_method_ops - how a system call number is routed to usctm
 * @name: "kprobe" or "table", shown in /sys/module/usctm/parameters/method.
 * @init: set up the method; the number routing starts empty.
 * @done: tear the method down; every number must be disarmed before.
 * @arm: route system call @nr to usctm_dispatch().  Called with the handler
 *	of @nr already published.  Cannot fail.
 * @disarm: route @nr back to __x64_sys_ni_syscall.  Cannot fail.
 *
 * @arm and @disarm are serialised by the caller.
 */
struct usctm_method_ops {
	const char *name;
	int (*init)(const struct usctm_syms *syms);
	void (*done)(void);
	void (*arm)(unsigned int nr);
	void (*disarm)(unsigned int nr);
};

extern const struct usctm_method_ops usctm_kprobe_ops;
extern const struct usctm_method_ops usctm_table_ops;

int usctm_syms_lookup(struct usctm_syms *syms);
long usctm_dispatch(const struct pt_regs *regs);

#endif /* _USCTM_INTERNAL_H */
