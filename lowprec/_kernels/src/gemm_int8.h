/* Exact int8 GEMM: uint8 activations x int8 weights -> int32 accumulators, with a fused output
 * pipeline (zero-point corrections, scales, bias, ReLU, requantization or float32 output).
 *
 * The design is described at the top of gemm_int8.c and in docs/int8_gemm.md.  In short:
 *
 *   C[i, j] = sum_k A[i, k] * B[k, j]    A uint8 (M x K, any row stride, unit column stride)
 *                                        B int8  (K x N) = W^T, W the (N x K) weight of a linear layer
 *
 * B is packed once into column panels whose layout depends on the micro-kernel (LAYOUT_*); A is
 * read in place (VNNI) or widened to uint16 per tile (AVX2).  The Cython layer runs
 * lowprec_gemm_u8s8_tile() for every output tile under OpenMP: one tile, one thread, full K,
 * fixed order, so results never depend on the thread count (and integer sums are exact anyway).
 */
#ifndef LOWPREC_GEMM_INT8_H
#define LOWPREC_GEMM_INT8_H

#include "lowprec_common.h"

#include <string.h>

/* Packed-B layouts.  The serialized format of a packed weight never uses these (it stores the
 * plain int8 matrix); they are in-memory layouts only, chosen by the ISA in use. */
/* Q4x32: 32-column panels; inside a panel, K in groups of 4: [K4/4][32 columns][4 k] int8.
 * One 64-byte row of a group = 16 columns x 4 k = what one vpdpbusd lane set consumes. */
#define LOWPREC_GEMM_LAYOUT_Q4X32 0
/* P2x16: 16-column panels of int16 pairs: [K2/2][16 columns][2 k] int16 (vpmaddwd operands). */
#define LOWPREC_GEMM_LAYOUT_P2X16 1

/* Output kinds of the pipeline. */
#define LOWPREC_GEMM_OUT_INT32 0   /* corrected accumulator, int32 (wraps mod 2^32)          */
#define LOWPREC_GEMM_OUT_FLOAT32 1 /* fl32(mult[j] * corr + bias[j]), optional ReLU          */
#define LOWPREC_GEMM_OUT_UINT8 2   /* clamp(rint((corr + bias[j]) * mult[j]) + y_zp, lo, hi) */
#define LOWPREC_GEMM_OUT_INT8 3    /* same, int8                                             */

