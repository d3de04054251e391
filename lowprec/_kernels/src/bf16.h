/* bfloat16 conversions: float32 / float64 -> bf16 with three roundings, bf16 -> float32 / float64,
 * and float32 -> float32 rounded to bf16 ("fake quantization").
 *
 * Every entry point works on one contiguous range (pointer + count) and has no threads of its
 * own: the Cython layer (_bf16.pyx) splits an array into fixed-size chunks and runs them under
 * OpenMP, so a result never depends on the thread count.  Each entry point exists twice with
 * the same signature: the portable `_generic` twin (bf16.c) and the `_avx2` twin (bf16_avx2.c),
 * and the two give identical bits for every input.
 *
 * bf16 values travel as their raw bits (uint16_t): bf16 is the upper half of a float32.
 *
 * Rounding modes (LOWPREC_BF16_*):
 *   NEAREST     round to nearest, ties to even; ml_dtypes' rule bit for bit: finite values that
 *               round past the largest bf16 become +-inf, subnormals are kept.
 *   TRUNCATE    round toward zero: drop the low 16 bits of the float32.
 *   STOCHASTIC  add a 16-bit uniform random integer r to the float32 bits, then truncate: the
 *               value rounds up (away from zero) with probability (low 16 bits) / 2^16, so the
 *               expected result equals the input.  r for element i (index counted from the start
 *               of the whole array) is bits 16*(i%4) .. 16*(i%4)+15 of splitmix64's output number
 *               i/4 for the seed `key`:  mix64(key + (i/4 + 1) * 0x9E3779B97F4A7C15).
 *               A counter-based generator: element i gets the same r whichever thread, chunk or
 *               ISA path converts it.
 * In every mode a NaN becomes the quiet NaN 0x7FC0 (0xFFC0 when its sign bit is set), as
 * ml_dtypes does for NEAREST.  Truncating or adding to the bits of a NaN whose payload sits only
 * in the low 16 bits would otherwise give inf, or carry into the sign.
 *
 * float64 input (correct single rounding, unlike ml_dtypes' double rounding through float32):
 *   NEAREST     first round to float32 with round-to-odd (truncate, then set the last bit when
 *               anything nonzero was dropped), then round that to bf16 to nearest-even.  float32
 *               has 16 more significand bits than bf16 in every binade (same exponent range, so
 *               subnormals included), at least the 2 extra bits that make round-to-odd followed
 *               by round-to-nearest equal to one direct rounding (Boldo & Melquiond, "When double
 *               rounding is odd", 2005).  Overflow: a value above FLT_MAX truncates to FLT_MAX, an
 *               odd pattern above the bf16 overflow tie, so it rounds to inf as it should; +-inf
 *               stay +-inf; values below the smallest float32 subnormal become +-(smallest
 *               subnormal) after round-to-odd and then round to +-0.
 *   TRUNCATE    truncate to float32 (toward zero) then to bf16: directed roundings compose, so
 *               the result is the float64 value rounded toward zero (beyond FLT_MAX: the largest
 *               finite bf16, as round-toward-zero requires; +-inf stay +-inf).
 *   STOCHASTIC  truncate to float32, then stochastic rounding as above.  The bits of the float64
 *               below float32 precision are dropped, which moves the rounding-up probability by
 *               less than 2^-16, the resolution of a 16-bit r anyway.
 */
#ifndef LOWPREC_BF16_H
#define LOWPREC_BF16_H

#include <math.h>
#include <string.h>

#include "lowprec_common.h"

#define LOWPREC_BF16_NEAREST 0
#define LOWPREC_BF16_TRUNCATE 1
#define LOWPREC_BF16_STOCHASTIC 2

#define LOWPREC_BF16_GOLDEN 0x9E3779B97F4A7C15ULL

