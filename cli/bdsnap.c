// SPDX-License-Identifier: GPL-2.0
/*
 * bdsnap - activate block-device snapshots, inspect and restore sessions.
 *
 * Exit status (the man page repeats this):
 *   0  success
 *   1  error: I/O, module not loaded, permission, bad password file, ...
 *   2  usage error
 *   3  verification failed: the session store is corrupt
 *   4  refused: target mounted, in use or too small; session open or
 *      incomplete without --force (nothing was written)
 */
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "bdsnap.h"
#include "password.h"

enum { EXIT_ERROR = 1, EXIT_USAGE = 2, EXIT_CORRUPT = 3, EXIT_REFUSED = 4 };

#define DEFAULT_STORE	"/snapshot"

/* Command options are long only; each command lists the ones it takes. */
enum opt {
	OPT_TRACKER = 256, OPT_ORDERED, OPT_VIA, OPT_PASSFILE, OPT_PASSFD, OPT_STORE,
	OPT_JSON, OPT_TO, OPT_DRY_RUN, OPT_FORCE,
};
#define O(x)	(1U << ((x) - OPT_TRACKER))

static const struct option global_opts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "tracker", required_argument, NULL, OPT_TRACKER },
	{ "ordered", no_argument, NULL, OPT_ORDERED },
	{ "via", required_argument, NULL, OPT_VIA },
	{ "passfile", required_argument, NULL, OPT_PASSFILE },
	{ "password-fd", required_argument, NULL, OPT_PASSFD },
	{ "store", required_argument, NULL, OPT_STORE },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "to", required_argument, NULL, OPT_TO },
	{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
	{ "force", no_argument, NULL, OPT_FORCE },
	{ NULL, 0, NULL, 0 },
};

/* Indexed by enum value, so the tables double as parsers and printers. */
static const char *const tracker_names[] = { "default", "bio", "vfs" };
static const char *const via_names[] = { "auto", "ioctl", "syscall" };
static const char *const live_state_names[] = { "none", "open", "incomplete" };

struct args {
	char **pos;
	int npos;
	unsigned int tracker, flags;
	enum bdsnap_via via;
	const char *passfile, *store, *to;
	int passfd;
	bool json, dry_run, force;
};

struct command {
	const char *name;
	int (*run)(const struct args *a, const char *name);
	const char *synopsis;
	unsigned int opts;
	int min_args, max_args;
};

static const struct command commands[];

static void usage(FILE *f)
{
	const struct command *c;

	fprintf(f, "Usage: bdsnap [-h] [-V] COMMAND [ARGS]\n\nCommands:\n");
	for (c = commands; c->name; c++)
		fprintf(f, "  %s %s\n", c->name, c->synopsis);
	fprintf(f, "\nSESSION is a session directory, or its name under the store (default %s).\n"
		"Passwords are typed at /dev/tty without echo, unless --passfile or\n"
		"--password-fd is given; they are never taken from the command line.\n",
		DEFAULT_STORE);
}

static void __attribute__((noreturn, format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vwarnx(fmt, ap);
	va_end(ap);
	usage(stderr);
	exit(EXIT_USAGE);
}

static void close_stdout(void)
{
	if (fflush(stdout) || ferror(stdout) || fclose(stdout)) {
		warn("write error");
		_exit(EXIT_ERROR);
	}
}

/* The option getopt stopped at (opterr is off: we word the messages). */
static const char *offending(char **argv)
{
	static char shortopt[3] = "-?";

	if (optopt > 0 && optopt < 256) {
		shortopt[1] = optopt;
		return shortopt;
	}
	return argv[optind - 1];
}

static unsigned int pick(const char *opt, const char *val, const char *const *names, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcmp(val, names[i]))
			return i;
	usage_error("--%s: unknown value '%s'", opt, val);
}

static int parse_fd(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > INT_MAX)
		usage_error("--password-fd: not a file descriptor: '%s'", s);
	return v;
}

