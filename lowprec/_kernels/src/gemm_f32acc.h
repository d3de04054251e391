/* Shared driver of the bf16-weight and int4-weight products (gemm_bf16*.c, gemm_int4*.c):
 * float32 activations, weights stored compressed in 16-column panels, float32 accumulation.
 *
 * Included by gemm_bf16.c and gemm_int4.c only (each extension gets its own static copy).
 *
 * Two paths, chosen by M alone (never by the thread count, so results do not depend on it):
 *
 *   M <= 4  GEMV path: each 16-column panel is read once and decoded in registers by a
 *           family-specific kernel (lowprec_gemv_*), all M rows at a time.  Bandwidth bound.
 *   M >= 5  GEMM path: per tile (mc rows x nc columns) and per panel, the panel is decoded once
 *           into a float32 K x 16 buffer (per thread, 64-byte aligned), then the 6x16 float32
 *           micro-kernel (BLIS haswell shape: 12 ymm accumulators + 2 B + 1 broadcast = 15 of
 *           16 ymm) runs over the tile's rows, 6 at a time, over the full K (accumulators stay
 *           in registers; k in increasing order).  The decode costs K*16 conversions per
 *           mc*K*16 multiply-adds: < 3% for mc >= 30.
 *
 * Blocking constants (derived for Zen 3/4: 32 KiB L1d, 512 KiB - 1 MiB L2):
 *   NR = 16  columns per panel: two ymm of float32 (one zmm), the register block's width.
 *   MR = 6   rows per micro-kernel call: 6 x 2 ymm accumulators.
 *   mc = 384 KiB / (4 K) rounded down to a multiple of 6, clamped to [6, 192]: the tile's
 *            float32 A block stays in L2 while panels stream past; depends on K only.
 *   nc = 256 columns, lowered in steps of 16 until there are >= 2 tiles per thread.
 *   The decoded panel (K x 16 float32: 64 KiB at K = 1024, 256 KiB at K = 4096) is reused by
 *   mc / 6 micro-kernel calls back to back (L1 for K <= 512, L2 beyond; the kernel needs
 *   ~64 B of B per 12 FMAs = ~10 B/cycle, L2 gives 32).
 */
#ifndef LOWPREC_GEMM_F32ACC_H
#define LOWPREC_GEMM_F32ACC_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lowprec_common.h"

#if LOWPREC_BUILD_AVX2
#include <immintrin.h>
#endif

#define LP_NR 16
#define LP_MR 6
#define LP_GEMV_MAX_M 4

typedef struct {
    const float *a;     /* m x k float32 activations, row stride lda (elements), unit column stride */
    int64_t lda;
    int64_t m, n, k;
    const void *bp;     /* packed panels (family layout) */
    const float *scales;  /* int4: [n_panels][k/group][16] */
    const float *zeros;   /* int4: [n_panels][k/group][16] (z - 8) as float, NULL if symmetric */
    int64_t group;        /* int4 group size */
    const float *asum;    /* int4, GEMV path, asymmetric: m x (k/group) row sums of a per group */
    const float *bias;  /* n or NULL */
    float *out;         /* m x n, row stride ldo (elements) */
    int64_t ldo;
    int isa;
    int64_t mc, nc, tiles_m, tiles_n;
} lp_f32acc_args;

#ifdef LP_F32ACC_IMPL
/* decode panel q into buf (k x 16 float32, 64-byte aligned) */
typedef void (*lp_panel_fn)(const lp_f32acc_args *p, int64_t q, float *buf);
/* rows [0, m) x columns [16q, 16q + nc) of the output via the GEMV path */
typedef void (*lp_gemv_fn)(const lp_f32acc_args *p, int64_t q, int nc);

static inline void lp_store_block(float *c, int64_t ldc, int mr, int nc, const float *acc,
                                  const float *bias)
{
    /* acc: mr x 16; y = acc + bias (bias added once, after the full K) */
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nc; j++)
            c[i * ldc + j] = bias ? acc[i * 16 + j] + bias[j] : acc[i * 16 + j];
}

/* ---- float32 micro-kernel, portable twin ---------------------------------------------- */
static void lp_sgemm_generic_6x16(int mr, int64_t k, const float *a, int64_t lda,
                                  const float *LOWPREC_RESTRICT b, float *c, int64_t ldc, int nc,
                                  const float *bias)
{
    float acc[LP_MR * 16];
    memset(acc, 0, sizeof(acc));
    for (int64_t kk = 0; kk < k; kk++) {
        const float *bk = b + kk * 16;
        for (int i = 0; i < mr; i++) {
            const float ai = a[i * lda + kk];
            for (int j = 0; j < 16; j++) acc[i * 16 + j] += ai * bk[j];
        }
    }
    lp_store_block(c, ldc, mr, nc, acc, bias);
}

