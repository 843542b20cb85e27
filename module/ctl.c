// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/snap: the ioctl interface, on every architecture.  Each command is a
 * small function that copies its argument and calls the subsystem; nothing
 * is copied from user space before the command is known.
 */
#define pr_fmt(fmt) KBUILD_MODNAME "-ctl: " fmt

#include <linux/module.h>
#include <linux/miscdevice.h>
#include <linux/fs.h>
#include <linux/uaccess.h>
#include <linux/slab.h>
#include <linux/capability.h>
#include "bdsnap.h"
#include "registry.h"
#include "session.h"
#include "tracker.h"

static bool bdsnap_terminated(const char *s, size_t size)
{
	return strnlen(s, size) < size;
}

/* A path must be non-empty and NUL-terminated inside its array. */
static bool bdsnap_string_ok(const char *s, size_t size)
{
	return s[0] && bdsnap_terminated(s, size);
}

/* Copy an administrator's request that starts with its own __u32 size. */
static void *bdsnap_copy_request(const void __user *arg, size_t ksize)
{
	u32 usize;
	void *req;
	int ret;

	if (!capable(CAP_SYS_ADMIN))
		return ERR_PTR(-EPERM);
	if (get_user(usize, (const u32 __user *)arg))
		return ERR_PTR(-EFAULT);
	if (usize < sizeof(u32) || usize > PAGE_SIZE * 4)
		return ERR_PTR(-EINVAL);
	req = kzalloc(ksize, GFP_KERNEL);
	if (!req)
		return ERR_PTR(-ENOMEM);
	ret = copy_struct_from_user(req, ksize, arg, usize);
	if (ret) {
		kfree_sensitive(req);
		return ERR_PTR(ret == -E2BIG ? -EINVAL : ret);
	}
	return req;
}

static bool bdsnap_zeroed(const void *p, size_t size)
{
	return !memchr_inv(p, 0, size);
}

static int bdsnap_check_tracker(u32 tracker, u32 flags)
{
	const struct bdsnap_tracker_ops *ops = bdsnap_tracker_ops(tracker);

	if (!ops || (flags & ~BDSNAP_ACT_FLAGS_ALL))
		return -EINVAL;
	if ((flags & BDSNAP_ACT_ORDERED) && !ops->can_order)
		return -EINVAL;
	/* a rollback finished after a crash needs every pre-image durable */
	if ((flags & BDSNAP_ACT_ROLLBACK) && !(flags & BDSNAP_ACT_ORDERED))
		return -EINVAL;
	if ((flags & BDSNAP_ACT_KEEP) && !(flags & BDSNAP_ACT_ROLLBACK))
		return -EINVAL;
	return 0;
}

/**
 * bdsnap_ctl_activate() - the one implementation behind ioctl and syscall.
 * @path: NUL-terminated, non-empty.
 * @password: NUL-terminated.
 * @tracker: enum bdsnap_tracker.
 * @flags: BDSNAP_ACT_*.
 *
 * Return: see BDSNAP_IOC_ACTIVATE.
 */
int bdsnap_ctl_activate(const char *path, const char *password, u32 tracker, u32 flags)
{
	int ret;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	ret = bdsnap_check_tracker(tracker, flags);
	if (ret)
		return ret;
	ret = bdsnap_auth_check(password);
	if (ret)
		return ret;
	return bdsnap_registry_add(path, tracker ?: BDSNAP_TRACKER_BIO, flags);
}

int bdsnap_ctl_deactivate(const char *path, const char *password)
{
	int ret;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	ret = bdsnap_auth_check(password);
	if (ret)
		return ret;
	return bdsnap_registry_remove(path);
}

static long bdsnap_ioctl_activate(void __user *arg, bool activate)
{
	struct bdsnap_activate *req;
	long ret = -EINVAL;

	req = bdsnap_copy_request(arg, sizeof(*req));
	if (IS_ERR(req))
		return PTR_ERR(req);
	if (!bdsnap_string_ok(req->path, sizeof(req->path)) ||
	    !bdsnap_terminated(req->password, sizeof(req->password)) ||
	    !bdsnap_zeroed(req->reserved, sizeof(req->reserved)))
		goto out;
	if (activate)
		ret = bdsnap_ctl_activate(req->path, req->password, req->tracker, req->flags);
	else if (!req->flags && !req->tracker)
		ret = bdsnap_ctl_deactivate(req->path, req->password);
out:
	kfree_sensitive(req);
	return ret;
}

