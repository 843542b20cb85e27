// SPDX-License-Identifier: GPL-2.0
/* bdsnap load, unload, and the module's state in status. */
#include <err.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd.h"
#include "out.h"
#include "password.h"

static const char *tracker_word(unsigned int t)
{
	return t == BDSNAP_TRACKER_VFS ? "vfs" : t == BDSNAP_TRACKER_BIO ? "bio" : "default";
}

/* ---- the configuration file ---- */

static void conf_error(const char *file, const struct bdsnap_conf_error *e, int rc)
{
	const char *why = e->reason ? e->reason : strerror(-rc);

	if (e->line)
		warnx("%s:%u: %s: %s", file, e->line, e->what, why);
	else
		warnx("%s: %s", file, why);
}

/* Parse --config and check its devices, waiting up to --wait seconds for them. */
static int read_conf(const struct args *a, struct bdsnap_conf_dev **devs, size_t *n)
{
	const struct timespec tick = { 0, 200 * 1000 * 1000 };
	struct bdsnap_conf_error e = { 0 };
	unsigned int ticks = 0;
	int rc;

	rc = bdsnap_conf_read(a->config, devs, n, &e);
	if (rc < 0) {
		conf_error(a->config, &e, rc);
		return -1;
	}
	/* At boot, device nodes may still be appearing. */
	while ((rc = bdsnap_conf_check(*devs, *n, &e)) == -ENOENT && ticks < a->wait * 5) {
		nanosleep(&tick, NULL);
		ticks++;
	}
	if (rc < 0) {
		conf_error(a->config, &e, rc);
		bdsnap_conf_free(*devs, *n);
		return -1;
	}
	return 0;
}

/* ---- load ---- */

/*
 * The kernel's lockdown mode ("integrity", "confidentiality"), or NULL when
 * it is not locked down or cannot tell.  Debian's kernels lock down when
 * booted with Secure Boot, and then refuse unsigned modules with EPERM.
 */
static const char *lockdown_mode(void)
{
	static const char *const modes[] = { "integrity", "confidentiality" };
	char buf[128] = "";
	FILE *f = fopen("/sys/kernel/security/lockdown", "re");
	size_t i;

	if (!f)
		return NULL;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	for (i = 0; i < ARRAY_SIZE(modes); i++) {
		char word[32];

		snprintf(word, sizeof(word), "[%s]", modes[i]);
		if (strstr(buf, word))
			return modes[i];
	}
	return NULL;
}

/* The kernel accepts only modules signed by a key it trusts. */
static int signature_refused(const char *path, int rc, const char *lockdown)
{
	warnx("load: %s: %s%s%s: the kernel refuses a module not signed by a key it trusts "
	      "(Secure Boot): DKMS signs the modules it builds with its key; enrol it with "
	      "mokutil --import /var/lib/dkms/mok.pub and reboot (README, \"Secure Boot\")",
	      path, strerror(-rc), lockdown ? ", kernel lockdown " : "", lockdown ? lockdown : "");
	return EXIT_MODULE;
}

/* Why bdsnap_module_load() failed, and the exit status that says so. */
static int load_failed(const struct args *a, const struct bdsnap_load_report *r, int rc)
{
	const char *path = r->failed && !strcmp(r->failed, "usctm") ? r->usctm_path :
			   r->bdsnap_path;
	const char *lockdown;

	switch (rc) {
	case -EKEYREJECTED:
		return signature_refused(path, rc, NULL);
	case -EPERM:
		lockdown = lockdown_mode();
		if (lockdown)
			return signature_refused(path, rc, lockdown);
		break;
	case -EEXIST:
		warnx("load: the bdsnap module is already loaded (bdsnap unload first)");
		return EXIT_REFUSED;
	case -ENOENT:
		if (a->from)
			warnx("load: %s: no such module file (build it with make)", path);
		else
			warnx("load: bdsnap.ko is not installed for kernel %s: install bdsnap-dkms "
			      "and this kernel's headers (or make install, with DKMS), or --from a "
			      "build tree", r->running);
		return EXIT_MODULE;
	case -ENOEXEC:
		if (r->kver[0])
			warnx("load: %s: built for kernel %s, this is %s: rebuild it with "
			      "make KVER=%s", path, r->kver, r->running, r->running);
		else
			warnx("load: %s: rejected by the kernel (%s): built for another kernel "
			      "or configuration than %s (see dmesg)", path, strerror(ENOEXEC),
			      r->running);
		return EXIT_MODULE;
	case -EOPNOTSUPP:
		warnx("load: this bdsnap was built without libkmod (WITH_KMOD=0): "
		      "load the modules with insmod");
		return EXIT_MODULE;
	case -EINVAL:
		if (r->failed)
			break;
		warnx("load: password: a module parameter cannot hold double quotes or "
		      "control characters");
		return EXIT_CONFIG;
	}
	warnx("load: %s: %s%s", r->failed ? path : "bdsnap", strerror(-rc),
	      rc == -EPERM ? " (needs CAP_SYS_MODULE)" : "");
	return EXIT_ERROR;
}

