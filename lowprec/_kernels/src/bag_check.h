/* EmbeddingBag soft-error check (docs/soft_errors.md, "EmbeddingBag"): verify pooled bags
 * against per-row checksums of the table.
 *
 * Run on a range of bags right after the kernel pooled them (the Cython layer interleaves the
 * two, a few dozen bags at a time, and the AVX-512 pooling kernel prefetches each row's
 * checksum with the row, so the checksums and the output rows are read from cache).  For bag b
 * with counted entries i (not padding, not pruned), per-sample weights w_i (1 without), stored
 * rows r_i and row checksums (sum_r, abs_r) taken when the table was quantized
 * (row_checksum.h):
 *   expected  E = sum_i w_i * sum_{r_i}            (double)
 *   bound     T = sum_i |w_i| * abs_{r_i}          (double)
 *   observed  O = sum_j out[b, j]                  (float32 lanes, of the stored output)
 * mean mode divides E and T by the count.  Exact arithmetic gives O == E; the float32 kernel
 * differs from it by at most
 *   tol = gamma(2n + 3) * T + (u_out / (1 - u_out) + gamma(m)) * sum_j |out[b, j]| + (tiny terms)
 * (n = counted entries, gamma(k) = k u / (1 - k u), u = 2^-24: every entry adds at most two
 * float32 roundings per element (acc + bias*w, then the fma), plus the products scale*w,
 * bias*w, the mean's division and the float32 rounding of the stored checksum; u_out is the
 * unit roundoff of the output format; gamma(m), m = ceil(D / 16) + 4, covers the float32 lane
 * sums of the output here).  sum_j |out| is capped by its a-priori bound for a clean output, so
 * a corrupted (huge, infinite, NaN) output cannot widen its own tolerance.  A bag is flagged
 * when !(|O - E| <= tol): also when O or E is NaN or infinite (a row holding NaN/inf cannot be
 * verified), except that an fp16 output that may have overflowed legitimately (T >= 65504) is
 * not flagged for being infinite.  A correct result is never flagged; each bag's verdict
 * depends on that bag alone.
 */
#ifndef LOWPREC_BAG_CHECK_H
#define LOWPREC_BAG_CHECK_H

#include <math.h>

#include "embedding.h"

/* Row r's stored (sum, abs_sum) pair. */
static inline const float *lowprec_row_check(const lowprec_eb_args *a, int64_t r) {
    return (const float *)((const char *)a->row_checks + r * a->check_stride);
}

/* flags[b] = 1 (failed) or 0 for the bags b in [bag_begin, bag_end) of the lookup `a`, already
 * pooled into a->out; a->row_checks holds (sum, abs_sum) float pairs, one per stored row. */
void lowprec_bag_check(const lowprec_eb_args *a, int64_t bag_begin, int64_t bag_end,
                       uint8_t *flags);

/* What the tolerance takes from the call, not from the bag (lowprec_bag_tol_init, once per
 * call: a kernel verifying every bag it pools keeps the per-bag work to a few flops). */
typedef struct lowprec_bag_tol {
    double out_term; /* u_out / (1 - u_out) + g_out: rounding to the output format and the
                      * output's lane sums, per unit of sum |out|                        */
    double out_up;   /* 1 + 3 g_out: the measured lane sum |out| -> a bound of the exact one */
    double clean_up; /* (1 + u_out)(1 + 3 g_out): the a-priori bound's factors          */
    double tiny;     /* D * (tiny output rounding), plus D * 2^-149 per entry (below)   */
    double dim;
    int mean;
    int f16_out;
} lowprec_bag_tol;

#define LOWPREC_CS_U 5.9604644775390625e-8 /* float32 unit roundoff, 2^-24 */

/* gamma(n) = n u / (1 - n u), bounded without a division: 1 / (1 - x) <= 1 + 2x for x <= 1/2
 * (the verdict runs once per bag; divisions were a visible part of it). */
static inline double lowprec_gamma(double n) {
    const double x = n * LOWPREC_CS_U;
    return x <= 0.25 ? x * (1.0 + 2.0 * x) : x / (1.0 - x);
}

void lowprec_bag_tol_init(const lowprec_eb_args *a, lowprec_bag_tol *c);

