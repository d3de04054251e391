/* int4-weight products, AVX2 + FMA: panel dequantization and the GEMV kernels (M <= 4).
 * Nibble j of 8 columns -> (q - 8) as int32 with two shifts (slli 28 - 4j, srai 28), then
 * cvtdq2ps.  Layout and arithmetic: gemm_int4.h. */
#define LP_F32ACC_IMPL
#include "gemm_int4.h"

#if LOWPREC_BUILD_AVX2
#include <immintrin.h>

#define LP_NIB(v, j) \
    ((j) == 7 ? _mm256_srai_epi32((v), 28) : _mm256_srai_epi32(_mm256_slli_epi32((v), 28 - 4 * (j)), 28))

LOWPREC_TARGET_AVX2 void lowprec_int4_panel_f32_avx2(const lp_f32acc_args *p, int64_t q, int64_t k0,
                                                     int64_t k1, float *buf)
{
    /* k0, k1: multiples of 8 (K is a multiple of the group, itself a multiple of 8) */
    int64_t k = p->k, ku = k / 8, G = p->group, ng = k / G;
    const uint32_t *wq = (const uint32_t *)p->bp + q * ku * LP_NR;
    const int asym = p->zeros != NULL;
    for (int64_t u = k0 / 8; u < k1 / 8;) {
        const int64_t g = 8 * u / G, uend = (g + 1) * (G / 8) < k1 / 8 ? (g + 1) * (G / 8) : k1 / 8;
        const float *sp = p->scales + (q * ng + g) * LP_NR;
        const __m256 s0 = _mm256_loadu_ps(sp), s1 = _mm256_loadu_ps(sp + 8);
        __m256 z0 = _mm256_setzero_ps(), z1 = _mm256_setzero_ps();
        if (asym) {
            z0 = _mm256_loadu_ps(p->zeros + (q * ng + g) * LP_NR);
            z1 = _mm256_loadu_ps(p->zeros + (q * ng + g) * LP_NR + 8);
        }
        for (; u < uend; u++) {
            const __m256i v0 = _mm256_loadu_si256((const __m256i *)(wq + u * LP_NR));
            const __m256i v1 = _mm256_loadu_si256((const __m256i *)(wq + u * LP_NR + 8));
            float *dst = buf + (8 * u - k0) * LP_NR;
#define LP_DQ(j)                                                                     \
            do {                                                                     \
                __m256 x0 = _mm256_cvtepi32_ps(LP_NIB(v0, j));                       \
                __m256 x1 = _mm256_cvtepi32_ps(LP_NIB(v1, j));                       \
                if (asym) {                                                          \
                    x0 = _mm256_sub_ps(x0, z0);                                      \
                    x1 = _mm256_sub_ps(x1, z1);                                      \
                }                                                                    \
                _mm256_store_ps(dst + (j) * LP_NR, _mm256_mul_ps(x0, s0));           \
                _mm256_store_ps(dst + (j) * LP_NR + 8, _mm256_mul_ps(x1, s1));       \
            } while (0)
            LP_DQ(0); LP_DQ(1); LP_DQ(2); LP_DQ(3); LP_DQ(4); LP_DQ(5); LP_DQ(6); LP_DQ(7);
#undef LP_DQ
        }
    }
}

