// SPDX-License-Identifier: GPL-2.0
/*
 * bdsnap - activate block-device snapshots, inspect, restore and export
 * sessions.
 *
 * Exit status (the man page repeats this):
 *   0  success
 *   1  error: I/O, module not loaded, permission, bad password file, ...
 *   2  usage error
 *   3  verification failed: the session store is corrupt
 *   4  refused: target mounted, in use or too small; session open (and not
 *      ordered) or incomplete without --force (nothing was written); load:
 *      already loaded; unload: a session open, or devices activated
 *      without --force
 *   5  load: the module file is missing or built for another kernel
 *   6  load, unload: the configuration or password file is unusable
 */
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "bdsnap.h"
#include "cmd.h"
#include "out.h"
#include "password.h"

#define DEFAULT_STORE	"/snapshot"

/* Command options are long only; each command lists the ones it takes. */
enum opt {
	OPT_TRACKER = 256, OPT_ORDERED, OPT_VIA, OPT_PASSFILE, OPT_PASSFD, OPT_STORE,
	OPT_JSON, OPT_TO, OPT_FROM, OPT_DRY_RUN, OPT_FORCE, OPT_NO_SYSCALLS, OPT_CONFIG,
	OPT_WAIT, OPT_MODULE,
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
	{ "from", required_argument, NULL, OPT_FROM },
	{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
	{ "force", no_argument, NULL, OPT_FORCE },
	{ "no-syscalls", no_argument, NULL, OPT_NO_SYSCALLS },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "wait", required_argument, NULL, OPT_WAIT },
	{ "module", no_argument, NULL, OPT_MODULE },
	{ NULL, 0, NULL, 0 },
};

/* Indexed by enum value, so the tables double as parsers and printers. */
static const char *const tracker_names[] = { "default", "bio", "vfs" };
static const char *const via_names[] = { "auto", "ioctl", "syscall" };
static const char *const live_state_names[] = { "none", "open", "incomplete" };

struct command {
	const char *name;
	int (*run)(const struct args *a, const char *name);
	const char *synopsis;
	const char *help;
	unsigned int opts;
	int min_args, max_args;
};

static const struct command commands[];

static void usage(FILE *f)
{
	const struct command *c;

	fprintf(f, "Usage: bdsnap [-h] [-V] COMMAND [ARGS]\n\nCommands:\n");
	for (c = commands; c->name; c++)
		fprintf(f, "  %s %s\n      %s\n", c->name, c->synopsis, c->help);
	fprintf(f, "\nSESSION is a session directory, or its name under the store (default %s).\n"
		"Passwords are typed at /dev/tty without echo, unless --passfile or\n"
		"--password-fd is given; they are never taken from the command line.\n"
		"Exit status: 0 ok, 1 error, 2 usage, 3 corrupt store, 4 refused,\n"
		"5 module missing or for another kernel, 6 bad configuration or password file.\n"
		"See bdsnap(8).\n", DEFAULT_STORE);
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

/* A number 0..@max for --@opt, said to be @what. */
static int parse_uint(const char *opt, const char *what, const char *s, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > max)
		usage_error("--%s: not %s: '%s'", opt, what, s);
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
			printf("Usage: bdsnap %s %s\n\n%s\n", cmd->name, cmd->synopsis, cmd->help);
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
			a->passfd = parse_uint("password-fd", "a file descriptor", optarg, INT_MAX);
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
		case OPT_FROM:
			a->from = optarg;
			break;
		case OPT_DRY_RUN:
			a->dry_run = true;
			break;
		case OPT_FORCE:
			a->force = true;
			break;
		case OPT_NO_SYSCALLS:
			a->no_syscalls = true;
			break;
		case OPT_CONFIG:
			a->config = optarg;
			break;
		case OPT_WAIT:
			a->wait = parse_uint("wait", "a number of seconds", optarg, 3600);
			break;
		case OPT_MODULE:
			a->module = true;
			break;
		}
	}
	if (a->wait && !a->config)
		usage_error("%s: --wait applies to --config", cmd->name);
	if (a->passfile && a->passfd >= 0)
		usage_error("%s: --passfile and --password-fd exclude each other", cmd->name);
	a->pos = argv + optind;
	a->npos = argc - optind;
	if (a->npos < cmd->min_args)
		usage_error("%s: missing argument", cmd->name);
	if (a->npos > cmd->max_args)
		usage_error("%s: unexpected argument '%s'", cmd->name, a->pos[cmd->max_args]);
}

