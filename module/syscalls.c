// SPDX-License-Identifier: GPL-2.0
/*
 * activate_snapshot() and deactivate_snapshot(): the system call front-end
 * of bdsnap_ctl_activate() and bdsnap_ctl_deactivate(), next to the /dev/snap
 * ioctls of ctl.c.  One implementation, two front-ends.
 *
 *	long activate_snapshot(const char __user *dev, const char __user *password);
 *	long deactivate_snapshot(const char __user *dev, const char __user *password);
 *
 * x86-64 only, and only when usctm.ko is loaded before bdsnap: at load,
 * bdsnap binds usctm with symbol_get() and takes two free system call numbers
 * from it; they are published read-only as the parameters sys_activate_nr
 * and sys_deactivate_nr (/sys/module/bdsnap/parameters/), -1 while not
 * installed.  At unload the numbers are unpublished and uninstalled (usctm
 * waits for running calls), then usctm is released.
 *
 * usctm loaded after bdsnap is not picked up: the numbers stay -1 and the
 * ioctls keep working; reload bdsnap to get the system calls.  Binding only
 * at load keeps the lifetime simple: usctm is pinned from our init to our
 * exit and can never come or go under a running call.
 *
 * Errors are those of BDSNAP_IOC_ACTIVATE/DEACTIVATE for the same input, in
 * the same order: -EPERM without CAP_SYS_ADMIN, before anything is read;
 * -EFAULT when a string cannot be read (the ioctl copies its whole request
 * before looking at it); -EINVAL for an empty path, and for a path or
 * password with no NUL within BDSNAP_PATH_MAX / BDSNAP_PASSWORD_MAX bytes
 * (the ioctl's answer for an unterminated field, so not -ENAMETOOLONG); then
 * whatever the shared implementation returns (-EACCES wrong password, -ENOENT,
 * -ENOTBLK, -EEXIST, ...).  activate_snapshot() uses the default tracker
 * and no flags: other trackers and flags are ioctl-only.
 */
#define pr_fmt(fmt) KBUILD_MODNAME "-syscalls: " fmt

#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/capability.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include "bdsnap.h"

#ifdef CONFIG_X86_64
#include <asm/ptrace.h>
#include "usctm.h"
#endif

/* The installed numbers, -1 while not installed; written by init/exit only. */
static int bdsnap_sys_activate_nr = -1;
static int bdsnap_sys_deactivate_nr = -1;

bool bdsnap_syscalls_installed(void)
{
	return READ_ONCE(bdsnap_sys_activate_nr) >= 0;
}

/* The numbers report state: setting them (at insmod) fails. */
static int bdsnap_sys_nr_set(const char *val, const struct kernel_param *kp)
{
	return -EPERM;
}

static int bdsnap_sys_nr_get(char *buf, const struct kernel_param *kp)
{
	return scnprintf(buf, PAGE_SIZE, "%d\n", READ_ONCE(*(int *)kp->arg));
}

static const struct kernel_param_ops bdsnap_sys_nr_ops = {
	.set = bdsnap_sys_nr_set,
	.get = bdsnap_sys_nr_get,
};

/* System call number of activate_snapshot(), or -1. */
module_param_cb(sys_activate_nr, &bdsnap_sys_nr_ops, &bdsnap_sys_activate_nr, 0444);
MODULE_PARM_DESC(sys_activate_nr,
		 "System call number of activate_snapshot(), -1 if not installed: load usctm before bdsnap (read-only)");

/* System call number of deactivate_snapshot(), or -1. */
module_param_cb(sys_deactivate_nr, &bdsnap_sys_nr_ops, &bdsnap_sys_deactivate_nr, 0444);
MODULE_PARM_DESC(sys_deactivate_nr,
		 "System call number of deactivate_snapshot(), -1 if not installed: load usctm before bdsnap (read-only)");

#ifdef CONFIG_X86_64

/* Bound at init when usctm is loaded; NULL otherwise. */
static int (*bdsnap_usctm_install)(usctm_handler_t handler);
static int (*bdsnap_usctm_uninstall)(int nr);

/* What we installed, kept apart from the published copies. */
static int bdsnap_sys_nr[2];

/*
 * Both calls: (const char __user *dev, const char __user *password) in
 * %rdi, %rsi.  The password buffer is wiped whatever happens.
 */
