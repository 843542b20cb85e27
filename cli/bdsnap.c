// SPDX-License-Identifier: GPL-2.0
/*
 * bdsnap - activate block-device snapshots, inspect, restore, export and
 * remove sessions.
 *
 * Exit status (the man page repeats this):
 *   0  success
 *   1  error: I/O, module not loaded, permission, bad password file, a
 *      confirmation answered no, ...
 *   2  usage error
 *   3  verification failed: the session store is corrupt
 *   4  refused: target mounted, in use, or not the device the sessions
 *      left (identity); session open (and not ordered), incomplete or
 *      missing a later session without --force (nothing was written);
 *      delete: an open session, or one an older session needs, without
 *      --force; load: already loaded; unload: a session open, or devices
 *      activated without --force; rollback: the device mounted or being
 *      rolled back by the module
 *   5  load: the module file is missing or built for another kernel
 *   6  load, unload, prune: the configuration or password file is unusable
 * A device whose unfinished rollback cannot be finished makes rollback and
 * load --config exit as restore would (1, 3 or 4); load leaves that device
 * deactivated and activates the others.
 */
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cmd.h"
#include "map.h"
#include "password.h"

/* Options with a short form take its letter; the others a number from 256 on. */
enum opt {
	OPT_TRACKER = 256, OPT_ORDERED, OPT_VIA, OPT_PASSFILE, OPT_PASSFD, OPT_STORE,
	OPT_JSON, OPT_TO, OPT_FROM, OPT_DRY_RUN, OPT_FORCE, OPT_NO_SYSCALLS, OPT_CONFIG,
	OPT_WAIT, OPT_MODULE, OPT_OUTPUT, OPT_NOHEADINGS, OPT_RAW, OPT_BYTES, OPT_YES,
	OPT_KEEP, OPT_MAX_SIZE, OPT_ROLLBACK, OPT_KEEP_ROLLED_BACK,
};
#define O(x)	(1U << ((x) - OPT_TRACKER))
#define LISTING	(O(OPT_JSON) | O(OPT_OUTPUT) | O(OPT_NOHEADINGS) | O(OPT_RAW) | O(OPT_BYTES))

static const struct option global_opts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "tracker", required_argument, NULL, OPT_TRACKER },
	{ "ordered", no_argument, NULL, OPT_ORDERED },
	{ "rollback", no_argument, NULL, OPT_ROLLBACK },
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
	{ "output", required_argument, NULL, OPT_OUTPUT },
	{ "noheadings", no_argument, NULL, OPT_NOHEADINGS },
	{ "raw", no_argument, NULL, OPT_RAW },
	{ "bytes", no_argument, NULL, OPT_BYTES },
	{ "yes", no_argument, NULL, OPT_YES },
	{ "keep", required_argument, NULL, OPT_KEEP },
	{ "max-size", required_argument, NULL, OPT_MAX_SIZE },
	{ NULL, 0, NULL, 0 },
};

/* The short options, as util-linux spells them, and what they stand for. */
static const char shortopts[] = ":hJo:nrbyfs:t:";
static const struct { char c; enum opt opt; } short_of[] = {
	{ 'J', OPT_JSON }, { 'o', OPT_OUTPUT }, { 'n', OPT_NOHEADINGS }, { 'r', OPT_RAW },
	{ 'b', OPT_BYTES }, { 'y', OPT_YES }, { 'f', OPT_FORCE }, { 's', OPT_STORE },
	{ 't', OPT_TO },
};

/* Indexed by enum value, so the tables double as parsers and printers. */
static const char *const tracker_names[] = { "default", "bio", "vfs" };
static const char *const via_names[] = { "auto", "ioctl", "syscall" };
static const char *const live_state_names[] = { "none", "open", "incomplete", "rolling-back",
						"rollback-failed" };

struct command {
	const char *name;
	int (*run)(const struct args *a, const char *name);
	const char *synopsis;
	const char *help;
	unsigned int opts;
	int min_args, max_args;
	void (*columns_help)(FILE *f);
};

static void devices_help(FILE *f);
static const struct command commands[];

