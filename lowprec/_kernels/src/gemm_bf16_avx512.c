/* bfloat16 x bfloat16 products on AVX512_BF16 (vdpbf16ps), float32 accumulation.
 *
 * Used only for bfloat16 activations, at the avx512vnni level, and only when the CPU also reports
 * AVX512_BF16 (checked at run time in _gemm_bf16.pyx: the avx512vnni level does not imply it).
 * The packed weight layout (gemm_bf16.h: a 32-bit word = bf16 pair (k = 2t, 2t + 1) of one
 * column) *is* vdpbf16ps's operand layout: the kernel reads the packed panels directly (no decode
 * buffer).  An activation pair (a[i][2t], a[i][2t + 1]) is one 32-bit broadcast.
 *
 * Micro-kernel: MR <= 12 rows x 32 columns (two 16-column panels): 24 zmm accumulators + 2 B +
 * 1 broadcast; per k pair 2 loads, 12 broadcasts, 24 vdpbf16ps (= 768 multiply-adds).  Every
 * output is acc[c] = dp(acc[c], a pair, w pair) over t = 0, 1, ... in increasing order, whatever
 * MR, the tile or the thread count: results are bit-identical for any thread count (they differ
 * from the float32-FMA path, within the same bound).
 *
 * vdpbf16ps semantics (Intel SDM): per lane, acc += a_odd * w_odd, then acc += a_even * w_even,
 * products of two bf16 exact in float32, each addition rounded to nearest even, denormal
 * inputs and outputs flushed to zero (DAZ, FTZ), MXCSR ignored.  Odd K: the last pair's
 * activation high half is zeroed (the weight's is zero by packing). */
#define LP_F32ACC_IMPL
#include "gemm_bf16.h"

#if LOWPREC_BUILD_AVX2
#include <immintrin.h>

#define LOWPREC_TARGET_AVX512BF16 \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,avx2,fma,f16c")))

static inline uint32_t lp_ld32(const uint16_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* rows a[0..MR) (bf16 bits, row stride lda), NP = 1 or 2 panels starting at b0 (b1 = b0 + stride) */
#define LP_DP_BODY(MR, NP)                                                                       \
    do {                                                                                         \
        __m512 c0[12], c1[12];                                                                   \
        for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm512_setzero_ps();                        \
        for (int64_t t = 0; t < kfull; t++) {                                                    \
            const __m512bh w0 = (__m512bh)_mm512_loadu_si512((const void *)(b0 + t * LP_NR));     \
            __m512bh w1 = w0;                                                                    \
            if (NP > 1) w1 = (__m512bh)_mm512_loadu_si512((const void *)(b1 + t * LP_NR));        \
            for (int i = 0; i < MR; i++) {                                                       \
                const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)lp_ld32(a + i * lda + 2 * t)); \
                c0[i] = _mm512_dpbf16_ps(c0[i], ai, w0);                                         \
                if (NP > 1) c1[i] = _mm512_dpbf16_ps(c1[i], ai, w1);                             \
            }                                                                                    \
        }                                                                                        \
        if (kfull < kp) { /* odd K: last pair = (a[K-1], 0) */                                   \
            const int64_t t = kfull;                                                             \
            const __m512bh w0 = (__m512bh)_mm512_loadu_si512((const void *)(b0 + t * LP_NR));     \
            __m512bh w1 = w0;                                                                    \
            if (NP > 1) w1 = (__m512bh)_mm512_loadu_si512((const void *)(b1 + t * LP_NR));        \
            for (int i = 0; i < MR; i++) {                                                       \
                const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i * lda + 2 * t]);        \
                c0[i] = _mm512_dpbf16_ps(c0[i], ai, w0);                                         \
                if (NP > 1) c1[i] = _mm512_dpbf16_ps(c1[i], ai, w1);                             \
            }                                                                                    \
        }                                                                                        \
        for (int i = 0; i < MR; i++) {                                                           \
            float *ci = c + i * ldc;                                                             \
            for (int h = 0; h < NP; h++) {                                                       \
                __m512 v = h ? c1[i] : c0[i];                                                    \
                const int ncol = nc - 16 * h < 16 ? nc - 16 * h : 16;                            \
                if (ncol <= 0) break;                                                            \
                const __mmask16 mk = (__mmask16)((1u << ncol) - 1u);                             \
                if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, bias + 16 * h));        \
                _mm512_mask_storeu_ps(ci + 16 * h, mk, v);                                       \
            }                                                                                    \
        }                                                                                        \
    } while (0)