static long bdsnap_sys_call(const struct pt_regs *regs, bool activate)
{
	const char __user *udev = (const char __user *)regs->di;
	const char __user *upassword = (const char __user *)regs->si;
	char *path, *password;
	long path_len, password_len;
	long ret;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;

	ret = -ENOMEM;
	path = kmalloc(BDSNAP_PATH_MAX, GFP_KERNEL);
	if (!path)
		return ret;
	password = kmalloc(BDSNAP_PASSWORD_MAX, GFP_KERNEL);
	if (!password)
		goto out_path;

	/* Returns the length, the size if no NUL fits in it, or -EFAULT. */
	path_len = strncpy_from_user(path, udev, BDSNAP_PATH_MAX);
	if (path_len < 0) {
		ret = path_len;
		goto out_password;
	}
	password_len = strncpy_from_user(password, upassword, BDSNAP_PASSWORD_MAX);
	if (password_len < 0) {
		ret = password_len;
		goto out_password;
	}

	ret = -EINVAL;
	if (!path_len || path_len >= BDSNAP_PATH_MAX ||
	    password_len >= BDSNAP_PASSWORD_MAX)
		goto out_password;

	if (activate)
		ret = bdsnap_ctl_activate(path, password, BDSNAP_TRACKER_DEFAULT, 0);
	else
		ret = bdsnap_ctl_deactivate(path, password);

out_password:
	kfree_sensitive(password);
out_path:
	kfree(path);
	return ret;
}

static long bdsnap_sys_activate(const struct pt_regs *regs)
{
	return bdsnap_sys_call(regs, true);
}

static long bdsnap_sys_deactivate(const struct pt_regs *regs)
{
	return bdsnap_sys_call(regs, false);
}

static void bdsnap_usctm_put(void)
{
	if (bdsnap_usctm_uninstall)
		symbol_put(usctm_uninstall);
	if (bdsnap_usctm_install)
		symbol_put(usctm_install);
	bdsnap_usctm_uninstall = NULL;
	bdsnap_usctm_install = NULL;
}

/**
 * bdsnap_syscalls_init() - install the system calls if usctm is loaded.
 *
 * Optional: without usctm, or without two free numbers, bdsnap works through
 * the ioctls only and the numbers read -1, so this cannot fail.  Call it once
 * the shared implementation is ready: a call may arrive before it returns.
 */
void bdsnap_syscalls_init(void)
{
	int nr;

	bdsnap_usctm_install = symbol_get(usctm_install);
	bdsnap_usctm_uninstall = symbol_get(usctm_uninstall);
	if (!bdsnap_usctm_install || !bdsnap_usctm_uninstall) {
		pr_info("usctm not loaded: no system calls, ioctl only\n");
		goto fail_put;
	}

	nr = bdsnap_usctm_install(bdsnap_sys_activate);
	if (nr < 0)
		goto fail_install;
	bdsnap_sys_nr[0] = nr;
	nr = bdsnap_usctm_install(bdsnap_sys_deactivate);
	if (nr < 0)
		goto fail_uninstall;
	bdsnap_sys_nr[1] = nr;

	WRITE_ONCE(bdsnap_sys_activate_nr, bdsnap_sys_nr[0]);
	WRITE_ONCE(bdsnap_sys_deactivate_nr, bdsnap_sys_nr[1]);
	pr_info("activate_snapshot() is system call %d, deactivate_snapshot() %d\n",
		bdsnap_sys_nr[0], bdsnap_sys_nr[1]);
	return;

fail_uninstall:
	bdsnap_usctm_uninstall(bdsnap_sys_nr[0]);
fail_install:
	pr_notice("usctm_install: %d: no system calls, ioctl only\n", nr);
fail_put:
	bdsnap_usctm_put();
}

/**
 * bdsnap_syscalls_done() - remove the system calls and release usctm.
 *
 * Returns once no call is running, so the module may go away.
 */
void bdsnap_syscalls_done(void)
{
	if (!bdsnap_usctm_uninstall)
		return;
	WRITE_ONCE(bdsnap_sys_activate_nr, -1);
	WRITE_ONCE(bdsnap_sys_deactivate_nr, -1);
	bdsnap_usctm_uninstall(bdsnap_sys_nr[1]);
	bdsnap_usctm_uninstall(bdsnap_sys_nr[0]);
	bdsnap_usctm_put();
}

#else /* !CONFIG_X86_64: usctm does not exist, the ioctls cover everything */

void bdsnap_syscalls_init(void)
{
}

void bdsnap_syscalls_done(void)
{
}

#endif /* CONFIG_X86_64 */