static void usage(void)
{
	const struct command *c;

	printf("Usage: bdsnap [-h] [-V] COMMAND [ARGS]\n\nCommands:\n");
	for (c = commands; c->name; c++)
		printf("  %s %s\n      %s\n", c->name, c->synopsis, c->help);
	printf("\nSESSION is a session directory, or its name under the store (default %s).\n"
	       "Listings take -o/--output COLUMNS, -n/--noheadings, -r/--raw, -J/--json,\n"
	       "-b/--bytes (bdsnap COMMAND --help lists the columns); results take -J.\n"
	       "Passwords are typed at /dev/tty without echo, unless --passfile or\n"
	       "--password-fd is given; they are never taken from the command line.\n"
	       "Exit status: 0 ok, 1 error, 2 usage, 3 corrupt store, 4 refused,\n"
	       "5 module missing or for another kernel, 6 bad configuration or password file.\n"
	       "See bdsnap(8).\n", DEFAULT_STORE);
}

void usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vwarnx(fmt, ap);
	va_end(ap);
	fputs("Try 'bdsnap --help' for more information.\n", stderr);
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
static long parse_uint(const char *opt, const char *what, const char *s, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > max)
		usage_error("--%s: not %s: '%s'", opt, what, s);
	return v;
}

static void command_help(const struct command *cmd)
{
	printf("Usage: bdsnap %s %s\n\n%s\n", cmd->name, cmd->synopsis, cmd->help);
	if (cmd->columns_help)
		cmd->columns_help(stdout);
}