typedef struct {
    /* A: uint8, m x k, rows lda bytes apart, unit column stride. */
    const uint8_t *a;
    ptrdiff_t lda;
    int64_t m, n, k;
    /* Packed B in layout `layout` (n and k are the logical sizes). */
    const void *bp;
    int layout;
    /* Output: m x n elements of kind out_kind, rows ldo ELEMENTS apart. */
    void *out;
    ptrdiff_t ldo;
    int out_kind;
    /* Pipeline.  corr[i, j] = acc[i, j] + coloff[j] - rowsum[i] * bzp[j]   (int32, wrapping)
     *   coloff[j] = -a_zp * colsum_B[j] + k * a_zp * bzp[j]  (precomputed by the caller)
     *   so corr = sum_k (A[i,k] - a_zp) * (B[k,j] - bzp[j]) exactly (mod 2^32).
     * coloff may be NULL (all zero); rowsum/bzp may be NULL (weights symmetric). */
    const int32_t *coloff;
    const int32_t *rowsum;
    const int32_t *bzp;
    /* FLOAT32: y = (float)((double)corr * mult[j] + bias[j])
     * UINT8/INT8: y = clamp(rint(((double)corr + bias[j]) * mult[j]) + y_zp, lo, hi)
     * mult has n entries (or 1 when mult_per_channel == 0); bias n entries or NULL. */
    const double *mult;
    int mult_per_channel;
    const double *bias;
    int32_t y_zp, lo, hi;
    int relu; /* FLOAT32 only; the quantized kinds fold ReLU into lo */
    /* Tiling (lowprec_gemm_u8s8_plan fills these). */
    int isa;
    int64_t mc, nc, tiles_m, tiles_n;
    /* Soft-error checks (docs/soft_errors.md); chk_part NULL = off.  Set by the caller:
     *   chk_part: tiles_n x m uint32; the tile of column tile tn stores at [tn * m + i] the
     *     wrapping sum over its columns of r[j] * acc[i, j] (raw int32 accumulators, before
     *     any correction), so the row's total is known without any shared slot;
     *   chk_flags: m bytes, zeroed: a tile ORs 2 into the rows whose stored output it re-read
     *     and found different from what its pipeline emitted;
     *   chk_w, chk_rhs: the right-hand sides' weights (lowprec_gemm_check_w_prepare) and their
     *     m results (lowprec_gemm_check_rhs).
     * Set by lowprec_gemm_u8s8_tile on its private copy of the arguments (the caller leaves
     * them NULL / 0): the tile's own slots, one 16-lane line per pair of rows, row i's 8 lanes
     * at lowprec_gemm_chk_slot(p, i); the pipeline adds column j0 + jj of a block into lane
     * jj % 8 of the row's half (no horizontal sum per block):
     *   chk_acc: r[j] * raw accumulator;  chk_out: what it stores (uint8/int8 bytes, int32 /
     *   float32 bits).  Slots live on the tile's stack: each thread checks what it computed,
     *   in its own cache (shared slots bounced cache lines between the cores at 2 threads).
     *   A line per pair, not per row: the fused AVX-512 pipeline handles rows in pairs and
     *   then updates one line per pair and array instead of two (the slot's load / add / store
     *   inside the micro-kernel's loop, not the multiplies, was most of the check's cost
     *   there); this halves the slots' zeroing and footprint too. */
    uint32_t *chk_part;
    uint8_t *chk_flags;
    const void *chk_w;
    uint32_t *chk_rhs;
    uint32_t *chk_acc;
    uint32_t *chk_out;
    int64_t chk_i0;
    /* Odd column weights r[j] of the accumulator checksum (n entries; chk_acc sums
     * r[j] * acc[i, j]); NULL = all ones. */
    const int32_t *chk_r;
    /* Fault-injection hook (lowprec.faults, tests): 0 none; LOWPREC_GEMM_INJ_ACC flips bit
     * inj_bit of accumulator (inj_i, inj_j) right after the micro-kernel, LOWPREC_GEMM_INJ_OUT
     * of the stored output element after the pipeline. */
    int inj_target, inj_bit;
    int64_t inj_i, inj_j;
    /* Optional float32 form of the UINT8/INT8 pipeline (lowprec_gemm_requant_f32_setup; NULL =
     * off; used by the AVX-512 full-block pipeline only, every other block keeps float64): */
    const int32_t *q_cl, *q_ch; /* corr clamped to [q_cl[j], q_ch[j]] first (output unchanged) */
    const float *q_m32, *q_bm32; /* y ~ fma(float(corr), q_m32[j], q_bm32[j]) */
    float q_thresh;              /* used only when |y - rint(y)| < q_thresh, else float64 */
} lowprec_gemm_u8s8_args;

/* Float32 requantization, exact: fills cl, ch, m32, bm32 (n entries) and *thresh and returns 1
 * when, for every column j and every int32 corr, with c' = clamp(corr, cl[j], ch[j]) and
 * yf = fl32(fma(fl32(c'), m32[j], bm32[j])) (one rounding), |yf - rint(yf)| < *thresh implies
 * clamp(rint(yf) + y_zp, lo, hi) == the float64 pipeline's output for corr; returns 0 (float64
 * only) when no such bound is proven (extreme multipliers or bias terms).  Why it holds:
 *  - the float64 output q(c) = clamp(rint(fl64(fl64(c + bias[j]) * mult[j])) + y_zp, lo, hi) is
 *    non-decreasing in c (fl64 rounding is monotone, mult > 0); cl[j] is an int32 with q(c) = lo
 *    for every c <= cl[j] (or INT32_MIN), ch[j] one with q(c) = hi for every c >= ch[j] (or
 *    INT32_MAX), both checked with the float64 formula itself: clamping c to [cl, ch] changes
 *    no output, and bounds |y| by A = max |y(cl)|, |y(ch)|;
 *  - then |yf - y64| <= delta = 2^-21 (A + 2 |bias*mult| + 2) + 2^-120 (relative errors 2^-24
 *    of fl32(c'), m32, bm32 and of the fma's one rounding, x2 margin), so |yf - rint(yf)| <
 *    0.5 - 2 delta puts y64 strictly inside the same rounding interval: rint(y64) = rint(yf).
 *  thresh = 0.5 - 2 max_j delta - 2^-20 (>= 0.25, else 0 is returned). */