static const char *name_of(const char *const *names, size_t n, unsigned int i)
{
	return i < n ? names[i] : "unknown";
}

/* ---- control commands ---- */

const char *ctl_hint(int err)
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

static void out_device(struct out *o, const struct bdsnap_dev_info *d)
{
	char dev[32];

	snprintf(dev, sizeof(dev), "%u:%u", major(d->dev), minor(d->dev));
	out_begin(o, NULL, '{');
	out_str(o, "path", d->path);
	out_str(o, "key", d->key_type == BDSNAP_KEY_FILE ? "file" : "bdev");
	out_str(o, "dev", d->dev ? dev : NULL);
	out_str(o, "tracker", name_of(tracker_names, 3, d->tracker));
	out_bool(o, "ordered", d->flags & BDSNAP_ACT_ORDERED);
	out_str(o, "state", name_of(live_state_names, 3, d->session_state));
	out_str(o, "devname", d->devname[0] ? d->devname : NULL);
	out_str(o, "session", d->session[0] ? d->session : NULL);
	out_u64(o, "sessions", d->sessions);
	out_u64(o, "blocks_saved", d->blocks_saved);
	out_size(o, "bytes_raw", d->bytes_raw);
	out_size(o, "bytes_stored", d->bytes_stored);
	out_ratio(o, "ratio", d->bytes_raw, d->bytes_stored);
	out_u64(o, "queue_depth", d->queue_depth);
	out_u64(o, "writes_held", d->writes_held);
	out_u64(o, "errors", d->errors);
	out_end(o, '}');
}

static int cmd_status(const struct args *a, const char *name)
{
	struct out o = { .json = a->json };
	struct bdsnap_dev_info *v;
	size_t i, n;
	int rc;

	(void)name;
	if (a->module)
		return cmd_module_status(a, false);
	rc = bdsnap_list(&v, &n);
	if (rc < 0)
		return no_module(rc);
	/* The JSON listing stays an array of devices: status --module --json has the rest. */
	if (!a->json)
		cmd_module_status(a, true);
	if (!n && !a->json)
		printf("no activated devices\n");
	if (a->json)
		out_begin(&o, NULL, '[');
	for (i = 0; i < n; i++)
		out_device(&o, &v[i]);
	if (a->json)
		out_end(&o, ']');
	free(v);
	return EXIT_SUCCESS;
}

/* ---- session commands ---- */

/* Can restore and export use the session without --force?  Why (not)? */
static bool restorable(const struct bdsnap_session_info *in, const char **why)
{
	switch (in->state_kind) {
	case BDSNAP_META_COMPLETE:
		*why = NULL;
		return true;
	case BDSNAP_META_OPEN:
		if (in->ordered == 1) {
			*why = "ordered: restorable after a crash";
			return true;
		}
		*why = "not restorable unless --force: a crash may have lost pre-images";
		return false;
	case BDSNAP_META_INCOMPLETE:
		*why = "not restorable unless --force: pre-images were lost";
		return false;
	default:
		*why = "meta is damaged: run verify";
		return false;
	}
}

