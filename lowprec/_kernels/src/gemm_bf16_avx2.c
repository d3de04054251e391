/* bfloat16-weight products, AVX2 + FMA: panel decoder and the GEMV kernels (M <= 4).
 * bf16 -> float32 without shuffles: a ymm of 8 words (8 columns x 2 k) gives the even k as
 * (word << 16) and the odd k as (word & 0xFFFF0000).  Layout: gemm_bf16.h. */
#define LP_F32ACC_IMPL
#include "gemm_bf16.h"

#if LOWPREC_BUILD_AVX2
#include <immintrin.h>

/* One k pair of a panel (16 words at w): columns 0-7 / 8-15 of the even k (e0, e1) and of the
 * odd k (o0, o1) as float32.  hi = 0xFFFF0000 in every lane. */
LOWPREC_TARGET_AVX2 static inline void bf16_decode_pair(const uint32_t *w, __m256i hi, __m256 *e0,
                                                        __m256 *e1, __m256 *o0, __m256 *o1)
{
    __m256i v0 = _mm256_loadu_si256((const __m256i *)w);
    __m256i v1 = _mm256_loadu_si256((const __m256i *)(w + 8));
    *e0 = _mm256_castsi256_ps(_mm256_slli_epi32(v0, 16));
    *e1 = _mm256_castsi256_ps(_mm256_slli_epi32(v1, 16));
    *o0 = _mm256_castsi256_ps(_mm256_and_si256(v0, hi));
    *o1 = _mm256_castsi256_ps(_mm256_and_si256(v1, hi));
}

LOWPREC_TARGET_AVX2 void lowprec_bf16_panel_f32_avx2(const lp_f32acc_args *p, int64_t q, int64_t k0,
                                                     int64_t k1, float *buf)
{
    /* k0 is even: pairs t = k0/2 .. ; an odd k1 (= K) takes the even half of the last pair */
    int64_t kp = (p->k + 1) / 2;
    const uint32_t *wq = (const uint32_t *)p->bp + q * kp * LP_NR;
    const __m256i hi = _mm256_set1_epi32((int)0xFFFF0000u);
    for (int64_t t = k0 / 2; 2 * t < k1; t++) {
        __m256 e0, e1, o0, o1;
        float *dst = buf + (2 * t - k0) * LP_NR;
        bf16_decode_pair(wq + t * LP_NR, hi, &e0, &e1, &o0, &o1);
        _mm256_store_ps(dst, e0);
        _mm256_store_ps(dst + 8, e1);
        if (2 * t + 1 < k1) {
            _mm256_store_ps(dst + LP_NR, o0);
            _mm256_store_ps(dst + LP_NR + 8, o1);
        }
    }
}

/* MR rows x 16 columns; NS independent accumulator sets over consecutive k pairs hide the FMA
 * latency when MR is small (MR=1: 4 sets = 8 chains, MR=2: 2 sets = 8 chains).  The sets are
 * summed in a fixed order at the end. */
#define LP_BF16_GEMV(MR, NS)                                                                    \
    LOWPREC_TARGET_AVX2 static void bf16_gemv_avx2_##MR(const lp_f32acc_args *p, int64_t q,    \
                                                        int nc)                                \
    {                                                                                           \
        int64_t k = p->k, kp = (k + 1) / 2, kfull = k / 2, t = 0;                               \
        const uint32_t *wq = (const uint32_t *)p->bp + q * kp * LP_NR;                          \
        const __m256i hi = _mm256_set1_epi32((int)0xFFFF0000u);                                 \
        const float *ap[MR];                                                                    \
        __m256 acc0[NS][MR], acc1[NS][MR];                                                      \
        for (int i = 0; i < MR; i++) ap[i] = p->a + i * p->lda;                                 \
        for (int s = 0; s < NS; s++)                                                            \
            for (int i = 0; i < MR; i++) acc0[s][i] = acc1[s][i] = _mm256_setzero_ps();         \
        for (; t + NS <= kfull; t += NS) {                                                      \
            for (int s = 0; s < NS; s++) {                                                      \
                __m256 e0, e1, o0, o1;                                                          \
                bf16_decode_pair(wq + (t + s) * LP_NR, hi, &e0, &e1, &o0, &o1);                 \
                for (int i = 0; i < MR; i++) {                                                  \
                    __m256 ae = _mm256_broadcast_ss(ap[i] + 2 * (t + s));                       \
                    __m256 ao = _mm256_broadcast_ss(ap[i] + 2 * (t + s) + 1);                   \
                    acc0[s][i] = _mm256_fmadd_ps(ae, e0, acc0[s][i]);                           \
                    acc1[s][i] = _mm256_fmadd_ps(ae, e1, acc1[s][i]);                           \
                    acc0[s][i] = _mm256_fmadd_ps(ao, o0, acc0[s][i]);                           \
                    acc1[s][i] = _mm256_fmadd_ps(ao, o1, acc1[s][i]);                           \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
        for (; t < kp; t++) { /* leftover pairs, then the odd last k (even half only) */       \
            __m256 e0, e1, o0, o1;                                                              \
            bf16_decode_pair(wq + t * LP_NR, hi, &e0, &e1, &o0, &o1);                           \
            for (int i = 0; i < MR; i++) {                                                      \
                __m256 ae = _mm256_broadcast_ss(ap[i] + 2 * t);                                 \
                acc0[0][i] = _mm256_fmadd_ps(ae, e0, acc0[0][i]);                               \
                acc1[0][i] = _mm256_fmadd_ps(ae, e1, acc1[0][i]);                               \
                if (t < kfull) {                                                                \
                    __m256 ao = _mm256_broadcast_ss(ap[i] + 2 * t + 1);                         \
                    acc0[0][i] = _mm256_fmadd_ps(ao, o0, acc0[0][i]);                           \
                    acc1[0][i] = _mm256_fmadd_ps(ao, o1, acc1[0][i]);                           \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
        float tmp[MR * LP_NR];                                                                  \
        for (int i = 0; i < MR; i++) {                                                          \
            __m256 r0 = acc0[0][i], r1 = acc1[0][i];                                            \
            for (int s = 1; s < NS; s++) {                                                      \
                r0 = _mm256_add_ps(r0, acc0[s][i]);                                             \
                r1 = _mm256_add_ps(r1, acc1[s][i]);                                             \
            }                                                                                   \
            _mm256_storeu_ps(tmp + i * LP_NR, r0);                                              \
            _mm256_storeu_ps(tmp + i * LP_NR + 8, r1);                                          \
        }                                                                                       \
        lp_store_block(p->out + q * LP_NR, p->ldo, MR, nc, tmp,                                 \
                       p->bias ? p->bias + q * LP_NR : NULL);                                   \
    }

LP_BF16_GEMV(1, 4)
LP_BF16_GEMV(2, 2)
LP_BF16_GEMV(3, 1)
LP_BF16_GEMV(4, 1)

LOWPREC_TARGET_AVX2 void lowprec_bf16_gemv_avx2(const lp_f32acc_args *p, int64_t q, int nc)
{
    switch (p->m) {
    case 1: bf16_gemv_avx2_1(p, q, nc); break;
    case 2: bf16_gemv_avx2_2(p, q, nc); break;
    case 3: bf16_gemv_avx2_3(p, q, nc); break;
    default: bf16_gemv_avx2_4(p, q, nc); break;
    }
}
#endif
