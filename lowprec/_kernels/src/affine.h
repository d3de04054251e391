/* Affine (scale, zero point) quantization kernels: float32 <-> 8-bit codes (int8 / uint8 storage;
 * 4-bit codes are stored one per byte and use the same kernels with a narrower [qmin, qmax]).
 *
 * Every entry point works on a contiguous range and is serial; the Cython layer splits the
 * work into fixed-size chunks and runs them in parallel, so results never depend on the thread
 * count.  Each kernel has a portable twin (affine.c, suffix _generic) and an AVX2 twin
 * (affine_avx2.c, suffix _avx2) with the same signature and bit-identical results.
 *
 * Rounding modes (why three: each matches one PyTorch x86 code path bit for bit; the evidence is
 * in lowprec/quantization.py):
 *   LOWPREC_AFFINE_FMA_BEFORE    q = clamp(rint(fma(x, inv, zp)))     NaN -> qmax
 *                                (torch.quantize_per_tensor, quint8 / qint8)
 *   LOWPREC_AFFINE_ADD_BEFORE    q = clamp(rint((x * inv) + zp))      NaN -> 0
 *                                (torch.quantize_per_channel, quint8 / qint8; two roundings)
 *   LOWPREC_AFFINE_ADD_AFTER     q = clamp(rint(x * inv) + zp)        NaN -> 0
 *                                (torch quint4x2, FBGEMM's non-legacy Quantize; formats.md 1)
 * inv is the float32 reciprocal 1.0f / scale, computed by the caller: FBGEMM and PyTorch
 * multiply by it instead of dividing, and the two differ on ties (127.5 vs 127.499992).
 * rint is round-half-to-even.  +-inf saturate to qmax / qmin. */
#ifndef LOWPREC_AFFINE_H
#define LOWPREC_AFFINE_H

#include "lowprec_common.h"

#define LOWPREC_AFFINE_FMA_BEFORE 0
#define LOWPREC_AFFINE_ADD_BEFORE 1
#define LOWPREC_AFFINE_ADD_AFTER 2

/* Per tensor: q[i] = Q(x[i]) for i in [0, n). */
#define LOWPREC_AFFINE_DECLARE(isa)                                                              \
    void lowprec_affine_quantize_u8_##isa(const float *x, uint8_t *q, ptrdiff_t n, float inv,    \
                                          int32_t zp, int32_t qmin, int32_t qmax, int mode);     \
    void lowprec_affine_quantize_s8_##isa(const float *x, int8_t *q, ptrdiff_t n, float inv,     \
                                          int32_t zp, int32_t qmin, int32_t qmax, int mode);     \
    /* Per channel: the array is (outer, C, inner) C-contiguous; this call covers the flat      \
     * element range [start, end).  inv[c], zp[c] per channel c. */                              \
    void lowprec_affine_quantize_pc_u8_##isa(const float *x, uint8_t *q, ptrdiff_t start,       \
                                             ptrdiff_t end, ptrdiff_t C, ptrdiff_t inner,         \
                                             const float *inv, const int32_t *zp, int32_t qmin,   \
                                             int32_t qmax, int mode);                             \
    void lowprec_affine_quantize_pc_s8_##isa(const float *x, int8_t *q, ptrdiff_t start,        \
                                             ptrdiff_t end, ptrdiff_t C, ptrdiff_t inner,         \
                                             const float *inv, const int32_t *zp, int32_t qmin,   \
                                             int32_t qmax, int mode);                             \
    /* y[i] = (float)(q[i] - zp) * scale, exactly as torch's dequantize(). */                    \
    void lowprec_affine_dequantize_u8_##isa(const uint8_t *q, float *y, ptrdiff_t n,            \
                                            float scale, int32_t zp);                             \
    void lowprec_affine_dequantize_s8_##isa(const int8_t *q, float *y, ptrdiff_t n, float scale, \
                                            int32_t zp);                                          \
    void lowprec_affine_dequantize_pc_u8_##isa(const uint8_t *q, float *y, ptrdiff_t start,     \
                                               ptrdiff_t end, ptrdiff_t C, ptrdiff_t inner,       \
                                               const float *scale, const int32_t *zp);            \
    void lowprec_affine_dequantize_pc_s8_##isa(const int8_t *q, float *y, ptrdiff_t start,      \
                                               ptrdiff_t end, ptrdiff_t C, ptrdiff_t inner,       \
                                               const float *scale, const int32_t *zp);

LOWPREC_AFFINE_DECLARE(generic)
#if LOWPREC_BUILD_AVX2
LOWPREC_AFFINE_DECLARE(avx2)
#endif

#endif /* LOWPREC_AFFINE_H */