#ifdef __cplusplus
extern "C" {
#endif

/* float32 -> bf16 bits.  `key` and `index0` (the index of src[0] in the whole array) are used by
 * STOCHASTIC only.  `nontemporal` != 0 allows streaming stores that bypass the cache (for outputs
 * much larger than the cache; the portable twins ignore it).  It never changes the result. */
void lowprec_bf16_from_f32_generic(const float *src, uint16_t *dst, size_t n, int rounding,
                                   uint64_t key, uint64_t index0, int nontemporal);
void lowprec_bf16_from_f32_avx2(const float *src, uint16_t *dst, size_t n, int rounding,
                                uint64_t key, uint64_t index0, int nontemporal);

/* float64 -> bf16 bits, correctly rounded once (see above). */
void lowprec_bf16_from_f64_generic(const double *src, uint16_t *dst, size_t n, int rounding,
                                   uint64_t key, uint64_t index0, int nontemporal);
void lowprec_bf16_from_f64_avx2(const double *src, uint16_t *dst, size_t n, int rounding,
                                uint64_t key, uint64_t index0, int nontemporal);

/* float32 -> float32 holding the bf16 value (the low 16 bits zero); same rounding as from_f32. */
void lowprec_bf16_round_f32_generic(const float *src, float *dst, size_t n, int rounding,
                                    uint64_t key, uint64_t index0, int nontemporal);
void lowprec_bf16_round_f32_avx2(const float *src, float *dst, size_t n, int rounding,
                                 uint64_t key, uint64_t index0, int nontemporal);

/* bf16 bits -> float32 / float64 (exact; NaN payloads and signs kept). */
void lowprec_bf16_to_f32_generic(const uint16_t *src, float *dst, size_t n, int nontemporal);
void lowprec_bf16_to_f32_avx2(const uint16_t *src, float *dst, size_t n, int nontemporal);
void lowprec_bf16_to_f64_generic(const uint16_t *src, double *dst, size_t n, int nontemporal);
void lowprec_bf16_to_f64_avx2(const uint16_t *src, double *dst, size_t n, int nontemporal);

#ifdef __cplusplus
}
#endif

/* ---- Scalar helpers, shared by both twins (static inline: each file gets its own copy, so the
 * AVX2 file never exports an AVX2-compiled version of a function the generic file uses). ---- */

static inline uint32_t lowprec_bf16_f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float lowprec_bf16_bits_f32(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* splitmix64's output function (Steele, Lea & Flood 2014; Vigna's splitmix64.c). */
static inline uint64_t lowprec_bf16_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* The 16 random bits of element i (see STOCHASTIC above). */
static inline uint32_t lowprec_bf16_random16(uint64_t key, uint64_t i)
{
    uint64_t h = lowprec_bf16_mix64(key + ((i >> 2) + 1) * LOWPREC_BF16_GOLDEN);
    return (uint32_t)(h >> (16 * (i & 3))) & 0xFFFFu;
}

static inline int lowprec_bf16_is_nan_bits(uint32_t u)
{
    return (u & 0x7FFFFFFFu) > 0x7F800000u;
}

/* The quiet NaN every mode produces for a NaN input: 0x7FC0 with the input's sign. */
static inline uint16_t lowprec_bf16_qnan(uint32_t u)
{
    return (uint16_t)(((u >> 16) & 0x8000u) | 0x7FC0u);
}

/* float32 bits -> bf16 bits; r = the 16 random bits (STOCHASTIC only). */
static inline uint16_t lowprec_bf16_round_bits(uint32_t u, int rounding, uint32_t r)
{
    if (lowprec_bf16_is_nan_bits(u))
        return lowprec_bf16_qnan(u);
    if (rounding == LOWPREC_BF16_NEAREST)
        /* Adding 0x7FFF rounds up iff the low half is above the tie; the extra 1 from the
         * bf16 lsb breaks a tie toward even.  A carry out of the significand bumps the
         * exponent, which is right, and past the largest finite value gives inf. */
        u += 0x7FFFu + ((u >> 16) & 1u);
    else if (rounding == LOWPREC_BF16_STOCHASTIC)
        u += r; /* carries into the bf16 lsb with probability (low 16 bits) / 2^16 */
    return (uint16_t)(u >> 16);
}

/* float64 -> float32 bits, rounded toward zero (odd = 0) or to odd (odd = 1).  The hardware
 * conversion rounds to nearest; when that moved away from zero, step one ulp back toward zero
 * (for a value beyond FLT_MAX this steps from inf to FLT_MAX).  NaN and +-inf pass unchanged. */
static inline uint32_t lowprec_bf16_f64_to_f32_bits(double d, int odd)
{
    float f = (float)d;
    double back = (double)f;
    uint32_t u = lowprec_bf16_f32_bits(f);
    if (back != d && d == d) { /* inexact (NaN compares unequal: excluded) */
        if (fabs(back) > fabs(d))
            u -= 1u; /* magnitude - 1 ulp; never crosses zero since |f| > |d| > 0 */
        if (odd)
            u |= 1u;
    }
    return u;
}

#endif /* LOWPREC_BF16_H */
