/* Portable row-wise quantization kernels (the reference twins of rowwise_avx2.c).
 *
 * These kernels reproduce FBGEMM's AVX2 numerics exactly, in plain C:
 *  - the row minimum and maximum are found the way FloatOrHalfTo*RowwiseQuantized*Avx2 finds
 *    them (8 lanes of _mm256_min_ps/_mm256_max_ps over the first D/8*8 columns, then the lanes
 *    and the tail with std::min/std::max).  Only the sign of a zero minimum/maximum depends on
 *    this order, but for 8-bit rows that sign is stored in the bias (and can flip the scale), so
 *    it is part of byte parity with PyTorch;
 *  - codes are lrintf((x - min) * inverse_scale) with the default round-half-even mode: a
 *    subtraction and a multiplication, no FMA (FBGEMM uses none here);
 *  - fp16 conversions round half to even (F16C semantics);
 *  - the greedy search's loss calls fmaf() exactly where the AVX2 twin uses vfmadd, and sums in
 *    the same lane order, so both pick the same ranges.
 * The file is compiled with -std=c11, which makes GCC's default -ffp-contract=off: no other
 * multiply-add is fused behind our back, so this file and the AVX2 one agree bit for bit.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "half.h"
#include "rowwise.h"

/* ------------------------------------------------------------------------------------------ */
/* fp16                                                                                       */

/* The conversions live in half.h (shared with the EmbeddingBag kernels); these are the
 * out-of-line entry points that rowwise.h declares. */
uint16_t lowprec_float_to_half(float f) { return lowprec_f32_to_f16(f); }

float lowprec_half_to_float(uint16_t h) { return lowprec_f16_to_f32(h); }

void lowprec_rowwise_f32_to_f16_generic(const float *x, int64_t n, uint16_t *out) {
    for (int64_t i = 0; i < n; i++) out[i] = lowprec_float_to_half(x[i]);
}

/* ------------------------------------------------------------------------------------------ */
/* Row minimum and maximum with FBGEMM's AVX2 selection order (see the file comment).         */

/* Returns 1 when the row holds a NaN or an infinity. */
static int row_minmax(const float *x, int64_t dim, float *out_min, float *out_max) {
    float mn[8], mx[8];
    int bad = 0;
    for (int l = 0; l < 8; l++) {
        mn[l] = FLT_MAX;
        mx[l] = -FLT_MAX;
    }
    int64_t body = dim / 8 * 8, j;
    for (j = 0; j < body; j += 8) {
        for (int l = 0; l < 8; l++) {
            float v = x[j + l];
            bad |= (v != v);
            /* _mm256_min_ps(a, b) = a < b ? a : b;  _mm256_max_ps(a, b) = a > b ? a : b */
            mn[l] = mn[l] < v ? mn[l] : v;
            mx[l] = mx[l] > v ? mx[l] : v;
        }
    }
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int l = 0; l < 8; l++) {
        /* std::min(a, b) = b < a ? b : a;  std::max(a, b) = a < b ? b : a */
        lo = mn[l] < lo ? mn[l] : lo;
        hi = hi < mx[l] ? mx[l] : hi;
    }
    for (; j < dim; j++) {
        float v = x[j];
        bad |= (v != v);
        lo = v < lo ? v : lo;
        hi = hi < v ? v : hi;
    }
    bad |= isinf(lo) || isinf(hi);
    *out_min = lo;
    *out_max = hi;
    return bad;
}

/* ------------------------------------------------------------------------------------------ */
/* 8-bit                                                                                      */

/* float -> int32 like cvtps2dq / lrintf (round half to even), with NaN and values outside the
 * int32 range mapped to INT32_MIN as the hardware does; then saturated to [lo, hi].
 * Adding and subtracting 1.5 * 2^23 rounds |v| <= 2^22 half to even in the current (default)
 * rounding mode without a libm call (lrintf is not inlined without -fno-math-errno). */
