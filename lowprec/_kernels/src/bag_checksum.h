/* EmbeddingBag soft-error check: verify pooled bags against per-row checksums
 * (docs/soft_errors.md, "EmbeddingBag").  Serial over a range of bags; the Cython layer
 * (_bag_checksum.pyx) runs ranges in parallel.  Each bag's verdict depends only on that bag,
 * so flags never depend on the thread count.
 *
 * For bag b with counted entries i (not padding, not pruned), per-sample weights w_i (1
 * without), stored rows r_i and row checksums (sum_r, abs_r) computed when the table was
 * quantized (row_checksum.h):
 *   expected  E = sum_i w_i * sum_{r_i}            (double)
 *   bound     T = sum_i |w_i| * abs_{r_i}          (double)
 *   observed  O = sum_j out[b, j]                  (double, of the stored float32/16/bf16)
 * mean mode divides E and T by the count.  Exact arithmetic gives O == E; the float32 kernel
 * differs from it by at most the tolerance
 *   tol = gamma(2n + 3) * T  +  (u_out / (1 - u_out) + gamma(m)) * sum_j |out[b, j]|  +  (tiny terms)
 * (n = counted entries, gamma(k) = k u / (1 - k u), u = 2^-24: every entry adds at most two
 * float32 roundings per element (acc + bias*w, then the fma), plus the products scale*w,
 * bias*w, the mean's division and the float32 rounding of the stored checksum; u_out is the
 * unit roundoff of the output format; gamma(m) covers the float32 lane sums of the output here,
 * m = ceil(D / 16) + 4).  A bag is flagged when !(|O - E| <= tol): also when O
 * or E is NaN or infinite (a row holding NaN/inf cannot be verified), except that an fp16
 * output that legitimately overflowed (T >= 65504, so |acc| may exceed the fp16 range) is
 * not flagged for being infinite.
 */
#ifndef LOWPREC_BAG_CHECKSUM_H
#define LOWPREC_BAG_CHECKSUM_H

#include "lowprec_common.h"

typedef struct lowprec_bag_check_args {
    const float *checksums;  /* (n_rows, 2): sum, abs_sum per stored row              */
    int64_t n_rows;          /* stored rows                                           */
    int64_t dim;             /* D                                                     */
    int mean;                /* 1: mode "mean"                                        */
    const void *indices;     /* int32 or int64, already validated                     */
    int idx64;
    const int64_t *offsets;  /* n_bags + 1 bounds                                     */
    int64_t n_bags;
    const float *weights;    /* per-sample weights or NULL                            */
    const int32_t *mapping;  /* compressed_indices_mapping or NULL                    */
    int64_t padding_idx;     /* or -1                                                 */
    const uint8_t *out;      /* output row 0                                          */
    int64_t out_stride;      /* bytes between output rows                             */
    int out_fmt;             /* 0 float32, 1 float16, 2 bfloat16 (LOWPREC_EB_OUT_*)   */
} lowprec_bag_check_args;

/* Flag (1) or clear (0) flags[b] for the bags b in [bag_begin, bag_end). */
void lowprec_bag_check(const lowprec_bag_check_args *a, int64_t bag_begin, int64_t bag_end,
                       uint8_t *flags);

/* checksums[2*r], checksums[2*r+1] (sum, abs_sum) for the rows r in [row_begin, row_end) of a
 * table whose rows are row_stride bytes apart, in format fmt (LOWPREC_CS_*). */
void lowprec_row_checksums(const uint8_t *table, int64_t row_stride, int64_t dim, int fmt,
                           int64_t row_begin, int64_t row_end, float *checksums);

#endif /* LOWPREC_BAG_CHECKSUM_H */