int lowprec_gemm_requant_f32_setup(int64_t n, const double *mult, int mult_per_channel,
                                   const double *bias, int32_t y_zp, int32_t lo, int32_t hi,
                                   int32_t *cl, int32_t *ch, float *m32, float *bm32,
                                   float *thresh);

#define LOWPREC_GEMM_CHK_LANES 16 /* lanes of a slot line: a pair of rows, 8 lanes each */
#define LOWPREC_GEMM_CHK_ROW_LANES 8
/* Offset (in lanes) of row i's half of its slot line: rows chk_i0 + 2t and chk_i0 + 2t + 1
 * share line t, the first in lanes 0..7, the second in lanes 8..15. */
static inline int64_t lowprec_gemm_chk_slot(const lowprec_gemm_u8s8_args *p, int64_t i) {
    const int64_t t = i - p->chk_i0;
    return (t >> 1) * LOWPREC_GEMM_CHK_LANES + (t & 1) * LOWPREC_GEMM_CHK_ROW_LANES;
}
#define LOWPREC_GEMM_INJ_ACC 1
#define LOWPREC_GEMM_INJ_OUT 2
#define LOWPREC_GEMM_INJ_ACT 3 /* handled by the caller: bit of A[inj_i, inj_j], after the
                                  right-hand sides were computed, restored afterwards */

/* ---- packing (portable) ---- */
int lowprec_gemm_layout_for_isa(int isa);
int64_t lowprec_gemm_layout_nr(int layout);
int64_t lowprec_gemm_layout_ku(int layout);
int64_t lowprec_gemm_layout_elem_size(int layout);
/* Bytes of the packed buffer for an n x k weight (logical); panels are zero padded. */
int64_t lowprec_gemm_packed_size(int layout, int64_t n, int64_t k);
/* Pack W (n x k int8, row stride ldw bytes; B = W^T) into dst (packed_size bytes). */
void lowprec_gemm_pack_b_s8(const int8_t *w, ptrdiff_t ldw, int64_t n, int64_t k, int layout,
                            void *dst);

/* ---- driver (portable) ---- */
/* Fill mc, nc, tiles_m, tiles_n for p->isa and the thread count. */
void lowprec_gemm_u8s8_plan(lowprec_gemm_u8s8_args *p, int n_threads);
/* Bytes of per-thread workspace that lowprec_gemm_u8s8_tile needs (after plan; 0 for Q4x32,
 * the widened A block for P2x16). */
int64_t lowprec_gemm_u8s8_work_size(const lowprec_gemm_u8s8_args *p);
/* Compute output tile t (0 <= t < tiles_m * tiles_n) with a per-thread workspace of
 * work_size bytes (NULL: allocated per call).  Returns 0, or -1 when out of memory. */
int lowprec_gemm_u8s8_tile(const lowprec_gemm_u8s8_args *p, int64_t t, void *work);

/* ---- tile schedule of a parallel call: thread t owns the contiguous range of tiles
 * [T*t/nt, T*(t+1)/nt) and takes its own tiles first, in order, so that on repeated calls the
 * same thread (and usually the same core) reads the same part of B, which then stays in that
 * core's L2 (a GEMV's B is streamed, ~2x faster from L2 than from L3); a thread that finishes
 * early takes the tiles left in the other ranges, so a thread the OS runs late (a shared,
 * loaded machine) still leaves its tiles to the others.  Every tile is computed by one thread
 * over the full K in a fixed order: results never depend on the schedule. ---- */
#define LOWPREC_GEMM_MAX_THREADS 256
typedef struct {
    struct {
        int64_t next, end;
        char pad[48]; /* one cache line per thread: no false sharing of the counters */
    } slot[LOWPREC_GEMM_MAX_THREADS];
    int nt;
} lowprec_gemm_sched;
void lowprec_gemm_sched_init(lowprec_gemm_sched *s, int64_t n_tiles, int nt);
/* The next tile for thread tid (0 <= tid < nt), or -1 when every tile is taken. */
int64_t lowprec_gemm_sched_next(lowprec_gemm_sched *s, int tid);

