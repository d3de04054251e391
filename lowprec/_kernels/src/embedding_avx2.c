/* AVX2 + FMA + F16C EmbeddingBag kernels (twins of embedding.c, identical results).
 *
 * A bag is pooled in column blocks of up to 64 floats: the block's accumulators (up to 8 ymm)
 * stay in registers while the bag's entries stream by, so a row costs one load, one convert and
 * one FMA (plus an add for quantized rows) per 8 columns.  D <= 64 (the common case) is one
 * pass; wider rows take ceil(D/64) passes over the bag, the later ones hitting L1 (a bag of 32
 * rows of D=128 fp32 is 16 KiB).  The block width is a compile-time constant (1..8 vectors, a
 * switch) so that the accumulators are registers; 8 accumulators + scale + bias + temporaries fit
 * the 16 ymm registers, 16 accumulators would not.
 *
 * Software prefetch: during the first pass, the rows of the entry EB_PF positions ahead (across
 * bag boundaries within this call's range) are prefetched, every cache line of the row.  Random
 * rows of a large table miss every cache level; with ~16 rows in flight the loop is bounded by
 * the memory system's parallelism instead of its latency.  Without prefetch the 1M-row 8-bit case
 * ran 3x slower; 16 vs 32 was within this shared machine's noise (to re-tune on a quiet one).
 * With a->prefetch_l2 (AMD Zen 4+) rows are prefetched in two levels, as in embedding_avx512.c:
 * into L2 LOWPREC_EB_PF_FAR entries ahead, into L1 LOWPREC_EB_PF_NEAR ahead.
 *
 * Tails: quantized codes of the last vector are loaded whole (8 codes): those bytes always lie
 * inside the row, because the scale and bias (8 or 4 bytes) follow the codes.  The lanes past D
 * are computed and never stored.  Float rows have nothing after them, so the last partial vector
 * is copied into a zeroed buffer first.
 */
#include "embedding.h"

#if LOWPREC_BUILD_AVX2
#include <immintrin.h>
#include <string.h>

#include "half.h"

#define EB_PF 16
#define EB_AI __attribute__((always_inline)) inline

static EB_AI int64_t eb_code_bytes_avx2(int fmt, int64_t dim) {
    switch (fmt) {
    case LOWPREC_EB_Q8: return dim;
    case LOWPREC_EB_Q4: return (dim + 1) / 2;
    case LOWPREC_EB_Q2: return (dim + 3) / 4;
    default: return 0;
    }
}

static EB_AI int64_t eb_row_bytes(int fmt, int64_t dim) {
    switch (fmt) {
    case LOWPREC_EB_F32: return 4 * dim;
    case LOWPREC_EB_F16:
    case LOWPREC_EB_BF16: return 2 * dim;
    case LOWPREC_EB_Q8: return dim + 8;
    default: return eb_code_bytes_avx2(fmt, dim) + 4;
    }
}

/* 8 columns starting at column j (a multiple of 8) of a row, as floats (codes for quantized). */
LOWPREC_TARGET_AVX2 static EB_AI __m256 eb_ld(int fmt, const uint8_t *row, int64_t j) {
    switch (fmt) {
    case LOWPREC_EB_F32: return _mm256_loadu_ps((const float *)(row + 4 * j));
    case LOWPREC_EB_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * j)));
    case LOWPREC_EB_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(row + 2 * j))), 16));
    case LOWPREC_EB_Q8:
        return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(row + j))));
    case LOWPREC_EB_Q4: {
        int32_t u;
        memcpy(&u, row + j / 2, 4);
        const __m256i sh = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
        __m256i v = _mm256_srlv_epi32(_mm256_set1_epi32(u), sh);
        return _mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(15)));
    }
    default: {
        uint16_t u;
        memcpy(&u, row + j / 4, 2);
        const __m256i sh = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
        __m256i v = _mm256_srlv_epi32(_mm256_set1_epi32((int32_t)u), sh);
        return _mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(3)));
    }
    }
}

