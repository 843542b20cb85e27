// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * CRC-32 of pre-images (docs/format.md: zlib's crc32(0, buf, len)).
 *
 * Checking every record's data CRC was most of a raw restore's CPU time:
 * zlib's table-driven ("braided") crc32 runs at about 3.5 GB/s, slower than
 * the page-cache copies a restore makes.  On x86-64 with PCLMULQDQ the
 * buffer is folded 64 bytes at a time by carry-less multiplication, about
 * four times as fast; the method and constants are Intel's ("Fast CRC
 * Computation for Generic Polynomials Using PCLMULQDQ Instruction", 2009,
 * for the bit-reflected IEEE polynomial), as zlib-ng and Chromium's zlib use
 * them.  Elsewhere, and for what is left over (< 16 bytes), zlib computes it.
 * The folding is checked against zlib once before it is trusted, so a CPU
 * or emulator that gets it wrong costs speed, never a false verdict.
 */
#include <stdbool.h>
#include <zlib.h>

#include "internal.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

#define FOLD_MIN	64

static inline __m128i load(const uint8_t *p)
{
	return _mm_loadu_si128((const __m128i *)p);
}

/*
 * @crc is the running CRC register (the complement of zlib's value), @len a
 * multiple of 16 and at least FOLD_MIN.
 */
__attribute__((target("pclmul,sse4.1")))
static uint32_t fold(const uint8_t *p, size_t len, uint32_t crc)
{
	/* Intel's constants: fold 512 bits, fold 128, reduce 64 to 32, Barrett's P' and mu. */
	const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596, 0x0154442bd4);
	const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);
	const __m128i k5 = _mm_set_epi64x(0, 0x0163cd6124);
	const __m128i poly = _mm_set_epi64x(0x01f7011641, 0x01db710641);
	const __m128i low32 = _mm_setr_epi32(~0, 0, ~0, 0);
	__m128i x1, x2, x3, x4, t1, t2, t3, t4;

	x1 = _mm_xor_si128(load(p), _mm_cvtsi32_si128(crc));
	x2 = load(p + 16);
	x3 = load(p + 32);
	x4 = load(p + 48);
	for (p += 64, len -= 64; len >= 64; p += 64, len -= 64) {
		t1 = _mm_clmulepi64_si128(x1, k1k2, 0x00);
		t2 = _mm_clmulepi64_si128(x2, k1k2, 0x00);
		t3 = _mm_clmulepi64_si128(x3, k1k2, 0x00);
		t4 = _mm_clmulepi64_si128(x4, k1k2, 0x00);
		x1 = _mm_clmulepi64_si128(x1, k1k2, 0x11);
		x2 = _mm_clmulepi64_si128(x2, k1k2, 0x11);
		x3 = _mm_clmulepi64_si128(x3, k1k2, 0x11);
		x4 = _mm_clmulepi64_si128(x4, k1k2, 0x11);
		x1 = _mm_xor_si128(_mm_xor_si128(x1, t1), load(p));
		x2 = _mm_xor_si128(_mm_xor_si128(x2, t2), load(p + 16));
		x3 = _mm_xor_si128(_mm_xor_si128(x3, t3), load(p + 32));
		x4 = _mm_xor_si128(_mm_xor_si128(x4, t4), load(p + 48));
	}
	/* The four lanes into one, then the 16-byte blocks left. */
	t1 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
	x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x11), x2), t1);
	t1 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
	x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x11), x3), t1);
	t1 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
	x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x11), x4), t1);
	for (; len >= 16; p += 16, len -= 16) {
		t1 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
		x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x11), load(p)),
				   t1);
	}
	/* 128 bits to 64, then 64 to 32 by Barrett reduction. */
	x2 = _mm_clmulepi64_si128(x1, k3k4, 0x10);
	x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2);
	x2 = _mm_srli_si128(x1, 4);
	x1 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, low32), k5, 0x00), x2);
	x2 = _mm_clmulepi64_si128(_mm_and_si128(x1, low32), poly, 0x10);
	x2 = _mm_clmulepi64_si128(_mm_and_si128(x2, low32), poly, 0x00);
	return _mm_extract_epi32(_mm_xor_si128(x1, x2), 1);
}

static uint32_t crc_folded(const uint8_t *p, size_t len)
{
	size_t n = len & ~(size_t)15;
	uint32_t crc = ~fold(p, n, ~0U);

	return crc32_z(crc, p + n, len - n);
}

static bool use_fold;

/* Decided once, before any thread of the caller can ask. */
__attribute__((constructor))
static void pick(void)
{
	unsigned int a, b, c, d, i;
	uint8_t probe[256 + 3];

	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_PCLMUL) || !(c & bit_SSE4_1))
		return;
	for (i = 0; i < sizeof(probe); i++)
		probe[i] = i * 167 + 13;
	/* Odd lengths and an unaligned start: every tail and fold path once. */
	for (i = FOLD_MIN; i <= 256; i += 61)
		if (crc_folded(probe + 3, i) != crc32_z(0, probe + 3, i))
			return;
	use_fold = true;
}

uint32_t data_crc32(const void *buf, size_t len)
{
	if (use_fold && len >= FOLD_MIN)
		return crc_folded(buf, len);
	return crc32_z(0, buf, len);
}

bool data_crc32_folds(void)
{
	return use_fold;
}

#else

uint32_t data_crc32(const void *buf, size_t len)
{
	return crc32_z(0, buf, len);
}

bool data_crc32_folds(void)
{
	return false;
}

#endif