/* Fault-injection hook (gemm_int8.c): flip bit inj_bit of accumulator (when ==
 * LOWPREC_GEMM_INJ_ACC: in c, rows ldc apart) or stored output element (inj_i, inj_j) if it
 * lies in the block of rows i0.. i0 + m - 1, columns j0.. j0 + n - 1. */
void lowprec_gemm_inject(const lowprec_gemm_u8s8_args *p, int32_t *c, int64_t ldc, int64_t i0,
                         int64_t m, int64_t j0, int64_t n, int when);

/* ---- micro-kernels: c[r * NR + j] = sum_k a[r][k] * b[k][j] for r < m (rows >= m untouched);
 * every twin of a layout has the same signature and gives identical results. ---- */
/* Q4x32 layout, 8 rows x 32 columns.  a: uint8 rows lda bytes apart, k bytes each (no padding
 * needed: the K tail is read byte by byte).  b: one packed panel. */
void lowprec_gemm_u8s8s32_generic_8x32(int64_t k, const uint8_t *a, ptrdiff_t lda,
                                       const int8_t *b, int32_t *c, int m);
void lowprec_gemm_u8s8s32_avx512vnni_8x32(int64_t k, const uint8_t *a, ptrdiff_t lda,
                                          const int8_t *b, int32_t *c, int m);
/* Columns 0..15 of the panel only (c[r * 32 + j], j < 16; the rest untouched). */
void lowprec_gemm_u8s8s32_avx512vnni_8x16(int64_t k, const uint8_t *a, ptrdiff_t lda,
                                          const int8_t *b, int32_t *c, int m);
/* The full 32-column panels of the tile rows i0..i1, columns j0..j1 (p->q_cl set, UINT8/INT8
 * output; checksums and the fault-injection hook as the unfused path takes them; bp the packed
 * B, panel_bytes per panel): the
 * micro-kernel with the float32 pipeline of the previous block inside its k-loop
 * (gemm_int8_avx512.c); the same output as lowprec_gemm_u8s8s32_avx512vnni_8x32 followed by
 * lowprec_gemm_pipeline_avx512vnni.  Columns past the last full panel are left to the caller. */
void lowprec_gemm_tile_q8_avx512vnni(const lowprec_gemm_u8s8_args *p, int64_t i0, int64_t i1,
                                     int64_t j0, int64_t j1, const int8_t *bp,
                                     int64_t panel_bytes);
/* P2x16 layout, 6 rows x 16 columns.  a: uint8 values widened to uint16, rows lda elements
 * apart, zero padded to an even length; k2 = number of k pairs. */
void lowprec_gemm_u8s8s32_generic_6x16(int64_t k2, const uint16_t *a, ptrdiff_t lda,
                                       const int16_t *b, int32_t *c, int m);
void lowprec_gemm_u8s8s32_avx2_6x16(int64_t k2, const uint16_t *a, ptrdiff_t lda,
                                    const int16_t *b, int32_t *c, int m);


/* ---- output pipeline on one block of accumulators c (m x n <= 32 columns, rows ldc apart),
 * written for auto-vectorisation: each ISA file compiles this body under its own target
 * attribute (lowprec_gemm_pipeline_<isa>), gemm_int8.c without one.  Every variant performs the
 * same IEEE double operations in the same order, so all give identical bits. ---- */
