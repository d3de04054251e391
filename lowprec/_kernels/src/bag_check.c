/* EmbeddingBag soft-error check (see bag_check.h).  Portable C on every ISA: per entry two
 * floats read from cache (the pooling kernel prefetched them), per bag one pass over its
 * output row (just written, in L1) in float lanes the compiler vectorises. */
#include <math.h>
#include <string.h>

#include "bag_check.h"
#include "half.h"
#include "row_checksum.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif


/* Float lanes of the output sums (lane = column mod LANES, then pairwise). */
#define LANES 16

/* Error depth of a LANES-lane float32 sum of dim terms: each lane adds ceil(dim / LANES)
 * terms, the pairwise combination log2(LANES) = 4 more. */
static inline double lane_depth(int64_t dim) { return (double)((dim + LANES - 1) / LANES + 4); }

/* Sum and absolute sum of one output row (0 float32, 1 float16, 2 bfloat16) in LANES float32
 * lanes: both within gamma(lane_depth(dim)) of the exact sums, relative to the exact absolute
 * sum.  (One chain of double additions would cost more than the pooling.) */
static void out_sums(const uint8_t *row, int64_t dim, int fmt, double *sum, double *abs_sum) {
    float s[LANES] = {0}, a[LANES] = {0};
    int64_t j = 0;
    if (fmt == LOWPREC_EB_OUT_F32) {
        for (; j + LANES <= dim; j += LANES) {
            float v[LANES];
            memcpy(v, row + 4 * j, sizeof v);
            for (int k = 0; k < LANES; k++) {
                s[k] += v[k];
                a[k] += fabsf(v[k]);
            }
        }
    } else if (fmt == LOWPREC_EB_OUT_BF16) {
        for (; j + LANES <= dim; j += LANES) {
            uint16_t h[LANES];
            memcpy(h, row + 2 * j, sizeof h);
            for (int k = 0; k < LANES; k++) {
                const float v = lowprec_bf16_to_f32(h[k]);
                s[k] += v;
                a[k] += fabsf(v);
            }
        }
    }
    for (; j < dim; j++) {
        float v;
        if (fmt == LOWPREC_EB_OUT_F32) {
            memcpy(&v, row + 4 * j, 4);
        } else {
            uint16_t h;
            memcpy(&h, row + 2 * j, 2);
            v = fmt == LOWPREC_EB_OUT_F16 ? lowprec_f16_to_f32(h) : lowprec_bf16_to_f32(h);
        }
        s[j % LANES] += v;
        a[j % LANES] += fabsf(v);
    }
    for (int w = LANES / 2; w > 0; w /= 2) {
        for (int k = 0; k < w; k++) {
            s[k] += s[k + w];
            a[k] += a[k + w];
        }
    }
    *sum = s[0];
    *abs_sum = a[0];
}

static inline int64_t entry_index(const lowprec_eb_args *a, int64_t i) {
    return a->idx64 ? ((const int64_t *)a->indices)[i] : (int64_t)((const int32_t *)a->indices)[i];
}

/* Expected sum and bound of the bag of entries [i0, i1); returns the counted entries. */
static int64_t bag_expected(const lowprec_eb_args *a, int64_t i0, int64_t i1, double *expected,
                            double *bound) {
    double e[4] = {0}, t[4] = {0};
    int64_t count = 0;
    if (!a->weights && !a->mapping && a->padding_idx < 0) {
        /* The common case: every entry counts with weight 1.  Four independent chains. */
        int64_t i = i0;
#if defined(__SSE2__)
        /* One 8-byte load and one conversion per entry: (sum, abs_sum) -> two doubles. */
        __m128d acc[4] = {_mm_setzero_pd(), _mm_setzero_pd(), _mm_setzero_pd(), _mm_setzero_pd()};
        for (; i + 4 <= i1; i += 4) {
            for (int k = 0; k < 4; k++) {
                const double *pair = (const double *)lowprec_row_check(a, entry_index(a, i + k));
                const __m128 c = _mm_castpd_ps(_mm_load_sd(pair));
                acc[k] = _mm_add_pd(acc[k], _mm_cvtps_pd(c));
            }
        }
        for (int k = 0; k < 4; k++) {
            e[k] = _mm_cvtsd_f64(acc[k]);
            t[k] = _mm_cvtsd_f64(_mm_unpackhi_pd(acc[k], acc[k]));
        }
#else
        for (; i + 4 <= i1; i += 4) {
            for (int k = 0; k < 4; k++) {
                const float *c = lowprec_row_check(a, entry_index(a, i + k));
                e[k] += (double)c[0];
                t[k] += (double)c[1];
            }
        }
#endif
        for (; i < i1; i++) {
            const float *c = lowprec_row_check(a, entry_index(a, i));
            e[0] += (double)c[0];
            t[0] += (double)c[1];
        }
        count = i1 - i0;
    } else {
        for (int64_t i = i0; i < i1; i++) {
            const int64_t idx = entry_index(a, i);
            if (idx == a->padding_idx) continue;
            const int64_t r = a->mapping ? (int64_t)a->mapping[idx] : idx;
            if (r < 0) continue; /* pruned row */
            const float *c = lowprec_row_check(a, r);
            const double w = a->weights ? (double)a->weights[i] : 1.0;
            e[count & 3] += w * (double)c[0];
            t[count & 3] += fabs(w) * (double)c[1];
            count++;
        }
    }
    *expected = (e[0] + e[1]) + (e[2] + e[3]);
    *bound = (t[0] + t[1]) + (t[2] + t[3]);
    return count;
}

