/* AVX2 bfloat16 conversion kernels: same signatures and same bits as the portable twins in
 * bf16.c (bf16.h states the rounding rules).  Only the entry points are exported; they are called
 * only after the dispatcher has checked that the CPU has AVX2.
 *
 * The conversions are memory bound (6 bytes per element for float32 <-> bf16), so the kernels
 * keep the arithmetic to a few integer ops per 8 lanes, process 16 elements (one 32-byte bf16
 * store) per iteration, and finish the tail with the scalar helpers of bf16.h. */
#include "bf16.h"

#if LOWPREC_BUILD_AVX2
#include <immintrin.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Eight float32 bit patterns -> eight bf16 bit patterns in the low halves of 32-bit lanes.
 *
 * NaNs are first replaced by the canonical quiet NaN 0x7FC00000 (keeping the sign): its low
 * half is zero and its bf16 lsb is 0, so neither the round-to-nearest increment (<= 0x8000) nor
 * a stochastic r (< 0x10000) can carry out of it, and the shift gives 0x7FC0 / 0xFFC0 exactly as
 * the scalar code does.  That costs 4 ops per 8 lanes (compare, and, or, blend). */
ALWAYS_INLINE LOWPREC_TARGET_AVX2 __m256i round8(__m256i u, int rounding, __m256i r)
{
    __m256 f = _mm256_castsi256_ps(u);
    __m256i is_nan = _mm256_castps_si256(_mm256_cmp_ps(f, f, _CMP_UNORD_Q));
    __m256i qnan = _mm256_or_si256(_mm256_and_si256(u, _mm256_set1_epi32((int)0x80000000u)),
                                   _mm256_set1_epi32(0x7FC00000));
    u = _mm256_blendv_epi8(u, qnan, is_nan);
    if (rounding == LOWPREC_BF16_NEAREST) {
        /* bits + 0x7FFF + bf16 lsb: ties to even (bf16.h, lowprec_bf16_round_bits). */
        __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
        u = _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF)));
    } else if (rounding == LOWPREC_BF16_STOCHASTIC) {
        u = _mm256_add_epi32(u, r);
    }
    return _mm256_srli_epi32(u, 16);
}

/* Two vectors of eight 32-bit lanes holding values < 2^16 -> sixteen uint16 in order.
 * packus works per 128-bit half ([a0-3 b0-3 | a4-7 b4-7]); the permute restores the order. */
ALWAYS_INLINE LOWPREC_TARGET_AVX2 __m256i pack16(__m256i a, __m256i b)
{
    return _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8);
}

/* a * c mod 2^64 in each 64-bit lane (AVX2 has no 64-bit multiply): lo*lo + (hi*lo + lo*hi) << 32. */
ALWAYS_INLINE LOWPREC_TARGET_AVX2 __m256i mul64c(__m256i a, uint64_t c)
{
    const __m256i c_lo = _mm256_set1_epi64x((long long)(c & 0xFFFFFFFFu));
    const __m256i c_hi = _mm256_set1_epi64x((long long)(c >> 32));
    __m256i lo = _mm256_mul_epu32(a, c_lo);
    __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), c_lo),
                                     _mm256_mul_epu32(a, c_hi));
    return _mm256_add_epi64(lo, _mm256_slli_epi64(cross, 32));
}

/* splitmix64's output function on four lanes (lowprec_bf16_mix64). */
ALWAYS_INLINE LOWPREC_TARGET_AVX2 __m256i mix64x4(__m256i z)
{
    z = mul64c(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), 0xBF58476D1CE4E5B9ULL);
    z = mul64c(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), 0x94D049BB133111EBULL);
    return _mm256_xor_si256(z, _mm256_srli_epi64(z, 31));
}

/* State of the counter-based generator: the four splitmix64 inputs for the next 16 elements. */
typedef struct {
    __m256i z;
} rng16;

ALWAYS_INLINE LOWPREC_TARGET_AVX2 rng16 rng16_init(uint64_t key, uint64_t index)
{
    /* index is a multiple of 4: lanes hold key + (index/4 + 1 + k) * GOLDEN, k = 0..3. */
    uint64_t z0 = key + (index / 4 + 1) * LOWPREC_BF16_GOLDEN;
    rng16 s;
    s.z = _mm256_set_epi64x((long long)(z0 + 3 * LOWPREC_BF16_GOLDEN),
                            (long long)(z0 + 2 * LOWPREC_BF16_GOLDEN),
                            (long long)(z0 + LOWPREC_BF16_GOLDEN), (long long)z0);
    return s;
}

