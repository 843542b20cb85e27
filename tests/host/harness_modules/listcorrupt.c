// SPDX-License-Identifier: GPL-2.0
/*
 * Debug-kernel self-test: list_add() next to an entry whose prev pointer was
 * overwritten. DEBUG_LIST must report "list_add corruption" (a WARN, so the
 * guest panics with panic_on_warn) and skip the insertion.
 */
#include <linux/compiler.h>
#include <linux/list.h>
#include <linux/module.h>

struct harness_item {
	struct list_head node;
};

static LIST_HEAD(harness_list);
static struct harness_item harness_a, harness_b, harness_bogus;

static int __init harness_listcorrupt_init(void)
{
	list_add(&harness_a.node, &harness_list);
	/* A stray write: a's prev no longer points back at the head. */
	WRITE_ONCE(harness_a.node.prev, &harness_bogus.node);
	list_add(&harness_b.node, &harness_list);
	return 0;
}

static void __exit harness_listcorrupt_exit(void)
{
}

module_init(harness_listcorrupt_init);
module_exit(harness_listcorrupt_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("bdsnap harness test: list corruption (DEBUG_LIST)");