static void parse_args(const struct command *cmd, int argc, char **argv, struct args *a)
{
	struct option opts[ARRAY_SIZE(longopts)];
	int c, idx = -1;
	size_t i;

	/* --keep: a number of sessions to prune, a flag of activate --rollback. */
	memcpy(opts, longopts, sizeof(opts));
	for (i = 0; i < ARRAY_SIZE(opts); i++)
		if (opts[i].val == OPT_KEEP && (cmd->opts & O(OPT_KEEP_ROLLED_BACK))) {
			opts[i].has_arg = no_argument;
			opts[i].val = OPT_KEEP_ROLLED_BACK;
		}
	*a = (struct args){ .store = DEFAULT_STORE, .passfd = -1,
			    .keep = BDSNAP_OPTS_INIT(a->keep) };
	opterr = 0;
	optind = 0;	/* re-initialise getopt: permute, command name is argv[0] */
	while ((c = getopt_long(argc, argv, shortopts, opts, &idx)) != -1) {
		if (c == 'h') {
			command_help(cmd);
			exit(EXIT_SUCCESS);
		}
		if (c == '?')
			usage_error("%s: unknown option '%s'", cmd->name, offending(argv));
		if (c == ':')
			usage_error("%s: option '%s' needs an argument", cmd->name, argv[optind - 1]);
		for (i = 0; i < ARRAY_SIZE(short_of); i++)
			if (c == short_of[i].c)
				c = short_of[i].opt;
		if (c < OPT_TRACKER || !(cmd->opts & O(c)))
			usage_error("%s: option '%s' does not apply", cmd->name, argv[optind - 1]);
		switch (c) {
		case OPT_TRACKER:
			a->tracker = pick("tracker", optarg, tracker_names + 1, 2) + 1;
			break;
		case OPT_ORDERED:
			a->flags |= BDSNAP_ACT_ORDERED;
			break;
		case OPT_ROLLBACK:
			/* A crash must leave the pre-images durable: the rollback is finished from them. */
			a->flags |= BDSNAP_ACT_ROLLBACK | BDSNAP_ACT_ORDERED;
			break;
		case OPT_KEEP_ROLLED_BACK:
			a->flags |= BDSNAP_ACT_KEEP;
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
			a->fmt.json = true;
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
		case OPT_OUTPUT:
			a->fmt.columns = optarg;
			break;
		case OPT_NOHEADINGS:
			a->fmt.noheadings = true;
			break;
		case OPT_RAW:
			a->fmt.raw = true;
			break;
		case OPT_BYTES:
			a->fmt.bytes = true;
			break;
		case OPT_YES:
			a->yes = true;
			break;
		case OPT_KEEP:
			a->keep.keep = parse_uint("keep", "a number of sessions", optarg, INT_MAX);
			if (!a->keep.keep)
				usage_error("--keep: at least 1 (delete removes sessions by name)");
			break;
		case OPT_MAX_SIZE:
			if (bdsnap_parse_size(optarg, &a->keep.max_size) || !a->keep.max_size)
				usage_error("--max-size: not a size (e.g. 20G): '%s'", optarg);
			break;
		}
	}
	if (a->wait && !a->config)
		usage_error("%s: --wait applies to --config", cmd->name);
	if (a->passfile && a->passfd >= 0)
		usage_error("%s: --passfile and --password-fd exclude each other", cmd->name);
	if ((a->flags & BDSNAP_ACT_KEEP) && !(a->flags & BDSNAP_ACT_ROLLBACK))
		usage_error("%s: --keep needs --rollback (it keeps the rolled-back sessions)",
			    cmd->name);
	if ((a->flags & BDSNAP_ACT_ROLLBACK) && a->tracker == BDSNAP_TRACKER_VFS)
		usage_error("%s: --rollback needs the bio tracker", cmd->name);
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
	case EBUSY:	return " (a session is open, or being rolled back: unmount the device first)";
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
		warnx("syscalls: cannot carry --tracker, --ordered or --rollback: use --via ioctl");
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

enum { D_PATH, D_KEY, D_DEV, D_TRACKER, D_ORDERED, D_MODE, D_STATE, D_DEVNAME, D_SESSION,
       D_SESSIONS, D_BLOCKS, D_RAW, D_STORED, D_RATIO, D_QUEUE, D_HELD, D_ERRORS };
static const struct out_col device_cols[] = {
	[D_PATH] = { "PATH", OUT_STR, 0, "the device or image file, as activated" },
	[D_KEY] = { "KEY", OUT_STR, 0, "matched by: bdev (device number) or file (image inode)" },
	[D_DEV] = { "DEV", OUT_STR, 0, "major:minor of the device" },
	[D_TRACKER] = { "TRACKER", OUT_STR, 0, "bio (V2) or vfs (V1)" },
	[D_ORDERED] = { "ORDERED", OUT_BOOL, 0, "writes wait for durable pre-images" },
	[D_MODE] = { "MODE", OUT_STR, 0,
		     "plain, ordered, rollback (each session undone at unmount), rollback+keep" },
	[D_STATE] = { "STATE", OUT_STR, 0,
		      "session: none, open, incomplete, rolling-back or rollback-failed" },
	[D_DEVNAME] = { "DEVNAME", OUT_STR, 0, "kernel name of the mounted device" },
	[D_SESSION] = { "SESSION", OUT_STR, 0,
			"the open session, or the one rolled back (or whose rollback failed)" },
	[D_SESSIONS] = { "SESSIONS", OUT_NUM, 0, "sessions since activation" },
	[D_BLOCKS] = { "BLOCKS_SAVED", OUT_NUM, 0, "pre-images saved in the open session" },
	[D_RAW] = { "BYTES_RAW", OUT_SIZE, 0, "their size before compression" },
	[D_STORED] = { "BYTES_STORED", OUT_SIZE, 0, "their size in the store" },
	[D_RATIO] = { "RATIO", OUT_NUM, 0, "BYTES_RAW / BYTES_STORED" },
	[D_QUEUE] = { "QUEUE_DEPTH", OUT_NUM, 0, "pre-images queued for the store" },
	[D_HELD] = { "WRITES_HELD", OUT_NUM, 0, "writes waiting for a pre-image" },
	[D_ERRORS] = { "ERRORS", OUT_NUM, 0, "read or store errors" },
};

/* What the activation flags make of each session. */
static const char *mode_of(unsigned int flags)
{
	if (flags & BDSNAP_ACT_ROLLBACK)
		return flags & BDSNAP_ACT_KEEP ? "rollback+keep" : "rollback";
	return flags & BDSNAP_ACT_ORDERED ? "ordered" : "plain";
}

static void devices_help(FILE *f)
{
	out_columns_help(f, device_cols, ARRAY_SIZE(device_cols));
	fputs("\nWith --module, the module's columns:", f);
	module_columns_help(f);
}

static int cmd_status(const struct args *a, const char *name)
{
	struct out_table *tables[2], *t;
	struct bdsnap_dev_info *v;
	char dev[32];
	size_t i, n;
	int rc;

	(void)name;
	if (a->module) {
		tables[0] = module_table(a);
		out_print(tables, 1);
		return EXIT_SUCCESS;
	}
	tables[1] = t = out_table_new(&a->fmt, "devices", device_cols, ARRAY_SIZE(device_cols),
				      "PATH,TRACKER,MODE,STATE,SESSION,BLOCKS_SAVED,"
				      "BYTES_STORED,ERRORS", false, true);
	rc = bdsnap_list(&v, &n);
	if (rc < 0)
		return no_module(rc);
	tables[0] = module_table(a);
	for (i = 0; i < n; i++) {
		snprintf(dev, sizeof(dev), "%u:%u", major(v[i].dev), minor(v[i].dev));
		out_row(t);
		out_str(t, D_PATH, v[i].path);
		out_str(t, D_KEY, v[i].key_type == BDSNAP_KEY_FILE ? "file" : "bdev");
		out_str(t, D_DEV, v[i].dev ? dev : NULL);
		out_str(t, D_TRACKER, name_of(tracker_names, 3, v[i].tracker));
		out_bool(t, D_ORDERED, !!(v[i].flags & BDSNAP_ACT_ORDERED));
		out_str(t, D_MODE, mode_of(v[i].flags));
		out_str(t, D_STATE, name_of(live_state_names, ARRAY_SIZE(live_state_names),
					    v[i].session_state));
		out_str(t, D_DEVNAME, v[i].devname[0] ? v[i].devname : NULL);
		out_str(t, D_SESSION, v[i].session[0] ? v[i].session : NULL);
		out_u64(t, D_SESSIONS, v[i].sessions);
		out_u64(t, D_BLOCKS, v[i].blocks_saved);
		out_size(t, D_RAW, v[i].bytes_raw);
		out_size(t, D_STORED, v[i].bytes_stored);
		out_ratio(t, D_RATIO, v[i].bytes_raw, v[i].bytes_stored);
		out_u64(t, D_QUEUE, v[i].queue_depth);
		out_u64(t, D_HELD, v[i].writes_held);
		out_u64(t, D_ERRORS, v[i].errors);
	}
	out_print(tables, 2);
	if (!n && !a->fmt.json)
		printf("no activated devices\n");
	free(v);
	return EXIT_SUCCESS;
}

#define PASSWORD_OPTS	"[--passfile FILE | --password-fd N]"
#define LISTING_OPTS	"[-o COLUMNS] [-n] [-r] [-J] [-b]"
static const struct command commands[] = {
	{ "activate", cmd_control,
	  "DEV [--tracker bio|vfs] [--ordered | --rollback [--keep]]\n"
	  "      [--via auto|ioctl|syscall] " PASSWORD_OPTS,
	  "Snapshot DEV (a block device or loop image file) at its next mounts;\n"
	  "      --rollback: undo each session at its unmount (--keep: keep the sessions).",
	  O(OPT_TRACKER) | O(OPT_ORDERED) | O(OPT_ROLLBACK) | O(OPT_KEEP_ROLLED_BACK) | O(OPT_VIA) |
	  O(OPT_PASSFILE) | O(OPT_PASSFD), 1, 1, NULL },
	{ "deactivate", cmd_control, "DEV [--via auto|ioctl|syscall] " PASSWORD_OPTS,
	  "Stop snapshotting DEV (unmount it first).",
	  O(OPT_VIA) | O(OPT_PASSFILE) | O(OPT_PASSFD), 1, 1, NULL },
	{ "load", cmd_load,
	  "[--from DIR] [--no-syscalls] [--config FILE [--wait SEC]] [--dry-run]\n"
	  "      " PASSWORD_OPTS,
	  "Load bdsnap.ko (usctm.ko first), installed or from build tree DIR;\n"
	  "      then activate the devices of FILE (password: " BDSNAP_PASSFILE_PATH "),\n"
	  "      finishing first the rollbacks a crash left undone (rollback= devices).",
	  O(OPT_FROM) | O(OPT_NO_SYSCALLS) | O(OPT_CONFIG) | O(OPT_WAIT) | O(OPT_DRY_RUN) |
	  O(OPT_PASSFILE) | O(OPT_PASSFD), 0, 0, NULL },
	{ "unload", cmd_unload, "[-f|--force] " PASSWORD_OPTS,
	  "Unload bdsnap (and usctm); --force deactivates the devices first.",
	  O(OPT_FORCE) | O(OPT_PASSFILE) | O(OPT_PASSFD), 0, 0, NULL },
	{ "status", cmd_status, "[--module] " LISTING_OPTS,
	  "The module, then activated devices and their open sessions.",
	  O(OPT_MODULE) | LISTING, 0, 0, devices_help },
	{ "sessions", cmd_sessions, "[DEV] [-s|--store DIR] " LISTING_OPTS,
	  "Sessions in the store, oldest first; only DEV's if given.",
	  O(OPT_STORE) | LISTING, 0, 1, sessions_help },
	{ "show", cmd_show, "SESSION [-s|--store DIR] " LISTING_OPTS,
	  "A session's meta, and whether it can be restored.",
	  O(OPT_STORE) | LISTING, 1, 1, sessions_help },
	{ "verify", cmd_verify, "SESSION [-s|--store DIR] [-J]",
	  "Check every record (CRC, decompression, bounds); write nothing.",
	  O(OPT_STORE) | O(OPT_JSON), 1, 1, NULL },
	{ "changed", cmd_changed, "SESSION [-s|--store DIR] " LISTING_OPTS,
	  "The extents of the device written during the session.",
	  O(OPT_STORE) | LISTING, 1, 1, extents_help },
	{ "restore", cmd_restore,
	  "SESSION [-t|--to TARGET] [--dry-run] [-f|--force] [-y|--yes] [-s DIR] [-J]",
	  "Put the device (or TARGET) back as it was before SESSION's mount: the later\n"
	  "      sessions of the device are undone first, newest first.",
	  O(OPT_TO) | O(OPT_DRY_RUN) | O(OPT_FORCE) | O(OPT_YES) | O(OPT_STORE) | O(OPT_JSON),
	  1, 1, NULL },
	{ "export", cmd_export,
	  "SESSION -t|--to FILE [--from DEV] [--dry-run] [-f|--force] [-y|--yes] [-s DIR] [-J]",
	  "Write the image of before SESSION's mount to FILE, leaving the device as it is.",
	  O(OPT_TO) | O(OPT_FROM) | O(OPT_DRY_RUN) | O(OPT_FORCE) | O(OPT_YES) | O(OPT_STORE) |
	  O(OPT_JSON), 1, 1, NULL },
	{ "map", cmd_map, "SESSION [--from DEV] [-f|--force] [-s DIR]",
	  "Attach a read-only NBD device holding the device as it was before\n"
	  "      SESSION's mount, while the device stays in use; print its path.",
	  O(OPT_FROM) | O(OPT_FORCE) | O(OPT_STORE), 1, 1, NULL },
	{ "unmap", cmd_unmap, "NBDDEV", "Detach a view attached by map (unmount it first).",
	  0, 1, 1, NULL },
	{ "maps", cmd_maps, LISTING_OPTS, "The views attached by map.", LISTING, 0, 0, maps_help },
	{ "mount", cmd_mount, "SESSION DIR [--from DEV] [-f|--force] [-s DIR]",
	  "map, then mount the view on DIR read-only without journal replay\n"
	  "      (ext2/3/4: noload; XFS: norecovery,nouuid).",
	  O(OPT_FROM) | O(OPT_FORCE) | O(OPT_STORE), 2, 2, NULL },
	{ "umount", cmd_umount, "DIR", "Unmount a view mounted by mount, and detach it.",
	  0, 1, 1, NULL },
	{ "delete", cmd_delete, "SESSION... [--dry-run] [-f|--force] [-s DIR] [-J]",
	  "Remove sessions; refused for one an older session needs, unless --force.",
	  O(OPT_DRY_RUN) | O(OPT_FORCE) | O(OPT_STORE) | O(OPT_JSON), 1, INT_MAX, NULL },
	{ "prune", cmd_prune,
	  "[--keep N] [--max-size SIZE] [--config FILE] [--dry-run] [-s DIR] [-J]",
	  "Remove the oldest sessions: keep N per device, the store under SIZE\n"
	  "      (default: keep= and max_size= of " BDSNAP_CONF_PATH ").",
	  O(OPT_KEEP) | O(OPT_MAX_SIZE) | O(OPT_CONFIG) | O(OPT_DRY_RUN) | O(OPT_STORE) |
	  O(OPT_JSON), 0, 0, NULL },
	{ "rollback", cmd_rollback, "[DEV] [--dry-run] [-s|--store DIR] [-J]",
	  "Finish the rollbacks of rollback mode a crash left undone, of DEV or\n"
	  "      of every device: restore the device, then mark or delete the sessions.",
	  O(OPT_DRY_RUN) | O(OPT_STORE) | O(OPT_JSON), 0, 1, NULL },
	{ NULL, NULL, NULL, NULL, 0, 0, 0, NULL },
};

int main(int argc, char **argv)
{
	const struct command *cmd;
	struct args a;
	int c;

	setlocale(LC_ALL, "");
	atexit(close_stdout);
	opterr = 0;
	/* "+": stop at the command; its own options are parsed afterwards. */
	while ((c = getopt_long(argc, argv, "+hV", global_opts, NULL)) != -1) {
		if (c == 'h') {
			usage();
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