#define LP_DEF_DP(MR)                                                                            \
    LOWPREC_TARGET_AVX512BF16 static void lp_dp_##MR(                                            \
        int np, int64_t kp, int64_t kfull, const uint16_t *a, int64_t lda, const uint32_t *b0,   \
        const uint32_t *b1, float *c, int64_t ldc, int nc, const float *bias)                    \
    {                                                                                            \
        if (np == 2) LP_DP_BODY(MR, 2);                                                          \
        else LP_DP_BODY(MR, 1);                                                                  \
    }
LP_DEF_DP(1) LP_DEF_DP(2) LP_DEF_DP(3) LP_DEF_DP(4) LP_DEF_DP(5) LP_DEF_DP(6)
LP_DEF_DP(7) LP_DEF_DP(8) LP_DEF_DP(9) LP_DEF_DP(10) LP_DEF_DP(11) LP_DEF_DP(12)

typedef void (*lp_dp_fn)(int, int64_t, int64_t, const uint16_t *, int64_t, const uint32_t *,
                         const uint32_t *, float *, int64_t, int, const float *);
static const lp_dp_fn lp_dp_table[13] = {NULL, lp_dp_1, lp_dp_2, lp_dp_3, lp_dp_4, lp_dp_5,
                                         lp_dp_6, lp_dp_7, lp_dp_8, lp_dp_9, lp_dp_10, lp_dp_11,
                                         lp_dp_12};

#define LP_DP_MR 12

/* One tile of the plan (lowprec_bf16_plan); p->a holds bf16 bits (const uint16_t *), lda in
 * elements.  Rows in steps of 12, panels in pairs. */
LOWPREC_TARGET_AVX512BF16 int lowprec_bf16_tile_bf16dot(const lp_f32acc_args *p, int64_t t)
{
    int64_t tm = t / p->tiles_n, tn = t % p->tiles_n;
    int64_t i0 = tm * p->mc, i1 = i0 + p->mc;
    int64_t q0 = tn * (p->nc / LP_NR), q1 = q0 + p->nc / LP_NR;
    int64_t n_panels = (p->n + LP_NR - 1) / LP_NR;
    int64_t k = p->k, kp = (k + 1) / 2, kfull = k / 2;
    const uint16_t *A = (const uint16_t *)p->a;
    const uint32_t *B = (const uint32_t *)p->bp;
    if (i1 > p->m) i1 = p->m;
    if (q1 > n_panels) q1 = n_panels;
    for (int64_t q = q0; q < q1; q += 2) {
        int np = q + 1 < q1 ? 2 : 1;
        int64_t nc = p->n - q * LP_NR;
        if (nc > 32) nc = 32;
        const uint32_t *b0 = B + q * kp * LP_NR, *b1 = b0 + kp * LP_NR;
        const float *bias = p->bias ? p->bias + q * LP_NR : NULL;
        for (int64_t i = i0; i < i1; i += LP_DP_MR) {
            int mr = (int)(i1 - i < LP_DP_MR ? i1 - i : LP_DP_MR);
            lp_dp_table[mr](np, kp, kfull, A + i * p->lda, p->lda, b0, b1,
                            p->out + i * p->ldo + q * LP_NR, p->ldo, (int)nc, bias);
        }
    }
    return 0;
}
#else
int lowprec_bf16_tile_bf16dot(const lp_f32acc_args *p, int64_t t) { (void)p; (void)t; return 1; }
#endif
