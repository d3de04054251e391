/* Shared driver of the bf16-weight and int4-weight products (gemm_bf16*.c, gemm_int4*.c):
 * float32 activations, weights stored compressed in 16-column panels, float32 accumulation.
 *
 * Included by gemm_bf16.c and gemm_int4.c only (each extension gets its own static copy).
 *
 * Two paths, chosen by M alone (never by the thread count, so results do not depend on it):
 *
 *   M <= 4  GEMV path: each 16-column panel is read once and decoded in registers by a
 *           family-specific kernel (lowprec_gemv_*), all M rows at a time.  Bandwidth bound.
 *   M >= 5  GEMM path, 6x16 float32 micro-kernel (BLIS haswell shape: 12 ymm accumulators +
 *           2 B + 1 broadcast = 15 of 16 ymm), k in increasing order, in one of two drivers:
 *     K <= kc_max (1024 for bf16; always for int4, whose 4x smaller weights gained nothing):
 *           per tile (mc rows x nc columns) and panel, the panel is decoded once into a K x 16
 *           float32 buffer, then the kernel runs over the tile's rows (read in place) over the
 *           full K.  mc = 384 KiB / (4 K), multiple of 6 in [6, 192]: the rows stay in L2.
 *     K > kc_max (BLIS order): per tile and per block of kc <= 256 consecutive k, the tile's
 *           rows are packed into 6-row slivers (k-major, 6 floats per k), then per panel the
 *           kc x 16 block is decoded (16 KiB: L1) and the slivers run over it while the next
 *           panel's packed block is prefetched.  mc: M in equal tiles of <= 192 rows (packed
 *           slivers <= 192 KiB: L2), independent of K (384 measured 1% faster at 1 thread but
 *           gave M = 256 only 4 tiles at 2 threads: coarse for the dynamic schedule).  Unblocked at K = 4096, mc was 24: the
 *           256 KiB decoded panel served 4 kernel calls from L2 and the decode waited on
 *           memory (bf16 256x1024x4096, 1 thread: 77 -> 96 GOP/s; K <= 1024 measured equal).
 *
 * Exactness across k blocks: the kernel starts from 0 on the first block and from the float32
 * partial sums stored in `out` on later ones; storing and reloading a float32 is exact, so every
 * output is the same fma chain over k = 0, 1, ..., K-1 as the unblocked kernel (bit-identical,
 * checked against the previous build), and the bias is added once, after the last block.
 *
 * Blocking constants (Zen 3/4: 32 KiB L1d, 512 KiB - 1 MiB L2):
 *   NR = 16  columns per panel: two ymm of float32 (one zmm), the register block's width.
 *   MR = 6   rows per micro-kernel call: 6 x 2 ymm accumulators.
 *   nc = 256 columns, lowered in steps of 16 until there are >= 2 tiles per thread.
 * None of them changes a result (each output's arithmetic is fixed by M and K alone).
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
#define LP_KC 256
#define LP_KC_MAX 1024
#define LP_MC_MAX 192

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
    int64_t kc;         /* GEMM path: k per block (a multiple of 8, or K) */
    int64_t panel_bytes, k_bytes;  /* packed bytes per panel and per k (prefetch), family set */
} lp_f32acc_args;

#ifdef LP_F32ACC_IMPL
/* decode rows [k0, k1) of panel q into buf ((k1 - k0) x 16 float32, 64-byte aligned); k0 is a
 * multiple of 8, k1 a multiple of 8 or K */
typedef void (*lp_panel_fn)(const lp_f32acc_args *p, int64_t q, int64_t k0, int64_t k1,
                            float *buf);
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

/* acc (mr x 16) = the partial sums in c (nc columns; the others 0, never stored) */
static inline void lp_load_block(const float *c, int64_t ldc, int mr, int nc, float *acc)
{
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < 16; j++) acc[i * 16 + j] = j < nc ? c[i * ldc + j] : 0.0f;
}

/* ---- activation packing: rows [0, mr) x k [0, kc) of a -> ap[kk * 6 + i] ------------------ */
static void lp_pack_a_generic(const float *a, int64_t lda, int mr, int64_t kc, float *ap)
{
    for (int64_t kk = 0; kk < kc; kk++)
        for (int i = 0; i < mr; i++) ap[kk * LP_MR + i] = a[i * lda + kk];
}