static void parse_args(const struct command *cmd, int argc, char **argv, struct args *a)
{
	int c, idx;

	*a = (struct args){ .store = DEFAULT_STORE, .passfd = -1 };
	opterr = 0;
	optind = 0;	/* re-initialise getopt: permute, command name is argv[0] */
	while ((c = getopt_long(argc, argv, ":h", longopts, &idx)) != -1) {
		if (c == 'h') {
			printf("Usage: bdsnap %s %s\n", cmd->name, cmd->synopsis);
			exit(EXIT_SUCCESS);
		}
		if (c == '?')
			usage_error("%s: unknown option '%s'", cmd->name, offending(argv));
		if (c == ':')
			usage_error("%s: option '%s' needs an argument", cmd->name, argv[optind - 1]);
		if (c < OPT_TRACKER || !(cmd->opts & O(c)))
			usage_error("%s: option '--%s' does not apply", cmd->name, longopts[idx].name);
		switch (c) {
		case OPT_TRACKER:
			a->tracker = pick("tracker", optarg, tracker_names + 1, 2) + 1;
			break;
		case OPT_ORDERED:
			a->flags |= BDSNAP_ACT_ORDERED;
			break;
		case OPT_VIA:
			a->via = pick("via", optarg, via_names, 3);
			break;
		case OPT_PASSFILE:
			a->passfile = optarg;
			break;
		case OPT_PASSFD:
			a->passfd = parse_fd(optarg);
			break;
		case OPT_STORE:
			a->store = optarg;
			break;
		case OPT_JSON:
			a->json = true;
			break;
		case OPT_TO:
			a->to = optarg;
			break;
		case OPT_DRY_RUN:
			a->dry_run = true;
			break;
		case OPT_FORCE:
			a->force = true;
			break;
		}
	}
	if (a->passfile && a->passfd >= 0)
		usage_error("%s: --passfile and --password-fd exclude each other", cmd->name);
	a->pos = argv + optind;
	a->npos = argc - optind;
	if (a->npos < cmd->min_args)
		usage_error("%s: missing argument", cmd->name);
	if (a->npos > cmd->max_args)
		usage_error("%s: unexpected argument '%s'", cmd->name, a->pos[cmd->max_args]);
}

/* ---- output: "key: value" lines, or JSON with --json ---- */

struct out {
	bool json;
	int depth;
	bool more[4];	/* something was already written at this depth */
};

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

/* Objects in text form are separated by a blank line. */
static void out_open(struct out *o, char bracket)
{
	if (o->more[o->depth])
		fputs(o->json ? "," : "\n", stdout);
	o->more[o->depth] = true;
	if (o->json)
		putchar(bracket);
	o->more[++o->depth] = false;
}

static void out_close(struct out *o, char bracket)
{
	o->depth--;
	if (o->json) {
		putchar(bracket);
		if (!o->depth)
			putchar('\n');
	}
}

static void out_key(struct out *o, const char *key)
{
	if (!o->json) {
		printf("%s:%*s", key, (int)(14 - strlen(key)), "");
		return;
	}
	if (o->more[o->depth])
		putchar(',');
	o->more[o->depth] = true;
	json_string(key);
	putchar(':');
}

static void out_str(struct out *o, const char *key, const char *val)
{
	out_key(o, key);
	if (!o->json)
		printf("%s\n", val ? val : "-");
	else if (val)
		json_string(val);
	else
		fputs("null", stdout);
}

static void out_u64(struct out *o, const char *key, uint64_t val)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%" PRIu64, val);
	out_key(o, key);
	if (o->json)
		fputs(val == BDSNAP_UNSET ? "null" : buf, stdout);
	else
		printf("%s\n", val == BDSNAP_UNSET ? "-" : buf);
}

static const char *name_of(const char *const *names, size_t n, unsigned int i)
{
	return i < n ? names[i] : "unknown";
}

/* ---- control commands ---- */

static const char *ctl_hint(int err)
{
	switch (err) {
	case ENOENT:	return "";
	case EACCES:	return " (wrong password)";
	case EPERM:	return " (needs CAP_SYS_ADMIN)";
	case EEXIST:	return " (already activated)";
	case ENODEV:	return " (not activated)";
	case EBUSY:	return " (a session is open: unmount the device first)";
	case ENOTBLK:	return " (neither a block device nor an image file)";
	case EXDEV:	return " (the store is on this device)";
	default:	return "";
	}
}

/* The module is unreachable: say so before anyone types a password. */
static int no_module(int err)
{
	if (err == -ENOSYS)
		warnx("syscalls: not published (usctm not loaded): use --via ioctl");
	else if (err == -EOPNOTSUPP)
		warnx("syscalls: cannot carry --tracker or --ordered: use --via ioctl");
	else
		warnx("/dev/%s: %s (is the bdsnap module loaded?)", BDSNAP_CTL_NAME, strerror(-err));
	return EXIT_ERROR;
}

