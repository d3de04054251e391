/* EmbeddingBag kernels: pooled (sum / mean / max) lookups of table rows, FBGEMM's EmbeddingSpMDM.
 *
 * One call pools the bags [bag_begin, bag_end) of a lookup described by lowprec_eb_args; it is
 * serial: the Cython layer (_embedding.pyx) cuts the bags into chunks of about equal index count
 * and runs them in parallel.  Every bag is computed by one thread with the same code, so results
 * never depend on the thread count or the chunking.
 *
 * Arithmetic (bit for bit that of PyTorch / FBGEMM where they define it, docs/embedding_bag.md):
 *   float tables (fp32, fp16, bf16): v = (float)row[j];  acc += v, or acc = fmaf(w, v, acc)
 *   quantized rows (8/4/2-bit):      s = scale*w, b = bias*w (w = 1: s = scale, b = bias exactly);
 *                                    acc = fmaf(s, (float)q, acc + b)
 *   mode max:                        v = row value (fmaf(q, scale, bias) for quantized rows);
 *                                    acc = v > acc ? v : acc, the first counted row initialises it
 *   mean:                            acc / (float)count, count = entries not skipped
 *   output:                          float32, or rounded once to fp16 / bf16 (ties to even)
 * Entries are taken in index order.  An empty bag (or one whose every entry was skipped) gives 0.
 * Skipped entries: index == padding_idx, or mapping[index] == -1 (pruned row).
 *
 * The kernels trust their inputs: lowprec_embedding_check_generic() (run first) verifies every
 * index and mapping entry, the Python layer everything else.  Each entry point has a portable
 * twin (embedding.c, _generic) and an AVX2+FMA+F16C twin (embedding_avx2.c, _avx2) with the
 * same signature and identical results.
 */
#ifndef LOWPREC_EMBEDDING_H
#define LOWPREC_EMBEDDING_H

#include "lowprec_common.h"

/* Table formats. */
#define LOWPREC_EB_F32 0
#define LOWPREC_EB_F16 1
#define LOWPREC_EB_BF16 2
#define LOWPREC_EB_Q8 3 /* [D codes][fp32 scale][fp32 bias]        */
#define LOWPREC_EB_Q4 4 /* [ceil(D/2) bytes][fp16 scale][fp16 bias] */
#define LOWPREC_EB_Q2 5 /* [ceil(D/4) bytes][fp16 scale][fp16 bias] */

/* Output formats. */
#define LOWPREC_EB_OUT_F32 0
#define LOWPREC_EB_OUT_F16 1
#define LOWPREC_EB_OUT_BF16 2

/* Pooling modes. */
#define LOWPREC_EB_SUM 0
#define LOWPREC_EB_MEAN 1
#define LOWPREC_EB_MAX 2

typedef struct lowprec_eb_args {
    const uint8_t *table;   /* row 0 of the (stored) table                          */
    int64_t row_stride;     /* bytes between rows                                    */
    int64_t n_rows;         /* stored rows                                           */
    int64_t dim;            /* D                                                     */
    int fmt;                /* LOWPREC_EB_*                                          */
    int mode;               /* LOWPREC_EB_SUM / MEAN / MAX                           */
    const void *indices;    /* int32 or int64                                        */
    int idx64;              /* 1: indices are int64                                  */
    int64_t n_indices;
    const int64_t *offsets; /* n_bags + 1 entries, 0 = offsets[0] <= ... <= n_indices */
    int64_t n_bags;
    const float *weights;   /* per-sample weights (sum only) or NULL                 */
    const int32_t *mapping; /* compressed_indices_mapping or NULL                    */
    int64_t n_mapping;      /* its length (the index space when a mapping is given)  */
    int64_t padding_idx;    /* in [0, index space), or -1 for none                   */
    uint8_t *out;           /* output row 0                                          */
    int64_t out_stride;     /* bytes between output rows                             */
    int out_fmt;            /* LOWPREC_EB_OUT_*                                      */
    const float *row_checks; /* soft-error check: (sum, abs_sum) per stored row
                              * (bag_check.h), prefetched with the rows; or NULL       */
    int64_t check_stride;    /* bytes between two rows' checksum pairs: 8 for a separate
                              * (R, 2) array; the row stride when they are stored right
                              * after each row (rowwise.py: then the pair shares the row's
                              * cache lines and costs no memory access of its own)      */
    uint8_t *check_flags;    /* set (with row_checks or row_nibbles): the AVX-512 kernel
                              * verifies each bag it pools in one pass itself and writes
                              * its flag here                                           */
    const uint8_t *row_nibbles; /* soft-error check of float tables: each stored row's byte
                                 * sum mod 15 in 4 bits, row 2i in the low half of byte i
                                 * (bag_check.h), prefetched with the rows; or NULL       */
    int prefetch_l2;         /* 1: prefetch rows into L2 far ahead (prefetcht1) and into L1
                              * near (prefetcht0); 0: into L1 only (embedding_avx512.c)  */
} lowprec_eb_args;

/* Two-level prefetch distances (entries, a->prefetch_l2, embedding_avx512.c): in-process
 * sweeps on this Zen 4 of (far, near) in {24..192} x {0..32}, every format and table of the
 * issue-5 benchmark and fp32 D = 16..96, fresh index sets: 48 / 12 and 48 / 16 were the best
 * or within a few % of it in every cell (T2 instead of T1: the same); far prefetches alone
 * (near 0) left float rows 10-40% slower, near 4 / 8 5-30% slower, 24+ 3-10% slower. */
#define LOWPREC_EB_PF_FAR 48
#define LOWPREC_EB_PF_NEAR 12

/* Pool the bags [bag_begin, bag_end). */
void lowprec_embedding_bags_generic(const lowprec_eb_args *a, int64_t bag_begin, int64_t bag_end);
void lowprec_embedding_bags_avx2(const lowprec_eb_args *a, int64_t bag_begin, int64_t bag_end);
/* AVX-512 F/BW/VL/DQ (embedding_avx512.c): sum / mean without weights, mapping or padding;
 * every other case runs the AVX2 kernel. */
void lowprec_embedding_bags_avx512(const lowprec_eb_args *a, int64_t bag_begin, int64_t bag_end);

/* Validate the indices (and the mapping entries they select): returns -1 when every index is in
 * [0, index space) and every selected mapping entry in [-1, n_rows), else the first bad position. */
int64_t lowprec_embedding_check_generic(const lowprec_eb_args *a);
/* The same check, vectorised with AVX-512 (the generic one when a mapping is given). */
int64_t lowprec_embedding_check_avx512(const lowprec_eb_args *a);

/* Cut the bags into n_chunks ranges of about equal work (indices + bags):
 * bounds[0] = 0, bounds[n_chunks] = n_bags, non-decreasing. */
void lowprec_embedding_partition(const int64_t *offsets, int64_t n_bags, int64_t n_chunks,
                                 int64_t *bounds);

#endif /* LOWPREC_EMBEDDING_H */