/* The last `lt` (< 8) columns of a float row, zero-padded, without reading past the row. */
LOWPREC_TARGET_AVX2 static EB_AI __m256 eb_ld_part(int fmt, const uint8_t *row, int64_t j,
                                                    int lt) {
    if (fmt >= LOWPREC_EB_Q8) return eb_ld(fmt, row, j);
    uint8_t tmp[32] = {0};
    const int es = fmt == LOWPREC_EB_F32 ? 4 : 2;
    memcpy(tmp, row + es * j, (size_t)(es * lt));
    return eb_ld(fmt, tmp, 0);
}

LOWPREC_TARGET_AVX2 static EB_AI void eb_st(const lowprec_eb_args *a, uint8_t *orow, int64_t j,
                                            __m256 x, int lt) {
    uint8_t tmp[32];
    int es;
    if (a->out_fmt == LOWPREC_EB_OUT_F32) {
        es = 4;
        if (lt == 8) {
            _mm256_storeu_ps((float *)(orow + 4 * j), x);
            return;
        }
        _mm256_storeu_ps((float *)tmp, x);
    } else {
        __m128i h;
        es = 2;
        if (a->out_fmt == LOWPREC_EB_OUT_F16) {
            h = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        } else {
            /* bf16, round half to even; NaN -> quiet NaN of the same sign (ml_dtypes). */
            __m256i b = _mm256_castps_si256(x);
            __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
            __m256i r = _mm256_add_epi32(b, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
            r = _mm256_srli_epi32(r, 16);
            __m256i qn = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(b, 16),
                                                          _mm256_set1_epi32(0x8000)),
                                         _mm256_set1_epi32(0x7fc0));
            __m256i isnan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
            r = _mm256_blendv_epi8(r, qn, isnan);
            r = _mm256_packus_epi32(r, r); /* per 128-bit lane: [r0..3 r0..3 | r4..7 r4..7] */
            r = _mm256_permute4x64_epi64(r, 0x08);
            h = _mm256_castsi256_si128(r);
        }
        if (lt == 8) {
            _mm_storeu_si128((__m128i *)(orow + 2 * j), h);
            return;
        }
        _mm_storeu_si128((__m128i *)tmp, h);
    }
    memcpy(orow + es * j, tmp, (size_t)(es * lt));
}

/* Prefetch every cache line of the row at p0 (rb bytes): into L1, or into L2 only (l2). */
LOWPREC_TARGET_AVX2 static EB_AI void eb_prefetch_row(const uint8_t *p0, int64_t rb, int l2) {
    uintptr_t line = (uintptr_t)p0 & ~(uintptr_t)63;
    const uintptr_t last = (uintptr_t)p0 + (uintptr_t)rb - 1;
    for (int k = 0; k < 16 && line <= last; k++, line += 64) {
        if (l2) _mm_prefetch((const char *)line, _MM_HINT_T1);
        else _mm_prefetch((const char *)line, _MM_HINT_T0);
    }
}

/* Stored row of entry i, or -1 when the entry is skipped (padding or pruned).  The struct
 * fields are passed as locals so that they stay in registers in the row loop. */
static EB_AI int64_t eb_row_of(const void *indices, const int idx64, const int32_t *mapping,
                               int64_t pad, int64_t i) {
    int64_t r = idx64 ? ((const int64_t *)indices)[i] : (int64_t)((const int32_t *)indices)[i];
    if (r == pad) return -1;
    if (mapping) r = mapping[r];
    return r;
}

