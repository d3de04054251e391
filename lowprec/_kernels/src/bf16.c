/* Portable bfloat16 conversion kernels: the reference twins of bf16_avx2.c (see bf16.h for the
 * rounding rules).  Plain C that compilers auto-vectorise where they can; the AVX2 twins must
 * give exactly the same bits. */
#include "bf16.h"

void lowprec_bf16_from_f32_generic(const float *src, uint16_t *dst, size_t n, int rounding,
                                   uint64_t key, uint64_t index0, int nontemporal)
{
    (void)nontemporal;
    size_t i;
    /* One loop per mode so that the compiler can vectorise the first two. */
    if (rounding == LOWPREC_BF16_NEAREST) {
        for (i = 0; i < n; i++)
            dst[i] = lowprec_bf16_round_bits(lowprec_bf16_f32_bits(src[i]), LOWPREC_BF16_NEAREST, 0);
    } else if (rounding == LOWPREC_BF16_TRUNCATE) {
        for (i = 0; i < n; i++)
            dst[i] = lowprec_bf16_round_bits(lowprec_bf16_f32_bits(src[i]), LOWPREC_BF16_TRUNCATE, 0);
    } else {
        /* One splitmix64 output feeds 4 consecutive elements (bf16.h). */
        uint64_t h = 0;
        for (i = 0; i < n; i++) {
            uint64_t idx = index0 + i;
            if (i == 0 || (idx & 3) == 0)
                h = lowprec_bf16_mix64(key + ((idx >> 2) + 1) * LOWPREC_BF16_GOLDEN);
            dst[i] = lowprec_bf16_round_bits(lowprec_bf16_f32_bits(src[i]), LOWPREC_BF16_STOCHASTIC,
                                             (uint32_t)(h >> (16 * (idx & 3))) & 0xFFFFu);
        }
    }
}

void lowprec_bf16_round_f32_generic(const float *src, float *dst, size_t n, int rounding,
                                    uint64_t key, uint64_t index0, int nontemporal)
{
    (void)nontemporal;
    size_t i;
    for (i = 0; i < n; i++) {
        uint32_t u = lowprec_bf16_f32_bits(src[i]);
        uint32_t r = rounding == LOWPREC_BF16_STOCHASTIC ? lowprec_bf16_random16(key, index0 + i) : 0;
        dst[i] = lowprec_bf16_bits_f32((uint32_t)lowprec_bf16_round_bits(u, rounding, r) << 16);
    }
}

void lowprec_bf16_from_f64_generic(const double *src, uint16_t *dst, size_t n, int rounding,
                                   uint64_t key, uint64_t index0, int nontemporal)
{
    (void)nontemporal;
    size_t i;
    /* NEAREST: round to odd first (bf16.h explains why this makes the second rounding exact);
     * TRUNCATE and STOCHASTIC: toward zero first. */
    int odd = rounding == LOWPREC_BF16_NEAREST;
    for (i = 0; i < n; i++) {
        uint32_t u = lowprec_bf16_f64_to_f32_bits(src[i], odd);
        uint32_t r = rounding == LOWPREC_BF16_STOCHASTIC ? lowprec_bf16_random16(key, index0 + i) : 0;
        dst[i] = lowprec_bf16_round_bits(u, rounding, r);
    }
}

void lowprec_bf16_to_f32_generic(const uint16_t *src, float *dst, size_t n, int nontemporal)
{
    (void)nontemporal;
    size_t i;
    for (i = 0; i < n; i++)
        dst[i] = lowprec_bf16_bits_f32((uint32_t)src[i] << 16);
}

void lowprec_bf16_to_f64_generic(const uint16_t *src, double *dst, size_t n, int nontemporal)
{
    (void)nontemporal;
    size_t i;
    /* float32 -> float64 is exact and keeps NaN payloads (quieted, the bf16 NaNs ml_dtypes
     * produces are quiet already). */
    for (i = 0; i < n; i++)
        dst[i] = (double)lowprec_bf16_bits_f32((uint32_t)src[i] << 16);
}