void lowprec_bag_tol_init(const lowprec_eb_args *a, lowprec_bag_tol *c) {
    const int ofmt = a->out_fmt;
    /* Unit roundoff of the output format, and half its smallest subnormal (the absolute error
     * of rounding a tiny float32 to it). */
    const double u_out = ofmt == LOWPREC_EB_OUT_F32 ? LOWPREC_CS_U : (ofmt == LOWPREC_EB_OUT_F16 ? 0x1p-11 : 0x1p-8);
    const double tiny_out = ofmt == LOWPREC_EB_OUT_F16 ? 0x1p-25 : 0x1p-150;
    const double g_out = lowprec_gamma(lane_depth(a->dim));
    c->out_term = u_out / (1.0 - u_out) + g_out;
    c->out_up = 1.0 + 3.0 * g_out;
    c->clean_up = (1.0 + u_out) * (1.0 + 3.0 * g_out);
    c->tiny = (double)a->dim * tiny_out;
    c->dim = (double)a->dim;
    c->mean = a->mode == LOWPREC_EB_MEAN;
    c->f16_out = ofmt == LOWPREC_EB_OUT_F16;
}

int lowprec_bag_verdict(const lowprec_eb_args *a, const lowprec_bag_tol *c, double e, double t,
                        int64_t count, const uint8_t *out_row) {
    double o, o_abs;
    out_sums(out_row, a->dim, a->out_fmt, &o, &o_abs);
    return lowprec_bag_verdict_tol(c, e, t, count, o, o_abs);
}

void lowprec_bag_check(const lowprec_eb_args *a, int64_t bag_begin, int64_t bag_end,
                       uint8_t *flags) {
    lowprec_bag_tol c;
    lowprec_bag_tol_init(a, &c);
    for (int64_t b = bag_begin; b < bag_end; b++) {
        double e, t;
        const int64_t count = bag_expected(a, a->offsets[b], a->offsets[b + 1], &e, &t);
        flags[b] = (uint8_t)lowprec_bag_verdict(a, &c, e, t, count, a->out + b * a->out_stride);
    }
}

void lowprec_float_bag_check(const lowprec_eb_args *a, int64_t bag_begin, int64_t bag_end,
                             const uint8_t *again, int64_t again_stride, uint8_t *flags) {
    const int64_t row_bytes = (a->fmt == LOWPREC_EB_F32 ? 4 : 2) * a->dim;
    const int64_t out_bytes = (a->out_fmt == LOWPREC_EB_OUT_F32 ? 4 : 2) * a->dim;
    for (int64_t b = bag_begin; b < bag_end; b++) {
        int64_t read = 0, stored = 0;
        for (int64_t i = a->offsets[b]; i < a->offsets[b + 1]; i++) {
            const int64_t idx = entry_index(a, i);
            if (idx == a->padding_idx) continue;
            const int64_t r = a->mapping ? (int64_t)a->mapping[idx] : idx;
            if (r < 0) continue; /* pruned row: not read */
            read += lowprec_row_bytesum(a->table + r * a->row_stride, row_bytes);
            stored += lowprec_row_nibble(a->row_nibbles, r);
        }
        const int differs = memcmp(a->out + b * a->out_stride,
                                   again + (b - bag_begin) * again_stride, (size_t)out_bytes) != 0;
        flags[b] = (uint8_t)(differs || (read - stored) % 15 != 0);
    }
}
