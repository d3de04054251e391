/* AVX2 + FMA + F16C row-wise quantization kernels; same signatures and the same bytes as the
 * portable twins in rowwise.c (see that file for the numerics and why they are what they are).
 *
 * The 8-bit and N-bit encoders follow FBGEMM's FloatOrHalfTo*RowwiseQuantized*Avx2: one pass
 * for min/max (four accumulators; FBGEMM's single-accumulator order is replayed only when the
 * minimum or maximum is zero, because only then can the order change the stored bits), one
 * pass that converts 32 columns per iteration with vcvtps2dq, saturating packs and
 * vpmaddubsw-based nibble/crumb packing.  4/2-bit rows are processed four at a time so that the
 * per-row parameter chain (fp16 round trips, two divisions) runs in SSE lanes.
 * The greedy search evaluates two candidate ranges per pass over the row (the row stays in L1),
 * which gives the out-of-order core four independent accumulator chains, and computes the next
 * step's candidate parameters while the losses are summed.  The loss uses FMA exactly where the
 * portable twin calls fmaf(), so both give identical bits.
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

/* Row min/max in FBGEMM's order (one accumulator: the sign of a zero extremum depends on it).
 * Returns 1 when the row holds a NaN or an infinity. */
static LOWPREC_TARGET_AVX2 int row_minmax_ordered(const float *x, int64_t dim, float *out_min,
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

/* The same result, faster: four independent accumulators hide the latency of vminps/vmaxps.
 * Any order finds the same VALUES; only a zero extremum (+0 vs -0) can differ in its bits, so
 * that rare case is redone in FBGEMM's order.  NaN rows are flagged either way. */
static LOWPREC_TARGET_AVX2 inline int row_minmax(const float *x, int64_t dim, float *out_min,
                                                 float *out_max) {
    if (dim < 32) return row_minmax_ordered(x, dim, out_min, out_max);
    __m256 mn0 = _mm256_loadu_ps(x), mn1 = _mm256_loadu_ps(x + 8);
    __m256 mn2 = _mm256_loadu_ps(x + 16), mn3 = _mm256_loadu_ps(x + 24);
    __m256 mx0 = mn0, mx1 = mn1, mx2 = mn2, mx3 = mn3;
    /* NaN detection for one add per vector: a NaN anywhere makes this sum NaN.  The converse
     * fails only through inf - inf (infinities, or a finite sum that overflowed), and then the
     * exact ordered pass decides.  Infinities themselves show up in lo/hi. */
    __m256 sum = _mm256_add_ps(_mm256_add_ps(mn0, mn1), _mm256_add_ps(mn2, mn3));
    int64_t j = 32;
    for (; j + 32 <= dim; j += 32) {
        __m256 v0 = _mm256_loadu_ps(x + j), v1 = _mm256_loadu_ps(x + j + 8);
        __m256 v2 = _mm256_loadu_ps(x + j + 16), v3 = _mm256_loadu_ps(x + j + 24);
        sum = _mm256_add_ps(sum, _mm256_add_ps(_mm256_add_ps(v0, v1), _mm256_add_ps(v2, v3)));
        mn0 = _mm256_min_ps(mn0, v0);
        mn1 = _mm256_min_ps(mn1, v1);
        mn2 = _mm256_min_ps(mn2, v2);
        mn3 = _mm256_min_ps(mn3, v3);
        mx0 = _mm256_max_ps(mx0, v0);
        mx1 = _mm256_max_ps(mx1, v1);
        mx2 = _mm256_max_ps(mx2, v2);
        mx3 = _mm256_max_ps(mx3, v3);
    }
    for (; j + 8 <= dim; j += 8) {
        __m256 v = _mm256_loadu_ps(x + j);
        sum = _mm256_add_ps(sum, v);
        mn0 = _mm256_min_ps(mn0, v);
        mx0 = _mm256_max_ps(mx0, v);
    }
    if (j < dim) { /* the last 8 columns again (overlapping): min/max are idempotent */
        __m256 v = _mm256_loadu_ps(x + dim - 8);
        sum = _mm256_add_ps(sum, v);
        mn0 = _mm256_min_ps(mn0, v);
        mx0 = _mm256_max_ps(mx0, v);
    }
    __m256 mn = _mm256_min_ps(_mm256_min_ps(mn0, mn1), _mm256_min_ps(mn2, mn3));
    __m256 mx = _mm256_max_ps(_mm256_max_ps(mx0, mx1), _mm256_max_ps(mx2, mx3));
    __m128 m4 = _mm_min_ps(_mm256_castps256_ps128(mn), _mm256_extractf128_ps(mn, 1));
    __m128 M4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_min_ps(m4, _mm_movehl_ps(m4, m4));
    M4 = _mm_max_ps(M4, _mm_movehl_ps(M4, M4));
    m4 = _mm_min_ss(m4, _mm_shuffle_ps(m4, m4, 1));
    M4 = _mm_max_ss(M4, _mm_shuffle_ps(M4, M4, 1));
    float lo = _mm_cvtss_f32(m4), hi = _mm_cvtss_f32(M4);
    if (isinf(lo) || isinf(hi)) return 1;
    if (_mm256_movemask_ps(_mm256_cmp_ps(sum, sum, _CMP_UNORD_Q)) != 0 || lo == 0.0f || hi == 0.0f)
        return row_minmax_ordered(x, dim, out_min, out_max);
    *out_min = lo;
    *out_max = hi;
    return 0;
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

/* 32 codes (x - mn) * inv, rounded half to even, clamped to [0, qmax], as bytes in the order
 * the in-lane packs leave them: 128-bit lane 0 holds elements 0-3, 8-11, 16-19, 24-27 and lane 1
 * elements 4-7, 12-15, 20-23, 28-31 (groups of four consecutive elements stay together).
 * The clamp is done by the saturating packs (int32 -> int16 -> uint8) and one vpminub, as in
 * FBGEMM: vcvtps2dq gives INT32_MIN for NaN and out-of-range products, which saturates to 0,
 * the same as the scalar round_sat; large values saturate to 255, then to qmax. */
static LOWPREC_TARGET_AVX2 inline __m256i codes32_lanes(const float *x, __m256 mn, __m256 inv,
                                                        __m256i qmax8) {
    __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x), mn), inv));
    __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + 8), mn), inv));
    __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + 16), mn), inv));
    __m256i d = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + 24), mn), inv));
    __m256i ab = _mm256_packs_epi32(a, b);
    __m256i cd = _mm256_packs_epi32(c, d);
    return _mm256_min_epu8(_mm256_packus_epi16(ab, cd), qmax8);
}

