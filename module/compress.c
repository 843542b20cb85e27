// SPDX-License-Identifier: GPL-2.0
/*
 * zlib compression of pre-images.  One deflate state per session store,
 * used only by the store's worker, so no locking.  Level 1: pre-images are
 * compressed on the write path's shadow and speed matters more than the
 * last percent of ratio.
 */
#include <linux/zlib.h>
#include <linux/vmalloc.h>
#include <linux/slab.h>
#include "bdsnap.h"
#include "compress.h"

#define BDSNAP_DEFLATE_LEVEL	1

int bdsnap_deflate_init(struct bdsnap_deflate *z)
{
	struct z_stream_s *strm;
	int ret = -ENOMEM;

	strm = kzalloc(sizeof(*strm), GFP_KERNEL);
	if (!strm)
		return -ENOMEM;
	strm->workspace = vzalloc(zlib_deflate_workspacesize(MAX_WBITS, MAX_MEM_LEVEL));
	if (!strm->workspace)
		goto fail_stream;
	if (zlib_deflateInit2(strm, BDSNAP_DEFLATE_LEVEL, Z_DEFLATED, MAX_WBITS,
			      MAX_MEM_LEVEL, Z_DEFAULT_STRATEGY) != Z_OK) {
		ret = -EINVAL;
		goto fail_workspace;
	}
	z->stream = strm;
	z->workspace = strm->workspace;
	return 0;

fail_workspace:
	vfree(strm->workspace);
fail_stream:
	kfree(strm);
	return ret;
}

void bdsnap_deflate_done(struct bdsnap_deflate *z)
{
	struct z_stream_s *strm = z->stream;

	if (!strm)
		return;
	zlib_deflateEnd(strm);
	vfree(z->workspace);
	kfree(strm);
	z->stream = NULL;
}

/**
 * bdsnap_deflate() - compress one pre-image into a zlib stream.
 * @z: deflate state.
 * @src: raw data.
 * @len: bytes at @src.
 * @dst: output.
 * @cap: room at @dst; pass less than @len to get compression only when it
 *	saves space.
 *
 * Return: bytes written to @dst, or -ENOSPC when the result does not fit.
 */
int bdsnap_deflate(struct bdsnap_deflate *z, const void *src, unsigned int len,
		   void *dst, unsigned int cap)
{
	struct z_stream_s *strm = z->stream;

	if (zlib_deflateReset(strm) != Z_OK)
		return -EINVAL;
	strm->next_in = src;
	strm->avail_in = len;
	strm->next_out = dst;
	strm->avail_out = cap;
	if (zlib_deflate(strm, Z_FINISH) != Z_STREAM_END)
		return -ENOSPC;
	return strm->total_out;
}
