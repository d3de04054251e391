/* EmbeddingBag soft-error check (see bag_checksum.h).  Portable C on every ISA: the work is a
 * gather of 8 bytes per entry and one pass over the output, a few percent of the pooling. */
#include <math.h>
#include <string.h>

#include "bag_checksum.h"
#include "half.h"
#include "row_checksum.h"

#define CS_U 5.9604644775390625e-8 /* float32 unit roundoff, 2^-24 */

static inline double gamma_n(double n) { return n * CS_U / (1.0 - n * CS_U); }

/* Element j of an output row as float (0 float32, 1 float16, 2 bfloat16). */
static inline float out_load(const uint8_t *row, int64_t j, int fmt) {
    float v;
    if (fmt == 0) {
        memcpy(&v, row + 4 * j, 4);
    } else {
        uint16_t h;
        memcpy(&h, row + 2 * j, 2);
        v = fmt == 1 ? lowprec_f16_to_f32(h) : lowprec_cs_bf16_to_f32(h);
    }
    return v;
}

/* Sum and absolute sum of one output row, in float32 over OUT_LANES lanes (lane = column mod
 * OUT_LANES), then the lanes pairwise: plain loops the compiler vectorises on any ISA.  A
 * double chain would cost more than the pooling itself.  Each lane adds at most
 * ceil(D / OUT_LANES) values and the pairwise combination log2(OUT_LANES) more levels, so both
 * results are within gamma(out_sum_depth(D)) of the exact sums (relative to the exact absolute
 * sum); the caller widens the tolerance by that much. */
#define OUT_LANES 16

static inline int64_t out_sum_depth(int64_t dim) { return (dim + OUT_LANES - 1) / OUT_LANES + 4; }

static void out_sums(const uint8_t *row, int64_t dim, int fmt, double *sum, double *abs_sum) {
    float s[OUT_LANES] = {0}, a[OUT_LANES] = {0};
    int64_t j = 0;
    if (fmt == 0) {
        for (; j + OUT_LANES <= dim; j += OUT_LANES) {
            float v[OUT_LANES];
            memcpy(v, row + 4 * j, sizeof v);
            for (int k = 0; k < OUT_LANES; k++) {
                s[k] += v[k];
                a[k] += fabsf(v[k]);
            }
        }
    } else if (fmt == 2) {
        for (; j + OUT_LANES <= dim; j += OUT_LANES) {
            uint16_t h[OUT_LANES];
            memcpy(h, row + 2 * j, sizeof h);
            for (int k = 0; k < OUT_LANES; k++) {
                uint32_t bits = (uint32_t)h[k] << 16; /* bfloat16 -> float32 is exact */
                float v;
                memcpy(&v, &bits, 4);
                s[k] += v;
                a[k] += fabsf(v);
            }
        }
    }
    for (; j < dim; j++) {
        float v = out_load(row, j, fmt);
        s[j % OUT_LANES] += v;
        a[j % OUT_LANES] += fabsf(v);
    }
    for (int w = OUT_LANES / 2; w > 0; w /= 2) {
        for (int k = 0; k < w; k++) {
            s[k] += s[k + w];
            a[k] += a[k + w];
        }
    }
    *sum = s[0];
    *abs_sum = a[0];
}

#if defined(__GNUC__) || defined(__clang__)
#define CS_PREFETCH(p) __builtin_prefetch(p)
#else
#define CS_PREFETCH(p) ((void)0)
#endif
/* Entries ahead whose checksums are prefetched: the gather is random over 8 bytes per table
 * row, so it is bound by cache misses unless several are in flight. */
#define CS_AHEAD 64

static inline int64_t entry_index(const lowprec_bag_check_args *a, int64_t i) {
    return a->idx64 ? ((const int64_t *)a->indices)[i] : (int64_t)((const int32_t *)a->indices)[i];
}