/* ---- float32 micro-kernel, portable twin ---------------------------------------------- */
/* a: packed ? a packed sliver : the rows; first: start from 0 (else from the partial sums in
 * c); bias: last k block only */
static void lp_sgemm_generic_6x16(int mr, int packed, int64_t kc, const float *a, int64_t lda,
                                  const float *LOWPREC_RESTRICT b, float *c, int64_t ldc, int nc,
                                  const float *bias, int first)
{
    const int64_t rs = packed ? 1 : lda, ks = packed ? LP_MR : 1;
    float acc[LP_MR * 16];
    if (first)
        memset(acc, 0, sizeof(acc));
    else
        lp_load_block(c, ldc, mr, nc, acc);
    for (int64_t kk = 0; kk < kc; kk++) {
        const float *bk = b + kk * 16;
        for (int i = 0; i < mr; i++) {
            const float ai = a[i * rs + kk * ks];
            for (int j = 0; j < 16; j++) acc[i * 16 + j] += ai * bk[j];
        }
    }
    lp_store_block(c, ldc, mr, nc, acc, bias);
}

#if LOWPREC_BUILD_AVX2
/* 8 k of rows [0, mr) (mr <= 6) at a -> ap[kk * 6 + i], by an 8 x 8 transpose (rows >= mr are
 * zero).  Each k is stored as 8 floats: the last 2 spill into the next k's slot, which is
 * written afterwards (increasing k), so ap needs 2 floats of slack after its end. */
LOWPREC_TARGET_AVX2 static inline void lp_pack_a8_avx2(const float *a, int64_t lda, int mr,
                                                       float *ap)
{
    __m256 r[8];
    for (int i = 0; i < 8; i++) r[i] = i < mr ? _mm256_loadu_ps(a + i * lda) : _mm256_setzero_ps();
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 z = _mm256_setzero_ps();
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 s4 = _mm256_shuffle_ps(t4, z, 0x44), s5 = _mm256_shuffle_ps(t4, z, 0xEE);
    const __m256 s6 = _mm256_shuffle_ps(t5, z, 0x44), s7 = _mm256_shuffle_ps(t5, z, 0xEE);
    _mm256_storeu_ps(ap + 0 * LP_MR, _mm256_permute2f128_ps(s0, s4, 0x20));
    _mm256_storeu_ps(ap + 1 * LP_MR, _mm256_permute2f128_ps(s1, s5, 0x20));
    _mm256_storeu_ps(ap + 2 * LP_MR, _mm256_permute2f128_ps(s2, s6, 0x20));
    _mm256_storeu_ps(ap + 3 * LP_MR, _mm256_permute2f128_ps(s3, s7, 0x20));
    _mm256_storeu_ps(ap + 4 * LP_MR, _mm256_permute2f128_ps(s0, s4, 0x31));
    _mm256_storeu_ps(ap + 5 * LP_MR, _mm256_permute2f128_ps(s1, s5, 0x31));
    _mm256_storeu_ps(ap + 6 * LP_MR, _mm256_permute2f128_ps(s2, s6, 0x31));
    _mm256_storeu_ps(ap + 7 * LP_MR, _mm256_permute2f128_ps(s3, s7, 0x31));
}

LOWPREC_TARGET_AVX2 static void lp_pack_a_avx2(const float *a, int64_t lda, int mr, int64_t kc,
                                               float *ap)
{
    int64_t kk = 0;
    for (; kk + 8 <= kc; kk += 8) lp_pack_a8_avx2(a + kk, lda, mr, ap + kk * LP_MR);
    lp_pack_a_generic(a + kk, lda, mr, kc - kk, ap + kk * LP_MR);
}

