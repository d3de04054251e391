/* AVX-512 (F/BW/VL/DQ) EmbeddingBag kernels: the fast path of sum / mean pooling without
 * per-sample weights, mapping or padding_idx (twins of embedding.c, identical results).
 * Everything else (max, weights, pruned tables, padding) goes to the AVX2 kernel.
 *
 * One bag is pooled in ONE pass over its entries for D <= 256: the accumulators (NV = ceil(D/16)
 * zmm, at most 16 of the 32 registers) stay in registers while the rows stream by.  NV is a
 * compile-time constant (a switch instantiates 1..16), so the per-row work is straight-line:
 *   8-bit:  vpmovzxbd (load) + vcvtdq2ps + vaddps (bias) + vfmadd  per 16 columns;
 *   4-bit:  per 32 columns: vpmovzxbd (load 16 bytes), vpsrld, two vpermps (a 16-entry table
 *           of floats: codes -> floats without vcvtdq2ps or a mask), then per 16: add + fma;
 *           the accumulators hold even / odd columns, put back in order once per bag (8 zmm
 *           ops per 32 columns, was 4 ymm + 8 zmm; -20..30% on cached rows).  One-vector rows
 *           (D <= 16) keep the direct unpack: vpmovzxbw + vpsllw + vpternlogd + vpmovzxbd;
 *   2-bit:  vpbroadcastd + vpsrlvd (0,2,..,30) + vpermps (table of i & 3) + add + fma
 *           (D > 16; vpandd + cvt instead of vpermps for one-vector rows);
 *   fp32:   vaddps (load);  fp16: vcvtph2ps (load) + add;  bf16: one masked vpermw + add.
 * (fp32 "acc += x" is fmaf(1, x, acc) of the reference: the same rounding.)  Wider rows take
 * ceil(NV/16) passes, the later ones reading rows that the first pass brought into L1/L2.
 *
 * The last, partial vector uses masked loads (AVX-512 masked loads do not fault on masked-off
 * bytes), so no row is ever read past its end and the lanes past D are zeros.
 *
 * Software prefetch: the row of entry i + pfd (EB5_PFQ for quantized rows, EB5_PFS / EB5_PFM /
 * EB5_PF for float rows by row size; across bag boundaries, within this call's bags) is
 * prefetched into L1, every cache line it touches, while entry i is pooled: random rows of a
 * large table miss every cache level, and with ~16-32 rows in flight the loop is bounded by
 * the memory system's parallelism, not its latency.  FBGEMM's JIT uses 16.
 *
 * Two-level prefetch (a->prefetch_l2, set on AMD Zen 4 and later): there the L1-only loop
 * stalls on its prefetcht0 instructions (perf), as if each held one of the core's few L1 miss
 * buffers until its line arrives, while prefetcht1 fills L2 only (new in Zen 4, per AMD) and,
 * judging by the speed-ups below, does not hold one.  So each row is prefetched twice: into
 * L2 LOWPREC_EB_PF_FAR entries ahead (prefetcht1, the memory latency) and from L2 into L1
 * LOWPREC_EB_PF_NEAR entries ahead (prefetcht0, the L2 latency).  On this Zen 4 (fresh index
 * sets, one process, alternating with the L1-only loop and PyTorch): 8/4/2-bit rows 2.0-3.3x
 * FBGEMM's speed, float rows 1.3-2.9x torch's, where the L1-only loop was at parity.  The
 * float-row gain swings with the host: in some stretches of seconds the far prefetches seem to
 * be dropped (Zen 4 drops T1/T2 prefetches at times, a known, unexplained behaviour) and it
 * falls to 0-20%; the L1-only loop was never more than ~5% faster.
 */
#include "bag_check.h"
#include "embedding.h"
#include "row_checksum.h"

#if LOWPREC_BUILD_AVX2
#include <immintrin.h>
#include <math.h>
#include <string.h>

/* Prefetch distance in entries.  16 (FBGEMM's) and 24 were within this shared machine's noise
 * on 1M x 64 8-bit rows (ratio to FBGEMM 0.8-1.2 per round for every setting tried); so were
 * prefetching only the first and last byte of the row, and the T1 / NTA hints.
 * Quantized rows (20-136 bytes) take a fraction of a float row's time each, so 16 entries are
 * too short a look-ahead: 32 was 3-15% faster than 16 on 8/4/2-bit rows (1M x 64, 1M x 128,
 * 100k x 128; in-process A/B of the kernel, CPU time of the thread), 48 no better.
 * Float rows: the distance by row size (issue 5, C harness, CPU time, in-process A/B, Zipf
 * and uniform indices, repeated): rows of <= 128 bytes (fp16 / bf16 D = 64) take 32 (-3..11%
 * against 16 on 1M x 64 fp16, -1..4% bf16), rows of 256 bytes (fp16 / bf16 D = 128, fp32
 * D = 64) 24 (-1..10% on Zipf rows against 16; 8 and 12 were slower, +13..48%), longer rows
 * keep 16 (fp32 D = 128: 8, 12, 24 all within the noise). */
#ifndef EB5_PF
#define EB5_PF 16
#endif
#ifndef EB5_PFQ
#define EB5_PFQ 32
#endif
#ifndef EB5_PFM
#define EB5_PFM 24
#endif
#ifndef EB5_PFS
#define EB5_PFS 32
#endif
#define EB5_AI __attribute__((always_inline)) inline
#define EB5_T LOWPREC_TARGET_AVX512VNNI

void lowprec_embedding_bags_avx512(const lowprec_eb_args *a, int64_t bag_begin, int64_t bag_end);