/* The 16-bit random integers of the next 16 elements, zero-extended into 32-bit lanes.  The four
 * 64-bit hashes, read as sixteen uint16, are already in element order (element 4j+k gets bits
 * 16k.. of hash j, and x86 is little-endian). */
ALWAYS_INLINE LOWPREC_TARGET_AVX2 void rng16_next(rng16 *s, __m256i *r_lo, __m256i *r_hi)
{
    __m256i h = mix64x4(s->z);
    s->z = _mm256_add_epi64(s->z, _mm256_set1_epi64x((long long)(4 * LOWPREC_BF16_GOLDEN)));
    *r_lo = _mm256_cvtepu16_epi32(_mm256_castsi256_si128(h));
    *r_hi = _mm256_cvtepu16_epi32(_mm256_extracti128_si256(h, 1));
}

/* Where the vector loop starts, and whether it may use non-temporal stores.
 *
 * Non-temporal (streaming) stores write whole lines to memory without first reading them into
 * the cache (no read-for-ownership): for arrays far larger than the cache this removes a third
 * of the memory traffic of float32 -> bf16 (measured: ~27 -> ~40 GB/s on one Zen core at 16M
 * elements).  They need 32-byte aligned addresses, so a scalar head runs up to the first aligned
 * element; the caller asks for them only for large arrays (whose output would not stay in the
 * cache anyway).
 *
 * STOCHASTIC also needs the vector loop to start at an array index that is a multiple of 4 (the
 * generator produces random bits in groups of 4).  When both constraints cannot hold together,
 * the kernel gives up streaming.  Chunks from the Cython layer start at multiples of 65536, so
 * with numpy's allocations both hold. */
typedef struct {
    size_t head; /* elements converted by the scalar code before the vector loop */
    int nt;      /* use streaming stores */
} plan_t;

static plan_t make_plan(const void *dst, size_t elsize, size_t n, int stochastic, uint64_t index0,
                        int nontemporal)
{
    plan_t p = {0, 0};
    uintptr_t a = (uintptr_t)dst;
    if (nontemporal && (a % elsize) == 0) {
        p.nt = 1;
        p.head = ((32 - (a & 31)) & 31) / elsize;
        if (stochastic && ((index0 + p.head) & 3))
            p.nt = 0;
    }
    if (!p.nt)
        p.head = stochastic ? (size_t)((4 - (index0 & 3)) & 3) : 0;
    if (p.head > n)
        p.head = n;
    return p;
}

ALWAYS_INLINE LOWPREC_TARGET_AVX2 void store256(void *p, __m256i v, int nt)
{
    if (nt)
        _mm256_stream_si256((__m256i *)p, v);
    else
        _mm256_storeu_si256((__m256i *)p, v);
}

/* The one kernel body shared by float32 -> bf16 (out32 = 0) and float32 -> float32 rounded
 * (out32 = 1): rounding, out32 and nt are constants after inlining. */
ALWAYS_INLINE LOWPREC_TARGET_AVX2 size_t f32_loop(const float *src, void *dst, size_t i, size_t n,
                                                  int rounding, rng16 *rng, int out32, int nt)
{
    const __m256i zero = _mm256_setzero_si256();
    for (; i + 16 <= n; i += 16) {
        __m256i u0 = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i u1 = _mm256_loadu_si256((const __m256i *)(src + i + 8));
        __m256i r0 = zero, r1 = zero;
        if (rounding == LOWPREC_BF16_STOCHASTIC)
            rng16_next(rng, &r0, &r1);
        __m256i b0 = round8(u0, rounding, r0), b1 = round8(u1, rounding, r1);
        if (out32) {
            store256((float *)dst + i, _mm256_slli_epi32(b0, 16), nt);
            store256((float *)dst + i + 8, _mm256_slli_epi32(b1, 16), nt);
        } else {
            store256((uint16_t *)dst + i, pack16(b0, b1), nt);
        }
    }
    return i;
}

