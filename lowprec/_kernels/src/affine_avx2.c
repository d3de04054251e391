/* AVX2 affine quantization kernels: bit-identical twins of affine.c (see affine.h).
 *
 * Quantize: 32 floats per iteration -> 4 x 8 int32 -> packed with saturation to 32 bytes.
 * _mm256_cvtps_epi32 rounds in the current MXCSR mode, round-to-nearest-even by default (the
 * same as the portable magic-number rounding).  Tails run the same vector code on a zero-padded
 * stack buffer, so the last elements take exactly the arithmetic of the body (FBGEMM uses masked
 * loads for the same reason).  Dequantize: widen 8 codes to int32, subtract the zero point
 * (exact), convert, multiply: one rounding, like the scalar twin. */
#include <string.h>

#include "affine.h"

#if LOWPREC_BUILD_AVX2
#include <immintrin.h>

/* 8 lanes of one quantization; lo/hi are qmin/qmax, plo/phi are qmin - zp / qmax - zp. */
LOWPREC_TARGET_AVX2 static inline __m256i quant8(__m256 x, __m256 inv, __m256 zpf, __m256i zpi,
                                                 __m256 lo, __m256 hi, __m256 plo, __m256 phi,
                                                 int mode) {
    if (mode == LOWPREC_AFFINE_FMA_BEFORE) {
        __m256 t = _mm256_fmadd_ps(x, inv, zpf); /* one rounding, like torch per-tensor */
        t = _mm256_min_ps(t, hi);                /* NaN -> hi: min_ps returns operand 2 on NaN */
        t = _mm256_max_ps(t, lo);
        return _mm256_cvtps_epi32(t);
    } else if (mode == LOWPREC_AFFINE_ADD_BEFORE) {
        __m256 t = _mm256_add_ps(_mm256_mul_ps(x, inv), zpf); /* two roundings (per-channel) */
        __m256 nan = _mm256_cmp_ps(t, t, _CMP_UNORD_Q);
        t = _mm256_max_ps(_mm256_min_ps(t, hi), lo);
        return _mm256_andnot_si256(_mm256_castps_si256(nan), _mm256_cvtps_epi32(t)); /* NaN->0 */
    } else {
        __m256 p = _mm256_mul_ps(x, inv);
        __m256 nan = _mm256_cmp_ps(p, p, _CMP_UNORD_Q);
        p = _mm256_max_ps(_mm256_min_ps(p, phi), plo);
        __m256i r = _mm256_add_epi32(_mm256_cvtps_epi32(p), zpi); /* zero point after rounding */
        return _mm256_andnot_si256(_mm256_castps_si256(nan), r);
    }
}