#define LOWPREC_GEMM_PIPE_MAXN 32
static inline __attribute__((always_inline)) void lowprec_gemm_pipeline_body(
    const lowprec_gemm_u8s8_args *p, const int32_t *c, int64_t ldc, int64_t i0, int64_t m,
    int64_t j0, int64_t n) {
    uint32_t coff[LOWPREC_GEMM_PIPE_MAXN], bz[LOWPREC_GEMM_PIPE_MAXN], rw[LOWPREC_GEMM_PIPE_MAXN];
    double mv[LOWPREC_GEMM_PIPE_MAXN], bv[LOWPREC_GEMM_PIPE_MAXN];
    for (int64_t jj = 0; jj < n; jj++) {
        const int64_t j = j0 + jj;
        coff[jj] = p->coloff ? (uint32_t)p->coloff[j] : 0u;
        bz[jj] = p->bzp ? (uint32_t)p->bzp[j] : 0u;
        mv[jj] = p->mult ? (p->mult_per_channel ? p->mult[j] : p->mult[0]) : 0.0;
        bv[jj] = p->bias ? p->bias[j] : 0.0;
        rw[jj] = p->chk_r ? (uint32_t)p->chk_r[j] : 1u;
    }
    for (int64_t r = 0; r < m; r++) {
        const int64_t i = i0 + r;
        const int32_t *cr = c + r * ldc;
        const uint32_t rs = p->rowsum ? (uint32_t)p->rowsum[i] : 0u;
        int32_t corr[LOWPREC_GEMM_PIPE_MAXN];
        const int64_t slot = lowprec_gemm_chk_slot(p, i);
        if (p->chk_acc) {
            uint32_t *s = p->chk_acc + slot;
            for (int64_t jj = 0; jj < n; jj++) s[jj & 7] += rw[jj] * (uint32_t)cr[jj];
        }
        for (int64_t jj = 0; jj < n; jj++)
            corr[jj] = (int32_t)((uint32_t)cr[jj] + coff[jj] - rs * bz[jj]);
        if (p->out_kind == LOWPREC_GEMM_OUT_INT32) {
            int32_t *o = (int32_t *)p->out + i * p->ldo + j0;
            for (int64_t jj = 0; jj < n; jj++) o[jj] = corr[jj];
            if (p->chk_out) {
                uint32_t *s = p->chk_out + slot;
                for (int64_t jj = 0; jj < n; jj++) s[jj & 7] += (uint32_t)corr[jj];
            }
        } else if (p->out_kind == LOWPREC_GEMM_OUT_FLOAT32) {
            float *o = (float *)p->out + i * p->ldo + j0;
            float f[LOWPREC_GEMM_PIPE_MAXN];
            if (p->relu) {
                for (int64_t jj = 0; jj < n; jj++) {
                    const float v = (float)((double)corr[jj] * mv[jj] + bv[jj]);
                    f[jj] = v > 0.0f ? v : 0.0f;
                }
            } else {
                for (int64_t jj = 0; jj < n; jj++)
                    f[jj] = (float)((double)corr[jj] * mv[jj] + bv[jj]);
            }
            for (int64_t jj = 0; jj < n; jj++) o[jj] = f[jj];
            if (p->chk_out) {
                uint32_t *s = p->chk_out + slot, u;
                for (int64_t jj = 0; jj < n; jj++) {
                    memcpy(&u, &f[jj], 4);
                    s[jj & 7] += u;
                }
            }
        } else {
            /* Clamp to [lo - zp - 1, hi - zp + 1] before rounding (the final clamp gives the
             * same result for anything beyond), then round half to even with the 1.5 * 2^52
             * trick (exact for |y| < 2^51; no libm rint call). */
            const double zp = p->y_zp, lo = p->lo, hi = p->hi;
            const double ylo = lo - zp - 1.0, yhi = hi - zp + 1.0;
            const double magic = 6755399441055744.0;
            int32_t q[LOWPREC_GEMM_PIPE_MAXN];
            for (int64_t jj = 0; jj < n; jj++) {
                double y = ((double)corr[jj] + bv[jj]) * mv[jj];
                y = y < ylo ? ylo : y;
                y = y > yhi ? yhi : y;
                y = ((y + magic) - magic) + zp;
                y = y < lo ? lo : y;
                y = y > hi ? hi : y;
                q[jj] = (int32_t)y;
            }
            uint8_t *o8 = (uint8_t *)p->out + i * p->ldo + j0;
            for (int64_t jj = 0; jj < n; jj++) o8[jj] = (uint8_t)q[jj]; /* int8: same byte */
            if (p->chk_out) {
                uint32_t *s = p->chk_out + slot;
                for (int64_t jj = 0; jj < n; jj++) s[jj & 7] += (uint32_t)(uint8_t)q[jj];
            }
        }
    }
}
void lowprec_gemm_pipeline_generic(const lowprec_gemm_u8s8_args *p, const int32_t *c,
                                   int64_t ldc, int64_t i0, int64_t m, int64_t j0, int64_t n);