/* Pool columns [j0, j0 + 8*(NV-1) + lt) of one bag (entries [i0, i1)) into the output row. */
LOWPREC_TARGET_AVX2 static EB_AI void eb_block(const lowprec_eb_args *a, const int fmt,
                                               const int is_max, const int idx64, const int NV,
                                               int lt,
                                               int64_t j0, int64_t i0, int64_t i1,
                                               int64_t pf_end, int prefetch, uint8_t *orow) {
    const int quantized = fmt >= LOWPREC_EB_Q8;
    const int64_t dim = a->dim, stride = a->row_stride;
    const int64_t cb = eb_code_bytes_avx2(fmt, dim);
    const int64_t rb = eb_row_bytes(fmt, dim);
    const uint8_t *const table = a->table;
    const void *const indices = a->indices;
    const int32_t *const mapping = a->mapping;
    const float *const weights = is_max ? NULL : a->weights;
    const int64_t pad = a->padding_idx;
    const int l2 = a->prefetch_l2 != 0;
    const int pf_dist = l2 ? LOWPREC_EB_PF_NEAR : EB_PF;
    __m256 acc[8];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) acc[v] = _mm256_setzero_ps();
    int64_t count = 0;
    for (int64_t i = i0; i < i1; i++) {
        if (prefetch && l2 && i + LOWPREC_EB_PF_FAR < pf_end) {
            const int64_t rp = eb_row_of(indices, idx64, mapping, pad, i + LOWPREC_EB_PF_FAR);
            if (rp >= 0) eb_prefetch_row(table + rp * stride, rb, 1);
        }
        if (prefetch && i + pf_dist < pf_end) {
            const int64_t rp = eb_row_of(indices, idx64, mapping, pad, i + pf_dist);
            if (rp >= 0) eb_prefetch_row(table + rp * stride, rb, 0);
        }
        const int64_t r = eb_row_of(indices, idx64, mapping, pad, i);
        if (r < 0) continue;
        const uint8_t *row = table + r * stride;
        __m256 vs = _mm256_set1_ps(1.0f), vb = _mm256_setzero_ps();
        if (quantized) {
            float scale, bias;
            if (fmt == LOWPREC_EB_Q8) {
                memcpy(&scale, row + cb, 4);
                memcpy(&bias, row + cb + 4, 4);
            } else {
                /* Two fp16 at row + cb: convert both with F16C. */
                int32_t sb;
                memcpy(&sb, row + cb, 4);
                __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128(sb));
                scale = _mm_cvtss_f32(f);
                bias = _mm_cvtss_f32(_mm_shuffle_ps(f, f, 1));
            }
            if (weights) {
                const float w = weights[i];
                scale *= w;
                bias *= w;
            }
            vs = _mm256_set1_ps(scale);
            vb = _mm256_set1_ps(bias);
        } else if (weights) {
            vs = _mm256_set1_ps(weights[i]);
        }
        if (is_max) {
            if (count == 0) {
#pragma GCC unroll 8
                for (int v = 0; v < NV; v++) {
                    __m256 x = (v == NV - 1 && lt < 8) ? eb_ld_part(fmt, row, j0 + 8 * v, lt)
                                                       : eb_ld(fmt, row, j0 + 8 * v);
                    acc[v] = quantized ? _mm256_fmadd_ps(x, vs, vb) : x;
                }
            } else {
#pragma GCC unroll 8
                for (int v = 0; v < NV; v++) {
                    __m256 x = (v == NV - 1 && lt < 8) ? eb_ld_part(fmt, row, j0 + 8 * v, lt)
                                                       : eb_ld(fmt, row, j0 + 8 * v);
                    if (quantized) x = _mm256_fmadd_ps(x, vs, vb);
                    acc[v] = _mm256_max_ps(x, acc[v]); /* x > acc ? x : acc */
                }
            }
        } else if (quantized) {
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) {
                __m256 x = eb_ld(fmt, row, j0 + 8 * v); /* codes: always inside the row */
                acc[v] = _mm256_fmadd_ps(vs, x, _mm256_add_ps(acc[v], vb));
            }
        } else {
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) {
                __m256 x = (v == NV - 1 && lt < 8) ? eb_ld_part(fmt, row, j0 + 8 * v, lt)
                                                   : eb_ld(fmt, row, j0 + 8 * v);
                acc[v] = _mm256_fmadd_ps(vs, x, acc[v]);
            }
        }
        count++;
    }
    if (count == 0) {
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) acc[v] = _mm256_setzero_ps();
    } else if (a->mode == LOWPREC_EB_MEAN) {
        const __m256 c = _mm256_set1_ps((float)count);
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) acc[v] = _mm256_div_ps(acc[v], c);
    }
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) eb_st(a, orow, j0 + 8 * v, acc[v], v == NV - 1 ? lt : 8);
}