/* 4 x 8 int32 already inside the target range -> 32 bytes in order. */
LOWPREC_TARGET_AVX2 static inline __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d,
                                                 int is_signed) {
    __m256i ab = _mm256_packs_epi32(a, b); /* per 128-bit lane: a0-3 b0-3 | a4-7 b4-7 */
    __m256i cd = _mm256_packs_epi32(c, d);
    __m256i r = is_signed ? _mm256_packs_epi16(ab, cd) : _mm256_packus_epi16(ab, cd);
    /* dwords now hold a0-3 b0-3 c0-3 d0-3 a4-7 b4-7 c4-7 d4-7 */
    return _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* 8 int32 inside the target range -> 8 bytes (low half of the result). */
LOWPREC_TARGET_AVX2 static inline __m128i pack8(__m256i a, int is_signed) {
    __m128i lo = _mm256_castsi256_si128(a), hi = _mm256_extracti128_si256(a, 1);
    __m128i w = _mm_packs_epi32(lo, hi);
    return is_signed ? _mm_packs_epi16(w, w) : _mm_packus_epi16(w, w);
}

LOWPREC_TARGET_AVX2 static void quantize_pt(const float *x, void *qv, ptrdiff_t n, float inv_s,
                                            int32_t zp, int32_t qmin, int32_t qmax, int mode,
                                            int is_signed) {
    uint8_t *q = (uint8_t *)qv;
    const __m256 inv = _mm256_set1_ps(inv_s), zpf = _mm256_set1_ps((float)zp);
    const __m256i zpi = _mm256_set1_epi32(zp);
    const __m256 lo = _mm256_set1_ps((float)qmin), hi = _mm256_set1_ps((float)qmax);
    const __m256 plo = _mm256_set1_ps((float)(qmin - zp)), phi = _mm256_set1_ps((float)(qmax - zp));
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i a = quant8(_mm256_loadu_ps(x + i), inv, zpf, zpi, lo, hi, plo, phi, mode);
        __m256i b = quant8(_mm256_loadu_ps(x + i + 8), inv, zpf, zpi, lo, hi, plo, phi, mode);
        __m256i c = quant8(_mm256_loadu_ps(x + i + 16), inv, zpf, zpi, lo, hi, plo, phi, mode);
        __m256i d = quant8(_mm256_loadu_ps(x + i + 24), inv, zpf, zpi, lo, hi, plo, phi, mode);
        _mm256_storeu_si256((__m256i *)(q + i), pack32(a, b, c, d, is_signed));
    }
    if (i < n) { /* tail: same vector arithmetic on a zero-padded copy */
        float buf[32] = {0};
        uint8_t out[32];
        ptrdiff_t rem = n - i;
        memcpy(buf, x + i, (size_t)rem * sizeof(float));
        __m256i a = quant8(_mm256_loadu_ps(buf), inv, zpf, zpi, lo, hi, plo, phi, mode);
        __m256i b = quant8(_mm256_loadu_ps(buf + 8), inv, zpf, zpi, lo, hi, plo, phi, mode);
        __m256i c = quant8(_mm256_loadu_ps(buf + 16), inv, zpf, zpi, lo, hi, plo, phi, mode);
        __m256i d = quant8(_mm256_loadu_ps(buf + 24), inv, zpf, zpi, lo, hi, plo, phi, mode);
        _mm256_storeu_si256((__m256i *)out, pack32(a, b, c, d, is_signed));
        memcpy(q + i, out, (size_t)rem);
    }
}

/* One row piece of the axis-last per-channel case: elements x[0..len) use channels c0.. */
LOWPREC_TARGET_AVX2 static void quantize_row(const float *x, uint8_t *q, ptrdiff_t len,
                                             const float *inv, const int32_t *zp, int32_t qmin,
                                             int32_t qmax, int mode, int is_signed) {
    const __m256 lo = _mm256_set1_ps((float)qmin), hi = _mm256_set1_ps((float)qmax);
    const __m256i qlo = _mm256_set1_epi32(qmin), qhi = _mm256_set1_epi32(qmax);
    ptrdiff_t j = 0;
    for (; j < len; j += 8) {
        __m256 xv, iv;
        __m256i zi;
        ptrdiff_t m = len - j < 8 ? len - j : 8;
        if (m == 8) {
            xv = _mm256_loadu_ps(x + j);
            iv = _mm256_loadu_ps(inv + j);
            zi = _mm256_loadu_si256((const __m256i *)(zp + j));
        } else { /* padded tail: inverse 1, zero point 0 in the unused lanes */
            float xb[8] = {0}, ib[8] = {1, 1, 1, 1, 1, 1, 1, 1};
            int32_t zb[8] = {0};
            memcpy(xb, x + j, (size_t)m * sizeof(float));
            memcpy(ib, inv + j, (size_t)m * sizeof(float));
            memcpy(zb, zp + j, (size_t)m * sizeof(int32_t));
            xv = _mm256_loadu_ps(xb);
            iv = _mm256_loadu_ps(ib);
            zi = _mm256_loadu_si256((const __m256i *)zb);
        }
        __m256 zf = _mm256_cvtepi32_ps(zi);
        __m256 plo = _mm256_cvtepi32_ps(_mm256_sub_epi32(qlo, zi));
        __m256 phi = _mm256_cvtepi32_ps(_mm256_sub_epi32(qhi, zi));
        __m128i bytes = pack8(quant8(xv, iv, zf, zi, lo, hi, plo, phi, mode), is_signed);
        if (m == 8) {
            _mm_storel_epi64((__m128i *)(q + j), bytes);
        } else {
            uint8_t out[16];
            _mm_storeu_si128((__m128i *)out, bytes);
            memcpy(q + j, out, (size_t)m);
        }
    }
}