static int cmd_control(const struct args *a, const char *name)
{
	bool on = !strcmp(name, "activate");
	bool typed = !a->passfile && a->passfd < 0;
	const char *dev = a->pos[0];
	char pw[BDSNAP_PASSWORD_MAX];
	int rc, via;

	/*
	 * Nobody should type a password for a module that is not there; a bad
	 * password file, though, is worth reporting whatever the module's state.
	 */
	via = bdsnap_resolve_via(a->via, a->tracker, a->flags);
	if (via < 0 && typed)
		return no_module(via);
	rc = read_password(a->passfile, a->passfd, pw, sizeof(pw));
	if (rc || via < 0) {
		explicit_bzero(pw, sizeof(pw));
		return rc ? EXIT_ERROR : no_module(via);
	}
	rc = on ? bdsnap_activate(dev, pw, a->tracker, a->flags, a->via) :
		  bdsnap_deactivate(dev, pw, a->via);
	explicit_bzero(pw, sizeof(pw));
	if (rc < 0) {
		warnx("%s %s: %s%s", name, dev, strerror(-rc), ctl_hint(-rc));
		return EXIT_ERROR;
	}
	return EXIT_SUCCESS;
}

static int cmd_status(const struct args *a, const char *name)
{
	struct out o = { .json = a->json };
	struct bdsnap_dev_info *v;
	char dev[32];
	size_t i, n;
	int rc;

	(void)name;
	rc = bdsnap_list(&v, &n);
	if (rc < 0)
		return no_module(rc);
	if (!n && !a->json)
		printf("no activated devices\n");
	if (a->json)
		out_open(&o, '[');
	for (i = 0; i < n; i++) {
		snprintf(dev, sizeof(dev), "%u:%u", major(v[i].dev), minor(v[i].dev));
		out_open(&o, '{');
		out_str(&o, "path", v[i].path);
		out_str(&o, "key", v[i].key_type == BDSNAP_KEY_FILE ? "file" : "bdev");
		out_str(&o, "dev", v[i].dev ? dev : NULL);
		out_str(&o, "tracker", name_of(tracker_names, 3, v[i].tracker));
		out_u64(&o, "ordered", !!(v[i].flags & BDSNAP_ACT_ORDERED));
		out_str(&o, "state", name_of(live_state_names, 3, v[i].session_state));
		out_str(&o, "devname", v[i].devname[0] ? v[i].devname : NULL);
		out_str(&o, "session", v[i].session[0] ? v[i].session : NULL);
		out_u64(&o, "sessions", v[i].sessions);
		out_u64(&o, "blocks_saved", v[i].blocks_saved);
		out_u64(&o, "bytes_raw", v[i].bytes_raw);
		out_u64(&o, "bytes_stored", v[i].bytes_stored);
		out_u64(&o, "queue_depth", v[i].queue_depth);
		out_u64(&o, "writes_held", v[i].writes_held);
		out_u64(&o, "errors", v[i].errors);
		out_close(&o, '}');
	}
	if (a->json)
		out_close(&o, ']');
	free(v);
	return EXIT_SUCCESS;
}

/* ---- session commands ---- */

static void out_session(struct out *o, const struct bdsnap_session_info *in)
{
	out_open(o, '{');
	out_str(o, "name", in->name);
	out_str(o, "dir", in->dir);
	out_str(o, "uuid", in->uuid);
	out_str(o, "path", in->path);
	out_str(o, "devname", in->devname);
	out_str(o, "tracker", in->tracker);
	out_u64(o, "ordered", in->ordered);
	out_str(o, "start", in->start);
	out_str(o, "end", in->end);
	out_str(o, "state", in->state);
	out_u64(o, "format", in->format);
	out_u64(o, "device_size", in->device_size);
	out_u64(o, "block_size", in->block_size);
	out_u64(o, "blocks_saved", in->blocks_saved);
	out_u64(o, "bytes_raw", in->bytes_raw);
	out_u64(o, "bytes_stored", in->bytes_stored);
	out_u64(o, "errors", in->errors);
	out_close(o, '}');
}

/* A session is named by a path, or by its directory name under the store. */
static struct bdsnap_session *open_session(const struct args *a)
{
	const char *arg = a->pos[0];
	struct bdsnap_session *s;
	char path[PATH_MAX];
	int rc;