ALWAYS_INLINE LOWPREC_TARGET_AVX2 void f32_mode(const float *src, void *dst, size_t n, int rounding,
                                                uint64_t key, uint64_t index0, int out32,
                                                int nontemporal)
{
    const int stochastic = rounding == LOWPREC_BF16_STOCHASTIC;
    plan_t p = make_plan(dst, out32 ? 4 : 2, n, stochastic, index0, nontemporal);
    size_t i;
    rng16 rng;
    for (i = 0; i < p.head; i++) {
        uint16_t b = lowprec_bf16_round_bits(lowprec_bf16_f32_bits(src[i]), rounding,
                                             stochastic ? lowprec_bf16_random16(key, index0 + i) : 0);
        if (out32)
            ((float *)dst)[i] = lowprec_bf16_bits_f32((uint32_t)b << 16);
        else
            ((uint16_t *)dst)[i] = b;
    }
    if (stochastic)
        rng = rng16_init(key, index0 + i);
    if (p.nt) {
        i = f32_loop(src, dst, i, n, rounding, &rng, out32, 1);
        _mm_sfence(); /* order the streaming stores before anything the caller does next */
    } else {
        i = f32_loop(src, dst, i, n, rounding, &rng, out32, 0);
    }
    for (; i < n; i++) {
        uint16_t b = lowprec_bf16_round_bits(lowprec_bf16_f32_bits(src[i]), rounding,
                                             stochastic ? lowprec_bf16_random16(key, index0 + i) : 0);
        if (out32)
            ((float *)dst)[i] = lowprec_bf16_bits_f32((uint32_t)b << 16);
        else
            ((uint16_t *)dst)[i] = b;
    }
}

LOWPREC_TARGET_AVX2 void lowprec_bf16_from_f32_avx2(const float *src, uint16_t *dst, size_t n,
                                                    int rounding, uint64_t key, uint64_t index0,
                                                    int nontemporal)
{
    /* One specialised loop per mode (the mode argument is a constant after inlining). */
    if (rounding == LOWPREC_BF16_NEAREST)
        f32_mode(src, dst, n, LOWPREC_BF16_NEAREST, key, index0, 0, nontemporal);
    else if (rounding == LOWPREC_BF16_TRUNCATE)
        f32_mode(src, dst, n, LOWPREC_BF16_TRUNCATE, key, index0, 0, nontemporal);
    else
        f32_mode(src, dst, n, LOWPREC_BF16_STOCHASTIC, key, index0, 0, nontemporal);
}

LOWPREC_TARGET_AVX2 void lowprec_bf16_round_f32_avx2(const float *src, float *dst, size_t n,
                                                     int rounding, uint64_t key, uint64_t index0,
                                                     int nontemporal)
{
    if (rounding == LOWPREC_BF16_NEAREST)
        f32_mode(src, dst, n, LOWPREC_BF16_NEAREST, key, index0, 1, nontemporal);
    else if (rounding == LOWPREC_BF16_TRUNCATE)
        f32_mode(src, dst, n, LOWPREC_BF16_TRUNCATE, key, index0, 1, nontemporal);
    else
        f32_mode(src, dst, n, LOWPREC_BF16_STOCHASTIC, key, index0, 1, nontemporal);
}

/* Narrow two vectors of four 64-bit all-ones/zero masks into eight 32-bit lanes, in order. */
ALWAYS_INLINE LOWPREC_TARGET_AVX2 __m256i narrow_masks(__m256d m0, __m256d m1)
{
    __m256 s = _mm256_shuffle_ps(_mm256_castpd_ps(m0), _mm256_castpd_ps(m1), 0x88);
    return _mm256_permute4x64_epi64(_mm256_castps_si256(s), 0xD8);
}

/* Eight float64 -> eight float32 bit patterns, rounded toward zero, or to odd when `odd`
 * (lowprec_bf16_f64_to_f32_bits: convert to nearest, step back one ulp when that went away from
 * zero, set the last bit when inexact). */