LOWPREC_TARGET_AVX2 static void quantize_pc(const float *x, uint8_t *q, ptrdiff_t start,
                                            ptrdiff_t end, ptrdiff_t C, ptrdiff_t inner,
                                            const float *inv, const int32_t *zp, int32_t qmin,
                                            int32_t qmax, int mode, int is_signed) {
    ptrdiff_t i = start;
    if (inner == 1) {
        while (i < end) { /* row pieces: channel c0 = i % C up to the end of the row */
            ptrdiff_t c0 = i % C, stop = i - c0 + C;
            if (stop > end) stop = end;
            quantize_row(x + i, q + i, stop - i, inv + c0, zp + c0, qmin, qmax, mode, is_signed);
            i = stop;
        }
    } else {
        while (i < end) { /* pieces of constant channel */
            ptrdiff_t block = i / inner, c = block % C, stop = (block + 1) * inner;
            if (stop > end) stop = end;
            quantize_pt(x + i, q + i, stop - i, inv[c], zp[c], qmin, qmax, mode, is_signed);
            i = stop;
        }
    }
}

LOWPREC_TARGET_AVX2 void lowprec_affine_quantize_u8_avx2(const float *x, uint8_t *q, ptrdiff_t n,
                                                         float inv, int32_t zp, int32_t qmin,
                                                         int32_t qmax, int mode) {
    quantize_pt(x, q, n, inv, zp, qmin, qmax, mode, 0);
}

LOWPREC_TARGET_AVX2 void lowprec_affine_quantize_s8_avx2(const float *x, int8_t *q, ptrdiff_t n,
                                                         float inv, int32_t zp, int32_t qmin,
                                                         int32_t qmax, int mode) {
    quantize_pt(x, q, n, inv, zp, qmin, qmax, mode, 1);
}

LOWPREC_TARGET_AVX2 void lowprec_affine_quantize_pc_u8_avx2(const float *x, uint8_t *q,
                                                            ptrdiff_t start, ptrdiff_t end,
                                                            ptrdiff_t C, ptrdiff_t inner,
                                                            const float *inv, const int32_t *zp,
                                                            int32_t qmin, int32_t qmax, int mode) {
    quantize_pc(x, q, start, end, C, inner, inv, zp, qmin, qmax, mode, 0);
}

LOWPREC_TARGET_AVX2 void lowprec_affine_quantize_pc_s8_avx2(const float *x, int8_t *q,
                                                            ptrdiff_t start, ptrdiff_t end,
                                                            ptrdiff_t C, ptrdiff_t inner,
                                                            const float *inv, const int32_t *zp,
                                                            int32_t qmin, int32_t qmax, int mode) {
    quantize_pc(x, (uint8_t *)q, start, end, C, inner, inv, zp, qmin, qmax, mode, 1);
}

/* ---- dequantize ---- */

LOWPREC_TARGET_AVX2 static inline __m256i widen8(const void *p, int is_signed) {
    __m128i b = _mm_loadl_epi64((const __m128i *)p);
    return is_signed ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
}