static void print_loaded(const struct bdsnap_load_report *r, bool dry)
{
	struct bdsnap_module_state st;

	if (dry) {
		printf("would load %s%s%s (kernel %s)\n", r->bdsnap_path,
		       r->usctm_path[0] && !r->usctm_err ? " after " : "",
		       r->usctm_path[0] && !r->usctm_err ? r->usctm_path : "", r->running);
		return;
	}
	printf("loaded %s\n", r->bdsnap_path);
	if (bdsnap_module_state(&st) == 0 && st.sys_activate_nr >= 0)
		printf("system calls: activate_snapshot %ld, deactivate_snapshot %ld\n",
		       st.sys_activate_nr, st.sys_deactivate_nr);
	else
		printf("system calls: none (ioctl only)\n");
}

/*
 * Finish the rollbacks a crash left undone of the configured devices in
 * rollback mode, before any device is activated: at boot nothing mounts
 * them meanwhile.  A device whose rollback cannot be finished is marked in
 * @skip (NULL: a dry run) and is not activated, so that the failure is
 * seen.  The exit status of the first failure.
 */
static int finish_rollbacks(const struct bdsnap_conf_dev *d, size_t n, bool *skip)
{
	struct bdsnap_module_state st;
	const char *store = DEFAULT_STORE;
	int rc, ret = EXIT_SUCCESS;
	size_t i;

	/* The module's store_dir (modprobe.d may move it); before it is loaded, the default. */
	if (bdsnap_module_state(&st) == 0 && st.store_dir[0])
		store = st.store_dir;
	for (i = 0; i < n; i++) {
		if (!(d[i].flags & BDSNAP_ACT_ROLLBACK))
			continue;
		rc = rollback_config_device(store, d[i].path, !skip);
		if (!rc)
			continue;
		warnx("load: %s: %s activated: a rollback is unfinished (bdsnap rollback %s)",
		      d[i].path, skip ? "not" : "would not be", d[i].path);
		if (skip)
			skip[i] = true;
		if (!ret)
			ret = rc;
	}
	return ret;
}

/*
 * Activate every configured device but those in @skip.  On a failure, undo
 * what this call did (its activations, and the modules it loaded): nothing
 * is left half-loaded.
 */
