/* AVX512-VNNI micro-kernel of the exact u8 x s8 -> s32 GEMM (design: top of gemm_int8.c).
 *
 * lowprec_gemm_u8s8s32_avx512vnni_8x32: 8 rows x 32 columns, Q4x32 packed B.  Per k-quad: two
 * 64-byte loads of B (columns 0-15 and 16-31, 4 k each), then for every row one 32-bit
 * broadcast of A[i, 4q..4q+3] (folded into vpdpbusd as an embedded {1to16} broadcast) and two
 * vpdpbusd.  vpdpbusd is exact for u8 x s8 (no int16 stage, no saturation; the saturating
 * variant vpdpbusds is never used).  The K tail (k % 4) is read byte by byte into a zero-padded
 * quad; the packed B is zero there.  Small m (M tails, GEMV) use kernels instantiated for that m;
 * for m <= 2 the k-loop is unrolled by two into separate accumulator sets to hide the
 * vpdpbusd latency (a GEMV then streams B at the L2/L3 bandwidth). */
#include "gemm_int8.h"

#if LOWPREC_BUILD_AVX2
#include <immintrin.h>
#include <string.h>

#define NR 32

static inline __attribute__((always_inline)) int32_t load_quad(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline __attribute__((always_inline)) int32_t load_tail(const uint8_t *p, int64_t n) {
    uint8_t t[4] = {0, 0, 0, 0};
    for (int64_t u = 0; u < n; u++) t[u] = p[u];
    int32_t v;
    memcpy(&v, t, 4);
    return v;
}

LOWPREC_TARGET_AVX512VNNI
static inline __attribute__((always_inline)) void kernel_m(const int MR, int64_t k,
                                                           const uint8_t *a, ptrdiff_t lda,
                                                           const int8_t *b, int32_t *c) {
    __m512i acc0[8], acc1[8], acc2[8], acc3[8];
    const uint8_t *ap[8];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        acc0[r] = _mm512_setzero_si512();
        acc1[r] = _mm512_setzero_si512();
        acc2[r] = _mm512_setzero_si512();
        acc3[r] = _mm512_setzero_si512();
        ap[r] = a + r * lda;
    }
    const int64_t kq = k >> 2;
    int64_t q = 0;
    if (MR <= 2) {
        for (; q + 2 <= kq; q += 2) {
            const __m512i b0 = _mm512_loadu_si512((const void *)b);
            const __m512i b1 = _mm512_loadu_si512((const void *)(b + 64));
            const __m512i b2 = _mm512_loadu_si512((const void *)(b + 128));
            const __m512i b3 = _mm512_loadu_si512((const void *)(b + 192));
            b += 256;
#pragma GCC unroll 8
            for (int r = 0; r < MR; r++) {
                const __m512i av = _mm512_set1_epi32(load_quad(ap[r] + 4 * q));
                const __m512i aw = _mm512_set1_epi32(load_quad(ap[r] + 4 * q + 4));
                acc0[r] = _mm512_dpbusd_epi32(acc0[r], av, b0);
                acc1[r] = _mm512_dpbusd_epi32(acc1[r], av, b1);
                acc2[r] = _mm512_dpbusd_epi32(acc2[r], aw, b2);
                acc3[r] = _mm512_dpbusd_epi32(acc3[r], aw, b3);
            }
        }
    }
    for (; q < kq; q++) {
        const __m512i b0 = _mm512_loadu_si512((const void *)b);
        const __m512i b1 = _mm512_loadu_si512((const void *)(b + 64));
        b += 128;
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            const __m512i av = _mm512_set1_epi32(load_quad(ap[r] + 4 * q));
            acc0[r] = _mm512_dpbusd_epi32(acc0[r], av, b0);
            acc1[r] = _mm512_dpbusd_epi32(acc1[r], av, b1);
        }
    }
    if (k & 3) {
        const __m512i b0 = _mm512_loadu_si512((const void *)b);
        const __m512i b1 = _mm512_loadu_si512((const void *)(b + 64));
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            const __m512i av = _mm512_set1_epi32(load_tail(ap[r] + 4 * kq, k & 3));
            acc0[r] = _mm512_dpbusd_epi32(acc0[r], av, b0);
            acc1[r] = _mm512_dpbusd_epi32(acc1[r], av, b1);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        if (MR <= 2) {
            acc0[r] = _mm512_add_epi32(acc0[r], acc2[r]);
            acc1[r] = _mm512_add_epi32(acc1[r], acc3[r]);
        }
        _mm512_storeu_si512((void *)(c + r * NR), acc0[r]);
        _mm512_storeu_si512((void *)(c + r * NR + 16), acc1[r]);
    }
}

LOWPREC_TARGET_AVX512VNNI
void lowprec_gemm_u8s8s32_avx512vnni_8x32(int64_t k, const uint8_t *a, ptrdiff_t lda,
                                          const int8_t *b, int32_t *c, int m) {
    switch (m) {
    case 1: kernel_m(1, k, a, lda, b, c); break;
    case 2: kernel_m(2, k, a, lda, b, c); break;
    case 3: kernel_m(3, k, a, lda, b, c); break;
    case 4: kernel_m(4, k, a, lda, b, c); break;
    case 5: kernel_m(5, k, a, lda, b, c); break;
    case 6: kernel_m(6, k, a, lda, b, c); break;
    case 7: kernel_m(7, k, a, lda, b, c); break;
    default: kernel_m(8, k, a, lda, b, c); break;
    }
}

LOWPREC_TARGET_AVX512VNNI
void lowprec_gemm_pipeline_avx512vnni(const lowprec_gemm_u8s8_args *p, const int32_t *c,
                                int64_t ldc, int64_t i0, int64_t m, int64_t j0, int64_t n) {
    /* a full panel width as a constant: fully vectorised loops without tails */
    if (n == 32)
        lowprec_gemm_pipeline_body(p, c, ldc, i0, m, j0, 32);
    else
        lowprec_gemm_pipeline_body(p, c, ldc, i0, m, j0, n);
}

#endif /* LOWPREC_BUILD_AVX2 */