#if LOWPREC_BUILD_AVX2
/* ---- float32 micro-kernel, AVX2 + FMA, MR rows x 16 (MR a compile-time constant) ------- */
#define LP_SGEMM_AVX2_BODY(MR)                                                                                                                                                                                                                                                                                                                  \
do {                                                                                                                                                                                                                                                                                                                                            \
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps(), c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();  \
    const float *a0 = a, *a1 = a + (MR > 1 ? lda : 0), *a2 = a + (MR > 2 ? 2 * lda : 0), *a3 = a + (MR > 3 ? 3 * lda : 0), *a4 = a + (MR > 4 ? 4 * lda : 0), *a5 = a + (MR > 5 ? 5 * lda : 0);                                                                                                                                                  \
    _Pragma("GCC unroll 4") for (int64_t kk = 0; kk < k; kk++) {                                                                                                                                                                                                                                                                                \
        const __m256 b0 = _mm256_load_ps(b + kk * 16), b1 = _mm256_load_ps(b + kk * 16 + 8);                                                                                                                                                                                                                                                    \
        __m256 ai;                                                                                                                                                                                                                                                                                                                              \
        if (MR > 0) { ai = _mm256_broadcast_ss(a0 + kk); c00 = _mm256_fmadd_ps(ai, b0, c00); c01 = _mm256_fmadd_ps(ai, b1, c01); }                                                                                                                                                                                                              \
        if (MR > 1) { ai = _mm256_broadcast_ss(a1 + kk); c10 = _mm256_fmadd_ps(ai, b0, c10); c11 = _mm256_fmadd_ps(ai, b1, c11); }                                                                                                                                                                                                              \
        if (MR > 2) { ai = _mm256_broadcast_ss(a2 + kk); c20 = _mm256_fmadd_ps(ai, b0, c20); c21 = _mm256_fmadd_ps(ai, b1, c21); }                                                                                                                                                                                                              \
        if (MR > 3) { ai = _mm256_broadcast_ss(a3 + kk); c30 = _mm256_fmadd_ps(ai, b0, c30); c31 = _mm256_fmadd_ps(ai, b1, c31); }                                                                                                                                                                                                              \
        if (MR > 4) { ai = _mm256_broadcast_ss(a4 + kk); c40 = _mm256_fmadd_ps(ai, b0, c40); c41 = _mm256_fmadd_ps(ai, b1, c41); }                                                                                                                                                                                                              \
        if (MR > 5) { ai = _mm256_broadcast_ss(a5 + kk); c50 = _mm256_fmadd_ps(ai, b0, c50); c51 = _mm256_fmadd_ps(ai, b1, c51); }                                                                                                                                                                                                              \
    }                                                                                                                                                                                                                                                                                                                                           \
    float tmp[6 * 16];                                                                                                                                                                                                                                                                                                                          \
    if (MR > 0) { _mm256_storeu_ps(tmp + 0, c00); _mm256_storeu_ps(tmp + 8, c01); }                                                                                                                                                                                                                                                             \
    if (MR > 1) { _mm256_storeu_ps(tmp + 16, c10); _mm256_storeu_ps(tmp + 24, c11); }                                                                                                                                                                                                                                                           \
    if (MR > 2) { _mm256_storeu_ps(tmp + 32, c20); _mm256_storeu_ps(tmp + 40, c21); }                                                                                                                                                                                                                                                           \
    if (MR > 3) { _mm256_storeu_ps(tmp + 48, c30); _mm256_storeu_ps(tmp + 56, c31); }                                                                                                                                                                                                                                                           \
    if (MR > 4) { _mm256_storeu_ps(tmp + 64, c40); _mm256_storeu_ps(tmp + 72, c41); }                                                                                                                                                                                                                                                           \
    if (MR > 5) { _mm256_storeu_ps(tmp + 80, c50); _mm256_storeu_ps(tmp + 88, c51); }                                                                                                                                                                                                                                                           \
    if (nc == 16) {                                                                                                                                                                                                                                                                                                                             \
        for (int i = 0; i < MR; i++) {                                                                                                                                                                                                                                                                                                          \
            __m256 v0 = _mm256_loadu_ps(tmp + i * 16), v1 = _mm256_loadu_ps(tmp + i * 16 + 8);                                                                                                                                                                                                                                                  \
            if (bias) { v0 = _mm256_add_ps(v0, _mm256_loadu_ps(bias)); v1 = _mm256_add_ps(v1, _mm256_loadu_ps(bias + 8)); }                                                                                                                                                                                                                     \
            _mm256_storeu_ps(c + i * ldc, v0); _mm256_storeu_ps(c + i * ldc + 8, v1);                                                                                                                                                                                                                                                           \
        }                                                                                                                                                                                                                                                                                                                                       \
    } else {                                                                                                                                                                                                                                                                                                                                    \
        lp_store_block(c, ldc, MR, nc, tmp, bias);                                                                                                                                                                                                                                                                                              \
    }                                                                                                                                                                                                                                                                                                                                           \
} while (0)

#define LP_DEF_SGEMM_AVX2(MR)                                                                  \
    LOWPREC_TARGET_AVX2 static void lp_sgemm_avx2_##MR##x16(                                   \
        int64_t k, const float *a, int64_t lda, const float *LOWPREC_RESTRICT b, float *c,     \
        int64_t ldc, int nc, const float *bias)                                                \
    {                                                                                           \
        LP_SGEMM_AVX2_BODY(MR);                                                                 \
    }
