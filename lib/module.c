// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The module itself, through libkmod (what modprobe uses): find bdsnap.ko and
 * usctm.ko, check they were built for the running kernel, insert them with
 * the password in an option string that only ever lives in this process's
 * memory and the kernel's, and remove them.  Built with WITH_KMOD=1 (the
 * default); modstate.c reports their state without libkmod.
 */
#include <errno.h>
#include <libkmod.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "internal.h"

/* The library never prints: libkmod's messages go nowhere. */
static void kmod_quiet(void *data, int priority, const char *file, int line, const char *fn,
		       const char *format, va_list args)
{
	(void)data, (void)priority, (void)file, (void)line, (void)fn, (void)format, (void)args;
}

static int ctx_new(struct kmod_ctx **ctx)
{
	*ctx = kmod_new(NULL, NULL);
	if (!*ctx)
		return -ENOMEM;
	kmod_set_log_fn(*ctx, kmod_quiet, NULL);
	return 0;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

/*
 * The module file of @name: DIR/<sub>/<name>.ko or DIR/<name>.ko under @from,
 * else the installed one for the running kernel.  Return: 0 with *@mp (and
 * @path filled); -ENOENT none; -errno.
 */
static int module_find(struct kmod_ctx *ctx, const char *from, const char *sub,
		       const char *name, struct kmod_module **mp, char *path, size_t cap)
{
	struct kmod_list *list = NULL;
	char file[PATH_MAX];
	int rc;

	*mp = NULL;
	if (from) {
		snprintf(file, sizeof(file), "%s/%s/%s.ko", from, sub, name);
		if (access(file, F_OK))
			snprintf(file, sizeof(file), "%s/%s.ko", from, name);
		copy_str(path, cap, file);
		if (access(file, F_OK))
			return -errno;
		return kmod_module_new_from_path(ctx, file, mp);
	}
	rc = kmod_module_new_from_lookup(ctx, name, &list);
	if (rc < 0)
		return rc;
	if (list) {
		*mp = kmod_module_ref(kmod_module_get_module(list));
		kmod_module_unref_list(list);
	}
	/* Looked up but not installed for this kernel: no file to load. */
	if (*mp && !kmod_module_get_path(*mp)) {
		kmod_module_unref(*mp);
		*mp = NULL;
	}
	if (!*mp)
		return -ENOENT;
	copy_str(path, cap, kmod_module_get_path(*mp));
	return 0;
}

/*
 * Was @m built for the running kernel @release?  The kernel itself skips the
 * release when modversions are on, so a module for another kernel of the
 * same configuration would get as far as its symbol checks.
 * Return: 0; -ENOEXEC with @kver set; -errno reading the file.
 */
static int module_check(struct kmod_module *m, const char *release, char *kver, size_t cap)
{
	struct kmod_list *info = NULL, *l;
	const char *magic = NULL;
	int rc;

	rc = kmod_module_get_info(m, &info);
	if (rc < 0)
		return rc;
	kmod_list_foreach(l, info)
		if (!strcmp(kmod_module_info_get_key(l), "vermagic"))
			magic = kmod_module_info_get_value(l);
	rc = -ENOEXEC;
	if (magic) {
		size_t len = strcspn(magic, " ");

		snprintf(kver, cap, "%.*s", (int)len, magic);
		if (len == strlen(release) && !strncmp(magic, release, len))
			rc = 0;
	} else {
		copy_str(kver, cap, "");
	}
	kmod_module_info_free_list(info);
	return rc;
}

/* Printable, no double quote: the kernel's parameter parser has no escapes. */
static int password_ok(const char *pw)
{
	const unsigned char *p = (const unsigned char *)pw;

	if (!pw || !*pw || strlen(pw) >= BDSNAP_PASSWORD_MAX)
		return 0;
	for (; *p; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '"')
			return 0;
	return 1;
}

/* password="..." [params], in memory the caller wipes and frees. */
static char *build_options(const struct bdsnap_load_opts *o)
{
	const char *extra = o->params ? o->params : "";
	size_t cap = strlen(o->password) + strlen(extra) + 16;
	char *s = malloc(cap);

	if (s)
		snprintf(s, cap, "password=\"%s\"%s%s", o->password, *extra ? " " : "", extra);
	return s;
}

static void free_options(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

static int insert(struct kmod_module *m, const struct bdsnap_load_opts *o, const char *options)
{
	/* An install command would run a shell with the options in its environment. */
	if (o->from)
		return kmod_module_insert_module(m, 0, options);
	return kmod_module_probe_insert_module(m, KMOD_PROBE_IGNORE_COMMAND |
					       KMOD_PROBE_FAIL_ON_LOADED, options,
					       NULL, NULL, NULL);
}

/* usctm when it is wanted, present and not loaded yet: checked, or *@mp NULL. */
static void usctm_prepare(struct kmod_ctx *ctx, const struct bdsnap_load_opts *o,
			  const char *release, struct bdsnap_load_report *r,
			  struct kmod_module **mp)
{
	char kver[sizeof(r->kver)];
	int rc;

	*mp = NULL;
#ifdef __x86_64__
	if (o->flags & BDSNAP_LOAD_NO_SYSCALLS)
		return;
	rc = module_find(ctx, o->from, "usctm", "usctm", mp, r->usctm_path,
			 sizeof(r->usctm_path));
	if (rc == -ENOENT) {
		r->usctm_path[0] = '\0';
		return;		/* it is optional */
	}
	if (!rc && module_live("usctm"))
		rc = -EEXIST;
	if (!rc)
		rc = module_check(*mp, release, kver, sizeof(kver));
	if (rc < 0) {
		if (rc != -EEXIST)
			r->usctm_err = rc;
		kmod_module_unref(*mp);
		*mp = NULL;
	}
#else
	(void)ctx, (void)o, (void)release, (void)r, (void)rc, (void)kver;
#endif
}

static int load(struct kmod_ctx *ctx, const struct bdsnap_load_opts *o,
		struct bdsnap_load_report *r)
{
	struct kmod_module *bd = NULL, *us = NULL;
	struct utsname u;
	char *options = NULL;
	int rc;

	uname(&u);
	copy_str(r->running, sizeof(r->running), u.release);
	if (!password_ok(o->password))
		return -EINVAL;
	if (module_live("bdsnap"))
		return -EEXIST;
	r->failed = "bdsnap";
	rc = module_find(ctx, o->from, "module", "bdsnap", &bd, r->bdsnap_path,
			 sizeof(r->bdsnap_path));
	if (!rc)
		rc = module_check(bd, u.release, r->kver, sizeof(r->kver));
	if (rc < 0)
		goto out;
	usctm_prepare(ctx, o, u.release, r, &us);
	if (o->flags & BDSNAP_LOAD_DRY_RUN) {
		r->failed = NULL;
		goto out;
	}

	rc = -ENOMEM;
	options = build_options(o);
	if (!options) {
		r->failed = NULL;
		goto out;
	}
	/* usctm first, so bdsnap finds it at init and installs its calls. */
	if (us) {
		rc = kmod_module_insert_module(us, 0, "");
		if (rc < 0)
			r->usctm_err = rc;
		else
			r->loaded |= BDSNAP_MOD_USCTM;
	}
	rc = insert(bd, o, options);
	if (rc == 0) {
		r->loaded |= BDSNAP_MOD_BDSNAP;
		r->failed = NULL;
	} else if (r->loaded & BDSNAP_MOD_USCTM) {
		/* Nothing half-loaded. */
		if (kmod_module_remove_module(us, 0) == 0)
			r->loaded &= ~BDSNAP_MOD_USCTM;
	}
	/* The kernel's own version checks: the release matched, something else did not. */
	if (rc == -ENOEXEC)
		copy_str(r->kver, sizeof(r->kver), "");
out:
	free_options(options);
	kmod_module_unref(us);
	kmod_module_unref(bd);
	return rc;
}

/* bdsnap_module_load() of LIBBDSNAP_0.3: its opts start with their size. */
SYMVER(module_load_current, "bdsnap_module_load@@LIBBDSNAP_0.3");
int module_load_current(const struct bdsnap_load_opts *opts, struct bdsnap_load_report *report)
{
	struct bdsnap_load_report scratch;
	struct bdsnap_load_opts o;
	struct kmod_ctx *ctx;
	int rc;

	if (!report)
		report = &scratch;
	memset(report, 0, sizeof(*report));
	/* The first struct with a size had size, password, from, params, flags. */
	if (!opts || opts_take(&o, sizeof(o), opts, sizeof(o)))
		return -EINVAL;
	rc = ctx_new(&ctx);
	if (rc < 0)
		return rc;
	rc = load(ctx, &o, report);
	kmod_unref(ctx);
	return rc;
}

/* Remove @name; -ENOENT when it is not loaded. */
static int remove_module(struct kmod_ctx *ctx, const char *name, int only_unused)
{
	struct kmod_module *m;
	int rc;

	if (!module_live(name))
		return -ENOENT;
	rc = kmod_module_new_from_name(ctx, name, &m);
	if (rc < 0)
		return rc;
	if (only_unused && kmod_module_get_refcnt(m) != 0)
		rc = -EBUSY;
	else
		rc = kmod_module_remove_module(m, 0);
	kmod_module_unref(m);
	if (rc == -EAGAIN || rc == -EWOULDBLOCK)
		rc = -EBUSY;
	return rc;
}

int bdsnap_module_unload(unsigned int flags)
{
	struct kmod_ctx *ctx;
	int rc;

	if (flags & ~BDSNAP_UNLOAD_USCTM)
		return -EINVAL;
	rc = ctx_new(&ctx);
	if (rc < 0)
		return rc;
	rc = remove_module(ctx, "bdsnap", 0);
	/* usctm is left to whoever else holds it. */
	if (rc == 0 && (flags & BDSNAP_UNLOAD_USCTM))
		remove_module(ctx, "usctm", 1);
	kmod_unref(ctx);
	return rc;
}
