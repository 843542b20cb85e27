// SPDX-License-Identifier: GPL-2.0
/*
 * The store's size cap (module parameter store_max_mb; 0: none).  What the
 * store directory holds is counted when a session starts (its session
 * directories' files, as allocated on disk, so sessions deleted or pruned
 * since give their room back); every append of an open session is counted
 * before it is written.  An append that would pass the cap fails with
 * -EDQUOT: the session goes incomplete:EDQUOT with one log line, a plain
 * session's writes go on untracked, an ordered session's unsaved writes
 * fail, as with a full file system.
 */
#define pr_fmt(fmt) KBUILD_MODNAME "-store: " fmt

#include <linux/module.h>
#include <linux/fs.h>
#include <linux/file.h>
#include <linux/namei.h>
#include <linux/slab.h>
#include <linux/stat.h>
#include "bdsnap.h"
#include "store.h"

static unsigned int store_max_mb;
module_param(store_max_mb, uint, 0644);
MODULE_PARM_DESC(store_max_mb,
		 "Size cap of the store directory in MiB, all sessions together (default 0: none)");

static atomic64_t bdsnap_store_used = ATOMIC64_INIT(0);

/**
 * struct bdsnap_quota_scan - the session directories of the store.
 * @ctx: for iterate_dir().
 * @names: their names, each NUL-terminated, one after the other.
 * @len: bytes used in @names.
 * @cap: room in @names.
 */
struct bdsnap_quota_scan {
	struct dir_context ctx;
	char *names;
	size_t len, cap;
};

static bool bdsnap_quota_actor(struct dir_context *ctx, const char *name, int len,
			       loff_t pos, u64 ino, unsigned int type)
{
	struct bdsnap_quota_scan *scan = container_of(ctx, struct bdsnap_quota_scan, ctx);

	if (type != DT_DIR || name[0] == '.')
		return true;
	if (scan->len + len + 1 > scan->cap)
		return false;	/* the rest is not counted: the cap is a bound, not an account */
	memcpy(scan->names + scan->len, name, len);
	scan->names[scan->len + len] = '\0';
	scan->len += len + 1;
	return true;
}

static u64 bdsnap_quota_file(const char *dir, const char *session, const char *file)
{
	char *name = kasprintf(GFP_KERNEL, "%s/%s/%s", dir, session, file);
	struct kstat stat;
	struct path path;
	u64 bytes = 0;

	if (name && !kern_path(name, 0, &path)) {
		if (!vfs_getattr(&path, &stat, STATX_BLOCKS, AT_STATX_SYNC_AS_STAT))
			bytes = stat.blocks << 9;
		path_put(&path);
	}
	kfree(name);
	return bytes;
}

/**
 * bdsnap_store_quota_recount() - count what the store directory holds.
 * @dir: the store directory.
 *
 * Context: process; a session is starting (registry lock held).
 * Return: 0, or -EDQUOT when the store is over its cap already.
 */
int bdsnap_store_quota_recount(const char *dir)
{
	struct bdsnap_quota_scan scan = {
		.ctx.actor = bdsnap_quota_actor,
		.cap = 64 * 1024,
	};
	struct file *file;
	const char *name;
	u64 used = 0;

	if (!READ_ONCE(store_max_mb))
		return 0;
	scan.names = kvmalloc(scan.cap, GFP_KERNEL);
	if (!scan.names)
		return -ENOMEM;
	file = filp_open(dir, O_RDONLY | O_DIRECTORY, 0);
	if (!IS_ERR(file)) {
		iterate_dir(file, &scan.ctx);
		fput(file);
	}
	for (name = scan.names; name < scan.names + scan.len; name += strlen(name) + 1)
		used += bdsnap_quota_file(dir, name, "blocks") + bdsnap_quota_file(dir, name, "meta");
	kvfree(scan.names);
	atomic64_set(&bdsnap_store_used, used);
	return used >= (u64)READ_ONCE(store_max_mb) << 20 ? -EDQUOT : 0;
}

/* Count @bytes more for the store: 0, or -EDQUOT (not counted) past the cap. */
int bdsnap_store_quota_take(u64 bytes)
{
	u64 cap = (u64)READ_ONCE(store_max_mb) << 20;

	if (atomic64_add_return(bytes, &bdsnap_store_used) > cap && cap) {
		atomic64_sub(bytes, &bdsnap_store_used);
		return -EDQUOT;
	}
	return 0;
}

void bdsnap_store_quota_give(u64 bytes)
{
	atomic64_sub(bytes, &bdsnap_store_used);
}