/* MR rows x 16 columns; NS accumulator sets (by nibble index j mod NS) hide the FMA latency. */
#define LP_INT4_GEMV(MR, NS)                                                                    \
    LOWPREC_TARGET_AVX2 static void int4_gemv_avx2_##MR(const lp_f32acc_args *p, int64_t q,    \
                                                        int nc)                                \
    {                                                                                           \
        int64_t k = p->k, ku = k / 8, G = p->group, ng = k / G;                                 \
        const uint32_t *wq = (const uint32_t *)p->bp + q * ku * LP_NR;                          \
        const float *ap[MR];                                                                    \
        __m256 acc0[MR], acc1[MR];                                                              \
        for (int i = 0; i < MR; i++) {                                                          \
            ap[i] = p->a + i * p->lda;                                                          \
            acc0[i] = acc1[i] = _mm256_setzero_ps();                                            \
        }                                                                                       \
        for (int64_t g = 0; g < ng; g++) {                                                      \
            __m256 t0[NS][MR], t1[NS][MR];                                                      \
            for (int s = 0; s < NS; s++)                                                        \
                for (int i = 0; i < MR; i++) t0[s][i] = t1[s][i] = _mm256_setzero_ps();         \
            for (int64_t u = g * (G / 8); u < (g + 1) * (G / 8); u++) {                         \
                const __m256i v0 = _mm256_loadu_si256((const __m256i *)(wq + u * LP_NR));       \
                const __m256i v1 = _mm256_loadu_si256((const __m256i *)(wq + u * LP_NR + 8));   \
                const int64_t kb = 8 * u;                                                       \
                LP_G(MR, NS, 0); LP_G(MR, NS, 1); LP_G(MR, NS, 2); LP_G(MR, NS, 3);             \
                LP_G(MR, NS, 4); LP_G(MR, NS, 5); LP_G(MR, NS, 6); LP_G(MR, NS, 7);             \
            }                                                                                   \
            const float *sp = p->scales + (q * ng + g) * LP_NR;                                 \
            const __m256 s0 = _mm256_loadu_ps(sp), s1 = _mm256_loadu_ps(sp + 8);                \
            for (int i = 0; i < MR; i++) {                                                      \
                __m256 r0 = t0[0][i], r1 = t1[0][i];                                            \
                for (int s = 1; s < NS; s++) {                                                  \
                    r0 = _mm256_add_ps(r0, t0[s][i]);                                           \
                    r1 = _mm256_add_ps(r1, t1[s][i]);                                           \
                }                                                                               \
                if (p->zeros) {                                                                 \
                    const float *zp = p->zeros + (q * ng + g) * LP_NR;                          \
                    const __m256 as = _mm256_set1_ps(p->asum[i * ng + g]);                      \
                    r0 = _mm256_fnmadd_ps(_mm256_loadu_ps(zp), as, r0);                         \
                    r1 = _mm256_fnmadd_ps(_mm256_loadu_ps(zp + 8), as, r1);                     \
                }                                                                               \
                acc0[i] = _mm256_fmadd_ps(r0, s0, acc0[i]);                                     \
                acc1[i] = _mm256_fmadd_ps(r1, s1, acc1[i]);                                     \
            }                                                                                   \
        }                                                                                       \
        float tmp[MR * LP_NR];                                                                  \
        for (int i = 0; i < MR; i++) {                                                          \
            _mm256_storeu_ps(tmp + i * LP_NR, acc0[i]);                                         \
            _mm256_storeu_ps(tmp + i * LP_NR + 8, acc1[i]);                                     \
        }                                                                                       \
        lp_store_block(p->out + q * LP_NR, p->ldo, MR, nc, tmp,                                 \
                       p->bias ? p->bias + q * LP_NR : NULL);                                   \
    }

#define LP_G(MR, NS, j)                                                                         \
    do {                                                                                        \
        const __m256 x0 = _mm256_cvtepi32_ps(LP_NIB(v0, j));                                    \
        const __m256 x1 = _mm256_cvtepi32_ps(LP_NIB(v1, j));                                    \
        for (int i = 0; i < MR; i++) {                                                          \
            const __m256 ai = _mm256_broadcast_ss(ap[i] + kb + (j));                            \
            t0[(j) % NS][i] = _mm256_fmadd_ps(ai, x0, t0[(j) % NS][i]);                         \
            t1[(j) % NS][i] = _mm256_fmadd_ps(ai, x1, t1[(j) % NS][i]);                         \
        }                                                                                       \
    } while (0)

LP_INT4_GEMV(1, 4)
LP_INT4_GEMV(2, 2)
LP_INT4_GEMV(3, 1)
LP_INT4_GEMV(4, 1)

LOWPREC_TARGET_AVX2 void lowprec_int4_gemv_avx2(const lp_f32acc_args *p, int64_t q, int nc)
{
    switch (p->m) {
    case 1: int4_gemv_avx2_1(p, q, nc); break;
    case 2: int4_gemv_avx2_2(p, q, nc); break;
    case 3: int4_gemv_avx2_3(p, q, nc); break;
    default: int4_gemv_avx2_4(p, q, nc); break;
    }
}
#endif