static void out_session(struct out *o, const struct bdsnap_session_info *in)
{
	const char *why;
	bool ok = restorable(in, &why);
	char state[256];

	out_begin(o, NULL, '{');
	out_str(o, "name", in->name);
	out_str(o, "dir", in->dir);
	out_str(o, "uuid", in->uuid);
	out_str(o, "path", in->path);
	out_str(o, "devname", in->devname);
	out_str(o, "tracker", in->tracker);
	out_flag(o, "ordered", in->ordered);
	out_str(o, "start", in->start);
	out_str(o, "end", in->end);
	if (o->json || !why || !in->state) {
		out_str(o, "state", in->state);
	} else {
		snprintf(state, sizeof(state), "%s (%s)", in->state, why);
		out_str(o, "state", state);
	}
	if (o->json) {
		out_bool(o, "restorable", ok);
		out_str(o, "note", why);
	}
	out_u64(o, "format", in->format);
	out_size(o, "device_size", in->device_size);
	out_u64(o, "block_size", in->block_size);
	out_u64(o, "blocks_saved", in->blocks_saved);
	out_size(o, "bytes_raw", in->bytes_raw);
	out_size(o, "bytes_stored", in->bytes_stored);
	out_ratio(o, "ratio", in->bytes_raw, in->bytes_stored);
	out_u64(o, "errors", in->errors);
	out_end(o, '}');
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

static void session_row(const struct bdsnap_session_info *in)
{
	char blocks[24] = "-", stored[24] = "-";

	if (in->blocks_saved != BDSNAP_UNSET)
		snprintf(blocks, sizeof(blocks), "%" PRIu64, in->blocks_saved);
	if (in->bytes_stored != BDSNAP_UNSET)
		human_size(in->bytes_stored, stored, sizeof(stored));
	printf("%-40s %-10s %-31s %-12s %8s %10s\n", in->name, in->devname ? in->devname : "-",
	       in->start ? in->start : "-", in->state ? in->state : "-", blocks, stored);
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
		out_begin(&o, NULL, '[');
	else
		printf("%-40s %-10s %-31s %-12s %8s %10s\n", "NAME", "DEVNAME", "START", "STATE",
		       "BLOCKS", "STORED");
	for (i = 0; i < n; i++) {
		const struct bdsnap_session_info *in = bdsnap_session_info(list[i]);

		if (dev && !session_matches(in, dev, real))
			continue;
		if (a->json)
			out_session(&o, in);
		else
			session_row(in);
	}
	if (a->json)
		out_end(&o, ']');
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

static int corrupt(const char *dir, const struct bdsnap_verify_report *r)
{
	warnx("%s/%s: offset %" PRIu64 ": %s", dir, r->bad_file, r->bad_offset, r->reason);
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

/* An error of verify, changed, restore or export: its message and exit code. */
static int fail(const char *dir, const struct bdsnap_verify_report *r, const char *refused,
		const char *what, int rc)
{
	if (rc == -EBADMSG)
		return corrupt(dir, r);
	if (refused) {
		bool state = rc == -EINPROGRESS || rc == -ENODATA;

		warnx("%s: refused: %s%s", state ? dir : what, refused,
		      state ? "; use --force to go ahead anyway" : "");
		return EXIT_REFUSED;
	}
	warnx("%s: %s", what, strerror(-rc));
	return EXIT_ERROR;
}

static int cmd_verify(const struct args *a, const char *name)
{
	struct bdsnap_session *s = open_session(a);
	const struct bdsnap_session_info *in = bdsnap_session_info(s);
	struct bdsnap_verify_report r;
	struct bar bar;
	int rc, ret = EXIT_SUCCESS;

	(void)name;
	bar_init(&bar, "verifying");
	rc = bdsnap_session_verify_progress(s, &r, bar_fn(), &bar);
	bar_done(&bar);
	if (rc < 0) {
		ret = fail(in->dir, &r, NULL, in->dir, rc);
	} else {
		note_torn(in, &r);
		printf("%s: ok: %" PRIu64 " blocks (%" PRIu64 " bytes), state %s\n", in->dir,
		       r.records, r.bytes_raw, in->state);
	}
	bdsnap_session_close(s);
	return ret;
}

static int cmd_changed(const struct args *a, const char *name)
{
	struct bdsnap_session *s = open_session(a);
	const struct bdsnap_session_info *in = bdsnap_session_info(s);
	struct out o = { .json = a->json };
	struct bdsnap_verify_report r;
	struct bdsnap_extent *ext;
	uint64_t blocks = 0, bytes = 0;
	char range[48];
	struct bar bar;
	size_t i, n;
	int rc;

	(void)name;
	bar_init(&bar, "reading");
	rc = bdsnap_session_changed(s, &ext, &n, bar_fn(), &bar, &r);
	bar_done(&bar);
	if (rc < 0) {
		rc = fail(in->dir, &r, NULL, in->dir, rc);
		bdsnap_session_close(s);
		return rc;
	}
	note_torn(in, &r);
	if (in->state_kind == BDSNAP_META_OPEN)
		warnx("%s: session is open: the extents changed so far", in->dir);
	for (i = 0; i < n; i++) {
		blocks += ext[i].blocks;
		bytes += ext[i].length;
	}
	if (a->json) {
		out_begin(&o, NULL, '{');
		out_str(&o, "session", in->name);
		out_str(&o, "state", in->state);
		out_u64(&o, "block_size", in->block_size);
		out_u64(&o, "device_size", in->device_size);
		out_u64(&o, "blocks", blocks);
		out_u64(&o, "bytes", bytes);
		out_begin(&o, "extents", '[');
		for (i = 0; i < n; i++) {
			out_begin(&o, NULL, '{');
			out_u64(&o, "offset", ext[i].offset);
			out_u64(&o, "length", ext[i].length);
			out_u64(&o, "block", ext[i].block);
			out_u64(&o, "blocks", ext[i].blocks);
			out_end(&o, '}');
		}
		out_end(&o, ']');
		out_end(&o, '}');
	} else {
		printf("%-16s %-16s %s\n", "OFFSET", "LENGTH", "BLOCKS");
		for (i = 0; i < n; i++) {
			snprintf(range, sizeof(range), ext[i].blocks > 1 ? "%" PRIu64 "-%" PRIu64 :
				 "%" PRIu64, ext[i].block, ext[i].block + ext[i].blocks - 1);
			printf("%-16" PRIu64 " %-16" PRIu64 " %s\n", ext[i].offset, ext[i].length,
			       range);
		}
		printf("%zu extents, %" PRIu64 " blocks, %" PRIu64 " bytes changed\n", n, blocks,
		       bytes);
	}
	free(ext);
	bdsnap_session_close(s);
	return EXIT_SUCCESS;
}

static unsigned int session_flags(const struct args *a)
{
	return (a->dry_run ? BDSNAP_RESTORE_DRY_RUN : 0) | (a->force ? BDSNAP_RESTORE_FORCE : 0);
}

static int cmd_restore(const struct args *a, const char *name)
{
	struct bdsnap_session *s = open_session(a);
	const struct bdsnap_session_info *in = bdsnap_session_info(s);
	const char *target = a->to ? a->to : in->path;
	struct bar bar;
	struct bdsnap_restore_opts opts = { session_flags(a), bar_fn(), &bar };
	struct bdsnap_restore_report r;
	int rc, ret = EXIT_SUCCESS;

	(void)name;
	bar_init(&bar, "restoring");
	rc = bdsnap_session_restore(s, target, &opts, &r);
	bar_done(&bar);
	if (rc < 0) {
		ret = fail(in->dir, &r.verify, r.refused, target ? target : in->dir, rc);
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

static int cmd_export(const struct args *a, const char *name)
{
	struct bdsnap_session *s;
	const struct bdsnap_session_info *in;
	struct bar bar;
	struct bdsnap_restore_opts opts = { session_flags(a), bar_fn(), &bar };
	struct bdsnap_session **later = NULL;
	struct bdsnap_export_report r;
	char later_note[96] = "", *store;
	size_t nlater = 0;
	int rc, ret = EXIT_SUCCESS;

	if (!a->to)
		usage_error("%s: --to FILE is required", name);
	s = open_session(a);
	in = bdsnap_session_info(s);
	/* Sessions after this one changed the device too: undo them first. */
	store = strdup(in->dir);
	if (!store)
		errx(EXIT_ERROR, "out of memory");
	rc = bdsnap_sessions_later(dirname(store), s, &later, &nlater);
	free(store);
	/* -EINVAL: meta lacks path or start; export reports the damage. */
	if (rc < 0 && rc != -EINVAL)
		errx(EXIT_ERROR, "%s: %s", in->dir, strerror(-rc));

	bar_init(&bar, "exporting");
	rc = bdsnap_session_export(s, later, nlater, a->from, a->to, &opts, &r);
	bar_done(&bar);
	if (rc < 0) {
		const char *source = a->from ? a->from : in->path;

		ret = fail(r.bad_session ? r.bad_session : in->dir, &r.verify, r.refused,
			   !r.where ? in->dir : strcmp(r.where, "source") ? a->to : source, rc);
	} else {
		note_torn(in, &r.verify);
		if (nlater)
			snprintf(later_note, sizeof(later_note),
				 ", after %" PRIu64 " from %zu later session%s", r.later_blocks,
				 nlater, nlater > 1 ? "s" : "");
		printf("%s %s: %" PRIu64 " bytes to %s (%" PRIu64 " pre-images applied%s)%s\n",
		       a->dry_run ? "would export" : "exported", in->name,
		       a->dry_run ? in->device_size : r.image_size, a->to, r.blocks, later_note,
		       a->dry_run ? " (dry run: nothing written)" : "");
	}
	bdsnap_sessions_free(later, nlater);
	bdsnap_session_close(s);
	return ret;
}

#define PASSWORD_OPTS	"[--passfile FILE | --password-fd N]"
static const struct command commands[] = {
	{ "activate", cmd_control,
	  "DEV [--tracker bio|vfs] [--ordered] [--via auto|ioctl|syscall]\n"
	  "      " PASSWORD_OPTS,
	  "Snapshot DEV (a block device or loop image file) at its next mounts.",
	  O(OPT_TRACKER) | O(OPT_ORDERED) | O(OPT_VIA) | O(OPT_PASSFILE) | O(OPT_PASSFD), 1, 1 },
	{ "deactivate", cmd_control, "DEV [--via auto|ioctl|syscall] " PASSWORD_OPTS,
	  "Stop snapshotting DEV (unmount it first).",
	  O(OPT_VIA) | O(OPT_PASSFILE) | O(OPT_PASSFD), 1, 1 },
	{ "load", cmd_load,
	  "[--from DIR] [--no-syscalls] [--config FILE [--wait SEC]] [--dry-run]\n"
	  "      " PASSWORD_OPTS,
	  "Load bdsnap.ko (usctm.ko first), installed or from build tree DIR;\n"
	  "      then activate the devices of FILE (password: " BDSNAP_PASSFILE_PATH ").",
	  O(OPT_FROM) | O(OPT_NO_SYSCALLS) | O(OPT_CONFIG) | O(OPT_WAIT) | O(OPT_DRY_RUN) |
	  O(OPT_PASSFILE) | O(OPT_PASSFD), 0, 0 },
	{ "unload", cmd_unload, "[--force] " PASSWORD_OPTS,
	  "Unload bdsnap (and usctm); --force deactivates the devices first.",
	  O(OPT_FORCE) | O(OPT_PASSFILE) | O(OPT_PASSFD), 0, 0 },
	{ "status", cmd_status, "[--module] [--json]",
	  "The module, then activated devices and their open sessions.",
	  O(OPT_MODULE) | O(OPT_JSON), 0, 0 },
	{ "sessions", cmd_sessions, "[DEV] [--store DIR] [--json]",
	  "Sessions in the store, oldest first; only DEV's if given.",
	  O(OPT_STORE) | O(OPT_JSON), 0, 1 },
	{ "show", cmd_show, "SESSION [--store DIR] [--json]",
	  "A session's meta, and whether it can be restored.",
	  O(OPT_STORE) | O(OPT_JSON), 1, 1 },
	{ "verify", cmd_verify, "SESSION [--store DIR]",
	  "Check every record (CRC, decompression, bounds); write nothing.",
	  O(OPT_STORE), 1, 1 },
	{ "changed", cmd_changed, "SESSION [--store DIR] [--json]",
	  "The extents of the device written during the session.",
	  O(OPT_STORE) | O(OPT_JSON), 1, 1 },
	{ "restore", cmd_restore, "SESSION [--to TARGET] [--dry-run] [--force] [--store DIR]",
	  "Write the pre-images back: the device (or TARGET) as before the mount.",
	  O(OPT_TO) | O(OPT_DRY_RUN) | O(OPT_FORCE) | O(OPT_STORE), 1, 1 },
	{ "export", cmd_export,
	  "SESSION --to FILE [--from DEV] [--dry-run] [--force] [--store DIR]",
	  "Write the pre-mount image to FILE, leaving the device as it is.",
	  O(OPT_TO) | O(OPT_FROM) | O(OPT_DRY_RUN) | O(OPT_FORCE) | O(OPT_STORE), 1, 1 },
	{ NULL, NULL, NULL, NULL, 0, 0, 0 },
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