	if (snprintf(path, sizeof(path), "%s%s%s", strchr(arg, '/') ? "" : a->store,
		     strchr(arg, '/') ? "" : "/", arg) >= (int)sizeof(path))
		errx(EXIT_ERROR, "%s: name too long", arg);
	rc = bdsnap_session_open(path, &s);
	if (rc == -ENOENT)
		errx(EXIT_ERROR, "%s: no such session (no meta file)", path);
	if (rc < 0)
		errx(EXIT_ERROR, "%s: %s", path, strerror(-rc));
	return s;
}

/* DEV matches a session by kernel name or by the path it was activated as. */
static bool session_matches(const struct bdsnap_session_info *in, const char *dev,
			    const char *real)
{
	return (in->devname && (!strcmp(in->devname, dev) ||
				(!strncmp(dev, "/dev/", 5) && !strcmp(in->devname, dev + 5)))) ||
	       (in->path && (!strcmp(in->path, dev) || (real && !strcmp(in->path, real))));
}

static int cmd_sessions(const struct args *a, const char *name)
{
	struct out o = { .json = a->json };
	const char *dev = a->npos ? a->pos[0] : NULL;
	char *real = dev ? realpath(dev, NULL) : NULL;
	struct bdsnap_session **list;
	size_t i, n;
	int rc;

	(void)name;
	rc = bdsnap_sessions_scan(a->store, &list, &n);
	if (rc < 0) {
		free(real);
		warnx("%s: %s", a->store, strerror(-rc));
		return EXIT_ERROR;
	}
	if (a->json)
		out_open(&o, '[');
	else
		printf("%-40s %-10s %-31s %s\n", "NAME", "DEVNAME", "START", "STATE");
	for (i = 0; i < n; i++) {
		const struct bdsnap_session_info *in = bdsnap_session_info(list[i]);

		if (dev && !session_matches(in, dev, real))
			continue;
		if (a->json)
			out_session(&o, in);
		else
			printf("%-40s %-10s %-31s %s\n", in->name, in->devname ? in->devname : "-",
			       in->start ? in->start : "-", in->state ? in->state : "-");
	}
	if (a->json)
		out_close(&o, ']');
	bdsnap_sessions_free(list, n);
	free(real);
	return EXIT_SUCCESS;
}

static int cmd_show(const struct args *a, const char *name)
{
	struct bdsnap_session *s = open_session(a);
	struct out o = { .json = a->json };

	(void)name;
	out_session(&o, bdsnap_session_info(s));
	bdsnap_session_close(s);
	return EXIT_SUCCESS;
}

static int corrupt(const struct bdsnap_session_info *in, const struct bdsnap_verify_report *r)
{
	warnx("%s/%s: offset %" PRIu64 ": %s", in->dir, r->bad_file, r->bad_offset, r->reason);
	return EXIT_CORRUPT;
}

static void note_torn(const struct bdsnap_session_info *in, const struct bdsnap_verify_report *r)
{
	if (r->torn_tail)
		warnx("%s/blocks: offset %" PRIu64 ": torn record at the end ignored "
		      "(crash during append)", in->dir, r->torn_offset);
	if (r->meta_torn)
		warnx("%s/meta: torn last line ignored", in->dir);
}

static int cmd_verify(const struct args *a, const char *name)
{
	struct bdsnap_session *s = open_session(a);
	const struct bdsnap_session_info *in = bdsnap_session_info(s);
	struct bdsnap_verify_report r;
	int rc, ret = EXIT_SUCCESS;

	(void)name;
	rc = bdsnap_session_verify(s, &r);
	if (rc == -EBADMSG) {
		ret = corrupt(in, &r);
	} else if (rc < 0) {
		warnx("%s: %s", in->dir, strerror(-rc));
		ret = EXIT_ERROR;
	} else {
		note_torn(in, &r);
		printf("%s: ok: %" PRIu64 " blocks (%" PRIu64 " bytes), state %s\n", in->dir,
		       r.records, r.bytes_raw, in->state);
	}
	bdsnap_session_close(s);
	return ret;
}

/* Percent of both passes (verify, write) on stderr, redrawn only on change. */
static void show_progress(void *ctx, uint64_t done, uint64_t total)
{
	int *last = ctx, pct = total ? (int)(done * 100 / total) : 100;

	if (pct != *last)
		fprintf(stderr, "\rrestoring: %3d%%", pct);
	*last = pct;
}

