/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libbdsnap - user-space interface to bdsnap.
 *
 * Two halves: the control calls (activate, deactivate, list, version) talk to
 * the bdsnap module through /dev/snap or its syscalls; the session calls read
 * a session directory of the store (see docs/format.md), verify it, restore
 * a device from it, export the pre-mount image and list the changed extents.  The structs and constants that cross the kernel boundary
 * come from the uapi header and are not repeated here.
 *
 * Conventions: every function returns 0 (or a count) on success and -errno on
 * failure; the library never prints and never exits.  Strings returned by the
 * library stay valid until the object they came from is closed.
 */
#ifndef BDSNAP_H
#define BDSNAP_H

#include <stddef.h>
#include <stdint.h>
/* Quoted: found next to this file once installed, through -I<include> in the tree. */
#include "uapi/bdsnap.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Option structs the caller fills start with a uint32_t size, the caller's
 * sizeof: the library reads only what the caller knows of, zero for the
 * rest, and refuses (-EINVAL) a size it cannot make sense of (smaller than
 * the first version of the struct, or larger with non-zero bytes it does not
 * know).  The same holds for report structs the library fills: it writes at
 * most @size bytes.  Declare them with BDSNAP_OPTS_INIT:
 *	struct bdsnap_restore_opts o = BDSNAP_OPTS_INIT(o);
 */
#define BDSNAP_OPTS_INIT(var)	{ .size = sizeof(var) }

/* ---- control: /dev/snap and the syscalls ---- */

/* How a control request reaches the module. */
enum bdsnap_via {
	BDSNAP_VIA_AUTO = 0,	/* syscall when published (and enough), else ioctl */
	BDSNAP_VIA_IOCTL = 1,	/* /dev/snap */
	BDSNAP_VIA_SYSCALL = 2,	/* activate_snapshot()/deactivate_snapshot() */
};

/*
 * bdsnap_resolve_via() - which path a request would take.
 * The syscalls carry only a device and a password, so a request with a
 * tracker or flags needs the ioctl.
 * Return: BDSNAP_VIA_IOCTL or BDSNAP_VIA_SYSCALL; -ENOENT when /dev/snap is
 * missing (module not loaded); -ENOSYS when SYSCALL is forced and the
 * syscall numbers are not published; -EOPNOTSUPP when SYSCALL is forced with
 * a tracker or flags.
 */
int bdsnap_resolve_via(enum bdsnap_via via, unsigned int tracker, unsigned int flags);

/*
 * bdsnap_activate() - snapshot @dev at each of its next mounts.
 * @dev: block device, or a regular file used as a loop backing image; made
 *	absolute (realpath) so the session meta records a usable path.
 * @tracker: enum bdsnap_tracker.  @flags: BDSNAP_ACT_*.
 * The library's copy of @password is wiped before returning.
 * Return: 0, -ENAMETOOLONG for strings that do not fit the request, -EINVAL
 * for an empty password, else the module's errors (see the uapi header).
 */
int bdsnap_activate(const char *dev, const char *password, unsigned int tracker,
		    unsigned int flags, enum bdsnap_via via);
/* bdsnap_deactivate() - stop snapshotting @dev.  Return: as bdsnap_activate(). */
int bdsnap_deactivate(const char *dev, const char *password, enum bdsnap_via via);

/*
 * bdsnap_list() - activated devices.
 * @out: set to a malloc'ed array the caller free()s; @count: its length.
 */
int bdsnap_list(struct bdsnap_dev_info **out, size_t *count);
int bdsnap_version(struct bdsnap_version *ver);

/* ---- the module: load, unload, state (libkmod) ---- */

/* struct bdsnap_load_opts.flags */
#define BDSNAP_LOAD_NO_SYSCALLS	(1U << 0)	/* do not load usctm first */
#define BDSNAP_LOAD_DRY_RUN	(1U << 1)	/* find and check the modules, insert nothing */

/*
 * struct bdsnap_load_opts - what bdsnap_module_load() loads, and how.
 * @password: the module password (not empty, at most BDSNAP_PASSWORD_MAX - 1
 *	bytes, no double quote or control character: it travels in the module
 *	option string password="...", built in memory and handed to the kernel
 *	with finit_module(); it is never in any process's argv or environment).
 * @from: a build tree: DIR/module/bdsnap.ko (or DIR/bdsnap.ko) and
 *	DIR/usctm/usctm.ko; NULL: the installed modules, found as modprobe finds
 *	them (modules.dep of the running kernel, DKMS's included), with their
 *	modprobe.d options and soft dependencies but never an install command.
 * @params: more bdsnap parameters, e.g. "store_dir=/srv/snap"; may be NULL.
 * @flags: BDSNAP_LOAD_*.
 * @size: the caller's sizeof(struct bdsnap_load_opts) (BDSNAP_OPTS_INIT
 *	sets it), so that fields added later are read as zero for older callers.
 */