static int activate_all(const struct args *a, const struct bdsnap_conf_dev *d, size_t n,
			const bool *skip, const char *pw, unsigned int loaded)
{
	bool *mine = calloc(n ? n : 1, sizeof(*mine));
	size_t i, j;
	int rc = 0;

	if (!mine)
		errx(EXIT_ERROR, "out of memory");
	for (i = 0; i < n; i++) {
		if (skip[i])
			continue;
		rc = bdsnap_activate(d[i].path, pw, d[i].tracker, d[i].flags, BDSNAP_VIA_IOCTL);
		if (rc == -EEXIST && !(loaded & BDSNAP_MOD_BDSNAP)) {
			printf("%s: already activated\n", d[i].path);
			continue;
		}
		if (rc < 0)
			break;
		mine[i] = true;
		printf("activated %s (tracker %s%s%s%s)\n", d[i].path, tracker_word(d[i].tracker),
		       d[i].flags & BDSNAP_ACT_ORDERED ? ", ordered" : "",
		       d[i].flags & BDSNAP_ACT_ROLLBACK ? ", rollback" : "",
		       d[i].flags & BDSNAP_ACT_KEEP ? ", keep" : "");
	}
	if (i < n) {
		warnx("%s:%u: activate %s: %s%s", a->config, d[i].line, d[i].path, strerror(-rc),
		      ctl_hint(-rc));
		for (j = 0; j < i; j++)
			if (mine[j])
				bdsnap_deactivate(d[j].path, pw, BDSNAP_VIA_IOCTL);
		if (loaded & BDSNAP_MOD_BDSNAP)
			bdsnap_module_unload(loaded & BDSNAP_MOD_USCTM ? BDSNAP_UNLOAD_USCTM : 0);
		warnx("load: undone: %s", loaded & BDSNAP_MOD_BDSNAP ?
		      "the module is unloaded again" : "the devices activated here are deactivated");
	}
	free(mine);
	return i < n ? EXIT_ERROR : EXIT_SUCCESS;
}

int cmd_load(const struct args *a, const char *name)
{
	struct bdsnap_load_opts o = BDSNAP_OPTS_INIT(o);
	struct bdsnap_conf_dev *devs = NULL;
	struct bdsnap_load_report r;
	const char *passfile = a->passfile, *creds = secure_getenv("CREDENTIALS_DIRECTORY");
	char pw[BDSNAP_PASSWORD_MAX] = "unread", *credential = NULL;
	bool typed, loaded_before = false, *skip = NULL;
	size_t n = 0;
	int rc, unfinished, ret = EXIT_SUCCESS;

	(void)name;
	o.from = a->from;
	o.flags = a->no_syscalls ? BDSNAP_LOAD_NO_SYSCALLS : 0;
	if (a->config && read_conf(a, &devs, &n))
		return EXIT_CONFIG;
	if (creds && *creds && asprintf(&credential, "%s/password", creds) < 0)
		errx(EXIT_ERROR, "out of memory");
	/*
	 * At boot nobody is there to type: the config's password is in a file,
	 * or, under bdsnap.service, in the credential systemd loaded from it.
	 */
	if (a->config && !passfile && a->passfd < 0)
		passfile = credential ? credential : BDSNAP_PASSFILE_PATH;
	typed = !passfile && a->passfd < 0;
	/* A bad password file is worth reporting whatever the module's state. */
	if (!typed && read_password(passfile, a->passfd, pw, sizeof(pw))) {
		ret = EXIT_CONFIG;
		goto out;
	}
	/* Nobody should type a password for a module that cannot be loaded. */
	o.password = pw;
	o.flags |= BDSNAP_LOAD_DRY_RUN;
	rc = bdsnap_module_load(&o, &r);
	if (rc == -EEXIST && a->config) {
		loaded_before = true;
		printf("bdsnap is already loaded: activating only\n");
	} else if (rc < 0) {
		ret = load_failed(a, &r, rc);
		goto out;
	}
	if (r.usctm_err)
		warnx("usctm: %s: %s: %s without the system calls (ioctl only)", r.usctm_path,
		      strerror(-r.usctm_err), a->dry_run ? "bdsnap would be loaded" : "loading bdsnap");
	if (a->dry_run) {
		if (!loaded_before)
			print_loaded(&r, true);
		ret = finish_rollbacks(devs, n, NULL);
		goto out;
	}
	if (typed && read_password(NULL, -1, pw, sizeof(pw))) {
		ret = EXIT_CONFIG;
		goto out;
	}
	if (!loaded_before) {
		o.flags &= ~BDSNAP_LOAD_DRY_RUN;
		rc = bdsnap_module_load(&o, &r);
		if (rc < 0) {
			ret = load_failed(a, &r, rc);
			goto out;
		}
		print_loaded(&r, false);
	}
	skip = calloc(n ? n : 1, sizeof(*skip));
	if (!skip)
		errx(EXIT_ERROR, "out of memory");
	unfinished = finish_rollbacks(devs, n, skip);
	ret = activate_all(a, devs, n, skip, pw, r.loaded);
	if (ret == EXIT_SUCCESS)
		ret = unfinished;
out:
	free(skip);
	explicit_bzero(pw, sizeof(pw));
	bdsnap_conf_free(devs, n);
	free(credential);
	return ret;
}

