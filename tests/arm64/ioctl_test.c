// SPDX-License-Identifier: GPL-2.0
/*
 * bdsnap-ioctl-test - /dev/snap with bad input, for guests without Python
 * (the arm64 guest: tests/arm64/). The same cases as
 * tests/scenarios/test_badinput.py, through include/uapi/bdsnap.h only.
 *
 *   bdsnap-ioctl-test PASSWORD IMAGE
 *
 * bdsnap.ko must be loaded with PASSWORD; IMAGE is an existing regular file
 * (activated and deactivated again here). One line per check, "ok ..." or
 * "FAIL ..."; exit status 0 only if every check passed. Nothing is left
 * activated, whatever happens.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uapi/bdsnap.h>

static int failures, checks;
static const char *password, *image;

static void report(int ok, const char *fmt, ...)
{
	va_list ap;

	checks++;
	if (!ok)
		failures++;
	printf("%s ", ok ? "ok  " : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static int ctl_fd(void)
{
	int fd = open("/dev/" BDSNAP_CTL_NAME, O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		perror("open /dev/" BDSNAP_CTL_NAME);
		exit(2);
	}
	return fd;
}

/* 0 on success, else the errno of the ioctl. */
static int do_ioctl(unsigned long cmd, void *arg)
{
	int fd = ctl_fd(), ret;

	ret = ioctl(fd, cmd, arg) ? errno : 0;
	close(fd);
	return ret;
}

static void expect(const char *what, int want, int got)
{
	report(got == want, "%-46s want %-6s got %s", what, want ? strerrorname_np(want) : "0",
	       got ? strerrorname_np(got) : "0");
}

static struct bdsnap_activate *req(const char *path, const char *pw)
{
	static struct bdsnap_activate a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	if (path)
		snprintf(a.path, sizeof(a.path), "%s", path);
	if (pw)
		snprintf(a.password, sizeof(a.password), "%s", pw);
	return &a;
}

static void test_version(void)
{
	struct bdsnap_version v = { .size = sizeof(v) };
	int rc = do_ioctl(BDSNAP_IOC_VERSION, &v);

	expect("VERSION", 0, rc);
	if (rc)
		return;
	printf("     module %u.%u.%u store format %u block size %u features 0x%x\n",
	       v.major, v.minor, v.patch, v.store_format, v.block_size, v.features);
	report(v.major == BDSNAP_VERSION_MAJOR && v.minor == BDSNAP_VERSION_MINOR,
	       "VERSION matches the header (%u.%u)", BDSNAP_VERSION_MAJOR, BDSNAP_VERSION_MINOR);
	report(v.store_format == BDSNAP_STORE_VERSION && v.block_size == BDSNAP_BLOCK_SIZE,
	       "VERSION store format %u, block size %u", BDSNAP_STORE_VERSION, BDSNAP_BLOCK_SIZE);
	report((v.features & (BDSNAP_FEAT_TRACKER_BIO | BDSNAP_FEAT_TRACKER_VFS)) ==
	       (BDSNAP_FEAT_TRACKER_BIO | BDSNAP_FEAT_TRACKER_VFS), "VERSION: both trackers");
#ifndef __x86_64__
	report(!(v.features & BDSNAP_FEAT_SYSCALLS), "VERSION: no syscalls off x86-64");
#endif
}

static int list_count(void)
{
	struct bdsnap_dev_info info[4];
	struct bdsnap_list l = {
		.size = sizeof(l), .capacity = 4, .entry_size = sizeof(info[0]),
		.entries = (unsigned long)info,
	};

	return do_ioctl(BDSNAP_IOC_LIST, &l) ? -1 : (int)l.count;
}