ALWAYS_INLINE LOWPREC_TARGET_AVX2 __m256i f64x8_to_f32_bits(const double *p, int odd)
{
    const __m256d abs_mask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFLL));
    __m256d d0 = _mm256_loadu_pd(p), d1 = _mm256_loadu_pd(p + 4);
    __m128 f0 = _mm256_cvtpd_ps(d0), f1 = _mm256_cvtpd_ps(d1);
    __m256d b0 = _mm256_cvtps_pd(f0), b1 = _mm256_cvtps_pd(f1);
    /* Ordered compares: false for NaN, so NaN passes through unchanged. */
    __m256d away0 = _mm256_cmp_pd(_mm256_and_pd(b0, abs_mask), _mm256_and_pd(d0, abs_mask), _CMP_GT_OQ);
    __m256d away1 = _mm256_cmp_pd(_mm256_and_pd(b1, abs_mask), _mm256_and_pd(d1, abs_mask), _CMP_GT_OQ);
    __m256i u = _mm256_set_m128i(_mm_castps_si128(f1), _mm_castps_si128(f0));
    u = _mm256_add_epi32(u, narrow_masks(away0, away1)); /* mask = -1: one ulp toward zero */
    if (odd) {
        __m256d inexact0 = _mm256_cmp_pd(b0, d0, _CMP_NEQ_OQ);
        __m256d inexact1 = _mm256_cmp_pd(b1, d1, _CMP_NEQ_OQ);
        u = _mm256_or_si256(u, _mm256_and_si256(narrow_masks(inexact0, inexact1), _mm256_set1_epi32(1)));
    }
    return u;
}

ALWAYS_INLINE LOWPREC_TARGET_AVX2 size_t f64_loop(const double *src, uint16_t *dst, size_t i,
                                                  size_t n, int rounding, rng16 *rng, int nt)
{
    const int odd = rounding == LOWPREC_BF16_NEAREST;
    const __m256i zero = _mm256_setzero_si256();
    for (; i + 16 <= n; i += 16) {
        __m256i u0 = f64x8_to_f32_bits(src + i, odd);
        __m256i u1 = f64x8_to_f32_bits(src + i + 8, odd);
        __m256i r0 = zero, r1 = zero;
        if (rounding == LOWPREC_BF16_STOCHASTIC)
            rng16_next(rng, &r0, &r1);
        store256(dst + i, pack16(round8(u0, rounding, r0), round8(u1, rounding, r1)), nt);
    }
    return i;
}

ALWAYS_INLINE LOWPREC_TARGET_AVX2 void f64_mode(const double *src, uint16_t *dst, size_t n,
                                                int rounding, uint64_t key, uint64_t index0,
                                                int nontemporal)
{
    const int stochastic = rounding == LOWPREC_BF16_STOCHASTIC;
    const int odd = rounding == LOWPREC_BF16_NEAREST;
    plan_t p = make_plan(dst, 2, n, stochastic, index0, nontemporal);
    size_t i;
    rng16 rng;
    for (i = 0; i < p.head; i++)
        dst[i] = lowprec_bf16_round_bits(lowprec_bf16_f64_to_f32_bits(src[i], odd), rounding,
                                         stochastic ? lowprec_bf16_random16(key, index0 + i) : 0);
    if (stochastic)
        rng = rng16_init(key, index0 + i);
    if (p.nt) {
        i = f64_loop(src, dst, i, n, rounding, &rng, 1);
        _mm_sfence();
    } else {
        i = f64_loop(src, dst, i, n, rounding, &rng, 0);
    }
    for (; i < n; i++)
        dst[i] = lowprec_bf16_round_bits(lowprec_bf16_f64_to_f32_bits(src[i], odd), rounding,
                                         stochastic ? lowprec_bf16_random16(key, index0 + i) : 0);
}

LOWPREC_TARGET_AVX2 void lowprec_bf16_from_f64_avx2(const double *src, uint16_t *dst, size_t n,
                                                    int rounding, uint64_t key, uint64_t index0,
                                                    int nontemporal)
{
    if (rounding == LOWPREC_BF16_NEAREST)
        f64_mode(src, dst, n, LOWPREC_BF16_NEAREST, key, index0, nontemporal);
    else if (rounding == LOWPREC_BF16_TRUNCATE)
        f64_mode(src, dst, n, LOWPREC_BF16_TRUNCATE, key, index0, nontemporal);
    else
        f64_mode(src, dst, n, LOWPREC_BF16_STOCHASTIC, key, index0, nontemporal);
}

