/* bfloat16-weight products with float32 accumulation (lowprec/gemm_bf16.py).
 *
 * Packed layout (ISA independent, built by lowprec_bf16_pack): 16-column panels of k pairs,
 *   words[q][t][c] = bits(w[16q + c][2t]) | bits(w[16q + c][2t + 1]) << 16      (uint32)
 * q < ceil(N/16), t < ceil(K/2); columns >= N and k >= K are zero.  A 32-byte load gives 8 columns
 * of 2 consecutive k: the even k as float32 is (word << 16), the odd k is (word & 0xFFFF0000)
 * (one integer op per 8 values, no shuffle).  See gemm_f32acc.h for the blocking. */
#ifndef LOWPREC_GEMM_BF16_H
#define LOWPREC_GEMM_BF16_H

#include "gemm_f32acc.h"

int64_t lowprec_bf16_packed_words(int64_t n, int64_t k);
void lowprec_bf16_pack(const uint16_t *w, int64_t s_n, int64_t s_k, int64_t n, int64_t k,
                       uint32_t *dst);
void lowprec_bf16_unpack(const uint32_t *src, int64_t n, int64_t k, uint16_t *w);
void lowprec_bf16_plan(lp_f32acc_args *p, int n_threads);
void lowprec_bf16_plan_bf16dot(lp_f32acc_args *p, int n_threads); /* K never blocked */
int lowprec_bf16_tile(const lp_f32acc_args *p, int64_t t);

/* ISA-specific twins (gemm_bf16_avx2.c); called only after the CPU was checked */
void lowprec_bf16_panel_f32_avx2(const lp_f32acc_args *p, int64_t q, int64_t k0, int64_t k1,
                                 float *buf);
void lowprec_bf16_gemv_avx2(const lp_f32acc_args *p, int64_t q, int nc);

/* gemm_bf16_avx512.c: bf16 activations (p->a holds bf16 bits) x packed bf16 weights with
 * vdpbf16ps; only on CPUs with AVX512_BF16 (checked by the caller) */
int lowprec_bf16_tile_bf16dot(const lp_f32acc_args *p, int64_t t);

#endif