void lowprec_gemm_pipeline_avx2(const lowprec_gemm_u8s8_args *p, const int32_t *c,
                                int64_t ldc, int64_t i0, int64_t m, int64_t j0, int64_t n);
void lowprec_gemm_pipeline_avx512vnni(const lowprec_gemm_u8s8_args *p, const int32_t *c,
                                      int64_t ldc, int64_t i0, int64_t m, int64_t j0, int64_t n);

/* ---- soft-error checks (docs/soft_errors.md) ----
 * Row identity, exact modulo 2^32 on what the kernel multiplies (raw uint8 A, raw int8 W):
 *   sum_j r[j] acc[i, j] == rhs[i] = sum_k A[i, k] * wsum[k],  wsum[k] = sum_j r[j] W[j, k]
 * (wrapping; r[j] odd, chosen at pack time so that no wsum[k] of a nonzero column is
 * divisible by 2^25: then every single flip that changes the product changes the checksum).
 * The left side is summed per tile (chk_part), rhs by a separate pass over A in the same
 * parallel region (lowprec_gemm_check_rhs, rows in chunks): A is read twice, so a flip in A
 * between the two reads is caught whichever comes first.  Output identity, per tile by the
 * thread that computed it, right after the tile: the wrapping sum of the stored output row
 * block (bytes or 32-bit patterns) == the sum of what the pipeline emitted (chk_out).
 * After every tile ran, lowprec_gemm_check_finish: flags[i] |= 1 where the row's chk_part
 * total differs from rhs[i]; flags[i] = 1 (accumulator) | 2 (output), 0 when clean. */
static inline __attribute__((always_inline)) void lowprec_gemm_rhs_body(
    const uint8_t *a, ptrdiff_t lda, int64_t k, const int32_t *wsum, int64_t i0, int64_t i1,
    uint32_t *rhs) {
    const uint32_t *ws = (const uint32_t *)wsum;
    for (int64_t i = i0; i < i1; i++) {
        const uint8_t *ar = a + i * lda;
        uint32_t s = 0;
        for (int64_t kk = 0; kk < k; kk++) s += (uint32_t)ar[kk] * ws[kk];
        rhs[i] = s;
    }
}
void lowprec_gemm_check_rhs_generic(const uint8_t *a, ptrdiff_t lda, int64_t k,
                                    const int32_t *wsum, int64_t i0, int64_t i1, uint32_t *rhs);
void lowprec_gemm_check_rhs_avx2(const uint8_t *a, ptrdiff_t lda, int64_t k, const int32_t *wsum,
                                 int64_t i0, int64_t i1, uint32_t *rhs);
/* AVX-512: on the signed base-256 digit planes of wsum (lowprec_gemm_rhs_planes_avx512vnni). */
void lowprec_gemm_check_rhs_avx512vnni(const uint8_t *a, ptrdiff_t lda, int64_t k,
                                       const int8_t *planes, int64_t i0, int64_t i1,
                                       uint32_t *rhs);
int64_t lowprec_gemm_rhs_planes_size(int64_t k);
void lowprec_gemm_rhs_planes_avx512vnni(int64_t k, const int32_t *wsum, int8_t *planes);
/* Bytes of p->chk_w for p->isa and p->k, and its preparation from wsum (K int32): the digit
 * planes on AVX-512 (built once per call, not once per row chunk), wsum itself elsewhere
 * (size 0: chk_w = wsum). */
int64_t lowprec_gemm_check_w_size(const lowprec_gemm_u8s8_args *p);
void lowprec_gemm_check_w_prepare(const lowprec_gemm_u8s8_args *p, const int32_t *wsum,
                                  void *dst);
/* rhs[i] for rows [i0, i1) into p->chk_rhs, with the ISA's kernel. */
void lowprec_gemm_check_rhs(const lowprec_gemm_u8s8_args *p, int64_t i0, int64_t i1);
/* One tile's checks (p: the tile's copy with its slots): chk_part of rows [i0, i1) for the
 * column tile of j0, and the stored output of rows i0..i1 - 1, columns j0..j1 - 1 against
 * chk_out (flag 2). */
