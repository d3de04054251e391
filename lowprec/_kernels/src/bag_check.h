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

#include "embedding.h"

/* flags[b] = 1 (failed) or 0 for the bags b in [bag_begin, bag_end) of the lookup `a`, already
 * pooled into a->out; a->row_checks holds (sum, abs_sum) float pairs, one per stored row. */
void lowprec_bag_check(const lowprec_eb_args *a, int64_t bag_begin, int64_t bag_end,
                       uint8_t *flags);

/* The verdict of one bag (1 = failed) from its expected sum e and bound t (before the mean's
 * division), its counted entries and its stored output row: for kernels that accumulate e and
 * t while pooling (embedding_avx512.c). */
int lowprec_bag_verdict(const lowprec_eb_args *a, double e, double t, int64_t count,
                        const uint8_t *out_row);
/* The same, given the output row's sum and absolute sum, each a float32 sum in lanes of depth
 * at most ceil(D / 16) + 4 (the caller summed the values it stored). */
int lowprec_bag_verdict_sums(const lowprec_eb_args *a, double e, double t, int64_t count,
                             double o, double o_abs);

#endif /* LOWPREC_BAG_CHECK_H */