/* The same 32 codes in element order. */
static LOWPREC_TARGET_AVX2 inline __m256i codes32(const float *x, __m256 mn, __m256 inv,
                                                  __m256i qmax8) {
    return _mm256_permutevar8x32_epi32(codes32_lanes(x, mn, inv, qmax8),
                                       _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* 32 4-bit codes (codes32_lanes order) -> 16 packed bytes, element 2k in the low nibble.
 * vpmaddubsw with (1, 16) makes each 16-bit word e(2k) + 16 e(2k+1); vpshufb gathers the low
 * bytes of the words per lane; unpacking the two lanes' 16-bit pairs restores element order. */
static LOWPREC_TARGET_AVX2 inline __m128i pack4_32(__m256i c) {
    const __m256i w = _mm256_set1_epi16(0x1001); /* bytes 1, 16 */
    const __m256i lowbytes = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1,
                                              0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1);
    __m256i t = _mm256_shuffle_epi8(_mm256_maddubs_epi16(c, w), lowbytes);
    return _mm_unpacklo_epi16(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

/* 32 2-bit codes (codes32_lanes order) -> 8 packed bytes, element 4k at bits 0-1.
 * vpmaddubsw (1, 4) then vpmaddwd (1, 16): each 32-bit group of four becomes
 * e0 + 4 e1 + 16 e2 + 64 e3; then as in pack4_32 with 8-bit interleaving. */
static LOWPREC_TARGET_AVX2 inline __m128i pack2_32(__m256i c) {
    const __m256i w1 = _mm256_set1_epi16(0x0401); /* bytes 1, 4 */
    const __m256i w2 = _mm256_set1_epi32(0x00100001); /* words 1, 16 */
    const __m256i lowbytes = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                              0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    __m256i t = _mm256_madd_epi16(_mm256_maddubs_epi16(c, w1), w2);
    t = _mm256_shuffle_epi8(t, lowbytes);
    return _mm_unpacklo_epi8(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

LOWPREC_TARGET_AVX2
int64_t lowprec_rowwise_quantize8_avx2(const float *x, int64_t ldx, int64_t n_rows, int64_t dim,
                                       uint8_t *out, int64_t ldo) {
    const __m256i q255 = _mm256_set1_epi8((char)255);
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
    const __m256i qmax_v = _mm256_set1_epi8((char)qmax);
    int64_t j = 0;
    for (; j + 32 <= dim; j += 32) {
        __m256i c = codes32_lanes(row + j, mn_v, inv_v, qmax_v);
        if (bits == 4)
            _mm_storeu_si128((__m128i *)(orow + j / 2), pack4_32(c));
        else
            _mm_storel_epi64((__m128i *)(orow + j / 4), pack2_32(c));
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

/* make_params for four ranges in the lanes of SSE registers (same IEEE operations lane by lane,
 * hence the same values as make_params): 2 packed divisions and fp16 round trips instead of 8. */
static LOWPREC_TARGET_AVX2 inline void make_params4(const float *lo4, const float *hi4, int bits,
                                                    nbit_params *p) {
    const int rne = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    const __m128 zero = _mm_setzero_ps(), one = _mm_set1_ps(1.0f);
    __m128i mbits = _mm_cvtps_ph(_mm_loadu_ps(lo4), rne);
    __m128 mh = _mm_cvtph_ps(mbits);
    __m128 range = _mm_sub_ps(_mm_loadu_ps(hi4), mh);
    __m128 sc = _mm_div_ps(range, _mm_set1_ps((float)((1 << bits) - 1)));
    sc = _mm_blendv_ps(sc, one, _mm_cmpeq_ps(range, zero));
    sc = _mm_cvtph_ps(_mm_cvtps_ph(sc, rne));
    sc = _mm_blendv_ps(sc, one, _mm_cmpeq_ps(sc, zero));
    __m128 inv = _mm_div_ps(one, sc);
    __m128 inf = _mm_cmpeq_ps(_mm_andnot_ps(_mm_set1_ps(-0.0f), inv), _mm_set1_ps(INFINITY));
    sc = _mm_blendv_ps(sc, one, inf);
    inv = _mm_blendv_ps(inv, one, inf);
    __m128i sbits = _mm_cvtps_ph(sc, rne);
    float m[4], s4[4], v[4];
    uint16_t mb[8], sb[8];
    _mm_storeu_ps(m, mh);
    _mm_storeu_ps(s4, sc);
    _mm_storeu_ps(v, inv);
    _mm_storeu_si128((__m128i *)mb, mbits);
    _mm_storeu_si128((__m128i *)sb, sbits);
    for (int k = 0; k < 4; k++) {
        p[k].min_h = m[k];
        p[k].scale = s4[k];
        p[k].inv = v[k];
        p[k].min_bits = mb[k];
        p[k].scale_bits = sb[k];
    }
}

LOWPREC_TARGET_AVX2
int64_t lowprec_rowwise_quantizen_avx2(const float *x, int64_t ldx, int64_t n_rows, int64_t dim,
                                       int bits, uint8_t *out, int64_t ldo) {
    int64_t r = 0;
    /* Four rows at a time: all min/max passes, then the four parameter sets in SSE lanes, then
     * the encodings.  Row by row, each encoding waited for a ~40-cycle chain of fp16 round trips
     * and divisions; batched, that chain is paid once per four rows. */
    for (; r + 4 <= n_rows; r += 4) {
        float lo[4], hi[4];
        nbit_params p[4];
        for (int k = 0; k < 4; k++)
            if (row_minmax(x + (r + k) * ldx, dim, &lo[k], &hi[k])) return r + k;
        make_params4(lo, hi, bits, p);
        for (int k = 0; k < 4; k++) encode_nbit(x + (r + k) * ldx, dim, bits, p[k], out + (r + k) * ldo);
    }
    for (; r < n_rows; r++) {
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

/* a0 + a1 lane-wise, then the lanes as ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)): the order
 * the portable nbit_loss reproduces. */
static LOWPREC_TARGET_AVX2 inline float hsum_pair(__m256 a0, __m256 a1) {
    __m256 s = _mm256_add_ps(a0, a1);
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));
    return _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)));
}

/* Vector k (elements 8k..8k+7) goes to accumulator k % 2.  (Four accumulators per loss were
 * tried: with two losses in flight they need 8 of the 16 ymm registers and the loop spills.) */
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

/* make_params for three ranges at once, in the lanes of SSE registers: 2 packed divisions and
 * 2 packed fp16 round trips instead of 6 and 6 scalar ones.  Same IEEE operations lane by lane,
 * so the same values as make_params (only min_h, scale and inv are filled: the loss needs no
 * fp16 bits). */
static LOWPREC_TARGET_AVX2 inline void make_params3(float lo0, float hi0, float lo1, float hi1,
                                                    float lo2, float hi2, int bits,
                                                    nbit_params *p0, nbit_params *p1,
                                                    nbit_params *p2) {
    const int rne = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    const __m128 zero = _mm_setzero_ps(), one = _mm_set1_ps(1.0f);
    __m128 lo = _mm_setr_ps(lo0, lo1, lo2, 0.0f), hi = _mm_setr_ps(hi0, hi1, hi2, 0.0f);
    __m128 mh = _mm_cvtph_ps(_mm_cvtps_ph(lo, rne));
    __m128 range = _mm_sub_ps(hi, mh);
    __m128 sc = _mm_div_ps(range, _mm_set1_ps((float)((1 << bits) - 1)));
    sc = _mm_blendv_ps(sc, one, _mm_cmpeq_ps(range, zero));
    sc = _mm_cvtph_ps(_mm_cvtps_ph(sc, rne));
    sc = _mm_blendv_ps(sc, one, _mm_cmpeq_ps(sc, zero));
    __m128 inv = _mm_div_ps(one, sc);
    __m128 inf = _mm_cmpeq_ps(_mm_andnot_ps(_mm_set1_ps(-0.0f), inv), _mm_set1_ps(INFINITY));
    sc = _mm_blendv_ps(sc, one, inf);
    inv = _mm_blendv_ps(inv, one, inf);
    float m[4], s4[4], v[4];
    _mm_storeu_ps(m, mh);
    _mm_storeu_ps(s4, sc);
    _mm_storeu_ps(v, inv);
    p0->min_h = m[0], p0->scale = s4[0], p0->inv = v[0];
    p1->min_h = m[1], p1->scale = s4[1], p1->inv = v[1];
    p2->min_h = m[2], p2->scale = s4[2], p2->inv = v[2];
}

/* The search state of one row; the steps are those of lowprec_rowwise_greedy_generic. */
typedef struct {
    const float *row;
    float best, best_lo, best_hi, step, thr, cur_lo, cur_hi, cur;
    nbit_params p1, p2; /* parameters of the two candidates of the next step */
    int it, active;
} greedy_state;

static LOWPREC_TARGET_AVX2 inline void greedy_init(greedy_state *g, const float *row, int64_t dim,
                                                   int bits, int n_bins, int min_bins, float qmax,
                                                   float xmin, float xmax) {
    g->row = row;
    g->best = nbit_loss(row, dim, qmax, make_params(xmin, xmax, bits));
    g->best_lo = g->cur_lo = xmin;
    g->best_hi = g->cur_hi = xmax;
    g->cur = g->best;
    g->step = (xmax - xmin) / (float)n_bins;
    g->thr = (float)min_bins * g->step;
    g->p1 = make_params(xmin + g->step, xmax, bits);
    g->p2 = make_params(xmin, xmax - g->step, bits);
    g->it = 0;
    g->active = 1;
}

/* One step of the search.  The candidates of the next step depend on which side moves, which
 * depends on the losses just computed: an unpredictable branch followed by a chain of fp16
 * roundings and two divisions.  So the parameters of all three possible next candidates are
 * computed while the losses are (they depend only on cur_lo, cur_hi) and selected without a
 * branch; the values are those the portable twin computes on demand. */
static LOWPREC_TARGET_AVX2 inline void greedy_step(greedy_state *g, int64_t dim, int bits,
                                                   int n_bins, float qmax) {
    if (!g->active) return;
    if (!(g->it < n_bins && g->cur_lo + g->thr < g->cur_hi)) {
        g->active = 0;
        return;
    }
    float l1, l2;
    float lo_s = g->cur_lo + g->step, hi_s = g->cur_hi - g->step;
    nbit_params pa, pb, pc; /* if the left side moves / either way / if the right side moves */
    make_params3(lo_s + g->step, g->cur_hi, lo_s, hi_s, g->cur_lo, hi_s - g->step, bits, &pa, &pb,
                 &pc);
    nbit_loss2(g->row, dim, qmax, g->p1, g->p2, &l1, &l2);
    if (g->cur < l1 && g->cur < l2 && g->cur < g->best) {
        g->best = g->cur;
        g->best_lo = g->cur_lo;
        g->best_hi = g->cur_hi;
    }
    int left = l1 < l2;
    g->cur_lo = left ? lo_s : g->cur_lo;
    g->cur_hi = left ? g->cur_hi : hi_s;
    g->cur = left ? l1 : l2;
    g->p1 = left ? pa : pb;
    g->p2 = left ? pb : pc;
    g->it++;
}

LOWPREC_TARGET_AVX2
int64_t lowprec_rowwise_greedy_avx2(const float *x, int64_t ldx, int64_t n_rows, int64_t dim,
                                    int bits, int n_bins, int min_bins, uint8_t *out, int64_t ldo) {
    const float qmax = (float)((1 << bits) - 1);
    /* One row at a time.  (Stepping two rows in turn, to overlap one row's decision latency
     * with the other's loss evaluation, measured 5% slower: the step is throughput-bound.) */
    int64_t r = 0;
    for (; r < n_rows; r++) {
        greedy_state g;
        const float *row = x + r * ldx;
        float xmin, xmax;
        if (row_minmax(row, dim, &xmin, &xmax)) return r;
        greedy_init(&g, row, dim, bits, n_bins, min_bins, qmax, xmin, xmax);
        while (g.active) greedy_step(&g, dim, bits, n_bins, qmax);
        encode_nbit(row, dim, bits, make_params(g.best_lo, g.best_hi, bits), out + r * ldo);
    }
    return -1;
}

#endif /* LOWPREC_BUILD_AVX2 */