struct bdsnap_load_opts {
	uint32_t size;
	const char *password;
	const char *from;
	const char *params;
	unsigned int flags;
};

/* struct bdsnap_load_report.loaded */
#define BDSNAP_MOD_BDSNAP	(1U << 0)
#define BDSNAP_MOD_USCTM	(1U << 1)

/*
 * struct bdsnap_load_report - what bdsnap_module_load() found and did.
 * @loaded: BDSNAP_MOD_* inserted by this call (what to unload on a later
 *	failure); nothing in a dry run.
 * @failed: on an error, the module it is about: "bdsnap" or "usctm"; NULL
 *	when it is about neither (a bad password, no memory).
 * @bdsnap_path, @usctm_path: the module files found ("" if none; usctm's
 *	also when it is not loaded because it already was).
 * @kver: on -ENOEXEC, the kernel release the @failed module was built for
 *	(first word of its vermagic; "" if it has none).
 * @running: the running kernel's release.
 * @usctm_err: usctm was wanted and present but could not be loaded
 *	(-errno; bdsnap was loaded all the same, without its system calls); 0.
 */
struct bdsnap_load_report {
	unsigned int loaded;
	const char *failed;
	char bdsnap_path[BDSNAP_PATH_MAX];
	char usctm_path[BDSNAP_PATH_MAX];
	char kver[128];
	char running[128];
	int usctm_err;
};

/*
 * bdsnap_module_load() - insert bdsnap.ko, after usctm.ko where it exists
 * and is wanted (x86-64, no BDSNAP_LOAD_NO_SYSCALLS, not loaded yet).
 * Before inserting anything, each module's vermagic is compared with the
 * running kernel's release.  On any failure nothing this call inserted is
 * left loaded.  The option string is wiped before returning (for an
 * installed module, libkmod's probe joins it with the modprobe.d options in a
 * buffer of its own, freed but not wiped: process memory only).
 * @report: may be NULL.
 * Return: 0; -EINVAL bad password or options; -EEXIST bdsnap already loaded
 * (nothing done); -ENOENT no such module file (or not installed for the
 * running kernel); -ENOEXEC built for another kernel (@report->kver) or
 * rejected by the kernel's version checks; -EPERM not allowed; else the
 * kernel's error (e.g. the module's init refused its parameters: -EINVAL).
 */
int bdsnap_module_load(const struct bdsnap_load_opts *opts, struct bdsnap_load_report *report);

/* bdsnap_module_unload() flags */
#define BDSNAP_UNLOAD_USCTM	(1U << 0)	/* then usctm too, if nothing else holds it */

/*
 * bdsnap_module_unload() - remove bdsnap.ko.  Activated devices without an
 * open session are dropped with it (deactivate them first to do it
 * cleanly); an open session holds the module, so its removal fails.
 * Return: 0; -ENOENT not loaded; -EBUSY a session is open; -EPERM; -errno.
 */
int bdsnap_module_unload(unsigned int flags);

/*
 * struct bdsnap_module_state - the module as the kernel shows it.
 * @loaded: 1 live; 0 not loaded (nothing else is set); -1 loading or
 *	unloading.
 * @version: the VERSION request (features: trackers, ordered, syscalls);
 *	@version.size is 0 when /dev/snap did not answer.
 * @modversion: /sys/module/bdsnap/version, "" if absent.
 * @store_dir: the store_dir parameter.
 * @sys_activate_nr, @sys_deactivate_nr: the system call numbers, -1 when
 *	not installed.
 * @refcnt: references to the module; each open session holds one.
 * @devices, @sessions: activated devices and open sessions (LIST).
 * @usctm_loaded: usctm.ko is loaded.
 */
struct bdsnap_module_state {
	int loaded;
	struct bdsnap_version version;
	char modversion[32];
	char store_dir[BDSNAP_PATH_MAX];
	long sys_activate_nr, sys_deactivate_nr;
	int refcnt;
	unsigned int devices, sessions;
	int usctm_loaded;
};

