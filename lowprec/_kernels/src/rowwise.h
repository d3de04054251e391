/* Row-wise quantization of embedding tables into FBGEMM's "fused" rows (formats.md, section 2).
 *
 *   8-bit:    [D code bytes][fp32 scale][fp32 bias]                 (embedding_bag_byte_prepack)
 *   4/2-bit:  [ceil(D*b/8) packed code bytes][fp16 scale][fp16 bias] (embedding_bag_{4,2}bit_prepack)
 *
 * Every kernel works on a range of rows and is serial: the Cython layer splits the rows into
 * fixed-size chunks and runs them in parallel, so results do not depend on the thread count.
 * Each entry point has a portable twin (rowwise.c, suffix _generic) and an AVX2+FMA+F16C twin
 * (rowwise_avx2.c, suffix _avx2) with the same signature; both produce identical bytes.
 *
 * Return value of the quantizers: -1 when every row was finite, otherwise the index (relative
 * to `x`) of the first row that holds a NaN or an infinity.  Rows after it are not written.
 */
#ifndef LOWPREC_ROWWISE_H
#define LOWPREC_ROWWISE_H

#include "lowprec_common.h"

/* Bytes of one fused row of `dim` elements at `bits` bits. */
static inline int64_t lowprec_rowwise_row_bytes(int64_t dim, int bits) {
    if (bits == 8) return dim + 8;
    int64_t per_byte = 8 / bits;
    return (dim + per_byte - 1) / per_byte + 4;
}

/* --- IEEE binary16 conversions (round half to even, exact incl. subnormals, overflow to inf).
 * Portable versions; the AVX2 file uses F16C and the tests check both against NumPy. */
uint16_t lowprec_float_to_half(float f);
float lowprec_half_to_float(uint16_t h);
void lowprec_rowwise_f32_to_f16_generic(const float *x, int64_t n, uint16_t *out);
void lowprec_rowwise_f32_to_f16_avx2(const float *x, int64_t n, uint16_t *out);

/* --- Min-max quantization, FBGEMM numerics.  x: n_rows rows of `dim` floats, `ldx` floats apart;
 * out: n_rows fused rows, `ldo` bytes apart. */
int64_t lowprec_rowwise_quantize8_generic(const float *x, int64_t ldx, int64_t n_rows, int64_t dim,
                                          uint8_t *out, int64_t ldo);
int64_t lowprec_rowwise_quantize8_avx2(const float *x, int64_t ldx, int64_t n_rows, int64_t dim,
                                       uint8_t *out, int64_t ldo);
int64_t lowprec_rowwise_quantizen_generic(const float *x, int64_t ldx, int64_t n_rows, int64_t dim,
                                          int bits, uint8_t *out, int64_t ldo);
int64_t lowprec_rowwise_quantizen_avx2(const float *x, int64_t ldx, int64_t n_rows, int64_t dim,
                                       int bits, uint8_t *out, int64_t ldo);

/* --- Greedy clipping-range search (formats.md 2d) for 4/2-bit rows, then the same encoding as
 * quantizen with the chosen range.  min_bins = (int)(n_bins * (1.0 - (double)(float)ratio)),
 * computed by the caller exactly as PyTorch does. */
int64_t lowprec_rowwise_greedy_generic(const float *x, int64_t ldx, int64_t n_rows, int64_t dim,
                                       int bits, int n_bins, int min_bins, uint8_t *out,
                                       int64_t ldo);
int64_t lowprec_rowwise_greedy_avx2(const float *x, int64_t ldx, int64_t n_rows, int64_t dim,
                                    int bits, int n_bins, int min_bins, uint8_t *out, int64_t ldo);

/* The squared L2 error (float, in the kernels' fixed summation order) of quantizing one row
 * with the clipping range [lo, hi] under the deployed numerics of formats.md 2b.  Exposed for
 * tests; the greedy kernels use private inlined copies. */
float lowprec_rowwise_nbit_loss_generic(const float *x, int64_t dim, int bits, float lo, float hi);
float lowprec_rowwise_nbit_loss_avx2(const float *x, int64_t dim, int bits, float lo, float hi);

#endif /* LOWPREC_ROWWISE_H */