/* ---- unload ---- */

/* Deactivate every device (none has an open session), with one password. */
static int deactivate_all(const struct args *a, const struct bdsnap_dev_info *v, size_t n)
{
	char pw[BDSNAP_PASSWORD_MAX];
	size_t i;
	int rc = 0;

	if (read_password(a->passfile, a->passfd, pw, sizeof(pw)))
		return EXIT_CONFIG;
	for (i = 0; i < n && rc == 0; i++) {
		rc = bdsnap_deactivate(v[i].path, pw, BDSNAP_VIA_IOCTL);
		if (rc == 0)
			printf("deactivated %s\n", v[i].path);
		else
			warnx("unload: deactivate %s: %s%s", v[i].path, strerror(-rc),
			      ctl_hint(-rc));
	}
	explicit_bzero(pw, sizeof(pw));
	return rc == 0 ? EXIT_SUCCESS : rc == -EBUSY ? EXIT_REFUSED : EXIT_ERROR;
}

int cmd_unload(const struct args *a, const char *name)
{
	struct bdsnap_dev_info *v;
	size_t i, n;
	int rc;

	(void)name;
	rc = bdsnap_list(&v, &n);
	if (rc == -ENOENT) {
		warnx("unload: the bdsnap module is not loaded");
		return EXIT_ERROR;
	}
	if (rc < 0) {
		warnx("unload: /dev/%s: %s", BDSNAP_CTL_NAME, strerror(-rc));
		return EXIT_ERROR;
	}
	for (i = 0; i < n; i++) {
		if (v[i].session_state == BDSNAP_SESSION_NONE)
			continue;
		warnx("unload: refused: a session is open on %s (%s mounted): unmount it first%s",
		      v[i].path, v[i].devname[0] ? v[i].devname : "device",
		      a->force ? " (--force deactivates devices; it cannot end a session)" : "");
		free(v);
		return EXIT_REFUSED;
	}
	rc = EXIT_SUCCESS;
	if (n && !a->force) {
		warnx("unload: refused: %zu device%s activated (%s%s): deactivate %s, or use "
		      "--force to deactivate %s first", n, n > 1 ? "s" : "", v[0].path,
		      n > 1 ? ", ..." : "", n > 1 ? "them" : "it", n > 1 ? "them" : "it");
		rc = EXIT_REFUSED;
	} else if (n) {
		rc = deactivate_all(a, v, n);
	}
	free(v);
	if (rc != EXIT_SUCCESS)
		return rc;

	rc = bdsnap_module_unload(BDSNAP_UNLOAD_USCTM);
	if (rc == -EBUSY) {
		warnx("unload: refused: bdsnap is in use (a session was opened meanwhile?): "
		      "unmount first");
		return EXIT_REFUSED;
	}
	if (rc < 0) {
		warnx("unload: bdsnap: %s%s", strerror(-rc),
		      rc == -EPERM ? " (needs CAP_SYS_MODULE)" : "");
		return EXIT_ERROR;
	}
	printf("unloaded bdsnap\n");
	return EXIT_SUCCESS;
}

/* ---- status ---- */

/* The module's state: what status --module shows, and status first. */
enum { M_MODULE, M_VERSION, M_TRACKERS, M_ORDERED, M_FORMAT, M_BLOCK_SIZE, M_STORE,
       M_SYS_ACTIVATE, M_SYS_DEACTIVATE, M_USCTM, M_DEVICES, M_SESSIONS, M_REFS };
