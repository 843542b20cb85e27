// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libFuzzer harness for libbdsnap's store parser: a fuzzed session directory
 * (meta + blocks) goes through everything the CLI does with one: open, show
 * (every info field), scan of the store, verify, and restore (forced, onto a
 * scratch image), under ASan/UBSan and LeakSanitizer.
 *
 * Input layout (so that mutations hit both files):
 *   [u16 LE meta_len][meta_len bytes of meta][rest: the blocks file]
 * A short input is all meta.  tests/fuzz/make_seeds.py writes valid sessions
 * in this layout as the seed corpus.
 *
 * Beyond "no crash, no leak, no UB", the harness checks the library's
 * promises and abort()s when one is broken (libFuzzer then saves the input):
 *   - verify and restore agree: a session that verify calls corrupt is never
 *     restored, and one it accepts is never called corrupt by restore;
 *   - a successful restore wrote exactly the records verify counted;
 *   - restore never writes outside the target (its size does not change),
 *     and a refused or corrupt restore writes nothing at all;
 *   - every string the library returns is NUL-terminated (strlen under ASan).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bdsnap.h"

#define TARGET_SIZE	(256U << 10)	/* seeds use device_size <= this */

static char root[256], sdir[300], meta_path[320], blocks_path[320], target[300];
static uint8_t *zero_block;

static void die(const char *what)
{
	perror(what);
	abort();
}

static void put_file(const char *path, const uint8_t *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		die(path);
	while (len) {
		ssize_t n = write(fd, data, len);

		if (n <= 0)
			die(path);
		data += n;
		len -= (size_t)n;
	}
	close(fd);
}

/* The target image: TARGET_SIZE zero bytes. */
static void reset_target(void)
{
	int fd = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || ftruncate(fd, TARGET_SIZE))
		die(target);
	close(fd);
}

static int target_untouched(void)
{
	static uint8_t buf[65536];
	struct stat st;
	int fd, ok = 1;
	off_t off;

	if (stat(target, &st) || st.st_size != TARGET_SIZE)
		return 0;
	fd = open(target, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(target);
	for (off = 0; ok && off < TARGET_SIZE; off += sizeof(buf))
		ok = pread(fd, buf, sizeof(buf), off) == sizeof(buf) &&
		     !memcmp(buf, zero_block, sizeof(buf));
	close(fd);
	return ok;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("BDSNAP_FUZZ_TMP");

	(void)argc;
	(void)argv;
	if (!tmp)
		tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(root, sizeof(root), "%s/bdsnap-fuzz-XXXXXX", tmp);
	if (!mkdtemp(root))
		die(root);
	snprintf(sdir, sizeof(sdir), "%s/store", root);
	if (mkdir(sdir, 0700))
		die(sdir);
	strcat(sdir, "/s0_20240501T100000.000000000Z");
	if (mkdir(sdir, 0700))
		die(sdir);
	snprintf(meta_path, sizeof(meta_path), "%s/meta", sdir);
	snprintf(blocks_path, sizeof(blocks_path), "%s/blocks", sdir);
	snprintf(target, sizeof(target), "%s/target.img", root);
	zero_block = calloc(1, 65536);
	if (!zero_block)
		die("calloc");
	reset_target();
	return 0;
}

static size_t touch(const char *s)
{
	return s ? strlen(s) : 0;	/* ASan checks the terminator is in bounds */
}

static void show(const struct bdsnap_session_info *in)
{
	volatile size_t n = touch(in->dir) + touch(in->name) + touch(in->uuid) +
			    touch(in->path) + touch(in->devname) + touch(in->tracker) +
			    touch(in->start) + touch(in->end) + touch(in->state);
	(void)n;
}

/*
 * lib/bdsnap.h: an incomplete session, or an open one that is not ordered,
 * is restored only with BDSNAP_RESTORE_FORCE (an open ordered session is
 * restorable as it is: nothing reached the device before its pre-image).
 */
static int needs_force(const struct bdsnap_session_info *in)
{
	return in->state_kind == BDSNAP_META_INCOMPLETE ||
	       (in->state_kind == BDSNAP_META_OPEN && in->ordered != 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bdsnap_restore_opts opts = BDSNAP_OPTS_INIT(opts), dry = BDSNAP_OPTS_INIT(dry);
	struct bdsnap_chain_report rr = BDSNAP_OPTS_INIT(rr);
	struct bdsnap_verify_report vr;
	struct bdsnap_session **list;
	struct bdsnap_session *s;
	size_t meta_len, i, n;
	int vrc, rrc;

	meta_len = size >= 2 ? (size_t)(data[0] | data[1] << 8) : 0;
	if (size >= 2) {
		data += 2;
		size -= 2;
	}
	if (meta_len > size)
		meta_len = size;
	put_file(meta_path, data, meta_len);
	put_file(blocks_path, data + meta_len, size - meta_len);

	/* `bdsnap sessions`: the scan opens every session of the store. */
	{
		char store[300];

		snprintf(store, sizeof(store), "%s/store", root);
		if (bdsnap_sessions_scan(store, &list, &n) == 0) {
			for (i = 0; i < n; i++)
				show(bdsnap_session_info(list[i]));
			bdsnap_sessions_free(list, n);
		}
	}

	if (bdsnap_session_open(sdir, &s))
		return 0;
	show(bdsnap_session_info(s));
	(void)touch(bdsnap_session_meta(s, "state"));
	(void)touch(bdsnap_session_meta(s, ""));

	memset(&vr, 0, sizeof(vr));
	vrc = bdsnap_session_verify(s, &vr);
	if (vrc == -EBADMSG && (!vr.bad_file || !vr.reason))
		abort();	/* corruption is always explained */
	(void)(touch(vr.bad_file) + touch(vr.reason));

	/* `bdsnap restore --dry-run` (no --force): never accepts what verify rejects */
	opts.flags = BDSNAP_RESTORE_FORCE;
	dry.flags = BDSNAP_RESTORE_DRY_RUN;
	rrc = bdsnap_chain_restore(s, NULL, 0, target, &dry, &rr);
	if (vrc == -EBADMSG && rrc == 0)
		abort();
	if (rrc == 0 && needs_force(bdsnap_session_info(s)))
		abort();	/* restored without --force what needs it */

	rrc = bdsnap_chain_restore(s, NULL, 0, target, &opts, &rr);
	(void)(touch(rr.refused) + touch(rr.verify.reason) + touch(rr.verify.bad_file));
	if (vrc == -EBADMSG && rrc == 0)
		abort();	/* restored a session that verify rejected */
	if (vrc == 0 && rrc == -EBADMSG)
		abort();	/* restore rejected a session that verify accepted */
	if (rrc == 0 && (rr.blocks != vr.records || rr.verify.records != vr.records))
		abort();	/* wrote a different set of records than verify counted */
	if (rrc == 0 || rr.wrote) {
		struct stat st;

		if (stat(target, &st) || st.st_size != TARGET_SIZE)
			abort();	/* wrote outside the target */
		reset_target();
	} else if (!target_untouched()) {
		abort();	/* a refused or corrupt restore wrote something */
	}
	bdsnap_session_close(s);
	return 0;
}
