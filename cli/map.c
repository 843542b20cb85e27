// SPDX-License-Identifier: GPL-2.0
/*
 * bdsnap map, unmap and maps: a session's view (bdsnap_view_*, the device
 * as it was before the mount) as a read-only NBD block device.
 *
 * No network and no kernel code of ours: a socketpair, one end handed to
 * the nbd driver with its ioctls (as qemu-nbd --connect does), the other
 * served by a daemon that answers each read from the view.  The daemon is
 * two processes: the server, and its child that sits in NBD_DO_IT for as
 * long as the device is connected (that ioctl returns only at disconnect).
 * What is mapped is recorded in MAPS_DIR, one file per device, and the
 * blocks its server could not read in a second one (nbdN.damaged).
 */
#include <dirent.h>
#include <endian.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/nbd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "map.h"

#define MAPS_DIR	"/run/bdsnap/maps"
#define NBD_MAX_DEVS	1024
#define NBD_MAX_REQUEST	(32U << 20)
#define READY_TIMEOUT_MS	10000
/* damaged blocks remembered (and reported once each) per view */
#define DAMAGED_MAX	1024

/* The nbd wire format (fixed by the protocol), without the header's handle/cookie union. */
struct nbd_wire_request {
	uint32_t magic, type;
	uint64_t handle, from;
	uint32_t len;
} __attribute__((packed));

struct nbd_wire_reply {
	uint32_t magic, error;
	uint64_t handle;
} __attribute__((packed));

static int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	ssize_t n;

	while (len) {
		n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		p += n;
		len -= n;
	}
	return 0;
}

static int send_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= n;
	}
	return 0;
}

/* Where view @idx's server lists the blocks it could not read (bdsnap maps reads it). */
static void damaged_path(char *path, size_t len, int idx)
{
	snprintf(path, len, MAPS_DIR "/nbd%d.damaged", idx);
}

/* The server's side of a view: what it serves, and what it could not read. */
struct server {
	struct bdsnap_view *v;
	int idx;
	uint32_t block_size;
	uint64_t damaged[DAMAGED_MAX];
	size_t ndamaged;
};

/*
 * A request failed on a damaged record: find which of its blocks have one,
 * and say so once per block, in the system log and in MAPS_DIR/nbdN.damaged (bdsnap maps).
 * The reply is EIO all the same: NBD answers a request whole.
 */
static void report_damaged(struct server *srv, char *buf, uint64_t from, uint32_t len)
{
	uint64_t size = bdsnap_view_size(srv->v), b, at;
	char path[64];
	size_t i;
	FILE *f;

	for (b = from / srv->block_size; b * srv->block_size < from + len; b++) {
		at = b * srv->block_size;
		if (bdsnap_view_read(srv->v, buf, size - at < srv->block_size ? size - at :
				     srv->block_size, at) != -EBADMSG)
			continue;
		for (i = 0; i < srv->ndamaged && srv->damaged[i] != b; i++)
			;
		if (i < srv->ndamaged || srv->ndamaged == DAMAGED_MAX)
			continue;
		srv->damaged[srv->ndamaged++] = b;
		syslog(LOG_ERR, "/dev/nbd%d: block %" PRIu64 " cannot be read: its record in the store is damaged",
		       srv->idx, b);
		damaged_path(path, sizeof(path), srv->idx);
		f = fopen(path, "ae");
		if (f) {
			fprintf(f, "%" PRIu64 "\n", b);
			fclose(f);
		}
	}
}

/*
 * Answer the driver's requests until it disconnects: reads from the view,
 * every change refused (EPERM; the device is read-only anyway), a flush
 * trivially done.  A failed read answers EIO for that request only.
 */