static const struct out_col module_cols[] = {
	[M_MODULE] = { "MODULE", OUT_STR, 0, "loaded, not loaded, loading or unloading" },
	[M_VERSION] = { "VERSION", OUT_STR, 0, "the module's version" },
	[M_TRACKERS] = { "TRACKERS", OUT_STR, 0, "trackers it offers: bio, vfs" },
	[M_ORDERED] = { "ORDERED", OUT_BOOL, 0, "ordered mode offered" },
	[M_FORMAT] = { "STORE_FORMAT", OUT_NUM, 0, "store format version it writes" },
	[M_BLOCK_SIZE] = { "BLOCK_SIZE", OUT_NUM, 0, "block size of the pre-images" },
	[M_STORE] = { "STORE_DIR", OUT_STR, 0, "where sessions are stored" },
	[M_SYS_ACTIVATE] = { "SYS_ACTIVATE", OUT_NUM, 0, "activate_snapshot() system call number" },
	[M_SYS_DEACTIVATE] = { "SYS_DEACTIVATE", OUT_NUM, 0,
			       "deactivate_snapshot() system call number" },
	[M_USCTM] = { "USCTM", OUT_BOOL, 0, "usctm.ko is loaded" },
	[M_DEVICES] = { "DEVICES", OUT_NUM, 0, "activated devices" },
	[M_SESSIONS] = { "SESSIONS", OUT_NUM, 0, "open sessions" },
	[M_REFS] = { "REFERENCES", OUT_NUM, 0, "references to the module (one per open session)" },
};

struct out_table *module_table(const struct args *a)
{
	static const char *const state_words[] = { "loading or unloading", "not loaded", "loaded" };
	const struct bdsnap_version *ver;
	struct bdsnap_module_state st;
	struct out_table *t;
	char trackers[16];
	int rc;

	rc = bdsnap_module_state(&st);
	if (rc < 0)
		errx(EXIT_ERROR, "module state: %s", strerror(-rc));
	ver = st.version.size ? &st.version : NULL;
	t = out_table_new(&a->fmt, "module", module_cols, ARRAY_SIZE(module_cols),
			  "MODULE,VERSION,TRACKERS,ORDERED,STORE_FORMAT,BLOCK_SIZE,STORE_DIR,"
			  "SYS_ACTIVATE,SYS_DEACTIVATE,USCTM,DEVICES,SESSIONS,REFERENCES",
			  true, a->module);
	out_row(t);
	out_str(t, M_MODULE, state_words[st.loaded + 1]);
	if (st.loaded != 1)
		return t;
	if (ver)
		snprintf(trackers, sizeof(trackers), "%s%s%s",
			 ver->features & BDSNAP_FEAT_TRACKER_BIO ? "bio" : "",
			 (ver->features & BDSNAP_FEAT_TRACKER_BIO) &&
			 (ver->features & BDSNAP_FEAT_TRACKER_VFS) ? " " : "",
			 ver->features & BDSNAP_FEAT_TRACKER_VFS ? "vfs" : "");
	out_str(t, M_VERSION, st.modversion[0] ? st.modversion : NULL);
	out_str(t, M_TRACKERS, ver ? trackers : NULL);
	out_bool(t, M_ORDERED, ver ? !!(ver->features & BDSNAP_FEAT_ORDERED) : BDSNAP_UNSET);
	out_u64(t, M_FORMAT, ver ? ver->store_format : BDSNAP_UNSET);
	out_u64(t, M_BLOCK_SIZE, ver ? ver->block_size : BDSNAP_UNSET);
	out_str(t, M_STORE, st.store_dir[0] ? st.store_dir : NULL);
	out_u64(t, M_SYS_ACTIVATE, st.sys_activate_nr < 0 ? BDSNAP_UNSET :
		(uint64_t)st.sys_activate_nr);
	out_u64(t, M_SYS_DEACTIVATE, st.sys_deactivate_nr < 0 ? BDSNAP_UNSET :
		(uint64_t)st.sys_deactivate_nr);
	out_bool(t, M_USCTM, st.usctm_loaded);
	out_u64(t, M_DEVICES, st.devices);
	out_u64(t, M_SESSIONS, st.sessions);
	out_u64(t, M_REFS, st.refcnt);
	return t;
}

void module_columns_help(FILE *f)
{
	out_columns_help(f, module_cols, ARRAY_SIZE(module_cols));
}