/* bdsnap_module_state() - Return: 0 (also when not loaded); -errno. */
int bdsnap_module_state(struct bdsnap_module_state *st);

/* ---- the boot-time configuration: /etc/bdsnap/bdsnap.conf ---- */

#define BDSNAP_CONF_PATH	"/etc/bdsnap/bdsnap.conf"
#define BDSNAP_PASSFILE_PATH	"/etc/bdsnap/password"

/*
 * One device to activate: a line
 * "PATH [tracker=bio|vfs] [ordered=yes|no] [rollback=no|yes|keep]".
 * @path: absolute, as written.  @tracker: enum bdsnap_tracker.
 * @flags: BDSNAP_ACT_*.  @line: its line number.
 */
struct bdsnap_conf_dev {
	char *path;
	unsigned int tracker;
	unsigned int flags;
	unsigned int line;
};

/*
 * struct bdsnap_conf_error - the first problem found.
 * @line: 1-based line number; 0 for the file as a whole.
 * @what: the offending word (truncated to fit), or "".
 * @reason: a short static explanation.
 */
struct bdsnap_conf_error {
	unsigned int line;
	char what[128];
	const char *reason;
};

/*
 * bdsnap_conf_parse() - parse a configuration held in memory.
 * '#' starts a comment (at the start of a line or after blanks); blank
 * lines are skipped; words are separated by blanks.  Each line names one
 * device by absolute path, then keys: tracker=bio|vfs (default: the
 * module's default tracker), ordered=yes|no (default no), rollback=no|yes|keep
 * (default no; yes: BDSNAP_ACT_ROLLBACK and BDSNAP_ACT_ORDERED, keep: and
 * BDSNAP_ACT_KEEP).  A device listed twice, a key given twice, an unknown
 * key, and rollback with ordered=no or tracker=vfs are errors.
 * @out: malloc'ed array (NULL when @count is 0), freed by bdsnap_conf_free().
 * @err: may be NULL.
 * Return: 0; -EINVAL syntax (@err says where); -ENOMEM.
 */
int bdsnap_conf_parse(const char *text, size_t len, struct bdsnap_conf_dev **out,
		      size_t *count, struct bdsnap_conf_error *err);

/*
 * bdsnap_conf_read() - read and parse @file (at most 1 MiB).  The file must
 * not be writable by group or others, since it decides what is snapshotted.
 * Return: as bdsnap_conf_parse(); -EPERM writable by group or others;
 * -EFBIG; -errno (line 0).
 */
int bdsnap_conf_read(const char *file, struct bdsnap_conf_dev **out, size_t *count,
		     struct bdsnap_conf_error *err);

/*
 * bdsnap_conf_check() - every device exists, is a block device or a
 * regular file, and none is listed twice under two names.
 * Return: 0; -ENOENT missing; -ENOTBLK neither; -EINVAL listed twice;
 * -errno; @err names the line.
 */
int bdsnap_conf_check(const struct bdsnap_conf_dev *devs, size_t count,
		      struct bdsnap_conf_error *err);
void bdsnap_conf_free(struct bdsnap_conf_dev *devs, size_t count);

/*
 * struct bdsnap_retention - how many sessions the store keeps.
 * @size: see BDSNAP_OPTS_INIT.
 * @keep: sessions kept per device, the newest; 0: no limit.
 * @max_size: bytes the sessions of the store may take; 0: no limit.
 */
struct bdsnap_retention {
	uint32_t size;
	unsigned int keep;
	uint64_t max_size;
};

/*
 * bdsnap_conf_retention() - the retention settings of a configuration file:
 * a line of "keep=N" and "max_size=SIZE" words (not starting with '/'),
 * each at most once in the file.  The file is read and checked as
 * bdsnap_conf_read() does; unset settings are 0.
 * Return: as bdsnap_conf_read().
 */
int bdsnap_conf_retention(const char *file, struct bdsnap_retention *ret,
			  struct bdsnap_conf_error *err);

/*
 * bdsnap_parse_size() - "4096", "512K", "20G", "1TiB" (powers of 1024).
 * Return: 0; -EINVAL not a size; -ERANGE too large.
 */
int bdsnap_parse_size(const char *s, uint64_t *out);

/* ---- sessions in the store ---- */

/* A number meta does not (validly) carry. */
#define BDSNAP_UNSET UINT64_MAX