static int nbd_serve(struct server *srv, int sock)
{
	struct nbd_wire_request req;
	struct nbd_wire_reply rep = { .magic = htobe32(NBD_REPLY_MAGIC) };
	char *buf = malloc(NBD_MAX_REQUEST);
	uint32_t len, error;
	uint64_t from;
	int rc;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		rc = read_full(sock, &req, sizeof(req));
		if (rc || be32toh(req.magic) != NBD_REQUEST_MAGIC)
			break;
		from = be64toh(req.from);
		len = be32toh(req.len);
		rep.handle = req.handle;
		error = 0;
		switch (be32toh(req.type) & 0xffff) {
		case NBD_CMD_READ:
			if (len > NBD_MAX_REQUEST) {
				error = EINVAL;
			} else if ((rc = bdsnap_view_read(srv->v, buf, len, from))) {
				error = EIO;
				if (rc == -EBADMSG)
					report_damaged(srv, buf, from, len);
			}
			break;
		case NBD_CMD_DISC:
			free(buf);
			return 0;
		case NBD_CMD_FLUSH:
			break;
		default:
			error = EPERM;
		}
		rep.error = htobe32(error);
		rc = send_full(sock, &rep, sizeof(rep));
		if (!rc && !error && (be32toh(req.type) & 0xffff) == NBD_CMD_READ)
			rc = send_full(sock, buf, len);
		if (rc)
			break;
	}
	free(buf);
	return rc == -EPIPE ? 0 : rc;	/* the driver closed the socket */
}

static int nbd_connect(int idx, int sock, uint64_t size)
{
	char dev[32];
	int fd, rc = 0;

	snprintf(dev, sizeof(dev), "/dev/nbd%d", idx);
	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno;
	/* 512-byte sectors: a file system of any block size mounts on it */
	if (ioctl(fd, NBD_SET_BLKSIZE, 512UL) || ioctl(fd, NBD_SET_SIZE, (unsigned long)size) ||
	    ioctl(fd, NBD_SET_FLAGS, (unsigned long)(NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY |
						    NBD_FLAG_SEND_FLUSH)) ||
	    ioctl(fd, NBD_SET_SOCK, (unsigned long)sock))
		rc = errno;
	close(sock);
	/* Returns at disconnect; whatever it says then is about the disconnect. */
	if (!rc)
		ioctl(fd, NBD_DO_IT);
	ioctl(fd, NBD_CLEAR_SOCK);
	close(fd);
	return rc;
}

/* Is /dev/nbd@idx free: not connected, not open? */
static bool nbd_free(int idx)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/sys/block/nbd%d/pid", idx);
	if (!stat(path, &st))
		return false;
	snprintf(path, sizeof(path), MAPS_DIR "/nbd%d", idx);
	return stat(path, &st) && errno == ENOENT;
}

/*
 * Connected and sized: since 6.12 the driver creates the pid attribute when
 * NBD_DO_IT starts and sets the capacity only after it, and a read between
 * the two finds an empty device.
 */
static bool nbd_connected(int idx)
{
	char path[64], size[32];
	FILE *f;
	bool sized;

	snprintf(path, sizeof(path), "/sys/block/nbd%d/pid", idx);
	if (access(path, F_OK))
		return false;
	snprintf(path, sizeof(path), "/sys/block/nbd%d/size", idx);
	f = fopen(path, "re");
	if (!f)
		return false;
	sized = fgets(size, sizeof(size), f) && strtoull(size, NULL, 10) > 0;
	fclose(f);
	return sized;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, ms % 1000 * 1000000L };

	nanosleep(&ts, NULL);
}