/* ---- float32 micro-kernel, AVX2 + FMA, MR rows x 16 (MR a compile-time constant) ------- */
/* Named accumulators (an array of __m256 is kept in memory by GCC here). */
#define LP_ROW6(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define LP_ACC_DECL(i) __m256 c##i##0 = _mm256_setzero_ps(), c##i##1 = _mm256_setzero_ps();
#define LP_ACC_LOAD(i)                                                                          \
    if (lp_mr > i) { c##i##0 = _mm256_loadu_ps(src + i * lds); c##i##1 = _mm256_loadu_ps(src + i * lds + 8); }
#define LP_ACC_FMA(i)                                                                           \
    if (lp_mr > i) {                                                                            \
        const __m256 ai = _mm256_broadcast_ss(lp_packed ? a + kk * LP_MR + i : a + i * lda + kk);   \
        c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);                                             \
        c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1);                                             \
    }
#define LP_ACC_STORE(i)                                                                         \
    if (lp_mr > i) {                                                                               \
        __m256 v0 = c##i##0, v1 = c##i##1;                                                      \
        if (bias) { v0 = _mm256_add_ps(v0, bv0); v1 = _mm256_add_ps(v1, bv1); }                 \
        _mm256_storeu_ps(dst + i * ldd, v0);                                                    \
        _mm256_storeu_ps(dst + i * ldd + 8, v1);                                                \
    }

/* a: PACKED ? a packed sliver (a[kk * 6 + i]) : the rows themselves (a[i * lda + kk]).
 * first: start from 0 (else from the partial sums in c); bias: last k block only.  Partial
 * panels (nc < 16) go through tmp. */
#define LP_SGEMM_AVX2_BODY(MR, PACKED)                                                          \
    do {                                                                                        \
        const int lp_mr = MR, lp_packed = PACKED;                                               \
        float tmp[LP_MR * 16];                                                                  \
        LP_ROW6(LP_ACC_DECL)                                                                    \
        if (!first) {                                                                           \
            const float *src = c;                                                               \
            int64_t lds = ldc;                                                                  \
            if (nc < 16) { lp_load_block(c, ldc, MR, nc, tmp); src = tmp; lds = 16; }           \
            LP_ROW6(LP_ACC_LOAD)                                                                \
        }                                                                                       \
        _Pragma("GCC unroll 4") for (int64_t kk = 0; kk < kc; kk++) {                           \
            const __m256 b0 = _mm256_load_ps(b + kk * 16), b1 = _mm256_load_ps(b + kk * 16 + 8); \
            LP_ROW6(LP_ACC_FMA)                                                                 \
        }                                                                                       \
        const __m256 bv0 = bias && nc == 16 ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();      \
        const __m256 bv1 = bias && nc == 16 ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();  \
        if (nc == 16) {                                                                         \
            float *dst = c;                                                                     \
            const int64_t ldd = ldc;                                                            \
            LP_ROW6(LP_ACC_STORE)                                                               \
        } else {                                                                                \
            float *dst = tmp;                                                                   \
            const int64_t ldd = 16;                                                             \
            const float *bias_ = bias;                                                          \
            { const float *bias = NULL; LP_ROW6(LP_ACC_STORE) }                                 \
            lp_store_block(c, ldc, MR, nc, tmp, bias_);                                         \
        }                                                                                       \
    } while (0)

#define LP_DEF_SGEMM_AVX2(MR)                                                                  \
    LOWPREC_TARGET_AVX2 static void lp_sgemm_avx2_##MR##x16(                                   \
        int packed, int64_t kc, const float *a, int64_t lda, const float *LOWPREC_RESTRICT b,  \
        float *c, int64_t ldc, int nc, const float *bias, int first)                           \
    {                                                                                           \
        if (packed)                                                                             \
            LP_SGEMM_AVX2_BODY(MR, 1);                                                          \
        else                                                                                    \
            LP_SGEMM_AVX2_BODY(MR, 0);                                                          \
    }
LP_DEF_SGEMM_AVX2(1)
LP_DEF_SGEMM_AVX2(2)
LP_DEF_SGEMM_AVX2(3)
LP_DEF_SGEMM_AVX2(4)
LP_DEF_SGEMM_AVX2(5)
LP_DEF_SGEMM_AVX2(6)

typedef void (*lp_sgemm_fn)(int, int64_t, const float *, int64_t, const float *, float *, int64_t,
                            int, const float *, int);
