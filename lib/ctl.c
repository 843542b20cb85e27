// SPDX-License-Identifier: LGPL-2.1-or-later
/* Control requests to the bdsnap module: /dev/snap ioctls and the syscalls. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "internal.h"

#define CTL_PATH	"/dev/" BDSNAP_CTL_NAME
#define SYSFS_PARAMS	"/sys/module/bdsnap/parameters/"

static int ctl_ioctl(unsigned long req, void *arg)
{
	int fd, rc = 0;

	fd = open(CTL_PATH, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, req, arg) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* A published syscall number, or -1 when usctm is not loaded. */
static long sysfs_nr(const char *param)
{
	char buf[32], *end;
	long nr;

	if (read_small(param, buf, sizeof(buf)) <= 0)
		return -1;
	errno = 0;
	nr = strtol(buf, &end, 10);
	if (errno || end == buf || (*end && *end != '\n'))
		return -1;
	return nr;
}

int bdsnap_resolve_via(enum bdsnap_via via, unsigned int tracker, unsigned int flags)
{
	int published = sysfs_nr(SYSFS_PARAMS "sys_activate_nr") >= 0 &&
			sysfs_nr(SYSFS_PARAMS "sys_deactivate_nr") >= 0;
	int needs_ioctl = tracker != BDSNAP_TRACKER_DEFAULT || flags != 0;

	switch (via) {
	case BDSNAP_VIA_SYSCALL:
		if (!published)
			return -ENOSYS;
		return needs_ioctl ? -EOPNOTSUPP : BDSNAP_VIA_SYSCALL;
	case BDSNAP_VIA_AUTO:
		if (published && !needs_ioctl)
			return BDSNAP_VIA_SYSCALL;
		/* fall through */
	case BDSNAP_VIA_IOCTL:
		return access(CTL_PATH, F_OK) ? -errno : BDSNAP_VIA_IOCTL;
	}
	return -EINVAL;
}

/* Shared by activate and deactivate: they differ only in request and fields. */
static int control(unsigned long req, const char *param, const char *dev,
		   const char *password, unsigned int tracker, unsigned int flags,
		   enum bdsnap_via via)
{
	struct bdsnap_activate a;
	char *abs;
	int rc;

	if (!dev || !password || !*dev)
		return -EINVAL;
	if (!*password)
		return -EINVAL;
	if (strlen(password) >= sizeof(a.password))
		return -ENAMETOOLONG;
	rc = bdsnap_resolve_via(via, tracker, flags);
	if (rc < 0)
		return rc;
	via = rc;

	/* The module stores the path in meta as the default restore target. */
	abs = realpath(dev, NULL);
	if (!abs)
		return -errno;
	if (strlen(abs) >= sizeof(a.path)) {
		free(abs);
		return -ENAMETOOLONG;
	}

	if (via == BDSNAP_VIA_SYSCALL) {
		rc = syscall(sysfs_nr(param), abs, password) < 0 ? -errno : 0;
	} else {
		memset(&a, 0, sizeof(a));
		a.size = sizeof(a);
		a.tracker = tracker;
		a.flags = flags;
		strcpy(a.path, abs);
		strcpy(a.password, password);
		rc = ctl_ioctl(req, &a);
		explicit_bzero(&a, sizeof(a));
	}
	free(abs);
	return rc;
}

int bdsnap_activate(const char *dev, const char *password, unsigned int tracker,
		    unsigned int flags, enum bdsnap_via via)
{
	return control(BDSNAP_IOC_ACTIVATE, SYSFS_PARAMS "sys_activate_nr", dev, password,
		       tracker, flags, via);
}

int bdsnap_deactivate(const char *dev, const char *password, enum bdsnap_via via)
{
	return control(BDSNAP_IOC_DEACTIVATE, SYSFS_PARAMS "sys_deactivate_nr", dev, password,
		       0, 0, via);
}

int bdsnap_list(struct bdsnap_dev_info **out, size_t *count)
{
	struct bdsnap_list req;
	struct bdsnap_dev_info *v = NULL, *nv;
	size_t cap = 8;
	int rc, tries;

	/* Devices can be activated between calls: grow and ask again. */
	for (tries = 0; tries < 8; tries++) {
		nv = reallocarray(v, cap, sizeof(*v));
		if (!nv) {
			free(v);
			return -ENOMEM;
		}
		v = nv;
		memset(v, 0, cap * sizeof(*v));
		memset(&req, 0, sizeof(req));
		req.size = sizeof(req);
		req.capacity = cap;
		req.entry_size = sizeof(*v);
		req.entries = (uintptr_t)v;
		rc = ctl_ioctl(BDSNAP_IOC_LIST, &req);
		if (rc < 0) {
			free(v);
			return rc;
		}
		if (req.count <= cap) {
			*out = v;
			*count = req.count;
			return 0;
		}
		cap = req.count + 4;
	}
	free(v);
	return -EAGAIN;
}

int bdsnap_version(struct bdsnap_version *ver)
{
	memset(ver, 0, sizeof(*ver));
	ver->size = sizeof(*ver);
	return ctl_ioctl(BDSNAP_IOC_VERSION, ver);
}

int store_sync(const char *session)
{
	struct bdsnap_sync_store req = { .size = sizeof(req) };

	if (strlen(session) >= sizeof(req.session))
		return -ENAMETOOLONG;
	strcpy(req.session, session);
	return ctl_ioctl(BDSNAP_IOC_SYNC_STORE, &req);
}