/* The nbd driver, loaded if it is not. */
static int nbd_ready(const char **refused)
{
	int status;
	pid_t pid;

	if (!access("/sys/block/nbd0", F_OK))
		return 0;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (!pid) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		execlp("modprobe", "modprobe", "nbd", (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	if (access("/sys/block/nbd0", F_OK)) {
		*refused = "the nbd driver is missing (modprobe nbd failed)";
		return -ENODEV;
	}
	return 0;
}

/* The daemon: serve @v on @sock while its child holds /dev/nbd@idx. */
static void __attribute__((noreturn)) daemon_run(struct bdsnap_view *v, int idx,
						 uint32_t block_size, int sock[2])
{
	struct server srv = { .v = v, .idx = idx, .block_size = block_size };
	char state[64];
	int status, null;
	pid_t child;

	/* a damaged list left by a server that was killed is not this one's */
	damaged_path(state, sizeof(state), idx);
	unlink(state);

	setsid();
	signal(SIGPIPE, SIG_IGN);
	null = open("/dev/null", O_RDWR);
	dup2(null, STDIN_FILENO);
	dup2(null, STDOUT_FILENO);
	dup2(null, STDERR_FILENO);
	child = fork();
	if (child < 0)
		_exit(errno);
	if (!child) {
		close(sock[0]);
		_exit(nbd_connect(idx, sock[1], bdsnap_view_size(v)));
	}
	close(sock[1]);
	openlog("bdsnap", LOG_PID, LOG_DAEMON);
	nbd_serve(&srv, sock[0]);
	close(sock[0]);
	waitpid(child, &status, 0);
	damaged_path(state, sizeof(state), idx);
	unlink(state);
	snprintf(state, sizeof(state), MAPS_DIR "/nbd%d", idx);
	unlink(state);
	_exit(WIFEXITED(status) ? WEXITSTATUS(status) : EIO);
}

static int state_write(int idx, const char *session, const char *source, pid_t pid)
{
	char path[64];
	FILE *f;

	snprintf(path, sizeof(path), MAPS_DIR "/nbd%d", idx);
	f = fopen(path, "we");
	if (!f)
		return -errno;
	fprintf(f, "session=%s\nsource=%s\npid=%d\n", session, source, (int)pid);
	return fclose(f) ? -errno : 0;
}

/* Wait until /dev/nbd@idx is connected, or the daemon gave up. */
static int wait_connected(int idx, pid_t daemon)
{
	int status, waited;

	for (waited = 0; waited < READY_TIMEOUT_MS; waited += 20) {
		if (nbd_connected(idx))
			return 0;
		if (waitpid(daemon, &status, WNOHANG) == daemon)
			return -(WIFEXITED(status) && WEXITSTATUS(status) ? WEXITSTATUS(status) : EIO);
		sleep_ms(20);
	}
	kill(daemon, SIGTERM);
	return -ETIMEDOUT;
}

int map_attach(struct bdsnap_view *v, const struct bdsnap_session_info *session,
	       const char *source, char *dev, size_t devlen, const char **refused)
{
	int idx, lock, sock[2], rc;
	pid_t daemon;

	rc = nbd_ready(refused);
	if (rc)
		return rc;
	if (mkdir("/run/bdsnap", 0755) && errno != EEXIST)
		return -errno;
	if (mkdir(MAPS_DIR, 0755) && errno != EEXIST)
		return -errno;
	/* Two maps at once must not pick the same device. */
	lock = open(MAPS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (lock < 0 || flock(lock, LOCK_EX))
		return -errno;
	for (idx = 0; idx < NBD_MAX_DEVS; idx++) {
		char path[64];

		snprintf(path, sizeof(path), "/sys/block/nbd%d", idx);
		if (access(path, F_OK)) {
			idx = NBD_MAX_DEVS;
			break;
		}
		if (nbd_free(idx))
			break;
	}
	if (idx == NBD_MAX_DEVS) {
		close(lock);
		*refused = "every NBD device is in use (modprobe nbd nbds_max=N for more)";
		return -EBUSY;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sock)) {
		rc = -errno;
		goto out;
	}
	fflush(NULL);
	daemon = fork();
	if (daemon < 0) {
		rc = -errno;
		close(sock[0]);
		close(sock[1]);
		goto out;
	}
	if (!daemon) {
		close(lock);	/* flock() is per open file: the daemon must not hold it */
		daemon_run(v, idx, session->block_size, sock);
	}
	close(sock[0]);
	close(sock[1]);
	snprintf(dev, devlen, "/dev/nbd%d", idx);
	rc = wait_connected(idx, daemon);
	if (!rc)
		rc = state_write(idx, session->dir, source, daemon);
out:
	close(lock);
	return rc;
}

/* A value of a state file: "key=value" lines. */
static bool state_get(const char *text, const char *key, char *out, size_t len)
{
	size_t k = strlen(key);
	const char *p, *e;

	for (p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (strncmp(p, key, k) || p[k] != '=')
			continue;
		p += k + 1;
		e = strchrnul(p, '\n');
		snprintf(out, len, "%.*s", (int)(e - p), p);
		return true;
	}
	return false;
}

static int state_read(const char *name, char *text, size_t len)
{
	char path[300];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), MAPS_DIR "/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, text, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	text[n] = '\0';
	return 0;
}

int map_detach(const char *arg)
{
	const char *base = strrchr(arg, '/') ? strrchr(arg, '/') + 1 : arg;
	char text[4200], pid_s[16], dev[300];
	int fd, waited;
	pid_t pid;

	if (strncmp(base, "nbd", 3) || state_read(base, text, sizeof(text)) ||
	    !state_get(text, "pid", pid_s, sizeof(pid_s))) {
		warnx("%s: not a view mapped by bdsnap map (see bdsnap maps)", arg);
		return EXIT_ERROR;
	}
	snprintf(dev, sizeof(dev), "/dev/%s", base);
	/* O_EXCL fails while the view is mounted: unmapping would pull it away. */
	fd = open(dev, O_RDONLY | O_EXCL | O_CLOEXEC);
	if (fd < 0 && errno == EBUSY) {
		warnx("%s: refused: mounted or in use; unmount it first", dev);
		return EXIT_REFUSED;
	}
	if (fd < 0 || ioctl(fd, NBD_DISCONNECT)) {
		warn("%s: disconnect", dev);
		if (fd >= 0)
			close(fd);
		return EXIT_ERROR;
	}
	close(fd);
	pid = atoi(pid_s);
	for (waited = 0; waited < READY_TIMEOUT_MS && !kill(pid, 0); waited += 20)
		sleep_ms(20);
	if (!kill(pid, 0)) {
		warnx("%s: its server (pid %d) did not stop", dev, (int)pid);
		return EXIT_ERROR;
	}
	return EXIT_SUCCESS;
}

int cmd_unmap(const struct args *a, const char *name)
{
	int ret = map_detach(a->pos[0]);

	(void)name;
	if (!ret)
		printf("unmapped %s\n", a->pos[0]);
	return ret;
}

/* The file system on @dev, and how a view of it mounts without writing. */
static int view_fs(const char *dev, const char **type, const char **opts)
{
	unsigned char sb[2048];
	int fd, rc;

	fd = open(dev, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = pread(fd, sb, sizeof(sb), 0) == (ssize_t)sizeof(sb) ? 0 : -EIO;
	close(fd);
	if (rc)
		return rc;
	if (!memcmp(sb, "XFSB", 4)) {
		/* no log recovery (a write); the original, mounted, has the same UUID */
		*type = "xfs";
		*opts = "norecovery,nouuid";
	} else if (sb[1080] == 0x53 && sb[1081] == 0xef) {
		*type = "ext4";		/* mounts ext2 and ext3 too */
		*opts = "noload";	/* no journal replay: it would write */
	} else {
		return -EMEDIUMTYPE;
	}
	return 0;
}

int map_mount(const char *dev, const char *dir, const char **refused)
{
	const char *type, *opts;
	int rc;

	rc = view_fs(dev, &type, &opts);
	if (rc == -EMEDIUMTYPE)
		*refused = "no ext2/3/4 or XFS file system on it (bdsnap map, then mount it yourself)";
	if (rc)
		return rc;
	return mount(dev, dir, type, MS_RDONLY, opts) ? -errno : 0;
}

/* The source of the mount at @dir (its last one), from mountinfo. */
static int mount_source(const char *dir, char *src, size_t len)
{
	char line[8192], point[4096], source[4096];
	int rc = -EINVAL;
	FILE *f;

	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char *sep = strstr(line, " - ");

		/* fields: id parent maj:min root point ... - type source options */
		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1 ||
		    sscanf(sep + 3, "%*s %4095s", source) != 1 || strcmp(point, dir))
			continue;
		snprintf(src, len, "%s", source);
		rc = 0;
	}
	fclose(f);
	return rc;
}