/* The last state= line of meta. */
enum bdsnap_meta_state {
	BDSNAP_META_UNKNOWN = 0,	/* absent or malformed */
	BDSNAP_META_OPEN,		/* still mounted, or the machine crashed */
	BDSNAP_META_COMPLETE,
	BDSNAP_META_INCOMPLETE,		/* a pre-image could not be stored */
};

/*
 * struct bdsnap_session_info - meta of one session, parsed at open.
 * Strings are NULL when the key is absent; numbers are BDSNAP_UNSET when the
 * key is absent or malformed (bdsnap_session_verify() reports which).
 */
struct bdsnap_session_info {
	const char *dir;		/* as given to bdsnap_session_open() */
	const char *name;		/* last component of @dir */
	const char *uuid, *path, *devname, *tracker, *start, *end;
	const char *state;		/* raw, e.g. "incomplete:ENOSPC" */
	enum bdsnap_meta_state state_kind;
	uint64_t format, block_size, device_size, ordered;
	uint64_t blocks_saved, bytes_raw, bytes_stored, errors;
	/* Identity of the device (docs/format.md), written by newer modules. */
	const char *fs_type, *fs_uuid, *image_dev, *end_sha256;
	uint64_t image_ino, end_sample;
};

struct bdsnap_session;

/*
 * bdsnap_session_open() - read a session directory's meta.
 * Succeeds on any readable meta file: a malformed one is recorded and
 * reported by bdsnap_session_verify(), so a damaged session can still be shown.
 * Return: 0; -ENOENT no meta; -EFBIG meta larger than 1 MiB; -ENOMEM; -errno.
 */
int bdsnap_session_open(const char *dir, struct bdsnap_session **out);
void bdsnap_session_close(struct bdsnap_session *s);
const struct bdsnap_session_info *bdsnap_session_info(const struct bdsnap_session *s);
/* bdsnap_session_meta() - value of @key's last line in meta, or NULL. */
const char *bdsnap_session_meta(const struct bdsnap_session *s, const char *key);

/*
 * bdsnap_sessions_scan() - the sessions under @store_dir, oldest start first.
 * Subdirectories without a meta file are skipped.  Free with
 * bdsnap_sessions_free().
 */
int bdsnap_sessions_scan(const char *store_dir, struct bdsnap_session ***out, size_t *count);
void bdsnap_sessions_free(struct bdsnap_session **list, size_t count);

/*
 * bdsnap_sessions_later() - the sessions under @store_dir of the same device
 * as @s (same meta path) that started after it, oldest first; what has to be
 * undone, newest first, before @s's pre-images describe the device again.
 * Free with bdsnap_sessions_free().
 * Return: 0; -EINVAL when @s has no path or start; as bdsnap_sessions_scan().
 */
int bdsnap_sessions_later(const char *store_dir, const struct bdsnap_session *s,
			  struct bdsnap_session ***out, size_t *count);

/*
 * struct bdsnap_verify_report - what verification found.
 * @records, @bytes_raw: valid records and the sum of their raw_len.
 * @file_size: size of "blocks" when verification started (later appends to
 *	an open session are not looked at).
 * @torn_tail: a record cut short at the end of "blocks" was ignored (a crash
 *	during append); @torn_offset is where it starts.  Not an error, except in
 *	a session whose meta says complete.
 * @meta_torn: the last line of meta had no newline and was ignored.
 * @bad_file, @bad_offset, @reason: on -EBADMSG, the first violation: "meta"
 *	or "blocks", the byte offset in that file, and a short static reason.
 */
struct bdsnap_verify_report {
	uint64_t records, bytes_raw, file_size;
	int torn_tail, meta_torn;
	uint64_t torn_offset;
	const char *bad_file;
	uint64_t bad_offset;
	const char *reason;
};

/*
 * Progress: @done of @total bytes of the whole operation (every pass over
 * "blocks", and for export the device copy).  @total is estimated at the
 * start; @done never exceeds it and reaches it when the operation succeeds.
 */