/* Expected sum and bound of the bag of entries [i0, i1), and the counted entries. */
static int64_t bag_expected(const lowprec_bag_check_args *a, int64_t i0, int64_t i1,
                            int64_t n_indices, double *expected, double *bound) {
    double e[4] = {0}, t[4] = {0};
    int64_t count = 0;
    const float *cs = a->checksums;
    if (!a->weights && !a->mapping && a->padding_idx < 0) {
        /* The common case: every entry counts with weight 1.  Four independent chains. */
        int64_t i = i0;
        for (; i + 4 <= i1; i += 4) {
            for (int k = 0; k < 4; k++) {
                int64_t ahead = i + k + CS_AHEAD;
                if (ahead < n_indices) CS_PREFETCH(cs + 2 * entry_index(a, ahead));
                const float *c = cs + 2 * entry_index(a, i + k);
                e[k] += (double)c[0];
                t[k] += (double)c[1];
            }
        }
        for (; i < i1; i++) {
            const float *c = cs + 2 * entry_index(a, i);
            e[0] += (double)c[0];
            t[0] += (double)c[1];
        }
        count = i1 - i0;
    } else {
        for (int64_t i = i0; i < i1; i++) {
            if (i + CS_AHEAD < n_indices) {
                int64_t ahead = entry_index(a, i + CS_AHEAD);
                int64_t r = a->mapping ? (int64_t)a->mapping[ahead] : ahead;
                if (r >= 0) CS_PREFETCH(cs + 2 * r);
            }
            int64_t idx = entry_index(a, i);
            if (idx == a->padding_idx) continue;
            int64_t r = a->mapping ? (int64_t)a->mapping[idx] : idx;
            if (r < 0) continue; /* pruned row */
            const float *c = cs + 2 * r;
            double w = a->weights ? (double)a->weights[i] : 1.0;
            e[count & 3] += w * (double)c[0];
            t[count & 3] += fabs(w) * (double)c[1];
            count++;
        }
    }
    *expected = (e[0] + e[1]) + (e[2] + e[3]);
    *bound = (t[0] + t[1]) + (t[2] + t[3]);
    return count;
}

void lowprec_bag_check(const lowprec_bag_check_args *a, int64_t bag_begin, int64_t bag_end,
                       uint8_t *flags) {
    /* Unit roundoff of the output format, and half its smallest subnormal (the absolute error
     * of rounding a tiny float32 to it). */
    const double u_out = a->out_fmt == 0 ? CS_U : (a->out_fmt == 1 ? 0x1p-11 : 0x1p-8);
    const double tiny_out = a->out_fmt == 1 ? 0x1p-25 : 0x1p-150;
    const double g_out = gamma_n((double)out_sum_depth(a->dim));
    const int64_t n_indices = a->offsets[a->n_bags];
    for (int64_t b = bag_begin; b < bag_end; b++) {
        double e, t;
        int64_t count = bag_expected(a, a->offsets[b], a->offsets[b + 1], n_indices, &e, &t);
        if (a->mean && count > 0) {
            e /= (double)count;
            t /= (double)count;
        }
        double o, o_abs;
        out_sums(a->out + b * a->out_stride, a->dim, a->out_fmt, &o, &o_abs);
        /* sum_j |out[b, j]| bounds the output's rounding errors.  The measured o_abs (a float32
         * sum: scaled up to bound the exact one) is used when it is below the a-priori bound of
         * a clean output, t * (1 + kernel error) * (1 + output rounding): a corrupted output
         * (huge, infinite or NaN) must not widen its own tolerance. */
        double g_kernel = gamma_n(2.0 * (double)count + 3.0);
        double clean_abs = t * (1.0 + g_kernel) * (1.0 + u_out) * (1.0 + 2.0 * g_out);
        double out_abs = fmin(o_abs * (1.0 + 2.0 * g_out), clean_abs);
        /* The float32 kernel's error, the rounding of the output, the float32 sums of the output
         * here, the double sums (~2^-52 relative per term) and float32 underflow (absolute, per
         * element and entry). */
        double tol = g_kernel * t
                     + (u_out / (1.0 - u_out) + g_out) * out_abs
                     + 0x1p-50 * (double)(count + 8) * t
                     + (double)a->dim * ((double)(count + 1) * 0x1p-149 + tiny_out + 0x1p-149);
        int bad = !(fabs(o - e) <= tol);
        if (bad && a->out_fmt == 1 && !isfinite(o) && isfinite(e) && t >= 65504.0) {
            bad = 0; /* an fp16 output that may have overflowed legitimately */
        }
        flags[b] = (uint8_t)bad;
    }
}

void lowprec_row_checksums(const uint8_t *table, int64_t row_stride, int64_t dim, int fmt,
                           int64_t row_begin, int64_t row_end, float *checksums) {
    for (int64_t r = row_begin; r < row_end; r++) {
        lowprec_row_checksum(table + r * row_stride, dim, fmt, checksums + 2 * r);
    }
}
