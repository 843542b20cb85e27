// SPDX-License-Identifier: GPL-2.0
/* Reading the module password without it ever touching argv or the screen. */
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "password.h"

/*
 * One line, byte by byte so nothing after it is consumed from a shared pipe.
 * Return: its length, -ENAMETOOLONG, or -errno.
 */
static int read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	ssize_t r;
	char c;

	for (;;) {
		r = read(fd, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0 || c == '\n')
			break;
		if (n + 1 >= cap)
			return -ENAMETOOLONG;
		buf[n++] = c;
	}
	buf[n] = '\0';
	return n;
}

/* Echo must come back even when the user gives up with ^C. */
static int tty_fd = -1;
static struct termios tty_saved;
static const int tty_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };

static void tty_restore(int sig)
{
	if (tty_fd >= 0)
		tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
	raise(sig);	/* SA_RESETHAND: now with the default action */
}

/* Return: -1 (explained) when there is no terminal, else 0 with *@n as read_line(). */
static int prompt_tty(char *buf, size_t cap, int *n)
{
	struct sigaction sa = { .sa_handler = tty_restore, .sa_flags = SA_RESETHAND };
	struct sigaction old[sizeof(tty_signals) / sizeof(*tty_signals)];
	struct termios noecho;
	size_t i;
	int fd;

	fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || tcgetattr(fd, &tty_saved)) {
		warn("/dev/tty (use --passfile or --password-fd)");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	tty_fd = fd;
	for (i = 0; i < sizeof(old) / sizeof(*old); i++)
		sigaction(tty_signals[i], &sa, &old[i]);
	noecho = tty_saved;
	noecho.c_lflag &= ~ECHO;
	noecho.c_lflag |= ECHONL;
	tcsetattr(fd, TCSAFLUSH, &noecho);
	dprintf(fd, "bdsnap password: ");
	*n = read_line(fd, buf, cap);
	tcsetattr(fd, TCSAFLUSH, &tty_saved);
	for (i = 0; i < sizeof(old) / sizeof(*old); i++)
		sigaction(tty_signals[i], &old[i], NULL);
	tty_fd = -1;
	close(fd);
	return 0;
}

int read_password(const char *passfile, int fd, char *buf, size_t cap)
{
	char what[32];
	const char *from = what;
	struct stat st;
	int n, pfd;

	if (passfile) {
		from = passfile;
		pfd = open(passfile, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (pfd < 0 || fstat(pfd, &st)) {
			warn("%s", passfile);
			if (pfd >= 0)
				close(pfd);
			return -1;
		}
		/* Root-only in practice: whoever runs bdsnap (root) must own it. */
		if (st.st_uid != 0 && st.st_uid != geteuid()) {
			warnx("%s: owned by uid %u, not by root: chown root it", passfile,
			      (unsigned int)st.st_uid);
			close(pfd);
			return -1;
		}
		if (st.st_mode & 077) {
			warnx("%s: readable or writable by group or others (mode %04o): "
			      "chmod 600 it", passfile, (unsigned int)(st.st_mode & 07777));
			close(pfd);
			return -1;
		}
		n = read_line(pfd, buf, cap);
		close(pfd);
	} else if (fd >= 0) {
		snprintf(what, sizeof(what), "password fd %d", fd);
		n = read_line(fd, buf, cap);
	} else {
		from = "/dev/tty";
		if (prompt_tty(buf, cap, &n))
			return -1;
	}

	if (n == -ENAMETOOLONG)
		warnx("%s: password longer than %zu bytes", from, cap - 1);
	else if (n < 0)
		warnx("%s: %s", from, strerror(-n));
	else if (n == 0)
		warnx("%s: empty password", from);
	else if (strlen(buf) != (size_t)n)
		warnx("%s: password contains a NUL byte", from);
	else
		return 0;
	return -1;
}
