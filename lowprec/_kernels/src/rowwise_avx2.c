/* AVX2 + FMA + F16C row-wise quantization kernels; same signatures and the same bytes as the
 * portable twins in rowwise.c (see that file for the numerics and why they are what they are).
 *
 * The 8-bit and N-bit encoders follow FBGEMM's FloatOrHalfTo*RowwiseQuantized*Avx2: one pass
 * for min/max (a single 8-lane accumulator, because the sign of a zero extremum depends on the
 * order), one pass that converts 32 columns per iteration with vcvtps2dq and packs them.
 * The greedy search evaluates two candidate ranges per pass over the row (the row stays in L1),
 * which gives the out-of-order core four independent accumulator chains.  The loss uses FMA
 * exactly where the portable twin calls fmaf(), so both give identical bits.
 */
#include "rowwise.h"

#if LOWPREC_BUILD_AVX2

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

static LOWPREC_TARGET_AVX2 inline uint16_t f2h(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
static LOWPREC_TARGET_AVX2 inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

LOWPREC_TARGET_AVX2
void lowprec_rowwise_f32_to_f16_avx2(const float *x, int64_t n, uint16_t *out) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128((__m128i *)(out + i), h);
    }
    for (; i < n; i++) out[i] = f2h(x[i]);
}

/* Row min/max in FBGEMM's order.  Returns 1 when the row holds a NaN or an infinity. */
static LOWPREC_TARGET_AVX2 inline int row_minmax(const float *x, int64_t dim, float *out_min,
                                                 float *out_max) {
    __m256 mn = _mm256_set1_ps(FLT_MAX), mx = _mm256_set1_ps(-FLT_MAX);
    __m256 nan = _mm256_setzero_ps();
    int64_t body = dim / 8 * 8, j;
    for (j = 0; j < body; j += 8) {
        __m256 v = _mm256_loadu_ps(x + j);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        mn = _mm256_min_ps(mn, v);
        mx = _mm256_max_ps(mx, v);
    }
    float bmn[8], bmx[8];
    _mm256_storeu_ps(bmn, mn);
    _mm256_storeu_ps(bmx, mx);
    int bad = _mm256_movemask_ps(nan) != 0;
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int l = 0; l < 8; l++) {
        lo = bmn[l] < lo ? bmn[l] : lo;
        hi = hi < bmx[l] ? bmx[l] : hi;
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

static inline int32_t round_sat(float v, int32_t lo, int32_t hi) {
    int32_t q;
    if (!(v > -2147483648.0f && v < 2147483648.0f)) {
        q = INT32_MIN;
    } else {
        q = (int32_t)lrintf(v);
    }
    return q < lo ? lo : (q > hi ? hi : q);
}

/* 32 codes (x - mn) * inv, rounded half to even, clamped to [0, qmax], as bytes in order. */
static LOWPREC_TARGET_AVX2 inline __m256i codes32(const float *x, __m256 mn, __m256 inv,
                                                  __m256i qmax) {
    const __m256i zero = _mm256_setzero_si256();
    __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x), mn), inv));
    __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + 8), mn), inv));
    __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + 16), mn), inv));
    __m256i d = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + 24), mn), inv));
    /* Clamp in int32 first: INT32_MIN (NaN / out of range) becomes 0, exactly like the scalar
     * tail; then the saturating packs cannot change anything. */
    a = _mm256_max_epi32(_mm256_min_epi32(a, qmax), zero);
    b = _mm256_max_epi32(_mm256_min_epi32(b, qmax), zero);
    c = _mm256_max_epi32(_mm256_min_epi32(c, qmax), zero);
    d = _mm256_max_epi32(_mm256_min_epi32(d, qmax), zero);
    __m256i ab = _mm256_packs_epi32(a, b);
    __m256i cd = _mm256_packs_epi32(c, d);
    __m256i abcd = _mm256_packus_epi16(ab, cd);
    /* the packs work within 128-bit lanes: restore the element order */
    return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