LOWPREC_TARGET_AVX2 static EB_AI void eb_bags(const lowprec_eb_args *a, const int fmt,
                                              const int is_max, const int idx64, int64_t b0,
                                              int64_t b1) {
    const int64_t dim = a->dim;
    const int64_t pf_end = a->offsets[b1];
    for (int64_t bag = b0; bag < b1; bag++) {
        const int64_t i0 = a->offsets[bag], i1 = a->offsets[bag + 1];
        uint8_t *orow = a->out + bag * a->out_stride;
        for (int64_t j0 = 0; j0 < dim; j0 += 64) {
            const int64_t rem = dim - j0;
            const int nv = rem >= 64 ? 8 : (int)((rem + 7) / 8);
            const int lt = rem >= 64 ? 8 : (int)(rem - 8 * (nv - 1));
            const int pf = j0 == 0;
            switch (nv) {
#define EB_CASE(N) \
    case N: eb_block(a, fmt, is_max, idx64, N, lt, j0, i0, i1, pf_end, pf, orow); break;
                EB_CASE(1) EB_CASE(2) EB_CASE(3) EB_CASE(4)
                EB_CASE(5) EB_CASE(6) EB_CASE(7) EB_CASE(8)
#undef EB_CASE
            }
        }
    }
}

#define EB_FMT_FN(NAME, FMT)                                                                 \
    LOWPREC_TARGET_AVX2 static void NAME(const lowprec_eb_args *a, int64_t b0, int64_t b1) { \
        const int mx = a->mode == LOWPREC_EB_MAX;                                            \
        if (a->idx64) {                                                                      \
            if (mx) eb_bags(a, FMT, 1, 1, b0, b1);                                           \
            else eb_bags(a, FMT, 0, 1, b0, b1);                                              \
        } else {                                                                             \
            if (mx) eb_bags(a, FMT, 1, 0, b0, b1);                                           \
            else eb_bags(a, FMT, 0, 0, b0, b1);                                              \
        }                                                                                    \
    }
EB_FMT_FN(eb_f32, LOWPREC_EB_F32)
EB_FMT_FN(eb_f16, LOWPREC_EB_F16)
EB_FMT_FN(eb_bf16, LOWPREC_EB_BF16)
EB_FMT_FN(eb_q8, LOWPREC_EB_Q8)
EB_FMT_FN(eb_q4, LOWPREC_EB_Q4)
EB_FMT_FN(eb_q2, LOWPREC_EB_Q2)

LOWPREC_TARGET_AVX2 void lowprec_embedding_bags_avx2(const lowprec_eb_args *a, int64_t bag_begin,
                                                     int64_t bag_end) {
    if (bag_begin >= bag_end) return;
    switch (a->fmt) {
    case LOWPREC_EB_F32: eb_f32(a, bag_begin, bag_end); break;
    case LOWPREC_EB_F16: eb_f16(a, bag_begin, bag_end); break;
    case LOWPREC_EB_BF16: eb_bf16(a, bag_begin, bag_end); break;
    case LOWPREC_EB_Q8: eb_q8(a, bag_begin, bag_end); break;
    case LOWPREC_EB_Q4: eb_q4(a, bag_begin, bag_end); break;
    default: eb_q2(a, bag_begin, bag_end); break;
    }
}

#else /* !LOWPREC_BUILD_AVX2: non-x86 builds link the portable kernel under the AVX2 name. */

void lowprec_embedding_bags_avx2(const lowprec_eb_args *a, int64_t bag_begin, int64_t bag_end) {
    lowprec_embedding_bags_generic(a, bag_begin, bag_end);
}

#endif
