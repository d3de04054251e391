/* int4-weight products (group-wise quantized weights, float32 activations, float32
 * accumulation; lowprec/gemm_int4.py).
 *
 * Kernel layout (built at pack time from the ISA-independent storage layout, the same on every
 * ISA): 16-column panels, 8 consecutive k per 32-bit word, one word per column:
 *   words[q][u][c]  nibble j (bits 4j..4j+3) = (q[16q + c][8u + j] ^ 8)   (= q - 8, 4-bit two's complement)
 *   scales[q][g][c] = scale[16q + c][g]           (float32)
 *   zeros[q][g][c]  = zero_point[16q + c][g] - 8  (float32; absent when every zero point is 8)
 * q < ceil(N/16), u < K/8, g < K/group; padding columns have q = 8 and scale 0.
 * Nibble j of 8 columns: srai(slli(word, 28 - 4j), 28) -> q - 8 sign-extended (2 ops), cvtdq2ps.
 *
 * GEMM path (M > 4): the panel is dequantized to float32 as w = ((q - 8) - (z - 8)) * s
 * = (q - z) * s (one rounding: exactly PackedInt4Weights.dequantize()), then the 6x16 float32
 * micro-kernel.  GEMV path (M <= 4): per group, t = sum_k a_k (q_k - 8) in float32, then
 * acc += s * (t - (z - 8) * sum_k a_k) (the scale applied once per group: 1 op less per weight). */
#ifndef LOWPREC_GEMM_INT4_H
#define LOWPREC_GEMM_INT4_H

#include "gemm_f32acc.h"

void lowprec_int4_pack(const uint8_t *qv, const float *scale, const uint8_t *zp, int64_t n,
                       int64_t k, int64_t group, uint32_t *words, float *scales, float *zeros);
void lowprec_int4_unpack(const uint32_t *words, int64_t n, int64_t k, uint8_t *qv);
void lowprec_int4_plan(lp_f32acc_args *p, int n_threads);
int lowprec_int4_tile(const lp_f32acc_args *p, int64_t t);
void lowprec_int4_group_sums(const float *a, int64_t lda, int64_t m, int64_t k, int64_t group,
                             float *asum);

void lowprec_int4_panel_f32_avx2(const lp_f32acc_args *p, int64_t q, int64_t k0, int64_t k1,
                                 float *buf);
void lowprec_int4_gemv_avx2(const lp_f32acc_args *p, int64_t q, int nc);
/* gemm_int4_avx512.c (avx512vnni level): float32 activations GEMV only (the M > 4 path stays
 * AVX2); the int8-activation kernels below */
void lowprec_int4_gemv_avx512(const lp_f32acc_args *p, int64_t q, int nc);


/* ---- int8 activations (activations="int8"): integer dot products per group ----------------
 * Each activation row is quantized per group g of K (symmetric int8, computed in float32):
 *   amax = max |a| over the group, sa = amax / 127 (float32 division), aq = rint(a / sa)
 *   clamped to [-127, 127] (round half to even; sa == 0 -> aq = 0; a non-finite amax -> sa = NaN,
 *   so the row's outputs are NaN).  Per row and group also A = sum aq (exact, stored as float).
 * aq is stored permuted within every 8 k so that it matches the nibble order of the weight word:
 *   bytes [8u .. 8u+7] of a row = aq[8u + 0, 2, 4, 6, 1, 3, 5, 7]
 * and rows are interleaved in blocks of LP_I8_MR = 8: byte kp of row i (kp the permuted position)
 * is at aq[(i / 8) * 8 K + (kp / 8) * 64 + (i % 8) * 8 + kp % 8], so the 8 rows' 8 k of one step
 * of the kernel are one 64-byte line (padding rows of the last block are never read).
 * because (word ^ 0x88888888) & 0x0F0F0F0F holds q at k = 8u + 0, 2, 4, 6 (one byte each) and
 * ((word >> 4) ^ ...) & 0x0F0F0F0F holds k = 8u + 1, 3, 5, 7: a dword of aq and a dword of a
 * decoded word pair the same k, the layout vpdpbusd (u8 weights x s8 activations) needs.
 * Per group, exactly in int32: D = sum aq * q, then t = D - z A (|t| <= 1905 group < 2^24 for
 * group <= 4096: exact in float32), and the float32 accumulator gets acc = fma(t * sa, s, acc)
 * (two roundings per group).  Bound: docs/bf16_int4_gemm.md. */