static EB5_AI int64_t eb5_code_bytes(int fmt, int64_t dim) {
    switch (fmt) {
    case LOWPREC_EB_Q8: return dim;
    case LOWPREC_EB_Q4: return (dim + 1) / 2;
    case LOWPREC_EB_Q2: return (dim + 3) / 4;
    default: return 0;
    }
}

static EB5_AI int64_t eb5_row_bytes(int fmt, int64_t dim) {
    switch (fmt) {
    case LOWPREC_EB_F32: return 4 * dim;
    case LOWPREC_EB_F16:
    case LOWPREC_EB_BF16: return 2 * dim;
    case LOWPREC_EB_Q8: return dim + 8;
    default: return eb5_code_bytes(fmt, dim) + 4;
    }
}

/* The 32 bytes of 16 fp16 / bf16 columns at column j of a row (masked lanes read as zeros). */
EB5_T static EB5_AI __m256i eb5_half_raw(const uint8_t *row, int64_t j, int full, __mmask16 m) {
    return full ? _mm256_loadu_si256((const __m256i *)(row + 2 * j))
                : _mm256_maskz_loadu_epi16(m, row + 2 * j);
}

/* 16 fp16 / bf16 values as floats. */
EB5_T static EB5_AI __m512 eb5_half_value(int fmt, __m256i h) {
    if (fmt == LOWPREC_EB_F16) return _mm512_cvtph_ps(h);
    /* bf16: one masked vpermw, word k to the high half of dword k, low halves zeroed (instead
     * of vpmovzxwd + vpslld). */
    const __m512i ix = _mm512_set_epi16(15, 0, 14, 0, 13, 0, 12, 0, 11, 0, 10, 0, 9, 0, 8, 0,
                                        7, 0, 6, 0, 5, 0, 4, 0, 3, 0, 2, 0, 1, 0, 0, 0);
    return _mm512_castsi512_ps(
        _mm512_maskz_permutexvar_epi16((__mmask32)0xAAAAAAAAu, ix, _mm512_castsi256_si512(h)));
}

/* 16 columns starting at column j (a multiple of 16) of a row, as floats (codes when
 * quantized).  `full`: all 16 columns exist; else only the first `lt` (mask `m`, bytes `mb`
 * for the packed formats).  `q2lut`: 2-bit codes by table lookup (below). */
EB5_T static EB5_AI __m512 eb5_ld(int fmt, const uint8_t *row, int64_t j, int full, __mmask16 m,
                                  const int q2lut) {
    switch (fmt) {
    case LOWPREC_EB_F32:
        return full ? _mm512_loadu_ps((const float *)(row + 4 * j))
                    : _mm512_maskz_loadu_ps(m, (const float *)(row + 4 * j));
    case LOWPREC_EB_F16:
    case LOWPREC_EB_BF16: return eb5_half_value(fmt, eb5_half_raw(row, j, full, m));
    case LOWPREC_EB_Q8: {
        __m128i b = full ? _mm_loadu_si128((const __m128i *)(row + j)) : _mm_maskz_loadu_epi8(m, row + j);
        return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b));
    }
    case LOWPREC_EB_Q4: {
        /* 16 codes = 8 bytes; mask m covers the columns, the bytes are (lt + 1) / 2. */
        __m128i b;
        if (full) {
            b = _mm_loadl_epi64((const __m128i *)(row + j / 2));
        } else {
            const int lt = __builtin_popcount((unsigned)m);
            b = _mm_maskz_loadu_epi8((__mmask16)((1u << ((lt + 1) / 2)) - 1u), row + j / 2);
        }
        b = _mm_unpacklo_epi8(b, b); /* b0 b0 b1 b1 ... b7 b7 */
        const __m512i sh = _mm512_set_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
        __m512i v = _mm512_srlv_epi32(_mm512_cvtepu8_epi32(b), sh);
        return _mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(15)));
    }
    default: {
        /* 16 codes = 4 bytes, always inside the row (the 4 bytes of scale and bias follow). */
        int32_t u;
        memcpy(&u, row + j / 4, 4);
        const __m512i sh =
            _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        __m512i v = _mm512_srlv_epi32(_mm512_set1_epi32(u), sh);
        if (q2lut) {
            /* vpermps reads the low 4 bits of each dword: a table of (i & 3) for i = 0..15
             * gives the code as a float in one op (instead of vpandd + vcvtdq2ps; the same
             * value).  -12..28% on cached rows of D >= 48; one-vector rows, bound by the
             * add + fma chain, lose ~2% to its longer latency and keep the direct way. */
            const __m512 lut = _mm512_set_ps(3, 2, 1, 0, 3, 2, 1, 0, 3, 2, 1, 0, 3, 2, 1, 0);
            return _mm512_permutexvar_ps(v, lut);
        }
        return _mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(3)));
    }
    }
}

/* 16 fp32 columns at column j of a row as two 32-byte loads: for rows that do not start at a
 * multiple of 64 bytes, where every 64-byte load crosses a cache line (numpy's large arrays
 * start 16 bytes past a page).  With the two-level prefetch, 25-30% less time on 1M x 64 rows,
 * 5-7% on D = 32 / 48 / 96, even at D = 128; 6-8% more on 64-byte aligned rows (one process,
 * alternating, four processes), so only misaligned rows take it. */
EB5_T static EB5_AI __m512 eb5_f32_halves(const uint8_t *row, int64_t j) {
    const float *q = (const float *)(row + 4 * j);
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(q)), _mm256_loadu_ps(q + 8),
                              1);
}