/* Run fn in a child that dropped root; the child's exit status is the errno. */
static int as_nobody(unsigned long cmd, struct bdsnap_activate *a)
{
	int fd = ctl_fd(), status;
	pid_t pid = fork();

	if (pid == 0) {
		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(255);
		_exit(ioctl(fd, cmd, a) ? errno : 0);
	}
	close(fd);
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

int main(int argc, char **argv)
{
	struct bdsnap_activate *a;
	struct bdsnap_list l;
	void *unmapped;
	int rc;

	if (argc != 3) {
		fprintf(stderr, "usage: %s PASSWORD IMAGE\n", argv[0]);
		return 2;
	}
	password = argv[1];
	image = argv[2];

	test_version();
	expect("ACTIVATE wrong password", EACCES, do_ioctl(BDSNAP_IOC_ACTIVATE, req(image, "wrong")));
	expect("ACTIVATE empty password", EACCES, do_ioctl(BDSNAP_IOC_ACTIVATE, req(image, "")));
	a = req(NULL, password);
	memset(a->path, 'a', sizeof(a->path));
	expect("ACTIVATE unterminated path", EINVAL, do_ioctl(BDSNAP_IOC_ACTIVATE, a));
	a = req(image, NULL);
	memset(a->password, 'p', sizeof(a->password));
	expect("ACTIVATE unterminated password", EINVAL, do_ioctl(BDSNAP_IOC_ACTIVATE, a));
	expect("ACTIVATE empty path", EINVAL, do_ioctl(BDSNAP_IOC_ACTIVATE, req("", password)));
	expect("ACTIVATE unknown path", ENOENT,
	       do_ioctl(BDSNAP_IOC_ACTIVATE, req("/nonexistent/image", password)));
	expect("ACTIVATE /dev/null (not a block device)", ENOTBLK,
	       do_ioctl(BDSNAP_IOC_ACTIVATE, req("/dev/null", password)));
	expect("ACTIVATE a directory", ENOTBLK, do_ioctl(BDSNAP_IOC_ACTIVATE, req("/tmp", password)));
	a = req(image, password);
	a->tracker = 77;
	expect("ACTIVATE unknown tracker", EINVAL, do_ioctl(BDSNAP_IOC_ACTIVATE, a));
	a = req(image, password);
	a->flags = 1U << 31;
	expect("ACTIVATE unknown flag", EINVAL, do_ioctl(BDSNAP_IOC_ACTIVATE, a));
	a = req(image, password);
	a->reserved[2] = 1;
	expect("ACTIVATE reserved field set", EINVAL, do_ioctl(BDSNAP_IOC_ACTIVATE, a));
	a = req(image, password);
	a->size = 0;
	expect("ACTIVATE size 0", EINVAL, do_ioctl(BDSNAP_IOC_ACTIVATE, a));
	a = req(image, password);
	a->tracker = BDSNAP_TRACKER_VFS;
	a->flags = BDSNAP_ACT_ORDERED;
	expect("ACTIVATE ordered vfs tracker", EINVAL, do_ioctl(BDSNAP_IOC_ACTIVATE, a));
	expect("ACTIVATE without CAP_SYS_ADMIN", EPERM,
	       as_nobody(BDSNAP_IOC_ACTIVATE, req(image, password)));
	expect("unknown ioctl number", ENOTTY, do_ioctl(BDSNAP_IOC_ACTIVATE + 0x10, req(NULL, NULL)));
	report(list_count() == 0, "nothing activated by the refused requests");

	expect("DEACTIVATE not activated", ENODEV, do_ioctl(BDSNAP_IOC_DEACTIVATE, req(image, password)));
	expect("ACTIVATE good request", 0, do_ioctl(BDSNAP_IOC_ACTIVATE, req(image, password)));
	expect("ACTIVATE twice", EEXIST, do_ioctl(BDSNAP_IOC_ACTIVATE, req(image, password)));
	report(list_count() == 1, "LIST shows one device");
	expect("DEACTIVATE wrong password", EACCES, do_ioctl(BDSNAP_IOC_DEACTIVATE, req(image, "nope")));
	a = req(NULL, password);
	memset(a->path, 'a', sizeof(a->path));
	expect("DEACTIVATE unterminated path", EINVAL, do_ioctl(BDSNAP_IOC_DEACTIVATE, a));
	expect("DEACTIVATE empty path", EINVAL, do_ioctl(BDSNAP_IOC_DEACTIVATE, req("", password)));
	/* a deleted image can still be deactivated by its path: not ENOENT */
	expect("DEACTIVATE unknown path", ENODEV,
	       do_ioctl(BDSNAP_IOC_DEACTIVATE, req("/nonexistent/image", password)));
	a = req(image, password);
	a->flags = 1;
	expect("DEACTIVATE with flags", EINVAL, do_ioctl(BDSNAP_IOC_DEACTIVATE, a));

	memset(&l, 0, sizeof(l));
	l.size = sizeof(l);
	l.capacity = 4;
	l.entry_size = sizeof(struct bdsnap_dev_info);
	expect("LIST NULL array with capacity", EINVAL, do_ioctl(BDSNAP_IOC_LIST, &l));
	l.capacity = 0;
	l.entry_size = 3;
	expect("LIST wrong entry size", EINVAL, do_ioctl(BDSNAP_IOC_LIST, &l));
	unmapped = mmap(NULL, 65536, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	l.capacity = 1;
	l.entry_size = sizeof(struct bdsnap_dev_info);
	l.entries = (unsigned long)unmapped;
	expect("LIST into an unmapped array", EFAULT, do_ioctl(BDSNAP_IOC_LIST, &l));

	rc = do_ioctl(BDSNAP_IOC_DEACTIVATE, req(image, password));
	expect("DEACTIVATE good request", 0, rc);
	report(list_count() == 0, "nothing left activated");

	printf("%d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
