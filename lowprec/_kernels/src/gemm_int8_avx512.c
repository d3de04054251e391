/* AVX512-VNNI micro-kernel of the exact u8 x s8 -> s32 GEMM (design: top of gemm_int8.c).
 *
 * lowprec_gemm_u8s8s32_avx512vnni_8x32: 8 rows x 32 columns, Q4x32 packed B.  Per k-quad: two
 * 64-byte loads of B (columns 0-15 and 16-31, 4 k each), then for every row one 32-bit
 * broadcast of A[i, 4q..4q+3] (folded into vpdpbusd as an embedded {1to16} broadcast) and two
 * vpdpbusd.  vpdpbusd is exact for u8 x s8 (no int16 stage, no saturation; the saturating
 * variant vpdpbusds is never used).  The K tail (k % 4) is read byte by byte into a zero-padded
 * quad; the packed B is zero there.  Small m (M tails, GEMV) use kernels instantiated for that m;
 * for m <= 2 the k-loop is unrolled by two into separate accumulator sets to hide the
 * vpdpbusd latency (a GEMV then streams B at the L2/L3 bandwidth). */
#include "gemm_int8.h"

#if LOWPREC_BUILD_AVX2
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define NR 32

static inline __attribute__((always_inline)) int32_t load_quad(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline __attribute__((always_inline)) int32_t load_tail(const uint8_t *p, int64_t n) {
    uint8_t t[4] = {0, 0, 0, 0};
    for (int64_t u = 0; u < n; u++) t[u] = p[u];
    int32_t v;
    memcpy(&v, t, 4);
    return v;
}

/* m <= 2 rows (GEMV and M tails): the k-loop is unrolled by two into separate accumulator sets
 * to hide the vpdpbusd latency (4 chains per row). */
/* vpdpbusd acc += a (u8) . b (s8), through inline asm: GCC 12 compiles the intrinsic
 * _mm512_dpbusd_epi32 into vpdpbusd into a fresh register plus a move back (2 zmm moves per
 * vpdpbusd in this kernel, and spills), which cost ~10-20%. */
LOWPREC_TARGET_AVX512VNNI
static inline __attribute__((always_inline)) __m512i dpbusd(__m512i acc, __m512i a, __m512i b) {
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
    return acc;
}

LOWPREC_TARGET_AVX512VNNI
static inline __attribute__((always_inline)) void kernel_small(const int MR, const int NZ,
                                                               int64_t k, const uint8_t *a,
                                                               ptrdiff_t lda, const int8_t *b,
                                                               int32_t *c) {
    __m512i acc0[2], acc1[2], acc2[2], acc3[2];
    const uint8_t *ap[2];
#pragma GCC unroll 2
    for (int r = 0; r < MR; r++) {
        acc0[r] = _mm512_setzero_si512();
        acc1[r] = _mm512_setzero_si512();
        acc2[r] = _mm512_setzero_si512();
        acc3[r] = _mm512_setzero_si512();
        ap[r] = a + r * lda;
    }
    const int64_t kq = k >> 2;
    int64_t q = 0;
    for (; q + 2 <= kq; q += 2) {
        const __m512i b0 = _mm512_loadu_si512((const void *)b);
        const __m512i b1 = _mm512_loadu_si512((const void *)(b + 64));
        const __m512i b2 = _mm512_loadu_si512((const void *)(b + 128));
        const __m512i b3 = _mm512_loadu_si512((const void *)(b + 192));
        b += 256;
#pragma GCC unroll 2
        for (int r = 0; r < MR; r++) {
            const __m512i av = _mm512_set1_epi32(load_quad(ap[r] + 4 * q));
            const __m512i aw = _mm512_set1_epi32(load_quad(ap[r] + 4 * q + 4));
            acc0[r] = dpbusd(acc0[r], av, b0);
            if (NZ > 1) acc1[r] = dpbusd(acc1[r], av, b1);
            acc2[r] = dpbusd(acc2[r], aw, b2);
            if (NZ > 1) acc3[r] = dpbusd(acc3[r], aw, b3);
        }
    }
    for (; q < kq; q++) {
        const __m512i b0 = _mm512_loadu_si512((const void *)b);
        const __m512i b1 = _mm512_loadu_si512((const void *)(b + 64));
        b += 128;
#pragma GCC unroll 2
        for (int r = 0; r < MR; r++) {
            const __m512i av = _mm512_set1_epi32(load_quad(ap[r] + 4 * q));
            acc0[r] = dpbusd(acc0[r], av, b0);
            if (NZ > 1) acc1[r] = dpbusd(acc1[r], av, b1);
        }
    }
    if (k & 3) {
        const __m512i b0 = _mm512_loadu_si512((const void *)b);
        const __m512i b1 = _mm512_loadu_si512((const void *)(b + 64));
#pragma GCC unroll 2
        for (int r = 0; r < MR; r++) {
            const __m512i av = _mm512_set1_epi32(load_tail(ap[r] + 4 * kq, k & 3));
            acc0[r] = dpbusd(acc0[r], av, b0);
            if (NZ > 1) acc1[r] = dpbusd(acc1[r], av, b1);
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < MR; r++) {
        _mm512_storeu_si512((void *)(c + r * NR), _mm512_add_epi32(acc0[r], acc2[r]));
        if (NZ > 1)
            _mm512_storeu_si512((void *)(c + r * NR + 16), _mm512_add_epi32(acc1[r], acc3[r]));
    }
}

/* 3..8 rows: 2 named accumulators per row. */
#define LP_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define LP_ROWS_WITH(X, A) X(0, A) X(1, A) X(2, A) X(3, A) X(4, A) X(5, A) X(6, A) X(7, A)
/* The pieces of the 3..8-row kernels (kernel_big, kernel_q8), file-wide: row r's accumulators
 * and A pointer; one k step of row r whose 4 A bytes AQ(a_r) gives (the full steps' LP_AQ_QUAD
 * at step q, the last k mod 4 bytes' LP_AQ_TAIL); the k tail and the store of the tile. */
#define LP_DECL(r)                                                                                \
    __m512i c##r##0 = _mm512_setzero_si512(), c##r##1 = _mm512_setzero_si512();                  \
    const uint8_t *a##r = a + (MR > r ? r : 0) * lda;
#define LP_STEP(r, AQ)                                                                            \
    if (MR > r) {                                                                                 \
        const __m512i av = _mm512_set1_epi32(AQ(a##r));                                           \
        c##r##0 = dpbusd(c##r##0, av, b0);                                                       \
        if (NZ > 1) c##r##1 = dpbusd(c##r##1, av, b1);                                           \
    }
#define LP_AQ_QUAD(p) load_quad((p) + 4 * q)
#define LP_AQ_TAIL(p) load_tail((p) + 4 * kq, k & 3)
#define LP_STORE(r)                                                                               \
    if (MR > r) {                                                                                 \
        _mm512_storeu_si512((void *)(c + r * NR), c##r##0);                                       \
        if (NZ > 1) _mm512_storeu_si512((void *)(c + r * NR + 16), c##r##1);                      \
    }
#define LP_TAIL_AND_STORE()                                                                       \
    if (k & 3) {                                                                                  \
        const __m512i b0 = _mm512_loadu_si512((const void *)b);                                   \
        const __m512i b1 = _mm512_loadu_si512((const void *)(b + 64));                            \
        LP_ROWS_WITH(LP_STEP, LP_AQ_TAIL)                                                         \
    }                                                                                             \
    LP_ROWS(LP_STORE)

LOWPREC_TARGET_AVX512VNNI
static inline __attribute__((always_inline)) void kernel_big(const int MR, const int NZ,
                                                             int64_t k, const uint8_t *a,
                                                             ptrdiff_t lda, const int8_t *b,
                                                             int32_t *c) {
    LP_ROWS(LP_DECL)
    const int64_t kq = k >> 2;
    for (int64_t q = 0; q < kq; q++) {
        const __m512i b0 = _mm512_loadu_si512((const void *)b);
        const __m512i b1 = _mm512_loadu_si512((const void *)(b + 64));
        b += 128;
        LP_ROWS_WITH(LP_STEP, LP_AQ_QUAD)
    }
    LP_TAIL_AND_STORE()
}

#define LP_DISPATCH(NZ)                                                                           \
    switch (m) {                                                                                  \
    case 1: kernel_small(1, NZ, k, a, lda, b, c); break;                                          \
    case 2: kernel_small(2, NZ, k, a, lda, b, c); break;                                          \
    case 3: kernel_big(3, NZ, k, a, lda, b, c); break;                                            \
    case 4: kernel_big(4, NZ, k, a, lda, b, c); break;                                            \
    case 5: kernel_big(5, NZ, k, a, lda, b, c); break;                                            \
    case 6: kernel_big(6, NZ, k, a, lda, b, c); break;                                            \
    case 7: kernel_big(7, NZ, k, a, lda, b, c); break;                                            \
    default: kernel_big(8, NZ, k, a, lda, b, c); break;                                           \
    }

LOWPREC_TARGET_AVX512VNNI
void lowprec_gemm_u8s8s32_avx512vnni_8x32(int64_t k, const uint8_t *a, ptrdiff_t lda,
                                          const int8_t *b, int32_t *c, int m) {
    LP_DISPATCH(2)
}

/* The same on the first 16 columns of a Q4x32 panel only (c[r * 32 + j] for j < 16): the last
 * panel of an N with N % 32 in 1..16 (N = 1000) does half the work. */
LOWPREC_TARGET_AVX512VNNI
void lowprec_gemm_u8s8s32_avx512vnni_8x16(int64_t k, const uint8_t *a, ptrdiff_t lda,
                                          const int8_t *b, int32_t *c, int m) {
    LP_DISPATCH(1)
}
#undef LP_DISPATCH

/* The output pipeline on one full 8 x 32 block, in zmm registers right after the micro-kernel
 * (the block is in L1).  The same IEEE double operations in the same order as
 * lowprec_gemm_pipeline_body (no FMA contraction: mul then add), so the same bits:
 *  FLOAT32: fl32((double)corr * mult + bias).
 *  UINT8/INT8: y = ((double)corr + bias) * mult, clamped to [lo - zp, hi - zp], then vcvtpd2dq
 *  with embedded round-to-nearest-even (= rint), + zp in int32.  Clamping to integer bounds
 *  before rounding gives the same integer as rounding first (rint is monotone and fixes
 *  integers), and it keeps vcvtpd2dq in range. */
/* A slot line (16 lanes, a pair of rows: lowprec_gemm_chk_slot) += v. */
LOWPREC_TARGET_AVX512VNNI
static inline __attribute__((always_inline)) void chk_add(uint32_t *s, __m512i v) {
    _mm512_storeu_si512((void *)s, _mm512_add_epi32(_mm512_loadu_si512((const void *)s), v));
}

/* The 16 checksum lanes of a pair's two rows (v0: the first row, v1: the second) folded
 * into one slot line: lanes 0..7 = v0's halves summed, lanes 8..15 = v1's (0x44: the low 256
 * bits of v0, then of v1; 0xee: the high ones). */
LOWPREC_TARGET_AVX512VNNI
static inline __attribute__((always_inline)) __m512i chk_fold2(__m512i v0, __m512i v1) {
    return _mm512_add_epi32(_mm512_shuffle_i64x2(v0, v1, 0x44), _mm512_shuffle_i64x2(v0, v1, 0xee));
}

LOWPREC_TARGET_AVX512VNNI
static void pipeline_32(const lowprec_gemm_u8s8_args *p, const int32_t *c, int64_t i0, int64_t m,
                        int64_t j0) {
    __m512i coff[2], bz[2], rw[2];
    __m512d mv[4], bv[4];
    for (int h = 0; h < 2; h++) {
        coff[h] = p->coloff ? _mm512_loadu_si512((const void *)(p->coloff + j0 + 16 * h))
                            : _mm512_setzero_si512();
        bz[h] = p->bzp ? _mm512_loadu_si512((const void *)(p->bzp + j0 + 16 * h))
                       : _mm512_setzero_si512();
        rw[h] = p->chk_r ? _mm512_loadu_si512((const void *)(p->chk_r + j0 + 16 * h))
                         : _mm512_set1_epi32(1);
    }
    for (int q = 0; q < 4; q++) {
        if (!p->mult)
            mv[q] = _mm512_setzero_pd();
        else if (p->mult_per_channel)
            mv[q] = _mm512_loadu_pd(p->mult + j0 + 8 * q);
        else
            mv[q] = _mm512_set1_pd(p->mult[0]);
        bv[q] = p->bias ? _mm512_loadu_pd(p->bias + j0 + 8 * q) : _mm512_setzero_pd();
    }
    const int kind = p->out_kind;
    const __m512d ylo = _mm512_set1_pd((double)p->lo - (double)p->y_zp);
    const __m512d yhi = _mm512_set1_pd((double)p->hi - (double)p->y_zp);
    const __m512i vzp = _mm512_set1_epi32(p->y_zp);
    const __m512i vlo = _mm512_set1_epi32(p->lo), vhi = _mm512_set1_epi32(p->hi);
    __m512i qcl[2], qch[2];
    __m512 qm[2], qb[2];
    const __m512 qthr = _mm512_set1_ps(p->q_thresh);
    if (p->q_cl) {
        for (int h = 0; h < 2; h++) {
            qcl[h] = _mm512_loadu_si512((const void *)(p->q_cl + j0 + 16 * h));
            qch[h] = _mm512_loadu_si512((const void *)(p->q_ch + j0 + 16 * h));
            qm[h] = _mm512_loadu_ps(p->q_m32 + j0 + 16 * h);
            qb[h] = _mm512_loadu_ps(p->q_bm32 + j0 + 16 * h);
        }
    } else {
        for (int h = 0; h < 2; h++) {
            qcl[h] = qch[h] = _mm512_setzero_si512();
            qm[h] = qb[h] = _mm512_setzero_ps();
        }
    }
    /* checksums (16 lanes) of the pending first row of a pair, folded with the second row's
     * (or zeros) into its slot line once per pair */
    __m512i first_acc = _mm512_setzero_si512(), first_out = _mm512_setzero_si512();
    for (int64_t r = 0; r < m; r++) {
        const int64_t i = i0 + r;
        const int second = (int)((i - p->chk_i0) & 1);
        __m512i corr[2], raw[2], x_acc = _mm512_setzero_si512(), x_out = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) raw[h] = _mm512_loadu_si512((const void *)(c + r * 32 + 16 * h));
        if (p->chk_acc)
            x_acc = _mm512_add_epi32(_mm512_mullo_epi32(raw[0], rw[0]),
                                     _mm512_mullo_epi32(raw[1], rw[1]));
        for (int h = 0; h < 2; h++) {
            corr[h] = _mm512_add_epi32(raw[h], coff[h]);
            if (p->bzp)
                corr[h] = _mm512_sub_epi32(
                    corr[h], _mm512_mullo_epi32(_mm512_set1_epi32(p->rowsum[i]), bz[h]));
        }
        if (kind == LOWPREC_GEMM_OUT_INT32) {
            int32_t *o = (int32_t *)p->out + i * p->ldo + j0;
            _mm512_storeu_si512((void *)o, corr[0]);
            _mm512_storeu_si512((void *)(o + 16), corr[1]);
            if (p->chk_out)
                x_out = _mm512_add_epi32(corr[0], corr[1]);
        } else if (kind == LOWPREC_GEMM_OUT_FLOAT32) {
            float *o = (float *)p->out + i * p->ldo + j0;
            __m256i fs = _mm256_setzero_si256();
            for (int q = 0; q < 4; q++) {
                const __m256i ci = q & 1 ? _mm512_extracti64x4_epi64(corr[q >> 1], 1)
                                         : _mm512_castsi512_si256(corr[q >> 1]);
                const __m512d y = _mm512_add_pd(_mm512_mul_pd(_mm512_cvtepi32_pd(ci), mv[q]), bv[q]);
                __m256 f = _mm512_cvtpd_ps(y);
                if (p->relu) f = _mm256_max_ps(f, _mm256_setzero_ps());
                _mm256_storeu_ps(o + 8 * q, f);
                fs = _mm256_add_epi32(fs, _mm256_castps_si256(f));
            }
            if (p->chk_out)
                x_out = _mm512_zextsi256_si512(fs);
        } else {
            uint8_t *o = (uint8_t *)p->out + i * p->ldo + j0;
            __m512i qs = _mm512_setzero_si512();
            int done = 0; /* the float32 form stood: no float64 redo */
            if (p->q_cl) {
                /* float32 form (proof: lowprec_gemm_requant_f32_setup): 16 lanes per vector
                 * and no float64 conversions; a row with any lane within the error bound of
                 * a .5 tie (~0.1% of lanes) takes the float64 code below instead */
                __m512i qv[2];
                __mmask16 ok = 0xffff;
                for (int h = 0; h < 2; h++) {
                    const __m512i cc = _mm512_min_epi32(_mm512_max_epi32(corr[h], qcl[h]), qch[h]);
                    const __m512 yf = _mm512_fmadd_ps(_mm512_cvtepi32_ps(cc), qm[h], qb[h]);
                    const __m512 nn =
                        _mm512_roundscale_ps(yf, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                    ok &= _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(yf, nn)), qthr,
                                             _CMP_LT_OQ);
                    qv[h] = _mm512_cvtps_epi32(nn); /* an integer: exact */
                }
                if (ok == 0xffff) {
                    for (int h = 0; h < 2; h++) {
                        const __m512i v =
                            _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(qv[h], vzp), vlo), vhi);
                        _mm_storeu_si128((__m128i *)(o + 16 * h), _mm512_cvtepi32_epi8(v));
                        qs = _mm512_add_epi32(qs, _mm512_and_si512(v, _mm512_set1_epi32(0xff)));
                    }
                    done = 1;
                }
            }
            for (int h = 0; h < 2 && !done; h++) {
                __m256i qi[2];
                for (int u = 0; u < 2; u++) {
                    const int q = 2 * h + u;
                    const __m256i ci = u ? _mm512_extracti64x4_epi64(corr[h], 1)
                                         : _mm512_castsi512_si256(corr[h]);
                    __m512d y = _mm512_mul_pd(_mm512_add_pd(_mm512_cvtepi32_pd(ci), bv[q]), mv[q]);
                    y = _mm512_min_pd(_mm512_max_pd(y, ylo), yhi);
                    qi[u] = _mm512_cvt_roundpd_epi32(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                }
                __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(qi[0]), qi[1], 1);
                v = _mm512_add_epi32(v, vzp); /* in [lo, hi] */
                _mm_storeu_si128((__m128i *)(o + 16 * h), _mm512_cvtepi32_epi8(v));
                qs = _mm512_add_epi32(qs, _mm512_and_si512(v, _mm512_set1_epi32(0xff)));
            }
            if (p->chk_out) x_out = qs;
        }
        if (!second && r < m - 1) {
            first_acc = x_acc;
            first_out = x_out;
        } else if (p->chk_acc || p->chk_out) {
            const int64_t line = lowprec_gemm_chk_slot(p, i) - second * LOWPREC_GEMM_CHK_ROW_LANES;
            const __m512i z = _mm512_setzero_si512();
            if (p->chk_acc)
                chk_add(p->chk_acc + line, second ? chk_fold2(first_acc, x_acc) : chk_fold2(x_acc, z));
            if (p->chk_out)
                chk_add(p->chk_out + line, second ? chk_fold2(first_out, x_out) : chk_fold2(x_out, z));
            first_acc = first_out = z;
        }
    }
}

/* ---- The float32 UINT8/INT8 pipeline without checksums, fused into the micro-kernel ----
 * Run between the micro-kernel calls, pipeline_32 cost 7% of the time at 1024 x 1024 x 1024
 * and 17% at 37 x 1000 x 300 (against the same tiles with no pipeline at all), yet in a loop of
 * 8 x 32 kernel calls with it inside the k-loop it costs nothing measurable: out of order
 * execution overlaps it with the vpdpbusd chains.  So for 32-column panels the pipeline of the
 * previous block (its accumulators kept in a second buffer, its panel's constants in a second
 * q8_consts) runs inside the next micro-kernel call, two rows after each quarter of the k-loop
 * (measured: 1.03x at 1024^3, 1.08x at 37 x 1000 x 300), and with fewer operations per
 * vector (~130 instead of ~200 cycles per block when run alone):
 *  - vreduceps gives yf - rint(yf) in one operation, vrangeps the largest |.| of two vectors
 *    (one compare per two rows), and vcvtps2dq with embedded round-to-nearest-even rint(yf):
 *    the same values and the same tie test as pipeline_32's float32 form;
 *  - y_zp is added and [lo, hi] applied on int16 lanes after a saturating pack (32 lanes per
 *    operation), the 8-bit saturating pack clamps to the type's range: for x = rint(yf),
 *    clamp(x + zp, lo, hi) == clamp(sat16(sat16(x) + zp), lo, hi) since |zp| <= 255 < 2^15
 *    (a saturated x is beyond [lo - zp, hi - zp] on the same side).
 * A row pair with a lane within the error bound of a tie is redone by pipeline_32 (float64)
 * after the call, from the same buffer. */
typedef struct {
    __m512i coff[2], qcl[2], qch[2], bz[2];
    __m512 qm[2], qb[2], thr;
    __m512i zp16, lo16, hi16, perm;
    int clamp, is_s8;
    const int32_t *rowsum; /* NULL: symmetric weights */
    /* soft-error checksums (NULL: off), as pipeline_32 takes them: the tile's slot lines
     * (lowprec_gemm_chk_slot), rw the accumulator checksum's column weights */
    uint32_t *chk_acc, *chk_out;
    int64_t chk_i0;
    __m512i rw[2];
} q8_consts;

LOWPREC_TARGET_AVX512VNNI
static void q8_setup(const lowprec_gemm_u8s8_args *p, int64_t j0, q8_consts *q) {
    for (int h = 0; h < 2; h++) {
        q->coff[h] = p->coloff ? _mm512_loadu_si512((const void *)(p->coloff + j0 + 16 * h))
                               : _mm512_setzero_si512();
        q->bz[h] = p->bzp ? _mm512_loadu_si512((const void *)(p->bzp + j0 + 16 * h))
                          : _mm512_setzero_si512();
        q->qcl[h] = _mm512_loadu_si512((const void *)(p->q_cl + j0 + 16 * h));
        q->qch[h] = _mm512_loadu_si512((const void *)(p->q_ch + j0 + 16 * h));
        q->qm[h] = _mm512_loadu_ps(p->q_m32 + j0 + 16 * h);
        q->qb[h] = _mm512_loadu_ps(p->q_bm32 + j0 + 16 * h);
    }
    q->is_s8 = p->out_kind == LOWPREC_GEMM_OUT_INT8;
    q->clamp = p->lo != (q->is_s8 ? -128 : 0) || p->hi != (q->is_s8 ? 127 : 255);
    q->thr = _mm512_set1_ps(p->q_thresh);
    q->zp16 = _mm512_set1_epi16((int16_t)p->y_zp);
    q->lo16 = _mm512_set1_epi16((int16_t)p->lo);
    q->hi16 = _mm512_set1_epi16((int16_t)p->hi);
    /* dword d of the packed bytes holds 4 columns of row (d & 3) >> 1, half d & 1, quarter
     * d >> 2 of that half: this puts row 0 in the low 256 bits and row 1 in the high ones */
    q->perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    q->rowsum = p->bzp ? p->rowsum : NULL;
    q->chk_acc = p->chk_acc;
    q->chk_out = p->chk_out;
    q->chk_i0 = p->chk_i0;
    for (int h = 0; h < 2; h++)
        q->rw[h] = p->chk_r ? _mm512_loadu_si512((const void *)(p->chk_r + j0 + 16 * h))
                            : _mm512_set1_epi32(1);
}

/* The checksums of a row pair (accumulators c0, c1; stored bytes b of both rows, row 0 in the
 * low 256 bits; i0 its first row, the first of its slot line; `two`: 0 for a last odd row,
 * which counts once): what pipeline_32 adds for them, one line update per array.  vpsadbw of b
 * already has row 0 in lanes 0..7 and row 1 in lanes 8..15 (64-bit sums < 2^16). */
LOWPREC_TARGET_AVX512VNNI
static inline __attribute__((always_inline)) void q8_pair_checks(const q8_consts *q,
                                                                 const int32_t *c0,
                                                                 const int32_t *c1, int64_t i0,
                                                                 __m512i b, int two) {
    const int64_t line = (i0 - q->chk_i0) * (LOWPREC_GEMM_CHK_LANES / 2);
    if (q->chk_acc) {
        const __m512i x0 = _mm512_add_epi32(
            _mm512_mullo_epi32(_mm512_loadu_si512((const void *)c0), q->rw[0]),
            _mm512_mullo_epi32(_mm512_loadu_si512((const void *)(c0 + 16)), q->rw[1]));
        const __m512i x1 = _mm512_add_epi32(
            _mm512_mullo_epi32(_mm512_loadu_si512((const void *)c1), q->rw[0]),
            _mm512_mullo_epi32(_mm512_loadu_si512((const void *)(c1 + 16)), q->rw[1]));
        const __m512i y = chk_fold2(x0, x1);
        chk_add(q->chk_acc + line, two ? y : _mm512_maskz_mov_epi32(0x00ff, y));
    }
    if (q->chk_out) {
        const __m512i sad = _mm512_sad_epu8(b, _mm512_setzero_si512());
        chk_add(q->chk_out + line, two ? sad : _mm512_maskz_mov_epi32(0x00ff, sad));
    }
}

/* Rows c0 and c1 (32 accumulators each; i0, i1 their row indices) into o0 and o1 (32 bytes
 * each, stored in any case); returns 0 when a lane is too close to a tie (then the rows must be
 * redone in float64). */
LOWPREC_TARGET_AVX512VNNI
static inline __attribute__((always_inline)) int q8_pair(const q8_consts *q, const int32_t *c0,
                                                         const int32_t *c1, int64_t i0,
                                                         int64_t i1, uint8_t *o0, uint8_t *o1) {
    __m512i v[4];
    __m512 r[4];
    for (int u = 0; u < 4; u++) {
        const int h = u & 1;
        __m512i corr = _mm512_add_epi32(
            _mm512_loadu_si512((const void *)((u < 2 ? c0 : c1) + 16 * h)), q->coff[h]);
        if (q->rowsum)
            corr = _mm512_sub_epi32(
                corr, _mm512_mullo_epi32(_mm512_set1_epi32(q->rowsum[u < 2 ? i0 : i1]), q->bz[h]));
        const __m512i cc = _mm512_min_epi32(_mm512_max_epi32(corr, q->qcl[h]), q->qch[h]);
        const __m512 yf = _mm512_fmadd_ps(_mm512_cvtepi32_ps(cc), q->qm[h], q->qb[h]);
        r[u] = _mm512_reduce_ps(yf, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v[u] = _mm512_cvt_roundps_epi32(yf, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    }
    /* imm 0xb: the larger absolute value, sign cleared */
    const __m512 big = _mm512_range_ps(_mm512_range_ps(r[0], r[1], 0xb),
                                       _mm512_range_ps(r[2], r[3], 0xb), 0xb);
    __m512i w0 = _mm512_adds_epi16(_mm512_packs_epi32(v[0], v[1]), q->zp16);
    __m512i w1 = _mm512_adds_epi16(_mm512_packs_epi32(v[2], v[3]), q->zp16);
    if (q->clamp) {
        w0 = _mm512_min_epi16(_mm512_max_epi16(w0, q->lo16), q->hi16);
        w1 = _mm512_min_epi16(_mm512_max_epi16(w1, q->lo16), q->hi16);
    }
    const __m512i b = _mm512_permutexvar_epi32(
        q->perm, q->is_s8 ? _mm512_packs_epi16(w0, w1) : _mm512_packus_epi16(w0, w1));
    _mm256_storeu_si256((__m256i *)o0, _mm512_castsi512_si256(b));
    _mm256_storeu_si256((__m256i *)o1, _mm512_extracti64x4_epi64(b, 1));
    const int ok = _mm512_cmp_ps_mask(big, q->thr, _CMP_LT_OQ) == 0xffff;
    if (ok && (q->chk_acc || q->chk_out)) {
        /* Only for a pair that stands (a failed one is redone by pipeline_32, which adds its
         * own); a last odd row (i1 == i0) counts once. */
        q8_pair_checks(q, c0, c1, i0, b, i1 != i0);
    }
    return ok;
}

/* m <= 8 rows of accumulators c (rows 32 apart; rows i0.., columns j0..j0+31) through q8_pair,
 * the pairs that fail the tie test again through pipeline_32. */
LOWPREC_TARGET_AVX512VNNI
static void pipeline_32_q8(const lowprec_gemm_u8s8_args *p, const q8_consts *q,
                           const int32_t *c, int64_t i0, int64_t m, int64_t j0) {
    uint8_t *o = (uint8_t *)p->out + i0 * p->ldo + j0;
    const int64_t ldo = p->ldo;
    for (int64_t r = 0; r < m; r += 2) {
        const int64_t r1 = r + 1 < m ? r + 1 : r; /* a last odd row is computed twice */
        if (!q8_pair(q, c + r * 32, c + r1 * 32, i0 + r, i0 + r1, o + r * ldo, o + r1 * ldo))
            pipeline_32(p, c + r * 32, i0 + r, r1 + 1 - r, j0);
    }
}

/* A block whose pipeline is pending: m rows of accumulators c (32 apart), rows i0.., columns
 * j0..j0+31, the constants q of its panel. */
typedef struct {
    const int32_t *c;
    const q8_consts *q;
    int64_t i0, m, j0;
} q8_pending;

/* kernel_big(MR, 2, ...) with the pipeline of the pending block pd (NULL: none) in its k-loop,
 * two rows after each quarter.  Returns a bit mask of pd's row pairs that failed the tie
 * test. */
LOWPREC_TARGET_AVX512VNNI
static inline __attribute__((always_inline)) int kernel_q8(
    const int MR, int64_t k, const uint8_t *a, ptrdiff_t lda, const int8_t *b, int32_t *c,
    const q8_pending *pd, uint8_t *out, int64_t ldo) {
    const int NZ = 2;
    LP_ROWS(LP_DECL)
    const int64_t kq = k >> 2;
    int bad = 0;
    int64_t q0 = 0;
    for (int s = 0; s < 4; s++) {
        const int64_t q1 = kq * (s + 1) / 4;
        for (int64_t q = q0; q < q1; q++) {
            const __m512i b0 = _mm512_loadu_si512((const void *)b);
            const __m512i b1 = _mm512_loadu_si512((const void *)(b + 64));
            b += 128;
            LP_ROWS_WITH(LP_STEP, LP_AQ_QUAD)
        }
        q0 = q1;
        if (pd && 2 * s < pd->m) {
            const int64_t r0 = 2 * s, r1 = r0 + 1 < pd->m ? r0 + 1 : r0;
            uint8_t *o = out + pd->i0 * ldo + pd->j0;
            if (!q8_pair(pd->q, pd->c + r0 * 32, pd->c + r1 * 32, pd->i0 + r0, pd->i0 + r1,
                         o + r0 * ldo, o + r1 * ldo))
                bad |= 1 << s;
        }
    }
    LP_TAIL_AND_STORE()
    return bad;
}

/* The pending block's failed row pairs (kernel_q8's mask) again through pipeline_32. */
LOWPREC_TARGET_AVX512VNNI
static void q8_redo(const lowprec_gemm_u8s8_args *p, const q8_pending *pd, int bad) {
    for (int s = 0; s < 4; s++)
        if (bad >> s & 1)
            pipeline_32(p, pd->c + 64 * s, pd->i0 + 2 * s, 2 * s + 2 <= pd->m ? 2 : 1, pd->j0);
}

LOWPREC_TARGET_AVX512VNNI
void lowprec_gemm_tile_q8_avx512vnni(const lowprec_gemm_u8s8_args *p, int64_t i0, int64_t i1,
                                     int64_t j0, int64_t j1, const int8_t *bp,
                                     int64_t panel_bytes) {
    /* accumulators: one buffer being written, one pending; constants: one per panel parity
     * (the pending block may belong to the previous panel) */
    int32_t buf[2][8 * NR] __attribute__((aligned(64)));
    q8_consts qs[2];
    q8_pending pend = {NULL, NULL, 0, 0, 0};
    int cur = 0;
    uint8_t *out = (uint8_t *)p->out;
    const int64_t ldo = p->ldo, k = p->k, lda = p->lda;
    for (int64_t j = j0; j + NR <= j1; j += NR) {
        const q8_consts *q = &qs[(j / NR) & 1];
        q8_setup(p, j, &qs[(j / NR) & 1]);
        const int8_t *panel = bp + (j / NR) * panel_bytes;
        for (int64_t i = i0; i < i1; i += 8) {
            const int m = (int)(i1 - i < 8 ? i1 - i : 8);
            const uint8_t *a = p->a + i * lda;
            const q8_pending *pd = pend.c ? &pend : NULL;
            int bad = 0;
            switch (m) {
            case 8: bad = kernel_q8(8, k, a, lda, panel, buf[cur], pd, out, ldo); break;
            case 7: bad = kernel_q8(7, k, a, lda, panel, buf[cur], pd, out, ldo); break;
            case 6: bad = kernel_q8(6, k, a, lda, panel, buf[cur], pd, out, ldo); break;
            case 5: bad = kernel_q8(5, k, a, lda, panel, buf[cur], pd, out, ldo); break;
            case 4: bad = kernel_q8(4, k, a, lda, panel, buf[cur], pd, out, ldo); break;
            case 3: bad = kernel_q8(3, k, a, lda, panel, buf[cur], pd, out, ldo); break;
            default: /* 1 or 2 rows: the latency-hiding kernel, the pipeline after it */
                if (pd) pipeline_32_q8(p, pd->q, pd->c, pd->i0, pd->m, pd->j0);
                lowprec_gemm_u8s8s32_avx512vnni_8x32(k, a, lda, panel, buf[cur], m);
                break;
            }
            if (bad) q8_redo(p, pd, bad);
            if (p->inj_target) {
                /* the hook at the same points as the unfused path: this block's accumulators
                 * before its pipeline (next call) sees them, the pending block's output after
                 * its pipeline stored it */
                lowprec_gemm_inject(p, buf[cur], NR, i, m, j, NR, LOWPREC_GEMM_INJ_ACC);
                if (pd) lowprec_gemm_inject(p, NULL, 0, pd->i0, pd->m, pd->j0, NR, LOWPREC_GEMM_INJ_OUT);
            }
            pend.c = buf[cur];
            pend.q = q;
            pend.i0 = i;
            pend.m = m;
            pend.j0 = j;
            cur ^= 1;
        }
    }
    if (pend.c) {
        pipeline_32_q8(p, pend.q, pend.c, pend.i0, pend.m, pend.j0);
        if (p->inj_target)
            lowprec_gemm_inject(p, NULL, 0, pend.i0, pend.m, pend.j0, NR, LOWPREC_GEMM_INJ_OUT);
    }
}

LOWPREC_TARGET_AVX512VNNI
void lowprec_gemm_pipeline_avx512vnni(const lowprec_gemm_u8s8_args *p, const int32_t *c,
                                int64_t ldc, int64_t i0, int64_t m, int64_t j0, int64_t n) {
    if (n == 32 && ldc == 32) {
        if (p->q_cl && p->out_kind >= LOWPREC_GEMM_OUT_UINT8) {
            q8_consts q;
            q8_setup(p, j0, &q);
            pipeline_32_q8(p, &q, c, i0, m, j0);
        } else {
            pipeline_32(p, c, i0, m, j0);
        }
    } else {
        lowprec_gemm_pipeline_body(p, c, ldc, i0, m, j0, n);
    }
}

/* Soft-error check, right-hand sides rhs[i] = sum_k A[i, k] * wsum[k] (wrapping) by vpdpbusd:
 * u = (uint32) wsum[k] is split into four signed base-256 digits d_p in [-128, 127], each a
 * valid int8 operand, so that a row takes four vpdpbusd per 64 k (instead of four widenings
 * and four vpmulld per 64 k: the check's cost at M = 64 was mostly this; unsigned base-128
 * digits need five).  d_0 is the low byte of u read as int8, then u <- (u - d_0) >> 8 (exact:
 * the low byte is then zero) and so on, so sum_p 2^8p d_p == u == wsum (mod 2^32); vpdpbusd
 * adds without saturating, so every lane wraps modulo 2^32 like the reference, and the planes
 * are combined by shifts before the one horizontal sum.  The digit planes (4 k bytes, zero
 * padded to a multiple of 64) are built once per call (lowprec_gemm_rhs_planes_avx512vnni),
 * then read by every chunk of rows. */
#define RHS_PLANES 4
int64_t lowprec_gemm_rhs_planes_size(int64_t k) { return RHS_PLANES * ((k + 63) / 64 * 64); }

LOWPREC_TARGET_AVX512VNNI
void lowprec_gemm_rhs_planes_avx512vnni(int64_t k, const int32_t *wsum, int8_t *planes) {
    const int64_t kp = (k + 63) / 64 * 64;
    for (int64_t kk = 0; kk < kp; kk += 16) {
        const __mmask16 mk = kk + 16 <= k ? 0xffff : (kk < k ? (__mmask16)((1u << (k - kk)) - 1u) : 0);
        __m512i u = _mm512_maskz_loadu_epi32(mk, wsum + kk);
        for (int q = 0; q < RHS_PLANES; q++) {
            /* the low byte (vpmovdb truncates), and its value as int8 */
            _mm_storeu_si128((__m128i *)(planes + q * kp + kk), _mm512_cvtepi32_epi8(u));
            const __m512i d = _mm512_srai_epi32(_mm512_slli_epi32(u, 24), 24);
            u = _mm512_srli_epi32(_mm512_sub_epi32(u, d), 8);
        }
    }
}

LOWPREC_TARGET_AVX512VNNI
void lowprec_gemm_check_rhs_avx512vnni(const uint8_t *a, ptrdiff_t lda, int64_t k,
                                       const int8_t *planes, int64_t i0, int64_t i1,
                                       uint32_t *rhs) {
    const int64_t kp = (k + 63) / 64 * 64;
    for (int64_t i = i0; i < i1; i++) {
        const uint8_t *ar = a + i * lda;
        __m512i acc[RHS_PLANES];
        for (int q = 0; q < RHS_PLANES; q++) acc[q] = _mm512_setzero_si512();
        for (int64_t kk = 0; kk < kp; kk += 64) {
            const __m512i av = kk + 64 <= k ? _mm512_loadu_si512((const void *)(ar + kk))
                                            : _mm512_maskz_loadu_epi8(
                                                  (__mmask64)(~0ULL >> (64 - (k - kk))), ar + kk);
            for (int q = 0; q < RHS_PLANES; q++)
                acc[q] = _mm512_dpbusd_epi32(acc[q], av,
                                             _mm512_loadu_si512((const void *)(planes + q * kp + kk)));
        }
        __m512i t = acc[0];
        for (int q = 1; q < RHS_PLANES; q++)
            t = _mm512_add_epi32(t, _mm512_slli_epi32(acc[q], 8 * q));
        rhs[i] = (uint32_t)_mm512_reduce_add_epi32(t);
    }
}

/* The stored output of row i, columns j0..j0+n-1, re-read as 16 lanes whose wrapping sum is
 * the row's sum (vpsadbw for bytes: 64-bit sums < 2^16 each, high halves zero; vpaddd for
 * 32-bit patterns), masked loads for the last partial vector. */
LOWPREC_TARGET_AVX512VNNI
static inline __attribute__((always_inline)) __m512i reread_row(const lowprec_gemm_u8s8_args *p,
                                                                int wide, int64_t i, int64_t j0,
                                                                int64_t n) {
    __m512i s = _mm512_setzero_si512();
    int64_t j = 0;
    if (wide) {
        const uint32_t *o = (const uint32_t *)p->out + i * p->ldo + j0;
        for (; j + 16 <= n; j += 16) s = _mm512_add_epi32(s, _mm512_loadu_si512(o + j));
        if (j < n)
            s = _mm512_add_epi32(s, _mm512_maskz_loadu_epi32((__mmask16)((1u << (n - j)) - 1u), o + j));
    } else {
        const uint8_t *o = (const uint8_t *)p->out + i * p->ldo + j0;
        for (; j + 64 <= n; j += 64)
            s = _mm512_add_epi64(s, _mm512_sad_epu8(_mm512_loadu_si512(o + j), _mm512_setzero_si512()));
        if (j < n)
            s = _mm512_add_epi64(s, _mm512_sad_epu8(_mm512_maskz_loadu_epi8((__mmask64)(~0ULL >> (64 - (n - j))), o + j),
                                                    _mm512_setzero_si512()));
    }
    return s;
}

/* One tile's checks (lowprec_gemm_tile_check_body's values), a pair of rows (one slot line)
 * at a time: the rows' accumulator halves summed into chk_part, and (output half - re-read
 * output) summed, nonzero when the stored output differs from what the pipeline emitted (the
 * portable body's wrapping sums, compared by difference).  The four sums of a pair come out
 * of one 7-operation reduction instead of four horizontal sums. */
LOWPREC_TARGET_AVX512VNNI
void lowprec_gemm_tile_check_avx512vnni(const lowprec_gemm_u8s8_args *p, int64_t i0,
                                        int64_t i1, int64_t j0, int64_t j1) {
    uint32_t *part = p->chk_part + (j0 / p->nc) * p->m;
    const int wide = p->out_kind == LOWPREC_GEMM_OUT_INT32 || p->out_kind == LOWPREC_GEMM_OUT_FLOAT32;
    const int64_t n = j1 - j0;
    for (int64_t i = i0; i < i1; i += 2) {
        const int two = i + 1 < i1; /* else a last odd row: its line's second half is zero */
        const int64_t line = lowprec_gemm_chk_slot(p, i); /* i - chk_i0 is even */
        const __m512i g0 = reread_row(p, wide, i, j0, n);
        const __m512i g1 = two ? reread_row(p, wide, i + 1, j0, n) : _mm512_setzero_si512();
        /* the re-read sums folded like the line: row i in lanes 0..7, row i + 1 in 8..15 */
        const __m512i g = chk_fold2(g0, g1);
        const __m512i a = _mm512_loadu_si512(p->chk_acc + line);
        const __m512i d = _mm512_sub_epi32(_mm512_loadu_si512(p->chk_out + line), g);
        /* blocks: acc of row i, acc of row i + 1, d of row i, d of row i + 1 (4 lanes each),
         * then summed within each block: lanes 0, 4, 8, 12 */
        __m512i x = _mm512_add_epi32(_mm512_shuffle_i64x2(a, d, 0x88), _mm512_shuffle_i64x2(a, d, 0xdd));
        x = _mm512_add_epi32(x, _mm512_shuffle_epi32(x, (_MM_PERM_ENUM)0x4e));
        x = _mm512_add_epi32(x, _mm512_shuffle_epi32(x, (_MM_PERM_ENUM)0xb1));
        part[i] = (uint32_t)_mm_cvtsi128_si32(_mm512_castsi512_si128(x));
        if (two) part[i + 1] = (uint32_t)_mm_cvtsi128_si32(_mm512_extracti32x4_epi32(x, 1));
        const unsigned bad = _mm512_cmpneq_epi32_mask(x, _mm512_setzero_si512()) & 0x1100u;
        if (bad & 0x100u) __atomic_fetch_or(p->chk_flags + i, (uint8_t)2, __ATOMIC_RELAXED);
        if (bad & 0x1000u) __atomic_fetch_or(p->chk_flags + i + 1, (uint8_t)2, __ATOMIC_RELAXED);
    }
}

#endif /* LOWPREC_BUILD_AVX2 */