/* 16 pooled floats in a 16-bit output format (fp16 / bf16 bits). */
EB5_T static EB5_AI __m256i eb5_half_out(int out_fmt, __m512 x) {
    __m256i h;
    if (out_fmt == LOWPREC_EB_OUT_F16) {
        h = _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    } else {
        /* bf16, round half to even; NaN -> quiet NaN of the same sign (ml_dtypes). */
        const __m512i b = _mm512_castps_si512(x);
        const __m512i hi = _mm512_srli_epi32(b, 16);
        __m512i r = _mm512_add_epi32(
            b, _mm512_add_epi32(_mm512_and_si512(hi, _mm512_set1_epi32(1)), _mm512_set1_epi32(0x7fff)));
        r = _mm512_srli_epi32(r, 16);
        const __m512i qn = _mm512_or_si512(_mm512_and_si512(hi, _mm512_set1_epi32(0x8000)),
                                           _mm512_set1_epi32(0x7fc0));
        const __mmask16 isnan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
        r = _mm512_mask_mov_epi32(r, isnan, qn);
        h = _mm512_cvtepi32_epi16(r);
    }
    return h;
}

/* Store 16 (or the masked first lanes of) pooled columns at column j of the output row. */
EB5_T static EB5_AI void eb5_st(int out_fmt, uint8_t *orow, int64_t j, __m512 x, int full,
                                __mmask16 m) {
    if (out_fmt == LOWPREC_EB_OUT_F32) {
        if (full) _mm512_storeu_ps((float *)(orow + 4 * j), x);
        else _mm512_mask_storeu_ps((float *)(orow + 4 * j), m, x);
        return;
    }
    const __m256i h = eb5_half_out(out_fmt, x);
    if (full) _mm256_storeu_si256((__m256i *)(orow + 2 * j), h);
    else _mm256_mask_storeu_epi16(orow + 2 * j, m, h);
}

/* 1 when the stored output at column j differs (in a lane under m) from x stored there. */
EB5_T static EB5_AI int eb5_out_differs(int out_fmt, const uint8_t *orow, int64_t j, __m512 x,
                                        __mmask16 m) {
    if (out_fmt == LOWPREC_EB_OUT_F32)
        return _mm512_mask_cmpneq_epi32_mask(m, _mm512_maskz_loadu_epi32(m, orow + 4 * j),
                                             _mm512_castps_si512(x)) != 0;
    return _mm256_mask_cmpneq_epi16_mask(m, _mm256_maskz_loadu_epi16(m, orow + 2 * j),
                                         eb5_half_out(out_fmt, x)) != 0;
}

/* acc += the signed byte sums of the 64 bytes at p, four per int32 lane: vpdpbusd of ones
 * (unsigned) and the bytes (signed) straight from memory (fp16 / bf16 rows, which the
 * pooling converts from memory with vcvtph2ps or loads as 32-byte halves). */
EB5_T static EB5_AI __m512i eb5_bytesum64(__m512i acc, __m512i ones, const uint8_t *p) {
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(ones), "m"(*(const uint8_t(*)[64])p));
    return acc;
}

/* The sum of the int32 lanes of the four byte-sum accumulators of each width (in 64-bit
 * lanes: summed in 32 bits, 24 lanes could overflow). */
EB5_T static EB5_AI int64_t eb5_lane_sum(const __m512i s[8], const __m256i s_h[8]) {
    __m512i t = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        t = _mm512_add_epi64(t, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(s[k])));
        t = _mm512_add_epi64(t, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(s[k], 1)));
        t = _mm512_add_epi64(t, _mm512_cvtepi32_epi64(s_h[k]));
    }
    return _mm512_reduce_add_epi64(t);
}

/* Prefetch the lines of row `rp`: those of p + 64k (k < pf_n <= pf_lines) and of its last
 * byte (unless `tail` is 0); into L1 (T0), or into L2 only (T1, `l2`). */
EB5_T static EB5_AI void eb5_prefetch_lines(const uint8_t *table, int64_t stride, int64_t rp,
                                            int64_t rb, int pf_lines, int64_t pf_n, int tail,
                                            const int l2) {
    const char *p = (const char *)(table + rp * stride);
#pragma GCC unroll 16
    for (int k = 0; k < pf_lines; k++) {
        if (k == 0 || k < pf_n) {
            if (l2) _mm_prefetch(p + 64 * k, _MM_HINT_T1);
            else _mm_prefetch(p + 64 * k, _MM_HINT_T0);
        }
    }
    if (tail) {
        if (l2) _mm_prefetch(p + rb - 1, _MM_HINT_T1);
        else _mm_prefetch(p + rb - 1, _MM_HINT_T0);
    }
}

/* Prefetch row `rp` into L1 (eb5_prefetch_lines), or its checksum pair when the check reads it
 * (pf_check 1), and its checksum nibble (pf_check 2, float tables). */
EB5_T static EB5_AI void eb5_prefetch_row(const lowprec_eb_args *a, const uint8_t *table,
                                          int64_t stride, int64_t rp, int64_t rb, int pf_lines,
                                          int64_t pf_n, int pair_after_row, int pf_check) {
    eb5_prefetch_lines(table, stride, rp, rb, pf_lines, pf_n, !pair_after_row, 0);
    /* The soft-error check reads the row's checksum: fetched now, with the row. */
    if (pf_check == 1) _mm_prefetch((const char *)lowprec_row_check(a, rp) + 7, _MM_HINT_T0);
    if (pf_check == 2) _mm_prefetch((const char *)a->row_nibbles + (rp >> 1), _MM_HINT_T0);
}