ALWAYS_INLINE LOWPREC_TARGET_AVX2 size_t to_f32_loop(const uint16_t *src, float *dst, size_t i,
                                                     size_t n, int nt)
{
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(src + i));
        store256(dst + i, _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(h)), 16), nt);
        store256(dst + i + 8, _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(h, 1)), 16), nt);
    }
    return i;
}

LOWPREC_TARGET_AVX2 void lowprec_bf16_to_f32_avx2(const uint16_t *src, float *dst, size_t n,
                                                  int nontemporal)
{
    plan_t p = make_plan(dst, 4, n, 0, 0, nontemporal);
    size_t i;
    for (i = 0; i < p.head; i++)
        dst[i] = lowprec_bf16_bits_f32((uint32_t)src[i] << 16);
    if (p.nt) {
        i = to_f32_loop(src, dst, i, n, 1);
        _mm_sfence();
    } else {
        i = to_f32_loop(src, dst, i, n, 0);
    }
    for (; i < n; i++)
        dst[i] = lowprec_bf16_bits_f32((uint32_t)src[i] << 16);
}

ALWAYS_INLINE LOWPREC_TARGET_AVX2 size_t to_f64_loop(const uint16_t *src, double *dst, size_t i,
                                                     size_t n, int nt)
{
    for (; i + 8 <= n; i += 8) {
        __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i))), 16);
        __m256 f = _mm256_castsi256_ps(w);
        /* float32 -> float64 is exact (and quiets a signalling NaN, as the scalar cast does). */
        store256(dst + i, _mm256_castpd_si256(_mm256_cvtps_pd(_mm256_castps256_ps128(f))), nt);
        store256(dst + i + 4, _mm256_castpd_si256(_mm256_cvtps_pd(_mm256_extractf128_ps(f, 1))), nt);
    }
    return i;
}

LOWPREC_TARGET_AVX2 void lowprec_bf16_to_f64_avx2(const uint16_t *src, double *dst, size_t n,
                                                  int nontemporal)
{
    plan_t p = make_plan(dst, 8, n, 0, 0, nontemporal);
    size_t i;
    for (i = 0; i < p.head; i++)
        dst[i] = (double)lowprec_bf16_bits_f32((uint32_t)src[i] << 16);
    if (p.nt) {
        i = to_f64_loop(src, dst, i, n, 1);
        _mm_sfence();
    } else {
        i = to_f64_loop(src, dst, i, n, 0);
    }
    for (; i < n; i++)
        dst[i] = (double)lowprec_bf16_bits_f32((uint32_t)src[i] << 16);
}

#else /* !LOWPREC_BUILD_AVX2 */

/* No AVX2 compiler support (ARM, MSVC): the entry points exist so that the extension links, and
 * forward to the portable kernels (the dispatcher never selects them on such builds anyway). */
void lowprec_bf16_from_f32_avx2(const float *src, uint16_t *dst, size_t n, int rounding,
                                uint64_t key, uint64_t index0, int nontemporal)
{
    lowprec_bf16_from_f32_generic(src, dst, n, rounding, key, index0, nontemporal);
}
void lowprec_bf16_from_f64_avx2(const double *src, uint16_t *dst, size_t n, int rounding,
                                uint64_t key, uint64_t index0, int nontemporal)
{
    lowprec_bf16_from_f64_generic(src, dst, n, rounding, key, index0, nontemporal);
}
void lowprec_bf16_round_f32_avx2(const float *src, float *dst, size_t n, int rounding,
                                 uint64_t key, uint64_t index0, int nontemporal)
{
    lowprec_bf16_round_f32_generic(src, dst, n, rounding, key, index0, nontemporal);
}
void lowprec_bf16_to_f32_avx2(const uint16_t *src, float *dst, size_t n, int nontemporal)
{
    lowprec_bf16_to_f32_generic(src, dst, n, nontemporal);
}
void lowprec_bf16_to_f64_avx2(const uint16_t *src, double *dst, size_t n, int nontemporal)
{
    lowprec_bf16_to_f64_generic(src, dst, n, nontemporal);
}

#endif /* LOWPREC_BUILD_AVX2 */