LOWPREC_TARGET_AVX2
int64_t lowprec_rowwise_quantize8_avx2(const float *x, int64_t ldx, int64_t n_rows, int64_t dim,
                                       uint8_t *out, int64_t ldo) {
    const __m256i q255 = _mm256_set1_epi32(255);
    for (int64_t r = 0; r < n_rows; r++) {
        const float *row = x + r * ldx;
        uint8_t *orow = out + r * ldo;
        float lo, hi;
        if (row_minmax(row, dim, &lo, &hi)) return r;
        float range = hi - lo;
        float scale = range / 255.0f;
        float inv = 255.0f / (range + 1e-8f);
        __m256 mn_v = _mm256_set1_ps(lo), inv_v = _mm256_set1_ps(inv);
        int64_t j = 0;
        for (; j + 32 <= dim; j += 32)
            _mm256_storeu_si256((__m256i *)(orow + j), codes32(row + j, mn_v, inv_v, q255));
        for (; j < dim; j++) orow[j] = (uint8_t)round_sat((row[j] - lo) * inv, 0, 255);
        memcpy(orow + dim, &scale, 4);
        memcpy(orow + dim + 4, &lo, 4);
    }
    return -1;
}

typedef struct {
    float min_h, scale, inv;
    uint16_t min_bits, scale_bits;
} nbit_params;

static LOWPREC_TARGET_AVX2 inline nbit_params make_params(float lo, float hi, int bits) {
    nbit_params p;
    p.min_bits = f2h(lo);
    p.min_h = h2f(p.min_bits);
    float range = hi - p.min_h;
    float scale = range == 0 ? 1.0f : range / (float)((1 << bits) - 1);
    scale = h2f(f2h(scale));
    if (scale == 0) scale = 1.0f;
    float inv = 1.0f / scale;
    if (isinf(inv)) {
        scale = 1.0f;
        inv = 1.0f;
    }
    p.scale = scale;
    p.inv = inv;
    p.scale_bits = f2h(scale);
    return p;
}

static LOWPREC_TARGET_AVX2 void encode_nbit(const float *row, int64_t dim, int bits,
                                            nbit_params p, uint8_t *orow) {
    const int per_byte = 8 / bits;
    const int32_t qmax = (1 << bits) - 1;
    const int64_t nb = (dim + per_byte - 1) / per_byte;
    const __m256 mn_v = _mm256_set1_ps(p.min_h), inv_v = _mm256_set1_ps(p.inv);
    const __m256i qmax_v = _mm256_set1_epi32(qmax);
    int64_t j = 0;
    for (; j + 32 <= dim; j += 32) {
        __m256i c = codes32(row + j, mn_v, inv_v, qmax_v);
        if (bits == 4) {
            /* byte 2k | byte 2k+1 << 4 lands in the low byte of each 16-bit word */
            c = _mm256_and_si256(_mm256_or_si256(c, _mm256_srli_epi16(c, 4)), _mm256_set1_epi16(0x00ff));
            __m128i o = _mm_packus_epi16(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
            _mm_storeu_si128((__m128i *)(orow + j / 2), o);
        } else {
            c = _mm256_or_si256(_mm256_or_si256(c, _mm256_srli_epi32(c, 6)),
                                _mm256_or_si256(_mm256_srli_epi32(c, 12), _mm256_srli_epi32(c, 18)));
            c = _mm256_and_si256(c, _mm256_set1_epi32(0xff));
            __m128i o = _mm_packus_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
            o = _mm_packus_epi16(o, o);
            _mm_storel_epi64((__m128i *)(orow + j / 4), o);
        }
    }
    if (j < dim) {
        memset(orow + j / per_byte, 0, (size_t)(nb - j / per_byte));
        for (; j < dim; j++) {
            int32_t q = round_sat((row[j] - p.min_h) * p.inv, 0, qmax);
            orow[j / per_byte] |= (uint8_t)(q << ((j % per_byte) * bits));
        }
    }
    memcpy(orow + nb, &p.scale_bits, 2);
    memcpy(orow + nb + 2, &p.min_bits, 2);
}

LOWPREC_TARGET_AVX2
int64_t lowprec_rowwise_quantizen_avx2(const float *x, int64_t ldx, int64_t n_rows, int64_t dim,
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

/* Mask of the first n (0..8) lanes. */
static LOWPREC_TARGET_AVX2 inline __m256i lane_mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The error x - x_hat of 8 elements under one parameter set (see nbit_loss in rowwise.c). */
static LOWPREC_TARGET_AVX2 inline __m256 err8(__m256 x, __m256 mn, __m256 inv, __m256 scale,
                                                 __m256 qmax) {
    __m256 v = _mm256_mul_ps(_mm256_sub_ps(x, mn), inv);
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), qmax);
    __m256 q = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    /* x_hat = fma(q, scale, bias): what FBGEMM's 4/2-bit dequantization and lookups compute */
    return _mm256_sub_ps(x, _mm256_fmadd_ps(q, scale, mn));
}