static const lp_sgemm_fn lp_sgemm_avx2_table[LP_MR + 1] = {
    NULL, lp_sgemm_avx2_1x16, lp_sgemm_avx2_2x16, lp_sgemm_avx2_3x16,
    lp_sgemm_avx2_4x16, lp_sgemm_avx2_5x16, lp_sgemm_avx2_6x16};
#endif /* LOWPREC_BUILD_AVX2 */

/* ---- planning and the tile driver ---------------------------------------------------- */
static inline int64_t lp_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* kc_max: K up to this runs in one k block (bf16: LP_KC_MAX; int4 and the vdpbf16ps tiles, which
 * read the packed weights in place and take mc from here, pass INT64_MAX) */
static inline void lp_f32acc_plan(lp_f32acc_args *p, int n_threads, int64_t kc_max)
{
    int64_t m = p->m, n = p->n, k = p->k;
    int64_t n_panels = lp_ceil_div(n, LP_NR);
    p->kc = k;
    if (m <= LP_GEMV_MAX_M) {
        p->mc = m > 0 ? m : 1;
    } else if (k <= kc_max) {
        /* one k block: the tile's rows (mc x K float32) stay in L2 */
        int64_t mc = (384 * 1024) / (4 * (k > 0 ? k : 1));
        mc = mc / LP_MR * LP_MR;
        if (mc < LP_MR) mc = LP_MR;
        if (mc > 192) mc = 192;
        p->mc = mc;
    } else {
        /* equal k blocks of <= LP_KC (a multiple of 8: int4 words hold 8 k), equal row tiles
         * of <= LP_MC_MAX rows (no thin last tile) */
        p->kc = lp_ceil_div(lp_ceil_div(k, lp_ceil_div(k, LP_KC)), 8) * 8;
        p->mc = lp_ceil_div(lp_ceil_div(m, lp_ceil_div(m, LP_MC_MAX)), LP_MR) * LP_MR;
    }
    p->tiles_m = lp_ceil_div(m, p->mc);
    int64_t ncp = 16; /* panels per tile */
    if (ncp > n_panels) ncp = n_panels > 0 ? n_panels : 1;
    while (ncp > 1 && p->tiles_m * lp_ceil_div(n_panels, ncp) < 2 * (int64_t)n_threads) ncp--;
    p->nc = ncp * LP_NR;
    p->tiles_n = lp_ceil_div(n_panels, ncp);
}

static inline void lp_sgemm(const lp_f32acc_args *p, int mr, int packed, int64_t kc,
                            const float *a, const float *b, float *c, int nc, const float *bias,
                            int first)
{
#if LOWPREC_BUILD_AVX2
    if (p->isa >= LOWPREC_ISA_AVX2) {
        lp_sgemm_avx2_table[mr](packed, kc, a, p->lda, b, c, p->ldo, nc, bias, first);
        return;
    }
#endif
    lp_sgemm_generic_6x16(mr, packed, kc, a, p->lda, b, c, p->ldo, nc, bias, first);
}

/* GEMM path, K in one block: per panel, decode the K x 16 panel, then run the rows over it. */
static inline int lp_gemm_tile_1block(const lp_f32acc_args *p, int64_t i0, int64_t i1,
                                      int64_t q0, int64_t q1, lp_panel_fn to_f32)
{
    size_t bytes = (size_t)((p->k > 0 ? p->k : 1) * LP_NR * sizeof(float));
    float *buf = (float *)aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!buf) return 1;
    for (int64_t q = q0; q < q1; q++) {
        int64_t nc = p->n - q * LP_NR;
        if (nc > LP_NR) nc = LP_NR;
        to_f32(p, q, 0, p->k, buf);
        const float *bias = p->bias ? p->bias + q * LP_NR : NULL;
        for (int64_t i = i0; i < i1; i += LP_MR) {
            int mr = (int)(i1 - i < LP_MR ? i1 - i : LP_MR);
            lp_sgemm(p, mr, 0, p->k, p->a + i * p->lda, buf, p->out + i * p->ldo + q * LP_NR,
                     (int)nc, bias, 1);
        }
    }
    free(buf);
    return 0;
}