/* The verdict given the output row's sum o and absolute sum o_abs, each a float32 sum in lanes
 * of depth at most ceil(D / 16) + 4 (the caller summed the values it stored).
 * tol = (gamma(2n + 3) + u) t + (u_out / (1 - u_out) + g_out) |out| + 2^-50 (n + 8) t
 *       + D ((n + 2) 2^-149 + tiny_out):
 * the kernel's error, the output's rounding, the lane sums of the output, the float32 rounding
 * of the stored sums (u per unit of bound), the double sums (~2^-52 relative per term) and
 * float32 underflow (absolute, per element and entry).  |out| is the measured lane sum scaled
 * up to bound the exact one, capped by the a-priori bound of a clean output, so that a
 * corrupted (huge, infinite, NaN) output cannot widen its own tolerance. */
static inline int lowprec_bag_verdict_tol(const lowprec_bag_tol *c, double e, double t,
                                          int64_t count, double o, double o_abs) {
    if (c->mean && count > 0) {
        e /= (double)count;
        t /= (double)count;
    }
    const double g_kernel = lowprec_gamma(2.0 * (double)count + 3.0);
    const double clean_abs = t * (1.0 + g_kernel) * c->clean_up;
    const double out_abs = fmin(o_abs * c->out_up, clean_abs);
    const double tol = (g_kernel + LOWPREC_CS_U + 0x1p-50 * (double)(count + 8)) * t
                       + c->out_term * out_abs
                       + c->dim * (double)(count + 2) * 0x1p-149 + c->tiny;
    int bad = !(fabs(o - e) <= tol);
    if (bad && c->f16_out && !isfinite(o) && isfinite(e) && t >= 65504.0) {
        bad = 0; /* an fp16 output that may have overflowed legitimately */
    }
    return bad;
}

/* The verdict of one bag (1 = failed) from its expected sum e and bound t (before the mean's
 * division), its counted entries and its stored output row (re-read: sum and absolute sum in
 * float32 lanes), with the call's constants c: for kernels that accumulate e and t while
 * pooling (embedding_avx512.c) and for lowprec_bag_check. */
int lowprec_bag_verdict(const lowprec_eb_args *a, const lowprec_bag_tol *c, double e, double t,
                        int64_t count, const uint8_t *out_row);

/* Float tables (fp32 / fp16 / bf16).  Their rows are the caller's array, so a checksum pair
 * cannot travel in the row's cache lines as it does for quantized tables (rowwise.py), and a
 * separate array of pairs (8 bytes per row) cost one more cache miss per row: +14-42% per
 * lookup.  Instead (docs/soft_errors.md, "Float tables"):
 *   - the rows at rest: 4 bits per row, c_r = (sum of the row's bytes) mod 15
 *     (row_checksum.h), two rows per byte: 512 KB for a million rows, which mostly stays in
 *     L2 / L3.  A bag passes only if the exact sum of the bytes of the rows it pooled equals
 *     the sum of their c_r mod 15.  A flip of bit k of a row used m times in the bag changes
 *     the left side by m 2^k, which is 0 mod 15 only when m is a multiple of 15 (2^k is
 *     invertible mod 15): every single-bit flip of a row is caught, exactly, unless that row
 *     appears 15, 30, ... times in the bag;
 *   - the pooling and the stored output: the bag is pooled a second time, in the same order
 *     (bit-identical without a fault), and the stored output is compared with it bit for bit.
 * No tolerance: a clean lookup is never flagged, NaN and infinite values included. */

/* flags[b] = 1 (failed) or 0 for the bags b in [bag_begin, bag_end) of the float-table lookup
 * `a` (a->row_nibbles set), already pooled into a->out; `again` holds the same bags pooled a
 * second time (row b - bag_begin, `again_stride` bytes apart).  The AVX-512 kernel does the
 * same inside its one pass (embedding_avx512.c). */
void lowprec_float_bag_check(const lowprec_eb_args *a, int64_t bag_begin, int64_t bag_end,
                             const uint8_t *again, int64_t again_stride, uint8_t *flags);

#endif /* LOWPREC_BAG_CHECK_H */