/* Pool columns [j0, j0 + 16*(NV-1) + lt) of the bags [b0, b1): sum (or mean), no weights,
 * no mapping, no padding.  fchk (float tables, one pass over the whole row, a->row_nibbles
 * and a->check_flags set): verify each bag as it is pooled (bag_check.h, "Float tables"):
 * the signed byte sum of its rows (vpdpbusd, exact in int32 lanes) against their stored
 * nibbles mod 15, and the stored output, re-read, against the accumulators.
 * (A second accumulator chain, to check the additions themselves as the generic path does by
 * pooling twice, cost another 5-20% of the lookup: not done here.  The byte sums cost 10-25%
 * of a lookup of fp32 rows from L2 / L3, the nibbles' cache line 3-7% of one from memory.) */
EB5_T static EB5_AI void eb5_pass(const lowprec_eb_args *a, const int fmt, const int idx64,
                                  const int NV, const int lt, const int64_t j0, const int64_t b0,
                                  const int64_t b1, const int prefetch, const int fchk,
                                  const int l2, const int split) {
    const int quantized = fmt >= LOWPREC_EB_Q8;
    const int64_t dim = a->dim, stride = a->row_stride;
    const int64_t cb = eb5_code_bytes(fmt, dim);
    const int64_t rb = eb5_row_bytes(fmt, dim);
    const uint8_t *const table = a->table;
    const int64_t *const i64 = (const int64_t *)a->indices;
    const int32_t *const i32 = (const int32_t *)a->indices;
    const int64_t *const offsets = a->offsets;
    const int64_t pf_end = offsets[b1];
    const int is_mean = a->mode == LOWPREC_EB_MEAN;
    const int out_fmt = a->out_fmt;
    const int64_t out_stride = a->out_stride;
    uint8_t *const out = a->out;
    const __mmask16 mt = (__mmask16)((1u << lt) - 1u);
    /* Lines to prefetch per row: those of the widest row with NV vectors (a compile-time
     * count), plus the row's last byte (a row may straddle one more line).  Prefetching a
     * line past a narrower row's end is harmless (a prefetch never faults). */
    const int max_rb = fmt == LOWPREC_EB_F32 ? 64 * NV
                       : fmt <= LOWPREC_EB_BF16 ? 32 * NV
                       : fmt == LOWPREC_EB_Q8 ? 16 * NV + 8
                       : fmt == LOWPREC_EB_Q4 ? 8 * NV + 4 : 4 * NV + 4;
    /* Fused soft-error check: only when this one pass covers the whole row (j0 == 0, D <= 256;
     * the Cython layer sets check_flags only then). */
    /* prefetch == 2: the caller saw no row_checks, so the row loop is compiled without the
     * check's tests (eb5_pass_fn below).  pf_check: 1 = the rows' checksum pairs, 2 = the
     * float check's nibbles (fchk), 0 = none. */
    const int pf_check = fchk ? 2 : prefetch != 2 && a->row_checks != NULL;
    const int checked = pf_check == 1 && a->check_flags != NULL;
    lowprec_bag_tol tol;
    if (checked) lowprec_bag_tol_init(a, &tol);
    /* Checksums stored after each row (rowwise.py): prefetching the pair's last byte also
     * fetches the row's last line, so the row's own tail prefetch is not needed. */
    const int pair_after_row = pf_check == 1 && a->check_stride == stride &&
                               (const uint8_t *)a->row_checks > table &&
                               (const uint8_t *)a->row_checks < table + stride;
    const int pf_lines = (max_rb + 63) / 64;
    /* Rows start at multiples of g, the largest power of two <= 64 dividing the table's address
     * and the row stride, so a row spans at most pf_mid + 1 lines: the lines of p + 64k for
     * k < pf_mid and the one of its last byte.  Rows of at most two lines (8-bit D <= 64 of
     * 72 bytes, fp16 / bf16 D = 64) take just those two prefetches: the fixed pf_lines + tail
     * fetched one line twice, -9% on 1M x 64 fp16 rows and -1..5% on 8-bit ones (C harness,
     * CPU time, 300 alternating rounds, twice).  Longer rows keep all pf_lines + tail: the
     * same trimming made 4-line fp32 rows 9% and 3-line 8-bit rows 3% slower.  So do rows
     * with their checksum pair after them (the pair's prefetch stands for the tail one). */
    const uint64_t pf_al = (uint64_t)(uintptr_t)table | (uint64_t)stride | 64u;
    const int64_t pf_mid = (64 - (int64_t)(pf_al & (0 - pf_al)) + rb - 1) / 64;
    /* (pf_lines is a compile-time count: the test folds away for longer rows, whose runtime
     * test alone cost 5% on fp32 rows; the first line is always prefetched.) */
    const int64_t pf_n = pf_lines <= 2 && pf_mid <= 1 && !pair_after_row ? 1 : pf_lines;
    /* 4-bit rows of 2+ vectors: codes -> floats by table lookup, accumulators in even / odd
     * column order (below).  One vector is faster the direct way. */
    const int q4p = fmt == LOWPREC_EB_Q4 && NV >= 2;
    const int nacc = q4p ? 2 * ((NV + 1) / 2) : NV;
    const __m512 q4lut = _mm512_set_ps(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    /* Look-ahead into L1 (pfd) and, with the two-level prefetch (l2), into L2 (pff). */
    const int64_t pfd = l2              ? LOWPREC_EB_PF_NEAR
                        : quantized     ? EB5_PFQ
                        : max_rb <= 128 ? EB5_PFS
                        : max_rb <= 256 ? EB5_PFM : EB5_PF;
    const int64_t pff = LOWPREC_EB_PF_FAR;
    /* The first pfd (pff) entries of these bags are no earlier entry's look-ahead: without
     * this, each chunk (4 per thread and call) started with pfd cold misses. */
    if (prefetch) {
        const int64_t e0 = offsets[b0], e1 = e0 + pfd < pf_end ? e0 + pfd : pf_end;
        if (l2) {
            const int64_t e2 = e0 + pff < pf_end ? e0 + pff : pf_end;
            for (int64_t i = e1; i < e2; i++)
                eb5_prefetch_lines(table, stride, idx64 ? i64[i] : (int64_t)i32[i], rb,
                                   pf_lines, pf_n, !pair_after_row, 1);
        }
        for (int64_t i = e0; i < e1; i++)
            eb5_prefetch_row(a, table, stride, idx64 ? i64[i] : (int64_t)i32[i], rb, pf_lines,
                             pf_n, pair_after_row, pf_check);
    }
    for (int64_t bag = b0; bag < b1; bag++) {
        const int64_t i0 = offsets[bag], i1 = offsets[bag + 1];
        __m128d chk = _mm_setzero_pd(); /* soft-error check: (sum, abs_sum) of the rows */
        __m512 acc[16];
#pragma GCC unroll 16
        for (int v = 0; v < nacc; v++) acc[v] = _mm512_setzero_ps();
        /* Float-table check: byte sums of the rows (int32 lanes; folded into bytes_read every
         * 65536 entries, before a lane can pass 2^31: 65536 * 4 vectors * 4 * 255 < 2^31)
         * and the sum of their stored nibbles.  Four accumulators, vector v into v % 4: one
         * chain of NV vpdpbusd per row (5 cycles each) was the bound on cached rows. */
        __m512i bsum[8];
        __m256i bsum_h[8];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            bsum[k] = _mm512_setzero_si512();
            bsum_h[k] = _mm256_setzero_si256();
        }
        int64_t bytes_read = 0, nib_sum = 0;
        /* The entries, in blocks of 65536 for the float check (its byte-sum lanes are folded
         * into bytes_read after each block); one block without it. */
        for (int64_t ib = i0, ie; ib < i1; ib = ie) {
        ie = fchk && i1 - ib > 65536 ? ib + 65536 : i1;
        for (int64_t i = ib; i < ie; i++) {
            if (prefetch && l2) {
                const int64_t ip = i + pff < pf_end ? i + pff : i;
                eb5_prefetch_lines(table, stride, idx64 ? i64[ip] : (int64_t)i32[ip], rb,
                                   pf_lines, pf_n, !pair_after_row, 1);
            }
            if (prefetch) {
                const int64_t ip = i + pfd < pf_end ? i + pfd : i;
                eb5_prefetch_row(a, table, stride, idx64 ? i64[ip] : (int64_t)i32[ip], rb,
                                 pf_lines, pf_n, pair_after_row, pf_check);
            }
            const int64_t r = idx64 ? i64[i] : (int64_t)i32[i];
            const uint8_t *row = table + r * stride;
            if (fchk) nib_sum += lowprec_row_nibble(a->row_nibbles, r);
            if (checked) {
                /* The row's stored checksum pair (prefetched with the row) -> two doubles. */
                chk = _mm_add_pd(chk, _mm_cvtps_pd(_mm_castpd_ps(
                                          _mm_load_sd((const double *)lowprec_row_check(a, r)))));
            }
            if (quantized) {
                __m512 vs, vb;
                if (fmt == LOWPREC_EB_Q8) {
                    float s, b;
                    memcpy(&s, row + cb, 4);
                    memcpy(&b, row + cb + 4, 4);
                    vs = _mm512_set1_ps(s);
                    vb = _mm512_set1_ps(b);
                } else {
                    int32_t sb;
                    memcpy(&sb, row + cb, 4);
                    const __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128(sb));
                    vs = _mm512_broadcastss_ps(f);
                    vb = _mm512_broadcastss_ps(_mm_movehdup_ps(f));
                }
                if (q4p) {
                    /* 32 columns (16 bytes) per step, widened byte -> dword once
                     * (vpmovzxbd); a 16-entry table of floats 0..15 in one register turns
                     * codes into floats by vpermps, which reads only the low 4 bits of each
                     * dword: the low nibble directly, the high one after a shift.  The
                     * accumulators hold the even columns (acc[2g]) and the odd ones
                     * (acc[2g + 1]) of group g; the bag's end puts them back in order.
                     * The arithmetic per column is unchanged, so are the bits. */
#pragma GCC unroll 8
                    for (int g = 0; g < (NV + 1) / 2; g++) {
                        const uint8_t *src = row + (j0 + 32 * g) / 2;
                        const int last = g == (NV + 1) / 2 - 1;
                        const int cols = !last ? 32 : (NV % 2 == 0 ? 16 + lt : lt);
                        const __m128i b =
                            cols == 32 ? _mm_loadu_si128((const __m128i *)src)
                                       : _mm_maskz_loadu_epi8(
                                             (__mmask16)((1u << ((cols + 1) / 2)) - 1u), src);
                        const __m512i x = _mm512_cvtepu8_epi32(b);
                        const __m512 lo = _mm512_permutexvar_ps(x, q4lut);
                        const __m512 hi = _mm512_permutexvar_ps(_mm512_srli_epi32(x, 4), q4lut);
                        acc[2 * g] = _mm512_fmadd_ps(vs, lo, _mm512_add_ps(acc[2 * g], vb));
                        acc[2 * g + 1] = _mm512_fmadd_ps(vs, hi, _mm512_add_ps(acc[2 * g + 1], vb));
                    }
                } else if (fmt == LOWPREC_EB_Q4) {
                    /* One-vector rows (D <= 16, or the last pass of a wider row).
                     * 32 columns (16 bytes) at a time: bytes -> words (vpmovzxbw), then
                     * (w | w << 4) & 0x0F0F puts the low nibble in the low byte and the high
                     * nibble in the high byte (one shift + one vpternlogd): 32 codes in
                     * column order, widened 16 at a time by vpmovzxbd. */
                    const __m256i m4 = _mm256_set1_epi16(0x0F0F);
#pragma GCC unroll 16
                    for (int v = 0; v < NV; v += 2) {
                        const uint8_t *src = row + (j0 + 16 * v) / 2;
                        if (v + 1 < NV) {
                            const int full = v + 1 < NV - 1 || lt == 16;
                            const __m128i b =
                                full ? _mm_loadu_si128((const __m128i *)src)
                                     : _mm_maskz_loadu_epi8(
                                           (__mmask16)((1u << (8 + (lt + 1) / 2)) - 1u), src);
                            const __m256i w = _mm256_cvtepu8_epi16(b);
                            const __m256i c =
                                _mm256_ternarylogic_epi32(w, _mm256_slli_epi16(w, 4), m4, 0xA8);
                            const __m512 x0 =
                                _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(c)));
                            const __m512 x1 =
                                _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(c, 1)));
                            acc[v] = _mm512_fmadd_ps(vs, x0, _mm512_add_ps(acc[v], vb));
                            acc[v + 1] = _mm512_fmadd_ps(vs, x1, _mm512_add_ps(acc[v + 1], vb));
                        } else {
                            const int full = lt == 16;
                            const __m128i b =
                                full ? _mm_loadl_epi64((const __m128i *)src)
                                     : _mm_maskz_loadu_epi8(
                                           (__mmask16)((1u << ((lt + 1) / 2)) - 1u), src);
                            const __m128i w = _mm_cvtepu8_epi16(b);
                            const __m128i c = _mm_ternarylogic_epi32(
                                w, _mm_slli_epi16(w, 4), _mm256_castsi256_si128(m4), 0xA8);
                            const __m512 x = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(c));
                            acc[v] = _mm512_fmadd_ps(vs, x, _mm512_add_ps(acc[v], vb));
                        }
                    }
                } else {
#pragma GCC unroll 16
                    for (int v = 0; v < NV; v++) {
                        const int full = v < NV - 1 || lt == 16;
                        const __m512 x = eb5_ld(fmt, row, j0 + 16 * v, full, mt, NV >= 2);
                        acc[v] = _mm512_fmadd_ps(vs, x, _mm512_add_ps(acc[v], vb));
                    }
                }
            } else if (fchk) {
                const __m512i ones = _mm512_set1_epi8(1);
#pragma GCC unroll 16
                for (int v = 0; v < NV; v++) {
                    const int full = v < NV - 1 || lt == 16;
                    __m512 x = eb5_ld(fmt, row, j0 + 16 * v, full, mt, 0);
                    if (fmt == LOWPREC_EB_F32) {
                        /* One load for the add and the byte sum: the empty asm keeps the
                         * compiler from folding it into the add and loading the line again. */
                        __asm__("" : "+v"(x));
                        bsum[v & 7] = _mm512_dpbusd_epi32(bsum[v & 7], ones, _mm512_castps_si512(x));
                    } else if (v % 2 == 1 && full)
                        /* fp16 / bf16: the 64 bytes of vectors v - 1 and v in one vpdpbusd
                         * (half the instructions of one per vector). */
                        bsum[v & 7] = eb5_bytesum64(bsum[v & 7], ones, row + 2 * (j0 + 16 * (v - 1)));
                    else if (!(v % 2 == 0 && v + 1 < NV && (v + 1 < NV - 1 || lt == 16)))
                        /* a vector without a full partner: the last of an odd count, or a
                         * partial last one and its predecessor (masked lanes read as zeros) */
                        bsum_h[v & 7] = _mm256_dpbusd_epi32(bsum_h[v & 7], _mm512_castsi512_si256(ones),
                                                            eb5_half_raw(row, j0 + 16 * v, full, mt));
                    acc[v] = _mm512_add_ps(acc[v], x);
                }
            } else {
#pragma GCC unroll 16
                for (int v = 0; v < NV; v++) {
                    const int full = v < NV - 1 || lt == 16;
                    const __m512 x = split && fmt == LOWPREC_EB_F32 && full
                                         ? eb5_f32_halves(row, j0 + 16 * v)
                                         : eb5_ld(fmt, row, j0 + 16 * v, full, mt, 0);
                    acc[v] = _mm512_add_ps(acc[v], x);
                }
            }
        }
        if (fchk) {
            bytes_read += eb5_lane_sum(bsum, bsum_h);
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                bsum[k] = _mm512_setzero_si512();
                bsum_h[k] = _mm256_setzero_si256();
            }
        }
        }
        if (q4p) {
            /* Back to column order: vector 2g = even/odd lanes 0..7, 2g + 1 = lanes 8..15. */
            const __m512i ix0 =
                _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
            const __m512i ix1 =
                _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
#pragma GCC unroll 8
            for (int g = 0; g < (NV + 1) / 2; g++) {
                const __m512 e = acc[2 * g], o = acc[2 * g + 1];
                acc[2 * g] = _mm512_permutex2var_ps(e, ix0, o);
                acc[2 * g + 1] = _mm512_permutex2var_ps(e, ix1, o);
            }
        }
        if (is_mean && i1 > i0) {
            const __m512 c = _mm512_set1_ps((float)(i1 - i0));
#pragma GCC unroll 16
            for (int v = 0; v < NV; v++) acc[v] = _mm512_div_ps(acc[v], c);
        }
        uint8_t *orow = out + bag * out_stride;
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++)
            eb5_st(out_fmt, orow, j0 + 16 * v, acc[v], v < NV - 1 || lt == 16, mt);
        if (fchk) {
            /* The stored output, re-read, against the second chain (or the accumulators). */
            int bad = 0;
#pragma GCC unroll 16
            for (int v = 0; v < NV; v++)
                bad |= eb5_out_differs(out_fmt, orow, j0 + 16 * v, acc[v],
                                       v < NV - 1 || lt == 16 ? (__mmask16)0xFFFF : mt);
            a->check_flags[bag] = (uint8_t)(bad | ((bytes_read - nib_sum) % 15 != 0));
        }
        if (checked) {
            /* The whole row was pooled in this pass: verify the bag now (bag_check.h).  A
             * float32 output is exactly the accumulators: their lane sum (depth NV + 4, the
             * lanes past D masked off: quantized rows add the bias to every lane) stands for
             * re-reading it, and the output's absolute sum is taken as its a-priori bound
             * (INFINITY: the verdict caps it), which widens the tolerance by the output's
             * rounding only (u + gamma(NV + 4) of T, against gamma(2n + 3) of T for the
             * pooling) and saves an abs, an add per vector and a reduction per bag.  fp16 /
             * bf16 outputs are re-read from L1. */
            const double ce = _mm_cvtsd_f64(chk), ct = _mm_cvtsd_f64(_mm_unpackhi_pd(chk, chk));
            if (out_fmt == LOWPREC_EB_OUT_F32) {
                __m512 s = _mm512_setzero_ps();
#pragma GCC unroll 16
                for (int v = 0; v < NV; v++)
                    s = _mm512_add_ps(s, v < NV - 1 || lt == 16 ? acc[v] : _mm512_maskz_mov_ps(mt, acc[v]));
                a->check_flags[bag] = (uint8_t)lowprec_bag_verdict_tol(
                    &tol, ce, ct, i1 - i0, _mm512_reduce_add_ps(s), INFINITY);
            } else {
                a->check_flags[bag] = (uint8_t)lowprec_bag_verdict(a, &tol, ce, ct, i1 - i0, orow);
            }
        }
    }
}