typedef void (*bdsnap_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/*
 * bdsnap_session_verify() - apply every rule of docs/format.md to meta and
 * "blocks", streaming "blocks".  @report may be NULL.
 * Return: 0 (possibly with a torn tail); -EBADMSG corruption; -errno I/O.
 */
int bdsnap_session_verify(struct bdsnap_session *s, struct bdsnap_verify_report *report);
/* bdsnap_session_verify_progress() - the same, calling @progress (may be NULL). */
int bdsnap_session_verify_progress(struct bdsnap_session *s,
				   struct bdsnap_verify_report *report,
				   bdsnap_progress_fn progress, void *ctx);

/*
 * struct bdsnap_extent - a run of consecutive blocks saved in a session.
 * @offset, @length: the bytes of the device the run covers (the last block
 *	of a device may be partial, so @length is not always a multiple).
 * @block, @blocks: the first block number and the number of blocks.
 */
struct bdsnap_extent {
	uint64_t offset, length;
	uint64_t block, blocks;
};

/*
 * bdsnap_session_changed() - the extents of the device changed during the
 * session: its saved blocks, sorted and merged into runs.  The session is
 * verified first (a block is listed only once its record checked out).
 * @out: set to a malloc'ed array the caller free()s (NULL when @count is 0).
 * @progress: may be NULL.  @report: may be NULL.
 * Return: 0; -EBADMSG corruption (@report says where); -ENOMEM; -errno I/O.
 */
int bdsnap_session_changed(struct bdsnap_session *s, struct bdsnap_extent **out,
			   size_t *count, bdsnap_progress_fn progress, void *ctx,
			   struct bdsnap_verify_report *report);

/* ---- retention: removing sessions ---- */

/*
 * bdsnap_session_needs() - does restoring (or exporting) @older need
 * @newer?  It does when both are of the same device (meta path) and @newer
 * started later: its pre-images are part of @older's chain.
 * Return: 1 or 0.
 */
int bdsnap_session_needs(const struct bdsnap_session *older, const struct bdsnap_session *newer);

/*
 * bdsnap_session_live() - is the session open now: the module lists it as
 * the open session of an activated device (its device is mounted)?  A meta
 * that says open with no such session was left by a crash.
 * Return: 1, 0 (also when the module is not loaded), -errno when it cannot
 * be told.
 */
int bdsnap_session_live(const struct bdsnap_session *s);

/* bdsnap_session_bytes() - what the session takes in the store (its files). */
uint64_t bdsnap_session_bytes(const struct bdsnap_session *s);

/*
 * bdsnap_retention_plan() - the sessions @policy removes.
 * @list: as bdsnap_sessions_scan() gives it (oldest first); @remove[i] is
 * set to 1 for each session to remove, else 0.
 * Sessions go oldest first: a device keeps its @policy->keep newest, and
 * then the oldest go until the store is at most @policy->max_size.  Only
 * the oldest sessions of a device are removed, so no remaining session
 * loses one its chain needs; a live session (or one that cannot be told)
 * is never removed.
 * Return: 0; -EINVAL bad @policy.
 */
int bdsnap_retention_plan(struct bdsnap_session *const *list, size_t n,
			  const struct bdsnap_retention *policy, unsigned char *remove);

/*
 * bdsnap_session_mark_broken() - append "chain_broken=@deleted" to the
 * meta of a session whose chain lost @deleted: its restore and export are
 * then refused (-ENOLINK) unless forced, instead of silently wrong.
 */
int bdsnap_session_mark_broken(struct bdsnap_session *s, const char *deleted);

/*
 * bdsnap_session_delete() - remove the session's files and directory.  The
 * caller still closes @s.  Return: 0; -EBUSY live; -errno.
 */
int bdsnap_session_delete(struct bdsnap_session *s);

/* ---- restore and export: a session and the later ones of its device ---- */

/* struct bdsnap_restore_opts.flags */
#define BDSNAP_RESTORE_DRY_RUN	(1U << 0)	/* verify and check, write nothing */
/*
 * Go ahead with a session that is open and not ordered, or incomplete, or
 * marked as missing a later session, and with a device whose identity does
 * not match or cannot be proven (struct bdsnap_identity).  Never overrides
 * corruption, or a target that is mounted or in use.
 */
#define BDSNAP_RESTORE_FORCE	(1U << 1)

/* struct bdsnap_identity: checked, differs */
#define BDSNAP_ID_SIZE		(1U << 0)	/* device size == meta device_size */
#define BDSNAP_ID_FINGERPRINT	(1U << 1)	/* end_sha256 recomputed on the device */
#define BDSNAP_ID_FS_UUID	(1U << 2)	/* file system UUID == meta fs_uuid */

/*
 * struct bdsnap_identity - does a device hold what the newest session of a
 * chain left on it?  Only then do the chain's pre-images give back the
 * state before the oldest session.
 * @session: the newest session (its directory), whose meta is compared.
 * @checked, @differs: BDSNAP_ID_* compared, and found different.
 * @no_fingerprint: the session recorded no end fingerprint (an older
 *	module, or it never ended): the content cannot be proven.  Accepted
 *	without BDSNAP_RESTORE_FORCE only for an open ordered session, whose
 *	crash restore (docs/format.md) must keep working: then @size and the
 *	file system UUID are still compared.
 * @size, @device_size: the device's size now, and the one recorded.
 * @sample: blocks the fingerprint covers (meta end_sample).
 * @end_sha256: the fingerprint recomputed on the device ("" if not).
 * @fs_uuid: the file system UUID read from the device ("" if none could be
 *	read: only ext2/3/4 and XFS superblocks are read).
 */
struct bdsnap_identity {
	const char *session;
	unsigned int checked, differs;
	int no_fingerprint;
	uint64_t size, device_size, sample;
	char end_sha256[65];
	char fs_uuid[33];
};

struct bdsnap_chain_report;

/*
 * Called once every check has passed and before the first byte is
 * overwritten (restore: always; export: only over an existing target),
 * with what is about to happen.  Return 0 to go ahead; anything else
 * cancels (-ECANCELED, nothing written).
 */
typedef int (*bdsnap_confirm_fn)(void *ctx, const struct bdsnap_chain_report *plan);

/*
 * struct bdsnap_restore_opts - options of restore and export.
 * @size: see BDSNAP_OPTS_INIT.
 * @flags: BDSNAP_RESTORE_*.
 * @progress, @ctx: may be NULL.
 * @confirm: may be NULL (go ahead); called with @ctx.
 */
struct bdsnap_restore_opts {
	uint32_t size;
	unsigned int flags;
	bdsnap_progress_fn progress;
	void *ctx;
	bdsnap_confirm_fn confirm;
};

/*
 * struct bdsnap_chain_report - what restore or export found and did.
 * @size: the caller's sizeof (BDSNAP_OPTS_INIT); at most that much is written.
 * @verify: the verification of the session a failure is about (all passed:
 *	of the session restored or exported).
 * @bad_session: on -EBADMSG, or a refusal about one session, its directory.
 * @sessions: the chain's length: the session and the later ones applied (fewer than
 *	given when the device holds what an older one of them left: see
 *	bdsnap_chain_restore()).
 * @blocks, @bytes: the session's own pre-images written (in a dry run, that
 *	would be).
 * @later_blocks, @later_bytes: those of the later sessions, written first.
 * @image_size: export: bytes of the image (the session's device_size).
 * @target_exists: export: the target existed (and is overwritten).
 * @wrote: the pre-images were being written: then @blocks and
 *	@later_blocks count what was written when an error stopped it.
 * @refused: on a refusal, a short static reason; nothing was written.
 * @where: on an error or refusal about the source or the target, "source"
 *	or "target"; NULL when it is about a session.
 * @identity: restore: of the target; export: of the source.
 */
struct bdsnap_chain_report {
	uint32_t size;
	struct bdsnap_verify_report verify;
	const char *bad_session;
	size_t sessions;
	uint64_t blocks, bytes, later_blocks, later_bytes, image_size;
	int target_exists, wrote;
	const char *refused;
	const char *where;
	struct bdsnap_identity identity;
};

/*
 * bdsnap_chain_restore() - put a device back as it was before @s's mount.
 * @later: the sessions of the same device after @s, oldest first, as
 *	bdsnap_sessions_later() gives them; @nlater may be 0.
 * @target: block device or regular file; NULL means meta's path.
 *
 * In order, and stopping at the first failure: every session's meta and
 * state (an open session that is not ordered, an incomplete one, or one
 * marked chain_broken=, is refused unless BDSNAP_RESTORE_FORCE); the target
 * is opened (refused when mounted or in use; a block device O_EXCL, held
 * to the end); every session's log is verified; the target's identity is
 * checked against the newest session (struct bdsnap_identity: a mismatch,
 * or no fingerprint, is refused unless BDSNAP_RESTORE_FORCE), or against an
 * older one whose end the device holds (the sessions after it were restored
 * already: the chain stops there, @report->sessions says how long it is);
 * @confirm is
 * asked; then the pre-images are written, the later sessions' newest first
 * and @s's last, so each block ends as before the oldest session that
 * saved it; the target is fsync'ed.  The result equals what
 * bdsnap_chain_export() makes of the same chain.
 * @opts, @report: may be NULL.
 * Return: 0; -EBADMSG corruption (nothing written); refusals (nothing
 * written, @report->refused says why): -EINPROGRESS open and not ordered,
 * -ENODATA incomplete, -ENOLINK a later session was deleted, -EINVAL the
 * sessions are not one device's in order, -EBUSY target mounted or in use,
 * -EMEDIUMTYPE identity; -ECANCELED @confirm said no; -ENOTBLK target
 * neither a block device nor a regular file; -errno I/O (if after the first
 * write, @report->blocks and @report->later_blocks say how far it got).
 */
int bdsnap_chain_restore(struct bdsnap_session *s, struct bdsnap_session *const *later,
			 size_t nlater, const char *target, const struct bdsnap_restore_opts *opts,
			 struct bdsnap_chain_report *report);

/*
 * bdsnap_chain_export() - write the device as it was before @s's mount to
 * @target, without changing the device.
 * @later: as bdsnap_chain_restore().
 * @source: the device or image now, read-only (a block device with
 *	O_DIRECT, not O_EXCL, so it may be mounted); NULL means meta's path.
 *	Its identity is checked as a restore target's is: the image is only
 *	right if the source holds what the newest session left.
 * @target: a regular file (written to a temporary file next to it, then
 *	renamed over it, so it is never left half-written) or an unused block
 *	device at least device_size bytes long.
 *
 * The image is the device's current content, then the pre-images of the
 * later sessions newest first, then those of @s: each block ends up as it
 * was before the oldest of these sessions changed it, and a block no session
 * saved was never written since, so the device still holds its old content.
 * Every session is verified before anything is written.  The device is read
 * before the log of the newest session, so for an ordered session (writes
 * held until their pre-image is durable) the image is exact even while the
 * device is mounted and being written to.
 * BDSNAP_RESTORE_DRY_RUN verifies and checks, and writes nothing.
 * Return: 0; as bdsnap_chain_restore(), plus -EINVAL target is the source,
 * -ENOSPC a block device target smaller than device_size.
 */
int bdsnap_chain_export(struct bdsnap_session *s, struct bdsnap_session *const *later,
			size_t nlater, const char *source, const char *target,
			const struct bdsnap_restore_opts *opts, struct bdsnap_chain_report *report);

/* ---- rollback mode: finishing the rollbacks a crash left undone ---- */

/*
 * A device activated with BDSNAP_ACT_ROLLBACK has each session rolled back
 * by the kernel at unmount, which then appends "rolled_back=<time>" to the
 * session's meta (keep=yes) or deletes the session (keep=no).  A session
 * whose meta says rollback=yes and that is neither was interrupted: the
 * machine stopped while the device was mounted or while the kernel wrote
 * the pre-images back, or that write failed (rollback_error=).  Rollback
 * implies ordered mode, so its pre-images are durable and restoring its
 * chain finishes the job.
 */

/* struct bdsnap_rollback_opts.flags */
#define BDSNAP_ROLLBACK_DRY_RUN	(1U << 0)	/* verify and check, write and mark nothing */

/*
 * struct bdsnap_rollback_session - one unfinished rollback session.
 * @session: the session (valid during the callback).
 * @blocks: its pre-images written (in a dry run, to write); 0 for one
 *	without its log ("blocks"), which has nothing to write back: in
 *	ordered mode no write reaches the device before its pre-image is in
 *	the log (a crash while the kernel deleted the session leaves this).
 * @keep: it is marked rolled_back= rather than deleted: its meta does
 *	not say keep=no, or a later session of its device stays in the store
 *	(whose pre-images carry this session's changes: the chains of older
 *	sessions need it).
 * @done: it was marked or deleted.
 */
struct bdsnap_rollback_session {
	struct bdsnap_session *session;
	uint64_t blocks;
	int keep;
	int done;
};

/*
 * struct bdsnap_rollback_result - one device's unfinished rollback.
 * @path: the device (its sessions' meta path), the restore's target.
 * @sessions, @count: its unfinished rollback sessions, oldest first.
 * @error: 0 when every session was finished (or would be, in a dry run),
 *	else why not (-errno, as bdsnap_rollback_finish() returns it).
 * @refused: on a refusal, a short static reason; nothing was written.
 * @chain: the restore's report (also the reasons of bdsnap_chain_restore()).
 */
struct bdsnap_rollback_result {
	const char *path;
	const struct bdsnap_rollback_session *sessions;
	size_t count;
	int error;
	const char *refused;
	const struct bdsnap_chain_report *chain;
};

/* Called once per device, after its rollback was finished, or failed. */
typedef void (*bdsnap_rollback_fn)(void *ctx, const struct bdsnap_rollback_result *result);

/*
 * struct bdsnap_rollback_opts - options of bdsnap_rollback_finish().
 * @size: see BDSNAP_OPTS_INIT.
 * @flags: BDSNAP_ROLLBACK_*.
 * @progress: each device's restore, from 0 again; may be NULL.
 * @result: may be NULL.  Both are called with @ctx.
 */
struct bdsnap_rollback_opts {
	uint32_t size;
	unsigned int flags;
	bdsnap_progress_fn progress;
	bdsnap_rollback_fn result;
	void *ctx;
};

/*
 * bdsnap_rollback_finish() - finish every unfinished rollback of @dev, or
 * of every device when @dev is NULL, found in @store_dir.
 * @dev: matched against the sessions' meta path: the same string, or the
 *	same device or file (so a /dev/disk/by-* name finds its sessions).
 *
 * Per device: refused (-EBUSY) while the module lists it with a session
 * open or its rollback running (the session the module lists is not
 * unfinished: it is under way); otherwise the chain of its OLDEST
 * unfinished session (that session and every later one of the device,
 * whatever their mode) is restored onto the device as
 * bdsnap_chain_restore() does, every check included, except that the
 * device's end fingerprint is not compared, nor the chain cut: the device
 * may hold part of the pre-images already.  Its size and file system UUID
 * still are.  Then the unfinished sessions are marked or deleted, the
 * newest first: were a crash to leave a later one unfinished and an
 * earlier one marked, the next call would roll the device back only to the
 * later one's start.  A failure stops that device, not the others.
 * @opts: may be NULL.
 * Return: the number of sessions finished (in a dry run, that would be);
 * else the first device's error: -EBUSY the device is mounted, in use or
 * being rolled back; -EINVAL no @store_dir, or @opts of a size this
 * library cannot take; -ENOENT no such @store_dir; else as
 * bdsnap_chain_restore() (-EBADMSG, -ENODATA, -EMEDIUMTYPE, ...), or of
 * bdsnap_session_delete() and of appending to meta.
 */
int bdsnap_rollback_finish(const char *store_dir, const char *dev,
			   const struct bdsnap_rollback_opts *opts);

/*
 * A view: the device as it was before a session's mount, read while the
 * device stays mounted and written; the same bytes bdsnap_chain_export()
 * would write, without the copy.
 */
struct bdsnap_view;

/*
 * bdsnap_view_open() - open the view of @s, with its @later sessions and
 * @source as bdsnap_chain_export() takes them; the sessions must stay open
 * as long as the view.  Checks as bdsnap_chain_export(): every session's
 * state, every log is verified, the source's identity is checked.  An open
 * session that is not ordered is viewed only while the module can be asked
 * to wait for its log (BDSNAP_IOC_SYNC_STORE, before each read's log scan),
 * otherwise refused: its pre-images may still be on their way to the log
 * when the device is read.
 * @opts: BDSNAP_RESTORE_FORCE, progress of the verify pass; may be NULL.
 * Return: 0 and *@out; -ENOSPC the source is smaller than the session's
 * device; the errors and refusals of bdsnap_chain_export(), @report says why.
 */
int bdsnap_view_open(struct bdsnap_session *s, struct bdsnap_session *const *later,
		     size_t nlater, const char *source, const struct bdsnap_restore_opts *opts,
		     struct bdsnap_view **out, struct bdsnap_chain_report *report);

/* bdsnap_view_size() - the view's size in bytes: the session's device_size. */
uint64_t bdsnap_view_size(const struct bdsnap_view *v);

/*
 * bdsnap_view_read() - @len bytes of the view at @off into @buf.  An open
 * (ordered) session's log is followed as it grows: the device is read
 * first, then the records added since the last read.
 * Return: 0; -EINVAL past the end of the view; -EBADMSG a record of a block
 * of the range, valid at open, is not any more (the log was damaged since);
 * -EIO the source shrank, the open session's log gained a bad record, or
 * the open plain session failed or ended incomplete (writes went through
 * without pre-images); -errno reading the source or a log.
 */
int bdsnap_view_read(struct bdsnap_view *v, void *buf, size_t len, uint64_t off);

void bdsnap_view_close(struct bdsnap_view *v);

#ifdef __cplusplus
}
#endif

#endif /* BDSNAP_H */
