/* AVX2 micro-kernel of the exact u8 x s8 -> s32 GEMM (design: top of gemm_int8.c).
 *
 * lowprec_gemm_u8s8s32_avx2_6x16: 6 rows x 16 columns, P2x16 packed B (int16 pairs).  A comes
 * widened to uint16 (values 0..255).  Per k-pair: two 32-byte loads of B (columns 0-7 and 8-15,
 * 2 k each), then for every row one 32-bit broadcast of (A[i,2q], A[i,2q+1]) and two vpmaddwd +
 * two vpaddd.  vpmaddwd forms a*b + a'*b' in int32 exactly (|.| <= 2*255*128): no saturating
 * vpmaddubsw anywhere.  Small m get kernels instantiated for that m.
 *
 * Also: the AVX2 twin of the dynamic activation quantizer (FBGEMM's rule, identical bits to the
 * portable one: multiply by the float32 reciprocal, round half to even, add zp, clamp). */
#include "gemm_int8.h"

#if LOWPREC_BUILD_AVX2
#include <immintrin.h>
#include <string.h>

#define NR 16

static inline __attribute__((always_inline)) int32_t load_pair(const uint16_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

LOWPREC_TARGET_AVX2
static inline __attribute__((always_inline)) void kernel_m(const int MR, int64_t k2,
                                                           const uint16_t *a, ptrdiff_t lda,
                                                           const int16_t *b, int32_t *c) {
    __m256i acc0[6], acc1[6];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        acc0[r] = _mm256_setzero_si256();
        acc1[r] = _mm256_setzero_si256();
    }
    for (int64_t q = 0; q < k2; q++) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)b);
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)(b + 16));
        b += 32;
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            const __m256i av = _mm256_set1_epi32(load_pair(a + r * lda + 2 * q));
            acc0[r] = _mm256_add_epi32(acc0[r], _mm256_madd_epi16(av, b0));
            acc1[r] = _mm256_add_epi32(acc1[r], _mm256_madd_epi16(av, b1));
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        _mm256_storeu_si256((__m256i *)(c + r * NR), acc0[r]);
        _mm256_storeu_si256((__m256i *)(c + r * NR + 8), acc1[r]);
    }
}

LOWPREC_TARGET_AVX2
void lowprec_gemm_u8s8s32_avx2_6x16(int64_t k2, const uint16_t *a, ptrdiff_t lda,
                                    const int16_t *b, int32_t *c, int m) {
    switch (m) {
    case 1: kernel_m(1, k2, a, lda, b, c); break;
    case 2: kernel_m(2, k2, a, lda, b, c); break;
    case 3: kernel_m(3, k2, a, lda, b, c); break;
    case 4: kernel_m(4, k2, a, lda, b, c); break;
    case 5: kernel_m(5, k2, a, lda, b, c); break;
    default: kernel_m(6, k2, a, lda, b, c); break;
    }
}

LOWPREC_TARGET_AVX2
void lowprec_quantize_u8_f32_avx2(const float *x, int64_t n, float inv_scale, int32_t zp,
                                  uint8_t *q) {
    const __m256 vinv = _mm256_set1_ps(inv_scale), vzp = _mm256_set1_ps((float)zp);
    const __m256 vlo = _mm256_setzero_ps(), vhi = _mm256_set1_ps(255.0f);
    const __m256 vlim = _mm256_set1_ps(1024.0f), vnlim = _mm256_set1_ps(-1024.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i v[4];
        for (int u = 0; u < 4; u++) {
            __m256 f = _mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * u), vinv);
            /* clamp first (as the portable twin): max/min return the second operand on NaN,
             * but inputs are checked finite by the caller. */
            f = _mm256_min_ps(_mm256_max_ps(f, vnlim), vlim);
            f = _mm256_round_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            f = _mm256_add_ps(f, vzp);
            f = _mm256_min_ps(_mm256_max_ps(f, vlo), vhi);
            v[u] = _mm256_cvtps_epi32(f);
        }
        const __m256i w01 = _mm256_packs_epi32(v[0], v[1]); /* lanes interleaved per 128 */
        const __m256i w23 = _mm256_packs_epi32(v[2], v[3]);
        const __m256i b = _mm256_packus_epi16(w01, w23);
        _mm256_storeu_si256((__m256i *)(q + i), _mm256_permutevar8x32_epi32(b, perm));
    }
    lowprec_quantize_u8_f32_generic(x + i, n - i, inv_scale, zp, q + i);
}

LOWPREC_TARGET_AVX2
void lowprec_gemm_pipeline_avx2(const lowprec_gemm_u8s8_args *p, const int32_t *c,
                                int64_t ldc, int64_t i0, int64_t m, int64_t j0, int64_t n) {
    /* a full panel width as a constant: fully vectorised loops without tails */
    if (n == 16)
        lowprec_gemm_pipeline_body(p, c, ldc, i0, m, j0, 16);
    else
        lowprec_gemm_pipeline_body(p, c, ldc, i0, m, j0, n);
}

#endif /* LOWPREC_BUILD_AVX2 */