/* acc += e*e with one rounding (fmaf in the portable twin).  Masked-off lanes have e = 0. */
#define ACC(acc, e)                              \
    do {                                         \
        __m256 e_ = (e);                         \
        (acc) = _mm256_fmadd_ps(e_, e_, (acc)); \
    } while (0)

static LOWPREC_TARGET_AVX2 inline float hsum_pair(__m256 a0, __m256 a1) {
    __m256 s = _mm256_add_ps(a0, a1);
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));
    return _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)));
}

static LOWPREC_TARGET_AVX2 float nbit_loss(const float *x, int64_t dim, float qmax_f,
                                           nbit_params p) {
    const __m256 mn = _mm256_set1_ps(p.min_h), inv = _mm256_set1_ps(p.inv),
                 sc = _mm256_set1_ps(p.scale), qmax = _mm256_set1_ps(qmax_f);
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t j = 0, k = 0;
    for (; j + 8 <= dim; j += 8, k++)
        ACC(acc[k & 1], err8(_mm256_loadu_ps(x + j), mn, inv, sc, qmax));
    if (j < dim) {
        __m256i m = lane_mask(dim - j);
        __m256 e = err8(_mm256_maskload_ps(x + j, m), mn, inv, sc, qmax);
        ACC(acc[k & 1], _mm256_and_ps(e, _mm256_castsi256_ps(m)));
    }
    return hsum_pair(acc[0], acc[1]);
}

/* Two losses in one pass over the row: twice the independent work per loaded vector. */
static LOWPREC_TARGET_AVX2 void nbit_loss2(const float *x, int64_t dim, float qmax_f,
                                           nbit_params p, nbit_params q, float *lp, float *lq) {
    const __m256 qmax = _mm256_set1_ps(qmax_f);
    const __m256 mn1 = _mm256_set1_ps(p.min_h), inv1 = _mm256_set1_ps(p.inv), sc1 = _mm256_set1_ps(p.scale);
    const __m256 mn2 = _mm256_set1_ps(q.min_h), inv2 = _mm256_set1_ps(q.inv), sc2 = _mm256_set1_ps(q.scale);
    __m256 a10 = _mm256_setzero_ps(), a11 = _mm256_setzero_ps();
    __m256 a20 = _mm256_setzero_ps(), a21 = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= dim; j += 16) {
        __m256 x0 = _mm256_loadu_ps(x + j), x1 = _mm256_loadu_ps(x + j + 8);
        ACC(a10, err8(x0, mn1, inv1, sc1, qmax));
        ACC(a20, err8(x0, mn2, inv2, sc2, qmax));
        ACC(a11, err8(x1, mn1, inv1, sc1, qmax));
        ACC(a21, err8(x1, mn2, inv2, sc2, qmax));
    }
    if (j + 8 <= dim) { /* vector index j/8 is even here */
        __m256 x0 = _mm256_loadu_ps(x + j);
        ACC(a10, err8(x0, mn1, inv1, sc1, qmax));
        ACC(a20, err8(x0, mn2, inv2, sc2, qmax));
        j += 8;
        if (j < dim) { /* odd vector index */
            __m256i m = lane_mask(dim - j);
            __m256 mf = _mm256_castsi256_ps(m);
            __m256 xt = _mm256_maskload_ps(x + j, m);
            ACC(a11, _mm256_and_ps(err8(xt, mn1, inv1, sc1, qmax), mf));
            ACC(a21, _mm256_and_ps(err8(xt, mn2, inv2, sc2, qmax), mf));
        }
    } else if (j < dim) { /* even vector index */
        __m256i m = lane_mask(dim - j);
        __m256 mf = _mm256_castsi256_ps(m);
        __m256 xt = _mm256_maskload_ps(x + j, m);
        ACC(a10, _mm256_and_ps(err8(xt, mn1, inv1, sc1, qmax), mf));
        ACC(a20, _mm256_and_ps(err8(xt, mn2, inv2, sc2, qmax), mf));
    }
    *lp = hsum_pair(a10, a11);
    *lq = hsum_pair(a20, a21);
}

