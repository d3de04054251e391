/* int4-weight products, AVX-512 (avx512vnni level): the GEMV kernels (M <= 4), one zmm = one
 * 16-column panel.  Decode without int->float conversion: vpermps uses only bits 3..0 of each
 * index lane, so nibble j of 16 columns is permutexvar(srli(word, 4j), T) with the table
 * T[n] = float(n < 8 ? n : n - 16) = q - 8 (the stored nibble is q ^ 8): 2 ops per 16 weights
 * (1 for j = 0) instead of 3 (shift, shift, cvtdq2ps) per 8.  Arithmetic (per group
 * t = sum a (q - 8), then acc += s * (t - (z - 8) * sum a)) and bounds: gemm_int4.h.
 * The M > 4 path runs the AVX2 panel decoder and micro-kernel (gemm_int4_avx2.c). */
#define LP_F32ACC_IMPL
#include "gemm_int4.h"

#if LOWPREC_BUILD_AVX2
#include <immintrin.h>

/* NS accumulator sets (by nibble index j mod NS) per row: MR * NS independent FMA chains. */
#define LP_INT4_GEMV512(MR, NS)                                                                 \
    LOWPREC_TARGET_AVX512VNNI static void int4_gemv_avx512_##MR(const lp_f32acc_args *p,       \
                                                                int64_t q, int nc)             \
    {                                                                                           \
        int64_t k = p->k, ku = k / 8, G = p->group, ng = k / G;                                 \
        const uint32_t *wq = (const uint32_t *)p->bp + q * ku * LP_NR;                          \
        const __m512 tab = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1); \
        const float *ap[MR];                                                                    \
        __m512 acc[MR];                                                                         \
        for (int i = 0; i < MR; i++) {                                                          \
            ap[i] = p->a + i * p->lda;                                                          \
            acc[i] = _mm512_setzero_ps();                                                       \
        }                                                                                       \
        for (int64_t g = 0; g < ng; g++) {                                                      \
            __m512 t[NS][MR];                                                                   \
            for (int s = 0; s < NS; s++)                                                        \
                for (int i = 0; i < MR; i++) t[s][i] = _mm512_setzero_ps();                     \
            for (int64_t u = g * (G / 8); u < (g + 1) * (G / 8); u++) {                         \
                const __m512i v = _mm512_loadu_si512((const void *)(wq + u * LP_NR));           \
                const int64_t kb = 8 * u;                                                       \
                LP_G5(MR, NS, 0); LP_G5(MR, NS, 1); LP_G5(MR, NS, 2); LP_G5(MR, NS, 3);         \
                LP_G5(MR, NS, 4); LP_G5(MR, NS, 5); LP_G5(MR, NS, 6); LP_G5(MR, NS, 7);         \
            }                                                                                   \
            const __m512 sv = _mm512_loadu_ps(p->scales + (q * ng + g) * LP_NR);                \
            for (int i = 0; i < MR; i++) {                                                      \
                __m512 r = t[0][i];                                                             \
                for (int s = 1; s < NS; s++) r = _mm512_add_ps(r, t[s][i]);                     \
                if (p->zeros) {                                                                 \
                    const __m512 zv = _mm512_loadu_ps(p->zeros + (q * ng + g) * LP_NR);         \
                    r = _mm512_fnmadd_ps(zv, _mm512_set1_ps(p->asum[i * ng + g]), r);           \
                }                                                                               \
                acc[i] = _mm512_fmadd_ps(r, sv, acc[i]);                                        \
            }                                                                                   \
        }                                                                                       \
        float tmp[MR * LP_NR];                                                                  \
        for (int i = 0; i < MR; i++) _mm512_storeu_ps(tmp + i * LP_NR, acc[i]);                 \
        lp_store_block(p->out + q * LP_NR, p->ldo, MR, nc, tmp,                                 \
                       p->bias ? p->bias + q * LP_NR : NULL);                                   \
    }

#define LP_G5(MR, NS, j)                                                                        \
    do {                                                                                        \
        const __m512 x = _mm512_permutexvar_ps((j) ? _mm512_srli_epi32(v, 4 * (j)) : v, tab);   \
        for (int i = 0; i < MR; i++)                                                            \
            t[(j) % NS][i] = _mm512_fmadd_ps(_mm512_set1_ps(ap[i][kb + (j)]), x, t[(j) % NS][i]); \
    } while (0)

LP_INT4_GEMV512(1, 8)
LP_INT4_GEMV512(2, 4)
LP_INT4_GEMV512(3, 2)
LP_INT4_GEMV512(4, 2)

LOWPREC_TARGET_AVX512VNNI void lowprec_int4_gemv_avx512(const lp_f32acc_args *p, int64_t q, int nc)
{
    switch (p->m) {
    case 1: int4_gemv_avx512_1(p, q, nc); break;
    case 2: int4_gemv_avx512_2(p, q, nc); break;
    case 3: int4_gemv_avx512_3(p, q, nc); break;
    default: int4_gemv_avx512_4(p, q, nc); break;
    }
}
#endif