static long bdsnap_ioctl_list(void __user *arg)
{
	struct bdsnap_dev_info *info = NULL;
	struct bdsnap_list req;
	u32 count, n;
	int ret;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.size < sizeof(req) || req.entry_size != sizeof(*info) ||
	    !bdsnap_zeroed(req.reserved, sizeof(req.reserved)) ||
	    (req.capacity && !req.entries))
		return -EINVAL;
	n = min_t(u32, req.capacity, 256);
	if (n) {
		info = kvcalloc(n, sizeof(*info), GFP_KERNEL);
		if (!info)
			return -ENOMEM;
	}
	ret = bdsnap_registry_list(info, n, &count);
	if (!ret && n && copy_to_user(u64_to_user_ptr(req.entries), info,
				      sizeof(*info) * min(n, count)))
		ret = -EFAULT;
	kvfree(info);
	if (!ret && put_user(count, &((struct bdsnap_list __user *)arg)->count))
		ret = -EFAULT;
	return ret;
}

static long bdsnap_ioctl_version(void __user *arg)
{
	struct bdsnap_version v = {
		.size = sizeof(v),
		.major = BDSNAP_VERSION_MAJOR,
		.minor = BDSNAP_VERSION_MINOR,
		.patch = BDSNAP_VERSION_PATCH,
		.store_format = BDSNAP_STORE_VERSION,
		.features = BDSNAP_FEAT_TRACKER_BIO | BDSNAP_FEAT_TRACKER_VFS |
			    BDSNAP_FEAT_ORDERED | BDSNAP_FEAT_SYNC_STORE | BDSNAP_FEAT_ROLLBACK,
		.block_size = BDSNAP_BLOCK_SIZE,
	};
	u32 usize;

	if (bdsnap_syscalls_installed())
		v.features |= BDSNAP_FEAT_SYSCALLS;
	if (get_user(usize, (u32 __user *)arg))
		return -EFAULT;
	if (usize < sizeof(v))
		return -EINVAL;
	return copy_to_user(arg, &v, sizeof(v)) ? -EFAULT : 0;
}

static long bdsnap_ioctl_set_password(void __user *arg)
{
	struct bdsnap_set_password *req;
	long ret = -EINVAL;

	req = bdsnap_copy_request(arg, sizeof(*req));
	if (IS_ERR(req))
		return PTR_ERR(req);
	if (bdsnap_terminated(req->old_password, sizeof(req->old_password)) &&
	    bdsnap_string_ok(req->new_password, sizeof(req->new_password)) &&
	    bdsnap_zeroed(req->reserved, sizeof(req->reserved)))
		ret = bdsnap_auth_set(req->old_password, req->new_password);
	kfree_sensitive(req);
	return ret;
}

static long bdsnap_ioctl_sync_store(void __user *arg)
{
	struct bdsnap_sync_store *req;
	long ret = -EINVAL;

	req = bdsnap_copy_request(arg, sizeof(*req));
	if (IS_ERR(req))
		return PTR_ERR(req);
	if (bdsnap_string_ok(req->session, sizeof(req->session)) &&
	    bdsnap_zeroed(req->reserved, sizeof(req->reserved)))
		ret = bdsnap_session_sync_store(req->session);
	kfree(req);
	return ret;
}

static long bdsnap_ctl_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case BDSNAP_IOC_VERSION:
		return bdsnap_ioctl_version(uarg);
	case BDSNAP_IOC_ACTIVATE:
		return bdsnap_ioctl_activate(uarg, true);
	case BDSNAP_IOC_DEACTIVATE:
		return bdsnap_ioctl_activate(uarg, false);
	case BDSNAP_IOC_LIST:
		return bdsnap_ioctl_list(uarg);
	case BDSNAP_IOC_SET_PASSWORD:
		return bdsnap_ioctl_set_password(uarg);
	case BDSNAP_IOC_SYNC_STORE:
		return bdsnap_ioctl_sync_store(uarg);
	default:
		return -ENOTTY;
	}
}

static const struct file_operations bdsnap_ctl_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = bdsnap_ctl_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice bdsnap_ctl_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = BDSNAP_CTL_NAME,
	.fops = &bdsnap_ctl_fops,
	.mode = 0600,
};

int bdsnap_ctl_init(void)
{
	return misc_register(&bdsnap_ctl_dev);
}

void bdsnap_ctl_done(void)
{
	misc_deregister(&bdsnap_ctl_dev);
}
