/* Per-row checksums of embedding tables, for EmbeddingBag's soft-error check
 * (docs/soft_errors.md, "EmbeddingBag").  Header-only: the row-wise quantizer (_rowwise.pyx)
 * takes them while a freshly quantized chunk is still in cache (and for any table it is
 * handed); the EmbeddingBag check (bag_check.c) reads them.
 *
 * For a row whose values (as the EmbeddingBag kernels read them) are v[0..D):
 *   sum     = sum_j v[j]           rounded to float32 (nearest)
 *   abs_sum = sum_j |v[j]|-style bound of the kernels' float32 terms, rounded *up* to float32
 * Quantized rows (v[j] = scale * q[j] + bias, codes q >= 0): both are exact functions of the
 * integer code sum Q = sum_j q[j]:
 *   sum = scale * Q + D * bias,   abs_sum = |scale| * Q + D * |bias|
 * abs_sum bounds the terms the kernel adds (scale*q[j] and bias separately, since it computes
 * fma(scale, q, acc + bias)), which is what its rounding error is proportional to.
 * Float rows (fp32 / fp16 / bf16): sum and sum of |v[j]| in double, then rounded.
 * Rows with NaN or infinity give a non-finite sum (the bags using them cannot be verified).
 */
#ifndef LOWPREC_ROW_CHECKSUM_H
#define LOWPREC_ROW_CHECKSUM_H

#include <math.h>
#include <string.h>

#include "half.h"
#include "lowprec_common.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Table formats: the same numbers as embedding.h's LOWPREC_EB_*. */
#define LOWPREC_CS_F32 0
#define LOWPREC_CS_F16 1
#define LOWPREC_CS_BF16 2
#define LOWPREC_CS_Q8 3
#define LOWPREC_CS_Q4 4
#define LOWPREC_CS_Q2 5

/* Round a non-negative double up to a float32 that is >= it (so the tolerance stays a bound);
 * the next float up by its bit pattern, not nextafterf(): this runs once per row of a table. */
static inline float lowprec_cs_round_up(double x) {
    float f = (float)x;
    if ((double)f < x) {
        uint32_t b;
        memcpy(&b, &f, 4);
        b += 1u; /* f >= 0 and finite here: the next float up */
        memcpy(&f, &b, 4);
    }
    return f;
}

/* Sum of the dim codes of a packed 4- or 2-bit row (padding bits of the last byte are zero in
 * tables we write, but tables from elsewhere may differ: only the D real codes are counted).
 * Plain per-byte field sums the compiler vectorises (this runs inside quantize_rowwise). */
static inline uint64_t lowprec_cs_code_sum_nbit(const uint8_t *row, int64_t dim, int bits) {
    const int per_byte = 8 / bits;
    const int64_t full = dim / per_byte;
    uint64_t q = 0;
    int64_t i = 0;
#if defined(__SSE2__)
    /* 16 bytes at a time: fields summed per byte (<= 30), then psadbw. */
    {
        const __m128i z = _mm_setzero_si128(), m4 = _mm_set1_epi8(0x0F), m2 = _mm_set1_epi8(0x33);
        __m128i acc = z;
        for (; i + 16 <= full; i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(row + i));
            if (bits == 2) {
                v = _mm_add_epi8(_mm_and_si128(v, m2), _mm_and_si128(_mm_srli_epi16(v, 2), m2));
            }
            v = _mm_add_epi8(_mm_and_si128(v, m4), _mm_and_si128(_mm_srli_epi16(v, 4), m4));
            acc = _mm_add_epi64(acc, _mm_sad_epu8(v, z));
        }
        q = (uint64_t)_mm_cvtsi128_si64(acc) + (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(acc, acc));
    }
#endif
    if (bits == 4) {
        for (; i < full; i++) q += (uint32_t)(row[i] & 15u) + (uint32_t)(row[i] >> 4);
    } else {
        for (; i < full; i++) {
            const uint32_t b = row[i];
            q += (b & 3u) + ((b >> 2) & 3u) + ((b >> 4) & 3u) + (b >> 6);
        }
    }
    const unsigned mask = (1u << bits) - 1u;
    for (int64_t j = full * per_byte; j < dim; j++) {
        q += (row[j / per_byte] >> ((j % per_byte) * bits)) & mask;
    }
    return q;
}