LOWPREC_TARGET_AVX2
float lowprec_rowwise_nbit_loss_avx2(const float *x, int64_t dim, int bits, float lo, float hi) {
    return nbit_loss(x, dim, (float)((1 << bits) - 1), make_params(lo, hi, bits));
}

LOWPREC_TARGET_AVX2
int64_t lowprec_rowwise_greedy_avx2(const float *x, int64_t ldx, int64_t n_rows, int64_t dim,
                                    int bits, int n_bins, int min_bins, uint8_t *out, int64_t ldo) {
    const float qmax = (float)((1 << bits) - 1);
    for (int64_t r = 0; r < n_rows; r++) {
        const float *row = x + r * ldx;
        float xmin, xmax;
        if (row_minmax(row, dim, &xmin, &xmax)) return r;
        /* Same control flow as lowprec_rowwise_greedy_generic. */
        float best = nbit_loss(row, dim, qmax, make_params(xmin, xmax, bits));
        float best_lo = xmin, best_hi = xmax;
        float step = (xmax - xmin) / (float)n_bins;
        float thr = (float)min_bins * step;
        float cur_lo = xmin, cur_hi = xmax, cur = best;
        /* The candidates of the next step depend on which side moves, which depends on the
         * losses just computed; an unpredictable branch followed by a chain of fp16 roundings
         * and two divisions.  So the parameters of all three possible next candidates are
         * computed while the losses are (they only depend on cur_lo, cur_hi) and selected
         * without a branch.  The values are those the portable twin computes on demand. */
        nbit_params p1 = make_params(cur_lo + step, cur_hi, bits);
        nbit_params p2 = make_params(cur_lo, cur_hi - step, bits);
        for (int it = 0; it < n_bins && cur_lo + thr < cur_hi; it++) {
            float l1, l2;
            float lo_s = cur_lo + step, hi_s = cur_hi - step;
            nbit_params pa = make_params(lo_s + step, cur_hi, bits); /* if the left side moves */
            nbit_params pb = make_params(lo_s, hi_s, bits);          /* either way */
            nbit_params pc = make_params(cur_lo, hi_s - step, bits); /* if the right side moves */
            nbit_loss2(row, dim, qmax, p1, p2, &l1, &l2);
            if (cur < l1 && cur < l2 && cur < best) {
                best = cur;
                best_lo = cur_lo;
                best_hi = cur_hi;
            }
            int left = l1 < l2;
            cur_lo = left ? lo_s : cur_lo;
            cur_hi = left ? cur_hi : hi_s;
            cur = left ? l1 : l2;
            p1 = left ? pa : pb;
            p2 = left ? pb : pc;
        }
        encode_nbit(row, dim, bits, make_params(best_lo, best_hi, bits), out + r * ldo);
    }
    return -1;
}

#endif /* LOWPREC_BUILD_AVX2 */