LOWPREC_TARGET_AVX2 static void dequantize_pt(const uint8_t *q, float *y, ptrdiff_t n,
                                              float scale_s, int32_t zp, int is_signed) {
    const __m256 scale = _mm256_set1_ps(scale_s);
    const __m256i zpi = _mm256_set1_epi32(zp);
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int k = 0; k < 32; k += 8) {
            __m256i v = _mm256_sub_epi32(widen8(q + i + k, is_signed), zpi);
            _mm256_storeu_ps(y + i + k, _mm256_mul_ps(_mm256_cvtepi32_ps(v), scale));
        }
    }
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_sub_epi32(widen8(q + i, is_signed), zpi);
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_cvtepi32_ps(v), scale));
    }
    /* scalar tail: the same single rounding as the vector lanes */
    if (is_signed) {
        const int8_t *qs = (const int8_t *)q;
        for (; i < n; i++) y[i] = (float)((int32_t)qs[i] - zp) * scale_s;
    } else {
        for (; i < n; i++) y[i] = (float)((int32_t)q[i] - zp) * scale_s;
    }
}

LOWPREC_TARGET_AVX2 static void dequantize_pc(const uint8_t *q, float *y, ptrdiff_t start,
                                              ptrdiff_t end, ptrdiff_t C, ptrdiff_t inner,
                                              const float *scale, const int32_t *zp,
                                              int is_signed) {
    ptrdiff_t i = start;
    if (inner == 1) {
        while (i < end) {
            ptrdiff_t c0 = i % C, stop = i - c0 + C;
            if (stop > end) stop = end;
            ptrdiff_t j = 0, len = stop - i;
            const float *s = scale + c0;
            const int32_t *z = zp + c0;
            for (; j + 8 <= len; j += 8) {
                __m256i v = _mm256_sub_epi32(widen8(q + i + j, is_signed),
                                             _mm256_loadu_si256((const __m256i *)(z + j)));
                _mm256_storeu_ps(y + i + j,
                                 _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(s + j)));
            }
            for (; j < len; j++) {
                int32_t qi = is_signed ? (int32_t)((const int8_t *)q)[i + j] : (int32_t)q[i + j];
                y[i + j] = (float)(qi - z[j]) * s[j];
            }
            i = stop;
        }
    } else {
        while (i < end) {
            ptrdiff_t block = i / inner, c = block % C, stop = (block + 1) * inner;
            if (stop > end) stop = end;
            dequantize_pt(q + i, y + i, stop - i, scale[c], zp[c], is_signed);
            i = stop;
        }
    }
}

LOWPREC_TARGET_AVX2 void lowprec_affine_dequantize_u8_avx2(const uint8_t *q, float *y,
                                                           ptrdiff_t n, float scale, int32_t zp) {
    dequantize_pt(q, y, n, scale, zp, 0);
}

LOWPREC_TARGET_AVX2 void lowprec_affine_dequantize_s8_avx2(const int8_t *q, float *y, ptrdiff_t n,
                                                           float scale, int32_t zp) {
    dequantize_pt((const uint8_t *)q, y, n, scale, zp, 1);
}

LOWPREC_TARGET_AVX2 void lowprec_affine_dequantize_pc_u8_avx2(const uint8_t *q, float *y,
                                                              ptrdiff_t start, ptrdiff_t end,
                                                              ptrdiff_t C, ptrdiff_t inner,
                                                              const float *scale,
                                                              const int32_t *zp) {
    dequantize_pc(q, y, start, end, C, inner, scale, zp, 0);
}

LOWPREC_TARGET_AVX2 void lowprec_affine_dequantize_pc_s8_avx2(const int8_t *q, float *y,
                                                              ptrdiff_t start, ptrdiff_t end,
                                                              ptrdiff_t C, ptrdiff_t inner,
                                                              const float *scale,
                                                              const int32_t *zp) {
    dequantize_pc((const uint8_t *)q, y, start, end, C, inner, scale, zp, 1);
}

#endif /* LOWPREC_BUILD_AVX2 */