/* Sum of the dim codes of an 8-bit row. */
static inline uint64_t lowprec_cs_code_sum_8(const uint8_t *row, int64_t dim) {
    uint64_t q = 0;
    int64_t j = 0;
#if defined(__SSE2__)
    const __m128i z = _mm_setzero_si128();
    __m128i acc = z;
    for (; j + 16 <= dim; j += 16) {
        acc = _mm_add_epi64(acc, _mm_sad_epu8(_mm_loadu_si128((const __m128i *)(row + j)), z));
    }
    q = (uint64_t)_mm_cvtsi128_si64(acc) + (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(acc, acc));
#endif
    for (; j < dim; j++) q += row[j];
    return q;
}

/* checksum[0] = sum, checksum[1] = abs_sum of one row in format `fmt`. */
static inline void lowprec_row_checksum(const uint8_t *row, int64_t dim, int fmt,
                                        float *checksum) {
    double s = 0.0, a = 0.0;
    if (fmt == LOWPREC_CS_F32) {
        for (int64_t j = 0; j < dim; j++) {
            float v;
            memcpy(&v, row + 4 * j, 4);
            s += v;
            a += fabs((double)v);
        }
    } else if (fmt == LOWPREC_CS_F16 || fmt == LOWPREC_CS_BF16) {
        for (int64_t j = 0; j < dim; j++) {
            uint16_t h;
            memcpy(&h, row + 2 * j, 2);
            float v = fmt == LOWPREC_CS_F16 ? lowprec_f16_to_f32(h) : lowprec_bf16_to_f32(h);
            s += v;
            a += fabs((double)v);
        }
    } else {
        uint64_t q = 0;
        float scale, bias;
        if (fmt == LOWPREC_CS_Q8) {
            q = lowprec_cs_code_sum_8(row, dim);
            memcpy(&scale, row + dim, 4);
            memcpy(&bias, row + dim + 4, 4);
        } else {
            int bits = fmt == LOWPREC_CS_Q4 ? 4 : 2;
            int64_t code_bytes = (dim * bits + 7) / 8;
            uint16_t hs, hb;
            q = lowprec_cs_code_sum_nbit(row, dim, bits);
            memcpy(&hs, row + code_bytes, 2);
            memcpy(&hb, row + code_bytes + 2, 2);
            scale = lowprec_f16_to_f32(hs);
            bias = lowprec_f16_to_f32(hb);
        }
        /* scale * Q and D * bias are exact in double (24-bit significands times integers far
         * below 2^29); their sum is rounded once, far below the float32 tolerance. */
        s = (double)scale * (double)q + (double)dim * (double)bias;
        a = fabs((double)scale) * (double)q + (double)dim * fabs((double)bias);
    }
    checksum[0] = (float)s;
    checksum[1] = isnan(a) ? (float)a : lowprec_cs_round_up(a);
}

/* The exact sum of a row's bytes, each read as a signed byte (-128..127; the AVX-512 kernel
 * sums them so with vpdpbusd straight from memory): the float-table check (bag_check.h) stores
 * it mod 15 in 4 bits per row and recomputes it on the generic path.  A flip of bit k of a byte
 * moves it by +-2^k (bit 7: +-128), never a multiple of 15.  psadbw sums 16 bytes per step:
 * the signed value of b is (b ^ 0x80) - 128. */
static inline int64_t lowprec_row_bytesum(const uint8_t *row, int64_t n_bytes) {
    int64_t s = 0;
    int64_t i = 0;
#if defined(__SSE2__)
    {
        const __m128i z = _mm_setzero_si128(), flip = _mm_set1_epi8((char)0x80);
        __m128i acc = z;
        for (; i + 16 <= n_bytes; i += 16) {
            const __m128i b = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(row + i)), flip);
            acc = _mm_add_epi64(acc, _mm_sad_epu8(b, z));
        }
        s = _mm_cvtsi128_si64(acc) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(acc, acc)) - 128 * i;
    }
#endif
    for (; i < n_bytes; i++) s += (int8_t)row[i];
    return s;
}

/* The 4-bit checksum stored for a row: its signed byte sum mod 15, in 0..14. */
static inline unsigned lowprec_row_bytesum_mod15(const uint8_t *row, int64_t n_bytes) {
    const int64_t m = lowprec_row_bytesum(row, n_bytes) % 15;
    return (unsigned)(m < 0 ? m + 15 : m);
}

/* Row r's stored 4-bit byte-sum checksum (two rows per byte, row 2i in the low half). */
static inline unsigned lowprec_row_nibble(const uint8_t *nibbles, int64_t r) {
    return (nibbles[r >> 1] >> (4 * (r & 1))) & 15u;
}

#endif /* LOWPREC_ROW_CHECKSUM_H */
