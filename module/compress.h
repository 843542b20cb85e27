/* SPDX-License-Identifier: GPL-2.0 */
/* zlib deflate of pre-images. */
#ifndef BDSNAP_COMPRESS_H
#define BDSNAP_COMPRESS_H

#include <linux/types.h>

/* compress.c */
struct bdsnap_deflate {
	void *workspace;
	void *stream;
};

int bdsnap_deflate_init(struct bdsnap_deflate *z);
void bdsnap_deflate_done(struct bdsnap_deflate *z);
int bdsnap_deflate(struct bdsnap_deflate *z, const void *src, unsigned int len,
		   void *dst, unsigned int cap);

#endif /* BDSNAP_COMPRESS_H */