static int cmd_restore(const struct args *a, const char *name)
{
	struct bdsnap_session *s = open_session(a);
	const struct bdsnap_session_info *in = bdsnap_session_info(s);
	const char *target = a->to ? a->to : in->path;
	int last = -1, rc, ret = EXIT_SUCCESS;
	struct bdsnap_restore_opts opts = {
		.flags = (a->dry_run ? BDSNAP_RESTORE_DRY_RUN : 0) |
			 (a->force ? BDSNAP_RESTORE_FORCE : 0),
		.progress = isatty(STDERR_FILENO) ? show_progress : NULL,
		.ctx = &last,
	};
	struct bdsnap_restore_report r;

	(void)name;
	rc = bdsnap_session_restore(s, target, &opts, &r);
	if (last >= 0)
		fputc('\n', stderr);
	if (rc == -EBADMSG) {
		ret = corrupt(in, &r.verify);
	} else if (r.refused) {
		bool state = rc == -EINPROGRESS || rc == -ENODATA;

		warnx("%s: refused: %s%s", state ? in->dir : target, r.refused,
		      state ? "; use --force to restore anyway" : "");
		ret = EXIT_REFUSED;
	} else if (rc < 0) {
		warnx("%s: %s", target, strerror(-rc));
		ret = EXIT_ERROR;
	} else {
		note_torn(in, &r.verify);
		printf("%s %" PRIu64 " blocks (%" PRIu64 " bytes) to %s%s\n",
		       a->dry_run ? "would restore" : "restored", r.blocks, r.bytes, target,
		       a->dry_run ? " (dry run: nothing written)" : "");
	}
	/* Only a log changing under us or an I/O error can stop a restore midway. */
	if (rc < 0 && r.blocks)
		warnx("%s: partly restored: %" PRIu64 " blocks written", target, r.blocks);
	bdsnap_session_close(s);
	return ret;
}

#define PASSWORD_OPTS	"[--passfile FILE | --password-fd N]"
static const struct command commands[] = {
	{ "activate", cmd_control,
	  "DEV [--tracker bio|vfs] [--ordered] [--via auto|ioctl|syscall]\n"
	  "           " PASSWORD_OPTS,
	  O(OPT_TRACKER) | O(OPT_ORDERED) | O(OPT_VIA) | O(OPT_PASSFILE) | O(OPT_PASSFD), 1, 1 },
	{ "deactivate", cmd_control, "DEV [--via auto|ioctl|syscall] " PASSWORD_OPTS,
	  O(OPT_VIA) | O(OPT_PASSFILE) | O(OPT_PASSFD), 1, 1 },
	{ "status", cmd_status, "[--json]", O(OPT_JSON), 0, 0 },
	{ "sessions", cmd_sessions, "[DEV] [--store DIR] [--json]",
	  O(OPT_STORE) | O(OPT_JSON), 0, 1 },
	{ "show", cmd_show, "SESSION [--store DIR] [--json]", O(OPT_STORE) | O(OPT_JSON), 1, 1 },
	{ "verify", cmd_verify, "SESSION [--store DIR]", O(OPT_STORE), 1, 1 },
	{ "restore", cmd_restore, "SESSION [--to TARGET] [--dry-run] [--force] [--store DIR]",
	  O(OPT_TO) | O(OPT_DRY_RUN) | O(OPT_FORCE) | O(OPT_STORE), 1, 1 },
	{ NULL, NULL, NULL, 0, 0, 0 },
};

int main(int argc, char **argv)
{
	const struct command *cmd;
	struct args a;
	int c;

	atexit(close_stdout);
	opterr = 0;
	/* "+": stop at the command; its own options are parsed afterwards. */
	while ((c = getopt_long(argc, argv, "+hV", global_opts, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			return EXIT_SUCCESS;
		}
		if (c == 'V') {
			printf("bdsnap %d.%d.%d\n", BDSNAP_VERSION_MAJOR, BDSNAP_VERSION_MINOR,
			       BDSNAP_VERSION_PATCH);
			return EXIT_SUCCESS;
		}
		usage_error("unknown option '%s' (command options follow the command)",
			    offending(argv));
	}
	if (optind == argc)
		usage_error("no command given");
	for (cmd = commands; cmd->name && strcmp(cmd->name, argv[optind]); cmd++)
		;
	if (!cmd->name)
		usage_error("unknown command '%s'", argv[optind]);
	parse_args(cmd, argc - optind, argv + optind, &a);
	return cmd->run(&a, cmd->name);
}
