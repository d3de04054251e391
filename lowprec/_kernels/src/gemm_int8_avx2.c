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
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i v[4];
        for (int u = 0; u < 4; u++) {
            /* fused multiply-add: one rounding, as the portable twin's fmaf (inputs finite) */
            __m256 f = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8 * u), vinv, vzp);
            f = _mm256_min_ps(_mm256_max_ps(f, vlo), vhi);
            v[u] = _mm256_cvtps_epi32(f); /* round half to even (default MXCSR) */
        }
        const __m256i w01 = _mm256_packs_epi32(v[0], v[1]); /* lanes interleaved per 128 */
        const __m256i w23 = _mm256_packs_epi32(v[2], v[3]);
        const __m256i b = _mm256_packus_epi16(w01, w23);
        _mm256_storeu_si256((__m256i *)(q + i), _mm256_permutevar8x32_epi32(b, perm));
    }
    for (; i < n; i++) {
        /* scalar tail with the hardware FMA (fmaf would be a libm call here) */
        __m128 t = _mm_fmadd_ss(_mm_set_ss(x[i]), _mm_set_ss(inv_scale), _mm_set_ss((float)zp));
        t = _mm_min_ss(_mm_max_ss(t, _mm_setzero_ps()), _mm_set_ss(255.0f));
        q[i] = (uint8_t)_mm_cvtss_si32(t);
    }
}

LOWPREC_TARGET_AVX2
int lowprec_minmax_f32_avx2(const float *x, ptrdiff_t ldx, int64_t m, int64_t k, float *mn,
                            float *mx) {
    __m256 lo0 = _mm256_set1_ps(*mn), hi0 = _mm256_set1_ps(*mx), lo1 = lo0, hi1 = hi0;
    __m256 z0 = _mm256_setzero_ps(), z1 = z0;
    const __m256 zero = _mm256_setzero_ps();
    float lo = *mn, hi = *mx, zs = 0.0f;
    for (int64_t i = 0; i < m; i++) {
        const float *xr = x + i * ldx;
        int64_t j = 0;
        for (; j + 16 <= k; j += 16) {
            const __m256 a = _mm256_loadu_ps(xr + j), b = _mm256_loadu_ps(xr + j + 8);
            lo0 = _mm256_min_ps(lo0, a);
            hi0 = _mm256_max_ps(hi0, a);
            lo1 = _mm256_min_ps(lo1, b);
            hi1 = _mm256_max_ps(hi1, b);
            /* a * 0 is NaN exactly for NaN and +-inf; NaN sticks in the sum */
            z0 = _mm256_add_ps(z0, _mm256_mul_ps(a, zero));
            z1 = _mm256_add_ps(z1, _mm256_mul_ps(b, zero));
        }
        for (; j < k; j++) {
            const float v = xr[j];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
            zs += v * 0.0f;
        }
    }
    float t[8];
    _mm256_storeu_ps(t, _mm256_min_ps(lo0, lo1));
    for (int u = 0; u < 8; u++) lo = t[u] < lo ? t[u] : lo;
    _mm256_storeu_ps(t, _mm256_max_ps(hi0, hi1));
    for (int u = 0; u < 8; u++) hi = t[u] > hi ? t[u] : hi;
    _mm256_storeu_ps(t, _mm256_add_ps(z0, z1));
    for (int u = 0; u < 8; u++) zs += t[u];
    *mn = lo;
    *mx = hi;
    return zs != zs;
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

LOWPREC_TARGET_AVX2
void lowprec_gemm_check_rhs_avx2(const uint8_t *a, ptrdiff_t lda, int64_t k, const int32_t *wsum,
                                 int64_t i0, int64_t i1, uint32_t *rhs) {
    lowprec_gemm_rhs_body(a, lda, k, wsum, i0, i1, rhs);
}

LOWPREC_TARGET_AVX2
void lowprec_gemm_tile_check_avx2(const lowprec_gemm_u8s8_args *p, int64_t i0, int64_t i1,
                                  int64_t j0, int64_t j1) {
    lowprec_gemm_tile_check_body(p, i0, i1, j0, j1);
}

#endif /* LOWPREC_BUILD_AVX2 */
