// SPDX-License-Identifier: GPL-2.0
/*
 * usctm - "table" method, for kernels without x64_sys_call().
 *
 * Before x64_sys_call(), do_syscall_64() calls sys_call_table[nr](regs), so
 * pointing an entry at usctm_dispatch() redirects that number, and pointing
 * it back at __x64_sys_ni_syscall undoes it.
 *
 * sys_call_table is const: it lives in .rodata, mapped read-only
 * (STRICT_KERNEL_RWX).  usctm does not clear CR0.WP to write it: write_cr0()
 * refuses since 5.3 (CR pinning), so it would take a private "mov %cr0" with
 * interrupts off, and with CET enabled clearing WP is a #GP.  Instead, like
 * text_poke() (not exported), it writes through a second, writable mapping
 * of the same physical pages, made once at load time with vmap() so that
 * arming and disarming cannot fail, and removed at unload.  An aligned 8-byte
 * store is atomic and x86 caches are physically tagged, so every CPU's next
 * load of sys_call_table[nr] sees either the old or the new pointer; no
 * stop_machine() is needed.
 *
 * Not exercised by the tests: the test kernel (Debian 6.1.0-56) has
 * x64_sys_call() and uses the "kprobe" method.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/mm.h>
#include <linux/vmalloc.h>
#include <asm/page.h>
#include <asm/unistd.h>

#include "usctm_internal.h"

#define USCTM_TABLE_BYTES	(NR_syscalls * sizeof(sys_call_ptr_t))
#define USCTM_TABLE_PAGES	(DIV_ROUND_UP(USCTM_TABLE_BYTES, PAGE_SIZE) + 1)

static void *usctm_table_map;		/* vmap() of the table's pages */
static sys_call_ptr_t *usctm_table_rw;	/* writable alias of the table */
static sys_call_ptr_t usctm_table_ni;	/* __x64_sys_ni_syscall */

static int usctm_table_init(const struct usctm_syms *syms)
{
	unsigned long start = (unsigned long)syms->table;
	unsigned long first = start & PAGE_MASK;
	unsigned long end = start + USCTM_TABLE_BYTES;
	unsigned int nr_pages = (PAGE_ALIGN(end) - first) >> PAGE_SHIFT;
	struct page *pages[USCTM_TABLE_PAGES];
	unsigned long pfn;
	unsigned int i;

	/* The table is part of the kernel image: __pa_symbol() applies. */
	if (start < __START_KERNEL_map ||
	    !IS_ALIGNED(start, sizeof(sys_call_ptr_t)) ||
	    nr_pages > ARRAY_SIZE(pages)) {
		pr_err("unexpected sys_call_table address %pS\n", syms->table);
		return -EINVAL;
	}
	for (i = 0; i < nr_pages; i++) {
		pfn = PHYS_PFN(__pa_symbol(first + i * PAGE_SIZE));
		if (!pfn_valid(pfn))
			return -EINVAL;
		pages[i] = pfn_to_page(pfn);
	}

	usctm_table_map = vmap(pages, nr_pages, VM_MAP, PAGE_KERNEL);
	if (!usctm_table_map)
		return -ENOMEM;
	usctm_table_rw = usctm_table_map + offset_in_page(start);

	/* Both views must show the same memory. */
	if (READ_ONCE(usctm_table_rw[__NR_read]) !=
	    READ_ONCE(syms->table[__NR_read])) {
		pr_err("writable alias of sys_call_table does not match\n");
		vunmap(usctm_table_map);
		usctm_table_map = NULL;
		return -EINVAL;
	}
	usctm_table_ni = (sys_call_ptr_t)syms->ni;
	return 0;
}

static void usctm_table_done(void)
{
	vunmap(usctm_table_map);
	usctm_table_map = NULL;
	usctm_table_rw = NULL;
}

static void usctm_table_arm(unsigned int nr)
{
	/* The handler was stored before; order it before the entry. */
	smp_wmb();
	WRITE_ONCE(usctm_table_rw[nr], usctm_dispatch);
}

static void usctm_table_disarm(unsigned int nr)
{
	/* No ordering needed: usctm_dispatch() copes with a NULL handler. */
	WRITE_ONCE(usctm_table_rw[nr], usctm_table_ni);
}

const struct usctm_method_ops usctm_table_ops = {
	.name	= "table",
	.init	= usctm_table_init,
	.done	= usctm_table_done,
	.arm	= usctm_table_arm,
	.disarm	= usctm_table_disarm,
};
