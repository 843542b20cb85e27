// SPDX-License-Identifier: GPL-2.0
/*
 * bdsnap: copy-on-write snapshots of block devices, one session per mount
 * cycle, restorable bit-exact to the pre-mount state.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/moduleparam.h>
#include "bdsnap.h"
#include "store.h"
#include "registry.h"
#include "tracker.h"

static char *password;
/* perm 0: never readable back through sysfs; wiped after init */
module_param(password, charp, 0);
MODULE_PARM_DESC(password, "Password for activate/deactivate (required; kept only as a salted SHA-256)");

static int __init bdsnap_init(void)
{
	int ret;

	ret = bdsnap_auth_init(password);
	if (ret)
		return ret;
	ret = bdsnap_store_init();
	if (ret)
		goto fail_auth;
	ret = bdsnap_tracker_bio_init();
	if (ret)
		goto fail_store;
	ret = bdsnap_tracker_vfs_init();
	if (ret)
		goto fail_bio;
	ret = bdsnap_mount_init();
	if (ret)
		goto fail_vfs;
	ret = bdsnap_ctl_init();
	if (ret)
		goto fail_mount;
	bdsnap_syscalls_init();	/* optional, cannot fail; calls may start now */
	pr_info("version %d.%d.%d loaded, store %s\n", BDSNAP_VERSION_MAJOR,
		BDSNAP_VERSION_MINOR, BDSNAP_VERSION_PATCH, bdsnap_store_dir);
	return 0;

fail_mount:
	bdsnap_mount_done();
fail_vfs:
	bdsnap_tracker_vfs_done();
fail_bio:
	bdsnap_tracker_bio_done();
fail_store:
	bdsnap_store_done();
fail_auth:
	bdsnap_auth_done();
	return ret;
}

static void __exit bdsnap_exit(void)
{
	bdsnap_syscalls_done();
	bdsnap_ctl_done();
	bdsnap_mount_done();
	bdsnap_tracker_vfs_done();
	bdsnap_tracker_bio_done();
	bdsnap_store_done();
	bdsnap_registry_done();
	bdsnap_auth_done();
	pr_info("unloaded\n");
}

module_init(bdsnap_init);
module_exit(bdsnap_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Copy-on-write block device snapshots per mount cycle");
MODULE_VERSION(__stringify(BDSNAP_VERSION_MAJOR) "." __stringify(BDSNAP_VERSION_MINOR) "."
	       __stringify(BDSNAP_VERSION_PATCH));