/* One non-inlined function per (format, index type, NV): each gets its own register
 * allocation, with the accumulators, scale and bias in registers.  The first pass (pf: j0 == 0,
 * the only one for D <= 256) is compiled with j0 = 0, and again with lt = 16 (D a multiple of
 * 16, no masked vector): constant column offsets free registers and drop the per-row test of
 * the last vector (-5..15% on 8-bit and float rows of D = 64 / 128, in-process A/B).  That
 * first pass has a third copy for calls without row checksums (the common case): its row loop
 * has no runtime tests of the soft-error check (checksum prefetch, fused check, pair after the
 * row), 0..8% less time on Zipf rows of every format (C harness, in-process A/B, twice); it is
 * compiled twice more, with and without the two-level prefetch (the other copies test
 * a->prefetch_l2 at run time), and for fp32 rows once more, with the two-level prefetch and
 * 32-byte loads for rows not aligned to 64 bytes (eb5_f32_halves).  A float table's checked
 * lookup (fc) gets its own copies, with and without lt = 16. */
typedef void (*eb5_pass_fn)(const lowprec_eb_args *, int, int64_t, int64_t, int64_t, int);

#define EB5_DEF(NAME, FMT, IDX, N)                                                         \
    EB5_T static __attribute__((noinline)) void NAME##_##IDX##_##N(                        \
        const lowprec_eb_args *a, int lt, int64_t j0, int64_t b0, int64_t b1, int pf) {    \
        const int fc = FMT <= LOWPREC_EB_BF16 && a->row_nibbles && a->check_flags;         \
        const int l2 = a->prefetch_l2 != 0;                                                \
        if (fc && lt == 16) eb5_pass(a, FMT, IDX, N, 16, 0, b0, b1, 1, 1, l2, 0);           \
        else if (fc) eb5_pass(a, FMT, IDX, N, lt, 0, b0, b1, 1, 1, l2, 0);                  \
        else if (pf && lt == 16 && !a->row_checks && l2 && FMT == LOWPREC_EB_F32 &&        \
                 (((uintptr_t)a->table | (uint64_t)a->row_stride) & 63) != 0)              \
            eb5_pass(a, FMT, IDX, N, 16, 0, b0, b1, 2, 0, 1, 1);                            \
        else if (pf && lt == 16 && !a->row_checks && l2)                                   \
            eb5_pass(a, FMT, IDX, N, 16, 0, b0, b1, 2, 0, 1, 0);                            \
        else if (pf && lt == 16 && !a->row_checks)                                         \
            eb5_pass(a, FMT, IDX, N, 16, 0, b0, b1, 2, 0, 0, 0);                            \
        else if (pf && lt == 16) eb5_pass(a, FMT, IDX, N, 16, 0, b0, b1, 1, 0, l2, 0);     \
        else if (pf) eb5_pass(a, FMT, IDX, N, lt, 0, b0, b1, 1, 0, l2, 0);                 \
        else eb5_pass(a, FMT, IDX, N, lt, j0, b0, b1, 0, 0, 0, 0);                         \
    }