static inline __attribute__((always_inline)) void lowprec_gemm_tile_check_body(
    const lowprec_gemm_u8s8_args *p, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    uint32_t *part = p->chk_part + (j0 / p->nc) * p->m;
    for (int64_t i = i0; i < i1; i++) {
        const uint32_t *sa = p->chk_acc + lowprec_gemm_chk_slot(p, i);
        const uint32_t *so = p->chk_out + lowprec_gemm_chk_slot(p, i);
        uint32_t lhs = 0, want = 0, got = 0;
        for (int l = 0; l < LOWPREC_GEMM_CHK_ROW_LANES; l++) {
            lhs += sa[l];
            want += so[l];
        }
        part[i] = lhs;
        if (p->out_kind == LOWPREC_GEMM_OUT_INT32 || p->out_kind == LOWPREC_GEMM_OUT_FLOAT32) {
            const uint32_t *o = (const uint32_t *)p->out + i * p->ldo;
            for (int64_t j = j0; j < j1; j++) got += o[j];
        } else {
            const uint8_t *o = (const uint8_t *)p->out + i * p->ldo;
            for (int64_t j = j0; j < j1; j++) got += o[j];
        }
        if (got != want) __atomic_fetch_or(p->chk_flags + i, (uint8_t)2, __ATOMIC_RELAXED);
    }
}
void lowprec_gemm_tile_check_generic(const lowprec_gemm_u8s8_args *p, int64_t i0, int64_t i1,
                                     int64_t j0, int64_t j1);
void lowprec_gemm_tile_check_avx2(const lowprec_gemm_u8s8_args *p, int64_t i0, int64_t i1,
                                  int64_t j0, int64_t j1);
void lowprec_gemm_tile_check_avx512vnni(const lowprec_gemm_u8s8_args *p, int64_t i0,
                                        int64_t i1, int64_t j0, int64_t j1);
/* After every tile and every rhs chunk: flags[i] |= 1 where sum_tn chk_part[tn * m + i] !=
 * chk_rhs[i] (O(m * tiles_n), serial). */
void lowprec_gemm_check_finish(const lowprec_gemm_u8s8_args *p);

/* ---- dynamic quantization of activations (torch.ops.quantized.linear_dynamic's rule, measured
 * against torch 2.13: FBGEMM's legacy Quantize, = torch.quantize_per_tensor):
 * q = clamp(rint(fmaf(x, inv_scale, zp)), 0, 255), one rounding of x * inv + zp to float32, then
 * round half to even.  Same bits as lowprec.quantization.quantize(x, s, zp, dtype=uint8). ---- */
void lowprec_quantize_u8_f32_generic(const float *x, int64_t n, float inv_scale, int32_t zp,
                                     uint8_t *q);
void lowprec_quantize_u8_f32_avx2(const float *x, int64_t n, float inv_scale, int32_t zp,
                                  uint8_t *q);
/* min and max of m rows of k floats (rows ldx ELEMENTS apart), merged into *mn / *mx (which the
 * caller initialises, e.g. to +inf / -inf).  Returns 1 if any value is NaN or infinite. */
int lowprec_minmax_f32_generic(const float *x, ptrdiff_t ldx, int64_t m, int64_t k, float *mn,
                               float *mx);
int lowprec_minmax_f32_avx2(const float *x, ptrdiff_t ldx, int64_t m, int64_t k, float *mn,
                            float *mx);
/* PyTorch's ChooseQuantizationParams(min, max, 0, 255) (aten QuantUtils.h, preserve_sparsity and
 * reduce_range off): the C twin of lowprec.quantization.choose_qparams(x, dtype=uint8) for the
 * dynamic path (tests pin the two to each other and to torch._choose_qparams_per_tensor). */
void lowprec_choose_qparams_u8(float mn, float mx, float *scale, int32_t *zp);
/* Flip the sign bit: int8 -> uint8 (a + 128), for signed activations. */
void lowprec_s8_to_u8(const int8_t *x, int64_t n, uint8_t *q);

#endif /* LOWPREC_GEMM_INT8_H */
