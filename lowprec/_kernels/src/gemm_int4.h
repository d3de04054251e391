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

void lowprec_int4_panel_f32_avx2(const lp_f32acc_args *p, int64_t q, float *buf);
void lowprec_int4_gemv_avx2(const lp_f32acc_args *p, int64_t q, int nc);
/* gemm_int4_avx512.c (avx512vnni level): GEMV only; the M > 4 path stays AVX2 */
void lowprec_int4_gemv_avx512(const lp_f32acc_args *p, int64_t q, int nc);

#endif