#define EB5_DEF16(NAME, FMT, IDX)                                                          \
    EB5_DEF(NAME, FMT, IDX, 1) EB5_DEF(NAME, FMT, IDX, 2) EB5_DEF(NAME, FMT, IDX, 3)       \
    EB5_DEF(NAME, FMT, IDX, 4) EB5_DEF(NAME, FMT, IDX, 5) EB5_DEF(NAME, FMT, IDX, 6)       \
    EB5_DEF(NAME, FMT, IDX, 7) EB5_DEF(NAME, FMT, IDX, 8) EB5_DEF(NAME, FMT, IDX, 9)       \
    EB5_DEF(NAME, FMT, IDX, 10) EB5_DEF(NAME, FMT, IDX, 11) EB5_DEF(NAME, FMT, IDX, 12)    \
    EB5_DEF(NAME, FMT, IDX, 13) EB5_DEF(NAME, FMT, IDX, 14) EB5_DEF(NAME, FMT, IDX, 15)    \
    EB5_DEF(NAME, FMT, IDX, 16)
#define EB5_DEFS(NAME, FMT) EB5_DEF16(NAME, FMT, 0) EB5_DEF16(NAME, FMT, 1)
EB5_DEFS(eb5_f32, LOWPREC_EB_F32)
EB5_DEFS(eb5_f16, LOWPREC_EB_F16)
EB5_DEFS(eb5_bf16, LOWPREC_EB_BF16)
EB5_DEFS(eb5_q8, LOWPREC_EB_Q8)
EB5_DEFS(eb5_q4, LOWPREC_EB_Q4)
EB5_DEFS(eb5_q2, LOWPREC_EB_Q2)