LP_DEF_SGEMM_AVX2(1)
LP_DEF_SGEMM_AVX2(2)
LP_DEF_SGEMM_AVX2(3)
LP_DEF_SGEMM_AVX2(4)
LP_DEF_SGEMM_AVX2(5)
LP_DEF_SGEMM_AVX2(6)

LOWPREC_TARGET_AVX2 static void lp_sgemm_avx2_mrx16(int mr, int64_t k, const float *a, int64_t lda,
                                                   const float *b, float *c, int64_t ldc, int nc,
                                                   const float *bias)
{
    switch (mr) {
    case 6: lp_sgemm_avx2_6x16(k, a, lda, b, c, ldc, nc, bias); break;
    case 5: lp_sgemm_avx2_5x16(k, a, lda, b, c, ldc, nc, bias); break;
    case 4: lp_sgemm_avx2_4x16(k, a, lda, b, c, ldc, nc, bias); break;
    case 3: lp_sgemm_avx2_3x16(k, a, lda, b, c, ldc, nc, bias); break;
    case 2: lp_sgemm_avx2_2x16(k, a, lda, b, c, ldc, nc, bias); break;
    default: lp_sgemm_avx2_1x16(k, a, lda, b, c, ldc, nc, bias); break;
    }
}
#endif /* LOWPREC_BUILD_AVX2 */

/* ---- planning and the tile driver ---------------------------------------------------- */
static inline void lp_f32acc_plan(lp_f32acc_args *p, int n_threads)
{
    int64_t m = p->m, n = p->n, k = p->k;
    int64_t n_panels = (n + LP_NR - 1) / LP_NR;
    if (m <= LP_GEMV_MAX_M) {
        p->mc = m > 0 ? m : 1;
    } else {
        int64_t mc = (384 * 1024) / (4 * (k > 0 ? k : 1));
        mc = mc / LP_MR * LP_MR;
        if (mc < LP_MR) mc = LP_MR;
        if (mc > 192) mc = 192;
        p->mc = mc;
    }
    p->tiles_m = (m + p->mc - 1) / p->mc;
    int64_t ncp = 16; /* panels per tile */
    if (ncp > n_panels) ncp = n_panels > 0 ? n_panels : 1;
    while (ncp > 1 && p->tiles_m * ((n_panels + ncp - 1) / ncp) < 2 * (int64_t)n_threads) ncp--;
    p->nc = ncp * LP_NR;
    p->tiles_n = (n_panels + ncp - 1) / ncp;
}

/* One tile: returns 0, or 1 when the panel buffer could not be allocated. */
static inline int lp_f32acc_tile(const lp_f32acc_args *p, int64_t t, lp_panel_fn to_f32,
                                 lp_gemv_fn gemv)
{
    int64_t tm = t / p->tiles_n, tn = t % p->tiles_n;
    int64_t i0 = tm * p->mc, i1 = i0 + p->mc;
    int64_t q0 = tn * (p->nc / LP_NR), q1 = q0 + p->nc / LP_NR;
    int64_t n_panels = (p->n + LP_NR - 1) / LP_NR;
    if (i1 > p->m) i1 = p->m;
    if (q1 > n_panels) q1 = n_panels;
    if (p->m <= LP_GEMV_MAX_M) {
        for (int64_t q = q0; q < q1; q++) {
            int64_t nc = p->n - q * LP_NR;
            gemv(p, q, (int)(nc < LP_NR ? nc : LP_NR));
        }
        return 0;
    }
    size_t bytes = (size_t)((p->k > 0 ? p->k : 1) * LP_NR * sizeof(float));
    bytes = (bytes + 63) / 64 * 64;
    float *buf = (float *)aligned_alloc(64, bytes);
    if (!buf) return 1;
    for (int64_t q = q0; q < q1; q++) {
        int64_t nc = p->n - q * LP_NR;
        if (nc > LP_NR) nc = LP_NR;
        to_f32(p, q, buf);
        const float *bias = p->bias ? p->bias + q * LP_NR : NULL;
        for (int64_t i = i0; i < i1; i += LP_MR) {
            int mr = (int)(i1 - i < LP_MR ? i1 - i : LP_MR);
            const float *a = p->a + i * p->lda;
            float *c = p->out + i * p->ldo + q * LP_NR;
#if LOWPREC_BUILD_AVX2
            if (p->isa >= LOWPREC_ISA_AVX2)
                lp_sgemm_avx2_mrx16(mr, p->k, a, p->lda, buf, c, p->ldo, (int)nc, bias);
            else
#endif
                lp_sgemm_generic_6x16(mr, p->k, a, p->lda, buf, c, p->ldo, (int)nc, bias);
        }
    }
    free(buf);
    return 0;
}

#endif /* LP_F32ACC_IMPL */
#endif /* LOWPREC_GEMM_F32ACC_H */