static inline int32_t round_sat(float v, int32_t lo, int32_t hi) {
    int32_t q;
    if (v >= -4194304.0f && v <= 4194304.0f) {
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
        q = (int32_t)((v + 12582912.0f) - 12582912.0f);
#else
        q = (int32_t)lrintf(v); /* x87 excess precision would break the 1.5*2^23 trick */
#endif
    } else if (v > 0.0f && v < 2147483648.0f) {
        q = hi; /* beyond 2^22: saturates anyway (hi < 2^22) */
    } else if (v < 0.0f && v > -2147483648.0f) {
        q = lo;
    } else {
        q = INT32_MIN; /* NaN, +-inf, |v| >= 2^31 */
    }
    return q < lo ? lo : (q > hi ? hi : q);
}

int64_t lowprec_rowwise_quantize8_generic(const float *x, int64_t ldx, int64_t n_rows, int64_t dim,
                                          uint8_t *out, int64_t ldo) {
    for (int64_t r = 0; r < n_rows; r++) {
        const float *row = x + r * ldx;
        uint8_t *orow = out + r * ldo;
        float lo, hi;
        if (row_minmax(row, dim, &lo, &hi)) return r;
        float range = hi - lo;
        float scale = range / 255.0f;
        float inv = 255.0f / (range + 1e-8f);
        for (int64_t j = 0; j < dim; j++) orow[j] = (uint8_t)round_sat((row[j] - lo) * inv, 0, 255);
        memcpy(orow + dim, &scale, 4);
        memcpy(orow + dim + 4, &lo, 4);
    }
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* 4-bit and 2-bit                                                                            */

typedef struct {
    float min_h, scale, inv;
    uint16_t min_bits, scale_bits;
} nbit_params;

/* FBGEMM's FloatOrHalfToFusedNBitRowwiseQuantizedSBHalf parameter choice for the range [lo, hi]. */
static nbit_params make_params(float lo, float hi, int bits) {
    nbit_params p;
    p.min_bits = lowprec_float_to_half(lo);
    p.min_h = lowprec_half_to_float(p.min_bits); /* bias rounded BEFORE the range is taken */
    float range = hi - p.min_h;
    float scale = range == 0 ? 1.0f : range / (float)((1 << bits) - 1);
    scale = lowprec_half_to_float(lowprec_float_to_half(scale));
    if (scale == 0) scale = 1.0f;
    float inv = 1.0f / scale;
    if (isinf(inv)) {
        scale = 1.0f;
        inv = 1.0f;
    }
    p.scale = scale;
    p.inv = inv;
    p.scale_bits = lowprec_float_to_half(scale);
    return p;
}

static void encode_nbit(const float *row, int64_t dim, int bits, nbit_params p, uint8_t *orow) {
    const int per_byte = 8 / bits;
    const int32_t qmax = (1 << bits) - 1;
    int64_t nb = (dim + per_byte - 1) / per_byte;
    memset(orow, 0, (size_t)nb);
    const int sh = bits == 4 ? 1 : 2; /* log2(per_byte): shifts, not divisions, per element */
    const int64_t lane = per_byte - 1;
    for (int64_t j = 0; j < dim; j++) {
        int32_t q = round_sat((row[j] - p.min_h) * p.inv, 0, qmax);
        orow[j >> sh] |= (uint8_t)(q << ((j & lane) * bits));
    }
    memcpy(orow + nb, &p.scale_bits, 2);
    memcpy(orow + nb + 2, &p.min_bits, 2);
}

int64_t lowprec_rowwise_quantizen_generic(const float *x, int64_t ldx, int64_t n_rows, int64_t dim,
                                          int bits, uint8_t *out, int64_t ldo) {
    for (int64_t r = 0; r < n_rows; r++) {
        const float *row = x + r * ldx;
        float lo, hi;
        if (row_minmax(row, dim, &lo, &hi)) return r;
        encode_nbit(row, dim, bits, make_params(lo, hi, bits), out + r * ldo);
    }
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Greedy search                                                                              */

/* Squared L2 error of a row under parameters p: q = rint(clamp((x - min_h) * inv, 0, qmax)),
 * x_hat = fmaf(q, scale, min_h) (exactly what FBGEMM's 4/2-bit dequantization and lookups
 * compute, so the loss is the deployed error), acc = fmaf(e, e, acc) in float.
 * Summation order (shared with the AVX2 kernel, which keeps two 8-lane accumulators):
 * element j goes to accumulator (j/8) % 2, lane j % 8; then acc0 + acc1 lane-wise, then the lanes as ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)).
 * Clamping before rounding equals clamping after (0 and qmax are integers), and a NaN product
 * (a bias that overflowed fp16) clamps to 0 as the deployed code does.  On the clamped value
 * adding and subtracting 1.5*2^23 rounds half to even exactly. */
static float nbit_loss(const float *x, int64_t dim, float qmax, nbit_params p) {
    float acc[2][8] = {{0}};
    for (int64_t j = 0; j < dim; j++) {
        float v = (x[j] - p.min_h) * p.inv;
        v = v > 0.0f ? v : 0.0f;      /* _mm256_max_ps(v, 0): NaN -> 0 */
        v = v < qmax ? v : qmax;      /* _mm256_min_ps(v, qmax) */
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
        float q = (v + 12582912.0f) - 12582912.0f;
#else
        float q = rintf(v);
#endif
        float e = x[j] - fmaf(q, p.scale, p.min_h);
        acc[(j >> 3) & 1][j & 7] = fmaf(e, e, acc[(j >> 3) & 1][j & 7]);
    }
    float s[8];
    for (int l = 0; l < 8; l++) s[l] = acc[0][l] + acc[1][l];
    float t0 = s[0] + s[4], t1 = s[1] + s[5], t2 = s[2] + s[6], t3 = s[3] + s[7];
    return (t0 + t2) + (t1 + t3);
}

float lowprec_rowwise_nbit_loss_generic(const float *x, int64_t dim, int bits, float lo, float hi) {
    return nbit_loss(x, dim, (float)((1 << bits) - 1), make_params(lo, hi, bits));
}

int64_t lowprec_rowwise_greedy_generic(const float *x, int64_t ldx, int64_t n_rows, int64_t dim,
                                       int bits, int n_bins, int min_bins, uint8_t *out,
                                       int64_t ldo) {
    const float qmax = (float)((1 << bits) - 1);
    for (int64_t r = 0; r < n_rows; r++) {
        const float *row = x + r * ldx;
        float xmin, xmax;
        if (row_minmax(row, dim, &xmin, &xmax)) return r;
        /* The search of formats.md 2d, step for step as at::choose_qparams_optimized, except
         * that the loss uses the deployed numerics and the loop is capped at n_bins steps (in
         * torch it never ends when cur_min + step rounds back to cur_min). */
        float best = nbit_loss(row, dim, qmax, make_params(xmin, xmax, bits));
        float best_lo = xmin, best_hi = xmax;
        float step = (xmax - xmin) / (float)n_bins;
        float thr = (float)min_bins * step;
        float cur_lo = xmin, cur_hi = xmax, cur = best;
        for (int it = 0; it < n_bins && cur_lo + thr < cur_hi; it++) {
            float l1 = nbit_loss(row, dim, qmax, make_params(cur_lo + step, cur_hi, bits));
            float l2 = nbit_loss(row, dim, qmax, make_params(cur_lo, cur_hi - step, bits));
            if (cur < l1 && cur < l2 && cur < best) {
                best = cur;
                best_lo = cur_lo;
                best_hi = cur_hi;
            }
            if (l1 < l2) {
                cur_lo += step;
                cur = l1;
            } else {
                cur_hi -= step;
                cur = l2;
            }
        }
        encode_nbit(row, dim, bits, make_params(best_lo, best_hi, bits), out + r * ldo);
    }
    return -1;
}