#define EB5_ROW16(NAME, IDX)                                                               \
    {NAME##_##IDX##_1, NAME##_##IDX##_2, NAME##_##IDX##_3, NAME##_##IDX##_4,               \
     NAME##_##IDX##_5, NAME##_##IDX##_6, NAME##_##IDX##_7, NAME##_##IDX##_8,               \
     NAME##_##IDX##_9, NAME##_##IDX##_10, NAME##_##IDX##_11, NAME##_##IDX##_12,            \
     NAME##_##IDX##_13, NAME##_##IDX##_14, NAME##_##IDX##_15, NAME##_##IDX##_16}
#define EB5_ROWS(NAME) {EB5_ROW16(NAME, 0), EB5_ROW16(NAME, 1)}
/* [format][idx64][NV - 1] */
static const eb5_pass_fn eb5_passes[6][2][16] = {
    EB5_ROWS(eb5_f32), EB5_ROWS(eb5_f16), EB5_ROWS(eb5_bf16),
    EB5_ROWS(eb5_q8),  EB5_ROWS(eb5_q4),  EB5_ROWS(eb5_q2),
};

EB5_T void lowprec_embedding_bags_avx512(const lowprec_eb_args *a, int64_t bag_begin,
                                         int64_t bag_end) {
    if (bag_begin >= bag_end) return;
    if (a->mode == LOWPREC_EB_MAX || a->weights || a->mapping || a->padding_idx >= 0) {
        lowprec_embedding_bags_avx2(a, bag_begin, bag_end);
        return;
    }
    const int64_t dim = a->dim;
    for (int64_t j0 = 0; j0 < dim; j0 += 256) {
        const int64_t rem = dim - j0;
        const int nv = rem >= 256 ? 16 : (int)((rem + 15) / 16);
        const int lt = rem >= 256 ? 16 : (int)(rem - 16 * (nv - 1));
        eb5_passes[a->fmt][a->idx64 != 0][nv - 1](a, lt, j0, bag_begin, bag_end, j0 == 0);
    }
}

/* lowprec_embedding_check_generic(), vectorised for the common case (no mapping): one
 * unsigned compare per 8 indices; the exact position of a bad index is searched by the
 * generic check (only on the error path). */
EB5_T int64_t lowprec_embedding_check_avx512(const lowprec_eb_args *a) {
    if (a->mapping) return lowprec_embedding_check_generic(a);
    const int64_t n = a->n_indices;
    __mmask16 bad = 0;
    if (a->idx64) {
        const int64_t *p = (const int64_t *)a->indices;
        const __m512i lim = _mm512_set1_epi64(a->n_rows);
        int64_t i = 0;
        for (; i + 32 <= n; i += 32) {
            bad |= _mm512_cmpge_epu64_mask(_mm512_loadu_si512(p + i), lim) |
                   _mm512_cmpge_epu64_mask(_mm512_loadu_si512(p + i + 8), lim) |
                   _mm512_cmpge_epu64_mask(_mm512_loadu_si512(p + i + 16), lim) |
                   _mm512_cmpge_epu64_mask(_mm512_loadu_si512(p + i + 24), lim);
        }
        for (; i < n; i++) bad |= (uint64_t)p[i] >= (uint64_t)a->n_rows;
    } else {
        const int32_t *p = (const int32_t *)a->indices;
        if (a->n_rows <= INT32_MAX) {
            const __m512i lim = _mm512_set1_epi32((int32_t)a->n_rows);
            int64_t i = 0;
            for (; i + 64 <= n; i += 64) {
                bad |= _mm512_cmpge_epu32_mask(_mm512_loadu_si512(p + i), lim) |
                       _mm512_cmpge_epu32_mask(_mm512_loadu_si512(p + i + 16), lim) |
                       _mm512_cmpge_epu32_mask(_mm512_loadu_si512(p + i + 32), lim) |
                       _mm512_cmpge_epu32_mask(_mm512_loadu_si512(p + i + 48), lim);
            }
            for (; i < n; i++) bad |= (uint64_t)(int64_t)p[i] >= (uint64_t)a->n_rows;
        } else {
            for (int64_t i = 0; i < n; i++) bad |= p[i] < 0;
        }
    }
    return bad ? lowprec_embedding_check_generic(a) : -1;
}

#else /* !LOWPREC_BUILD_AVX2 */

int64_t lowprec_embedding_check_avx512(const lowprec_eb_args *a) {
    return lowprec_embedding_check_generic(a);
}

void lowprec_embedding_bags_avx512(const lowprec_eb_args *a, int64_t bag_begin, int64_t bag_end) {
    lowprec_embedding_bags_generic(a, bag_begin, bag_end);
}

#endif