int cmd_umount(const struct args *a, const char *name)
{
	char dir[4096], dev[4096], text[4200];
	int ret;

	(void)name;
	if (!realpath(a->pos[0], dir))
		err(EXIT_ERROR, "%s", a->pos[0]);
	if (mount_source(dir, dev, sizeof(dev)) || strncmp(dev, "/dev/nbd", 8) ||
	    state_read(dev + 5, text, sizeof(text))) {
		warnx("%s: not a view mounted by bdsnap mount", dir);
		return EXIT_ERROR;
	}
	if (umount(dir))
		err(EXIT_ERROR, "%s", dir);
	ret = map_detach(dev);
	if (!ret)
		printf("unmounted %s, unmapped %s\n", dir, dev);
	return ret;
}

enum { M_DEVICE, M_SESSION, M_SOURCE, M_PID, M_DAMAGED };
static const struct out_col map_cols[] = {
	[M_DEVICE] = { "DEVICE", OUT_STR, 0, "the view's NBD device" },
	[M_SESSION] = { "SESSION", OUT_STR, 0, "the session directory it shows the device before" },
	[M_SOURCE] = { "SOURCE", OUT_STR, 0, "the device it reads the blocks no session saved from" },
	[M_PID] = { "PID", OUT_NUM, 0, "its server process" },
	[M_DAMAGED] = { "DAMAGED", OUT_STR, 0,
			"blocks it could not read (damaged records in the store), comma-separated" },
};

