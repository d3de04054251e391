/* Portable affine quantization kernels: the reference twins of affine_avx2.c.
 *
 * Both files implement exactly the arithmetic documented in affine.h; tests compare them bit for
 * bit.  No -ffast-math anywhere (setup.py): the kernels depend on IEEE rounding and NaN
 * semantics, and on the compiler not contracting x * inv + zp into an FMA where the reference
 * (torch per-channel) rounds twice.  GCC's default in ISO C mode (-std=c11) is
 * -ffp-contract=off, which is what we want. */
#include <math.h>

#include "affine.h"

/* Round half to even for |t| < 2^22, in the default rounding mode: adding 1.5 * 2^23 pushes the
 * fraction bits out of the significand, and the FPU's round-to-nearest-even does the work.  The
 * callers clamp t into [-2^16, 2^16] first, so this is always in range.  (rintf() would do the
 * same but is a library call that blocks vectorisation.) */
static inline float round_half_even(float t) {
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    return (t + magic) - magic;
}

/* One element, mode FMA_BEFORE: torch.quantize_per_tensor (quint8 / qint8).  The comparisons
 * are written so that NaN goes to qmax, like _mm256_min_ps(t, qmax) (which returns its second
 * operand when the first is NaN) in the AVX2 twin and in PyTorch. */
static inline int32_t q_fma_before(float x, float inv, float zpf, float lo, float hi) {
    float t = fmaf(x, inv, zpf); /* one rounding: x * inv + zp is never rounded in between */
    if (!(t <= hi)) t = hi;      /* NaN or above the range */
    if (t < lo) t = lo;
    return (int32_t)round_half_even(t);
}

/* Mode ADD_BEFORE: torch.quantize_per_channel (quint8 / qint8): the product is rounded to
 * float32, then the zero point added (a second rounding), then rounded to an integer. */
static inline int32_t q_add_before(float x, float inv, float zpf, float lo, float hi) {
    float p = x * inv;
    float t = p + zpf;
    if (t != t) return 0; /* NaN -> 0 (not the zero point), as torch */
    if (t > hi) t = hi;
    if (t < lo) t = lo;
    return (int32_t)round_half_even(t);
}

/* Mode ADD_AFTER: round x * inv first, then add the zero point (torch quint4x2, FBGEMM
 * non-legacy).  Clamping p into [lo - zp, hi - zp] before rounding gives the same result as
 * clamping after (rounding is monotone and fixes integers) and keeps the magic rounding in
 * range. */
static inline int32_t q_add_after(float x, float inv, int32_t zp, float lo, float hi) {
    float p = x * inv;
    if (p != p) return 0; /* NaN -> 0 */
    float plo = lo - (float)zp, phi = hi - (float)zp; /* exact: small integers */
    if (p > phi) p = phi;
    if (p < plo) p = plo;
    return (int32_t)round_half_even(p) + zp;
}

#define DEFINE_QUANTIZE_GENERIC(suffix, T)                                                       \
    void lowprec_affine_quantize_##suffix##_generic(const float *x, T *q, ptrdiff_t n,          \
                                                    float inv, int32_t zp, int32_t qmin,         \
                                                    int32_t qmax, int mode) {                    \
        const float lo = (float)qmin, hi = (float)qmax, zpf = (float)zp;                         \
        ptrdiff_t i;                                                                             \
        if (mode == LOWPREC_AFFINE_FMA_BEFORE) {                                                 \
            for (i = 0; i < n; i++) q[i] = (T)q_fma_before(x[i], inv, zpf, lo, hi);              \
        } else if (mode == LOWPREC_AFFINE_ADD_BEFORE) {                                          \
            for (i = 0; i < n; i++) q[i] = (T)q_add_before(x[i], inv, zpf, lo, hi);              \
        } else {                                                                                 \
            for (i = 0; i < n; i++) q[i] = (T)q_add_after(x[i], inv, zp, lo, hi);                \
        }                                                                                        \
    }                                                                                            \
                                                                                                 \
    void lowprec_affine_quantize_pc_##suffix##_generic(                                          \
        const float *x, T *q, ptrdiff_t start, ptrdiff_t end, ptrdiff_t C, ptrdiff_t inner,      \
        const float *inv, const int32_t *zp, int32_t qmin, int32_t qmax, int mode) {             \
        const float lo = (float)qmin, hi = (float)qmax;                                          \
        ptrdiff_t i = start;                                                                     \
        if (inner == 1) {                                                                        \
            /* channel = i % C: walk the row pieces, one element per channel */                  \
            ptrdiff_t c = i % C;                                                                 \
            for (; i < end; i++) {                                                               \
                if (mode == LOWPREC_AFFINE_FMA_BEFORE)                                           \
                    q[i] = (T)q_fma_before(x[i], inv[c], (float)zp[c], lo, hi);                  \
                else if (mode == LOWPREC_AFFINE_ADD_BEFORE)                                      \
                    q[i] = (T)q_add_before(x[i], inv[c], (float)zp[c], lo, hi);                  \
                else                                                                             \
                    q[i] = (T)q_add_after(x[i], inv[c], zp[c], lo, hi);                          \
                if (++c == C) c = 0;                                                             \
            }                                                                                    \
        } else {                                                                                 \
            /* pieces of constant channel: a per-tensor kernel each */                           \
            while (i < end) {                                                                    \
                ptrdiff_t block = i / inner, c = block % C;                                      \
                ptrdiff_t stop = (block + 1) * inner;                                            \
                if (stop > end) stop = end;                                                      \
                lowprec_affine_quantize_##suffix##_generic(x + i, q + i, stop - i, inv[c], zp[c], \
                                                           qmin, qmax, mode);                    \
                i = stop;                                                                        \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
                                                                                                 \
    void lowprec_affine_dequantize_##suffix##_generic(const T *q, float *y, ptrdiff_t n,        \
                                                      float scale, int32_t zp) {                 \
        /* q - zp is an exact small integer, so float(q - zp) * scale has one rounding, the     \
         * same as torch's (float(q) - zp) * scale. */                                           \
        for (ptrdiff_t i = 0; i < n; i++) y[i] = (float)((int32_t)q[i] - zp) * scale;           \
    }                                                                                            \
                                                                                                 \
    void lowprec_affine_dequantize_pc_##suffix##_generic(                                        \
        const T *q, float *y, ptrdiff_t start, ptrdiff_t end, ptrdiff_t C, ptrdiff_t inner,      \
        const float *scale, const int32_t *zp) {                                                 \
        ptrdiff_t i = start;                                                                     \
        if (inner == 1) {                                                                        \
            ptrdiff_t c = i % C;                                                                 \
            for (; i < end; i++) {                                                               \
                y[i] = (float)((int32_t)q[i] - zp[c]) * scale[c];                               \
                if (++c == C) c = 0;                                                             \
            }                                                                                    \
        } else {                                                                                 \
            while (i < end) {                                                                    \
                ptrdiff_t block = i / inner, c = block % C;                                      \
                ptrdiff_t stop = (block + 1) * inner;                                            \
                if (stop > end) stop = end;                                                      \
                lowprec_affine_dequantize_##suffix##_generic(q + i, y + i, stop - i, scale[c],   \
                                                             zp[c]);                             \
                i = stop;                                                                        \
            }                                                                                    \
        }                                                                                        \
    }

DEFINE_QUANTIZE_GENERIC(u8, uint8_t)
DEFINE_QUANTIZE_GENERIC(s8, int8_t)