#define LP_I8_MAX_GROUP 4096
#define LP_I8_MR 8 /* rows per block call: the AVX-512 kernel's register block is 8 x 32 */
typedef struct {
    const int8_t *aq;   /* ceil(m / 8) * 8 * k bytes (permuted, interleaved: see above) */
    const float *asc;   /* m x ng: sa */
    const float *asm_;  /* m x ng: A = sum aq (float) */
    int64_t m, n, k, group;
    const uint32_t *bp; /* kernel-layout words */
    const float *scales, *zeros; /* zeros: (z - 8) as float or NULL (symmetric) */
    const float *bias;
    float *out;
    int64_t ldo;
    int isa;
    int64_t mc, nc, tiles_m, tiles_n;
} lp_int4i8_args;

/* rows [0, m) of a into aq (whose row 0 starts a block of 8) */
void lowprec_int4i8_quantize(const float *a, int64_t lda, int64_t m, int64_t k, int64_t group,
                             int8_t *aq, float *asc, float *asm_, int isa);
void lowprec_int4i8_plan(lp_int4i8_args *p, int n_threads);
void lowprec_int4i8_tile(const lp_int4i8_args *p, int64_t t);
/* ---- 24-bit fixed-point activations (activations="int24"): three int8 digit rows ----------
 * Row i, group g: amax = max |a|, sa = amax / LP_I24_MAX (float32 division), M = rint(a / sa)
 * (float32 division, half to even) clamped to [-LP_I24_MAX, LP_I24_MAX] (sa == 0 -> M = 0; a
 * non-finite amax -> sa = NaN), split into balanced base-256 digits M = d0 + 2^8 d1 + 2^16 d2
 * (d0 = the low byte of M as int8, d1 likewise of (M - d0) / 2^8, d2 in [-127, 127]).  Digit r
 * is row 3i + r of the int8 layout above with scale sa 256^r (exact) and A = sum d_r, so the
 * int8-activation kernels compute the three partial products; out = (y0 + y1) + y2 (+ bias).
 * |d| <= 128 keeps every group integer |t| <= 1920 group < 2^24 (group <= 4096): exact, as for
 * int8.  Opt-in and slower than int8, but it issues ~9.5 zmm ops per 128 weights (12 vpdpbusd
 * per 8 k x 32 columns) against the float32 GEMV's 23 (shift, vpermps, FMA per 16 weights).
 * The activation error is |a - M sa| <= sa (half a step for the rounding to an integer, up to
 * half a step for the float32 division) = amax / 8355711 ~ 2^-23 amax: close to float32's own
 * resolution, but relative to the group's largest |a| rather than to each |a|. */
#define LP_I24_MAX 8355711 /* 127 (1 + 2^8 + 2^16): the largest M whose digits are all <= 127 */
void lowprec_int4i24_quantize(const float *a, int64_t lda, int64_t m, int64_t k, int64_t group,
                              int8_t *aq, float *asc, float *asm_, int isa);
void lowprec_int4i24_quantize_avx512(const float *a, int64_t lda, int64_t m, int64_t k,
                                     int64_t group, int8_t *aq, float *asc, float *asm_);
/* out[i][j] = (y[3i][j] + y[3i+1][j]) + y[3i+2][j] (+ bias[j]); y: 3m x n, row stride n */
void lowprec_int4i24_combine(const float *y, int64_t m, int64_t n, const float *bias, float *out,
                             int64_t ldo);

void lowprec_int4i8_quantize_avx512(const float *a, int64_t lda, int64_t m, int64_t k,
                                    int64_t group, int8_t *aq, float *asc, float *asm_);
void lowprec_int4i8_block_avx512(const lp_int4i8_args *p, int64_t i0, int mr, int64_t q0, int np);

#endif