/* The damaged blocks of view @name as "b1,b2,...", or "" if none (@len > 0). */
static void damaged_list(const char *name, char *out, size_t len)
{
	char path[300], line[32];
	size_t used = 0;
	FILE *f;

	out[0] = '\0';
	snprintf(path, sizeof(path), MAPS_DIR "/%s.damaged", name);
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f) && used < len) {
		line[strcspn(line, "\n")] = '\0';
		used += snprintf(out + used, len - used, "%s%s", used ? "," : "", line);
	}
	if (f)
		fclose(f);
}

void maps_help(FILE *f)
{
	out_columns_help(f, map_cols, ARRAY_SIZE(map_cols));
}

int cmd_maps(const struct args *a, const char *name)
{
	char text[4200], val[4096], dev[300];
	struct out_table *t;
	struct dirent *d;
	DIR *dir;

	(void)name;
	t = out_table_new(&a->fmt, "maps", map_cols, ARRAY_SIZE(map_cols),
			  "DEVICE,SESSION,SOURCE,DAMAGED", false, true);
	dir = opendir(MAPS_DIR);
	while (dir && (d = readdir(dir))) {
		if (strncmp(d->d_name, "nbd", 3) || strchr(d->d_name, '.') ||
		    state_read(d->d_name, text, sizeof(text)))
			continue;
		out_row(t);
		snprintf(dev, sizeof(dev), "/dev/%s", d->d_name);
		out_str(t, M_DEVICE, dev);
		out_str(t, M_SESSION, state_get(text, "session", val, sizeof(val)) ? val : NULL);
		out_str(t, M_SOURCE, state_get(text, "source", val, sizeof(val)) ? val : NULL);
		if (state_get(text, "pid", val, sizeof(val)))
			out_u64(t, M_PID, strtoull(val, NULL, 10));
		damaged_list(d->d_name, val, sizeof(val));
		out_str(t, M_DAMAGED, val);
	}
	if (dir)
		closedir(dir);
	out_print(&t, 1);
	return EXIT_SUCCESS;
}