/* GEMM path, K in blocks of kc (BLIS order): per k block, pack the tile's activations into
 * 6-row slivers, then per panel decode the kc x 16 block (L1) and run the slivers over it,
 * continuing from the partial sums in out.  While the slivers run, the next panel's packed
 * block is prefetched (the decode otherwise waits on L3 / DRAM: +3-5% at K = 4096). */
static inline int lp_gemm_tile_kblocked(const lp_f32acc_args *p, int64_t i0, int64_t i1,
                                        int64_t q0, int64_t q1, lp_panel_fn to_f32)
{
    const int64_t k = p->k, kc = p->kc, slivers = lp_ceil_div(i1 - i0, LP_MR);
    /* decoded block, then the packed activations (+ 8 floats of slack for lp_pack_a8_avx2) */
    const size_t bfloats = (size_t)(kc * LP_NR);
    float *buf = (float *)aligned_alloc(64, ((bfloats + (size_t)(slivers * LP_MR * kc) + 8) *
                                             sizeof(float) + 63) / 64 * 64);
    if (!buf) return 1;
    float *apk = buf + bfloats;
    for (int64_t k0 = 0; k0 < k; k0 += kc) {
        const int64_t k1 = k0 + kc < k ? k0 + kc : k, kb = k1 - k0;
        for (int64_t s = 0; s < slivers; s++) {
            const int64_t i = i0 + s * LP_MR;
            const int mr = (int)(i1 - i < LP_MR ? i1 - i : LP_MR);
#if LOWPREC_BUILD_AVX2
            if (p->isa >= LOWPREC_ISA_AVX2)
                lp_pack_a_avx2(p->a + i * p->lda + k0, p->lda, mr, kb, apk + s * LP_MR * kb);
            else
#endif
                lp_pack_a_generic(p->a + i * p->lda + k0, p->lda, mr, kb, apk + s * LP_MR * kb);
        }
        for (int64_t q = q0; q < q1; q++) {
            int64_t nc = p->n - q * LP_NR;
            if (nc > LP_NR) nc = LP_NR;
            to_f32(p, q, k0, k1, buf);
            if (q + 1 < q1) {
                const char *nb = (const char *)p->bp + (q + 1) * p->panel_bytes + k0 * p->k_bytes;
                for (int64_t o = 0; o < kb * p->k_bytes; o += 64) __builtin_prefetch(nb + o, 0, 2);
            }
            const float *bias = (p->bias && k1 == k) ? p->bias + q * LP_NR : NULL;
            for (int64_t s = 0; s < slivers; s++) {
                const int64_t i = i0 + s * LP_MR;
                const int mr = (int)(i1 - i < LP_MR ? i1 - i : LP_MR);
                lp_sgemm(p, mr, 1, kb, apk + s * LP_MR * kb, buf,
                         p->out + i * p->ldo + q * LP_NR, (int)nc, bias, k0 == 0);
            }
        }
    }
    free(buf);
    return 0;
}

/* One tile: returns 0, or 1 when the buffer could not be allocated. */
static inline int lp_f32acc_tile(const lp_f32acc_args *p, int64_t t, lp_panel_fn to_f32,
                                 lp_gemv_fn gemv)
{
    int64_t tm = t / p->tiles_n, tn = t % p->tiles_n;
    int64_t i0 = tm * p->mc, i1 = i0 + p->mc;
    int64_t q0 = tn * (p->nc / LP_NR), q1 = q0 + p->nc / LP_NR;
    int64_t n_panels = lp_ceil_div(p->n, LP_NR);
    if (i1 > p->m) i1 = p->m;
    if (q1 > n_panels) q1 = n_panels;
    if (p->m <= LP_GEMV_MAX_M) {
        for (int64_t q = q0; q < q1; q++) {
            int64_t nc = p->n - q * LP_NR;
            gemv(p, q, (int)(nc < LP_NR ? nc : LP_NR));
        }
        return 0;
    }
    if (p->kc >= p->k) return lp_gemm_tile_1block(p, i0, i1, q0, q1, to_f32);
    return lp_gemm_tile_kblocked(p, i0, i1, q0, q1, to_f32);
}

#endif /* LP_F32ACC_IMPL */
#endif /* LOWPREC_GEMM_F32ACC_H */
