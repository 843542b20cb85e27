// SPDX-License-Identifier: GPL-2.0
/*
 * Password check.  The module keeps a salted SHA-256 digest only; the
 * plaintext given at load is wiped.  Comparison is constant time and every
 * failure costs a fixed delay, so guessing is slow whatever the input.
 */
#define pr_fmt(fmt) KBUILD_MODNAME "-auth: " fmt

#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/random.h>
#include <linux/delay.h>
#include <linux/string.h>
#include <crypto/hash.h>
#include <crypto/algapi.h>
#include <crypto/sha2.h>
#include "bdsnap.h"

#define BDSNAP_SALT_SIZE	16

static unsigned int auth_fail_delay_ms = 500;
module_param(auth_fail_delay_ms, uint, 0444);
MODULE_PARM_DESC(auth_fail_delay_ms,
		 "Delay before a wrong password is reported, in ms (10..5000, default 500)");

/**
 * struct bdsnap_auth - the password as the module keeps it.
 * @lock: serialises SET_PASSWORD against checks.
 * @tfm: sha256.
 * @salt: random, drawn at load and at each password change.
 * @digest: SHA-256(salt || password).
 */
static struct bdsnap_auth {
	struct mutex lock;
	struct crypto_shash *tfm;
	u8 salt[BDSNAP_SALT_SIZE];
	u8 digest[SHA256_DIGEST_SIZE];
} bdsnap_auth = {
	.lock = __MUTEX_INITIALIZER(bdsnap_auth.lock),
};

static int bdsnap_auth_digest(const u8 *salt, const char *password, u8 *out)
{
	SHASH_DESC_ON_STACK(desc, bdsnap_auth.tfm);
	int ret;

	desc->tfm = bdsnap_auth.tfm;
	ret = crypto_shash_init(desc) ?:
	      crypto_shash_update(desc, salt, BDSNAP_SALT_SIZE) ?:
	      crypto_shash_finup(desc, password, strlen(password), out);
	shash_desc_zero(desc);
	return ret;
}

static int bdsnap_auth_store(const char *password)
{
	get_random_bytes(bdsnap_auth.salt, sizeof(bdsnap_auth.salt));
	return bdsnap_auth_digest(bdsnap_auth.salt, password, bdsnap_auth.digest);
}

/*
 * The load-time password also sits in the module's argument string (kept
 * by the module loader): wipe every copy we can reach.
 */
static void bdsnap_auth_wipe_args(const char *password)
{
	char *args = THIS_MODULE->args;
	size_t len = strlen(password), size, i;

	if (!args || !len)
		return;
	size = ksize(args);
	for (i = 0; i + len <= size; i++)
		if (!memcmp(args + i, password, len))
			memzero_explicit(args + i, len);
}

int bdsnap_auth_init(char *password)
{
	int ret;

	if (auth_fail_delay_ms < 10 || auth_fail_delay_ms > 5000) {
		pr_warn("auth_fail_delay_ms=%u out of range, using 500\n",
			auth_fail_delay_ms);
		auth_fail_delay_ms = 500;
	}
	if (!password || !*password) {
		pr_err("a password is required: load with password=...\n");
		return -EINVAL;
	}
	bdsnap_auth.tfm = crypto_alloc_shash("sha256", 0, 0);
	if (IS_ERR(bdsnap_auth.tfm))
		return PTR_ERR(bdsnap_auth.tfm);
	ret = bdsnap_auth_store(password);
	bdsnap_auth_wipe_args(password);
	memzero_explicit(password, strlen(password));
	if (ret)
		crypto_free_shash(bdsnap_auth.tfm);
	return ret;
}

void bdsnap_auth_done(void)
{
	crypto_free_shash(bdsnap_auth.tfm);
	memzero_explicit(bdsnap_auth.digest, sizeof(bdsnap_auth.digest));
}

static int bdsnap_auth_check_locked(const char *password)
{
	u8 digest[SHA256_DIGEST_SIZE];
	int ret;

	ret = bdsnap_auth_digest(bdsnap_auth.salt, password, digest);
	if (!ret && crypto_memneq(digest, bdsnap_auth.digest, sizeof(digest)))
		ret = -EACCES;
	memzero_explicit(digest, sizeof(digest));
	return ret;
}

static int bdsnap_auth_fail(int ret)
{
	if (ret == -EACCES)
		msleep(auth_fail_delay_ms);
	return ret;
}

/**
 * bdsnap_auth_check() - check a password.
 * @password: NUL-terminated candidate.
 *
 * Return: 0 when it matches; -EACCES (after the fixed delay) when not.
 */
int bdsnap_auth_check(const char *password)
{
	int ret;

	mutex_lock(&bdsnap_auth.lock);
	ret = bdsnap_auth_check_locked(password);
	mutex_unlock(&bdsnap_auth.lock);
	return bdsnap_auth_fail(ret);
}

int bdsnap_auth_set(const char *old_password, const char *new_password)
{
	int ret;

	mutex_lock(&bdsnap_auth.lock);
	ret = bdsnap_auth_check_locked(old_password);
	if (!ret)
		ret = bdsnap_auth_store(new_password);
	mutex_unlock(&bdsnap_auth.lock);
	return bdsnap_auth_fail(ret);
}
