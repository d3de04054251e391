/* int4-weight products, AVX-512 (avx512vnni level): the GEMV kernels (M <= 4), one zmm = one
 * 16-column panel.  Decode without int->float conversion: vpermps uses only bits 3..0 of each
 * index lane, so nibble j of 16 columns is permutexvar(srli(word, 4j), T) with the table
 * T[n] = float(n < 8 ? n : n - 16) = q - 8 (the stored nibble is q ^ 8): 2 ops per 16 weights
 * (1 for j = 0) instead of 3 (shift, shift, cvtdq2ps) per 8.  Arithmetic (per group
 * t = sum a (q - 8), then acc += s * (t - (z - 8) * sum a)) and bounds: gemm_int4.h.
 * The M > 4 path runs the AVX2 panel decoder and micro-kernel (gemm_int4_avx2.c).
 * Second half of the file: the int8-activation (activations="int8") quantizer and vpdpbusd
 * kernels. */
#define LP_F32ACC_IMPL
#include "gemm_int4.h"

#if LOWPREC_BUILD_AVX2
#include <immintrin.h>

/* NS accumulator sets (by nibble index j mod NS) per row: MR * NS independent FMA chains. */
#define LP_INT4_GEMV512(MR, NS)                                                                 \
    LOWPREC_TARGET_AVX512VNNI static void int4_gemv_avx512_##MR(const lp_f32acc_args *p,       \
                                                                int64_t q, int nc)             \
    {                                                                                           \
        int64_t k = p->k, ku = k / 8, G = p->group, ng = k / G;                                 \
        const uint32_t *wq = (const uint32_t *)p->bp + q * ku * LP_NR;                          \
        const __m512 tab = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1); \
        const float *ap[MR];                                                                    \
        __m512 acc[MR];                                                                         \
        for (int i = 0; i < MR; i++) {                                                          \
            ap[i] = p->a + i * p->lda;                                                          \
            acc[i] = _mm512_setzero_ps();                                                       \
        }                                                                                       \
        for (int64_t g = 0; g < ng; g++) {                                                      \
            __m512 t[NS][MR];                                                                   \
            for (int s = 0; s < NS; s++)                                                        \
                for (int i = 0; i < MR; i++) t[s][i] = _mm512_setzero_ps();                     \
            for (int64_t u = g * (G / 8); u < (g + 1) * (G / 8); u++) {                         \
                const __m512i v = _mm512_loadu_si512((const void *)(wq + u * LP_NR));           \
                const int64_t kb = 8 * u;                                                       \
                LP_G5(MR, NS, 0); LP_G5(MR, NS, 1); LP_G5(MR, NS, 2); LP_G5(MR, NS, 3);         \
                LP_G5(MR, NS, 4); LP_G5(MR, NS, 5); LP_G5(MR, NS, 6); LP_G5(MR, NS, 7);         \
            }                                                                                   \
            const __m512 sv = _mm512_loadu_ps(p->scales + (q * ng + g) * LP_NR);                \
            for (int i = 0; i < MR; i++) {                                                      \
                __m512 r = t[0][i];                                                             \
                for (int s = 1; s < NS; s++) r = _mm512_add_ps(r, t[s][i]);                     \
                if (p->zeros) {                                                                 \
                    const __m512 zv = _mm512_loadu_ps(p->zeros + (q * ng + g) * LP_NR);         \
                    r = _mm512_fnmadd_ps(zv, _mm512_set1_ps(p->asum[i * ng + g]), r);           \
                }                                                                               \
                acc[i] = _mm512_fmadd_ps(r, sv, acc[i]);                                        \
            }                                                                                   \
        }                                                                                       \
        float tmp[MR * LP_NR];                                                                  \
        for (int i = 0; i < MR; i++) _mm512_storeu_ps(tmp + i * LP_NR, acc[i]);                 \
        lp_store_block(p->out + q * LP_NR, p->ldo, MR, nc, tmp,                                 \
                       p->bias ? p->bias + q * LP_NR : NULL);                                   \
    }

#define LP_G5(MR, NS, j)                                                                        \
    do {                                                                                        \
        const __m512 x = _mm512_permutexvar_ps((j) ? _mm512_srli_epi32(v, 4 * (j)) : v, tab);   \
        for (int i = 0; i < MR; i++)                                                            \
            t[(j) % NS][i] = _mm512_fmadd_ps(_mm512_set1_ps(ap[i][kb + (j)]), x, t[(j) % NS][i]); \
    } while (0)

LP_INT4_GEMV512(1, 8)
LP_INT4_GEMV512(2, 4)
LP_INT4_GEMV512(3, 2)
LP_INT4_GEMV512(4, 2)

LOWPREC_TARGET_AVX512VNNI void lowprec_int4_gemv_avx512(const lp_f32acc_args *p, int64_t q, int nc)
{
    switch (p->m) {
    case 1: int4_gemv_avx512_1(p, q, nc); break;
    case 2: int4_gemv_avx512_2(p, q, nc); break;
    case 3: int4_gemv_avx512_3(p, q, nc); break;
    default: int4_gemv_avx512_4(p, q, nc); break;
    }
}

/* ---- int8 activations (activations="int8"): vpdpbusd over unpacked nibbles ----------------
 * Layout and arithmetic: gemm_int4.h (lp_int4i8_args).  One block = MR rows x NP panels (16
 * columns each, one zmm).  Per 8 k (one word per column): x = word ^ 0x88888888 restores q, and
 * x & 0x0F0F0F0F / (x >> 4) & 0x0F0F0F0F (one vpternlogd each) are the u8 weights of
 * k = 8u + {0,2,4,6} / 8u + {1,3,5,7}: 3 ops per 128 weights.  The activation dwords are
 * broadcast (the permuted aq layout pairs them with those bytes), vpdpbusd accumulates the int32
 * group dot product D exactly (u8 x s8, no saturation); at the end of each group
 * acc = fma((D - z A) * sa, s, acc) in float32 (the accumulators live in a small L1 array:
 * touched once per group, they would otherwise take 16 of the 32 zmm). */
#include <float.h>

/* Both activation quantizers (gemm_int4.h; `digits` int8 rows per row: 1 for int8, 3 for
 * int24), with the same results as the portable loop (gemm_int4.c): IEEE division, cvtps2dq
 * rounds to nearest even like nearbyintf; balanced base-256 digits (low byte sign-extended,
 * subtracted, arithmetic shift; the last digit is what remains).  Needs group % 16 == 0. */
static inline __attribute__((always_inline)) LOWPREC_TARGET_AVX512VNNI void
int4_quantize_digits_avx512(const float *a, int64_t lda, int64_t m, int64_t k, int64_t group,
                            int8_t *aq, float *asc, float *asm_, const int digits)
{
    const int32_t qmax = digits == 1 ? 127 : LP_I24_MAX;
    const __m512 big = _mm512_set1_ps(FLT_MAX);
    const __m512i lim = _mm512_set1_epi32(qmax), nlim = _mm512_set1_epi32(-qmax);
    const __m128i perm = _mm_setr_epi8(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15);
    int64_t ng = k / group;
    for (int64_t i = 0; i < m; i++) {
        const float *ai = a + i * lda;
        /* 8 bytes (one k step) per 64-byte line of each digit row's block */
        int8_t *dst[3];
        for (int r = 0; r < digits; r++) {
            const int64_t row = digits * i + r;
            dst[r] = aq + (row / LP_I8_MR) * LP_I8_MR * k + (row % LP_I8_MR) * 8;
        }
        for (int64_t g = 0; g < ng; g++) {
            const float *x = ai + g * group;
            __m512 mx = _mm512_setzero_ps();
            __mmask16 bad = 0;
            for (int64_t kk = 0; kk < group; kk += 16) {
                __m512 v = _mm512_abs_ps(_mm512_loadu_ps(x + kk));
                bad |= _mm512_cmp_ps_mask(v, big, _CMP_NLE_UQ); /* inf or NaN */
                mx = _mm512_max_ps(mx, v);
            }
            float sa = _mm512_reduce_max_ps(mx) / (float)qmax;
            __m512i sum[3] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
            if (bad || sa == 0.0f) {
                for (int r = 0; r < digits; r++)
                    for (int64_t kk = 0; kk < group; kk += 8) memset(dst[r] + (g * group + kk) * 8, 0, 8);
            } else {
                const __m512 sv = _mm512_set1_ps(sa);
                for (int64_t kk = 0; kk < group; kk += 16) {
                    __m512i q = _mm512_cvtps_epi32(_mm512_div_ps(_mm512_loadu_ps(x + kk), sv));
                    q = _mm512_max_epi32(_mm512_min_epi32(q, lim), nlim);
                    for (int r = 0; r < digits; r++) {
                        const __m512i d =
                            r < digits - 1 ? _mm512_srai_epi32(_mm512_slli_epi32(q, 24), 24) : q;
                        q = _mm512_srai_epi32(_mm512_sub_epi32(q, d), 8);
                        sum[r] = _mm512_add_epi32(sum[r], d);
                        __m128i b = _mm_shuffle_epi8(_mm512_cvtepi32_epi8(d), perm);
                        int8_t *o = dst[r] + (g * group + kk) * 8;
                        _mm_storel_epi64((__m128i *)o, b);
                        _mm_storel_epi64((__m128i *)(o + 64), _mm_unpackhi_epi64(b, b));
                    }
                }
            }
            for (int r = 0; r < digits; r++) {
                asc[(digits * i + r) * ng + g] = bad ? __builtin_nanf("") : sa * (float)(1 << (8 * r));
                asm_[(digits * i + r) * ng + g] = (float)_mm512_reduce_add_epi32(sum[r]);
            }
        }
    }
}

LOWPREC_TARGET_AVX512VNNI void lowprec_int4i8_quantize_avx512(const float *a, int64_t lda,
                                                               int64_t m, int64_t k, int64_t group,
                                                               int8_t *aq, float *asc, float *asm_)
{
    int4_quantize_digits_avx512(a, lda, m, k, group, aq, asc, asm_, 1);
}

/* activations="int24" (gemm_int4.h): three digit rows per row */
LOWPREC_TARGET_AVX512VNNI void lowprec_int4i24_quantize_avx512(const float *a, int64_t lda,
                                                                int64_t m, int64_t k, int64_t group,
                                                                int8_t *aq, float *asc, float *asm_)
{
    int4_quantize_digits_avx512(a, lda, m, k, group, aq, asc, asm_, 3);
}

/* acc += dot4(u8 w, s8 broadcast of the dword at ptr): inline asm because GCC's register
 * allocation of the intrinsic copied every accumulator once per k step (and spilled some);
 * the embedded broadcast also saves the separate vpbroadcastd */
#define LP_DPBUSD_BCST(acc, w, ptr) \
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const int32_t *)(ptr)))

static inline __attribute__((always_inline)) LOWPREC_TARGET_AVX512VNNI void
int4i8_block(const lp_int4i8_args *p, int64_t i0, const int MR, int64_t q0, const int NP)
{
    /* MR <= 2 (the GEMV shapes): separate accumulators for the even and odd k quads, so that
     * 2 * MR * NP >= 4 independent vpdpbusd chains hide its latency; larger MR has enough */
    const int SPLIT = MR <= 2 ? 2 : 1;
    int64_t k = p->k, ku = k / 8, G = p->group, ng = k / G, gu = G / 8;
    const uint32_t *w0 = p->bp + q0 * ku * LP_NR;
    const uint32_t *w1 = NP > 1 ? w0 + ku * LP_NR : w0;
    const __m512i m0f = _mm512_set1_epi32(0x0F0F0F0F), x88 = _mm512_set1_epi32((int)0x88888888u);
    const int8_t *ar[LP_I8_MR];
    float facc[LP_I8_MR * 2 * LP_NR] __attribute__((aligned(64)));
    for (int r = 0; r < MR; r++)
        ar[r] = p->aq + ((i0 + r) / LP_I8_MR) * LP_I8_MR * k + ((i0 + r) % LP_I8_MR) * 8;
    for (int j = 0; j < MR * NP * LP_NR; j++) facc[j] = 0.0f;
    for (int64_t g = 0; g < ng; g++) {
        __m512i d[LP_I8_MR][2][2];
        for (int r = 0; r < MR; r++)
            for (int c = 0; c < NP; c++)
                for (int h = 0; h < SPLIT; h++) d[r][c][h] = _mm512_setzero_si512();
        for (int64_t u = g * gu; u < (g + 1) * gu; u++) {
            const __m512i v0 = _mm512_loadu_si512((const void *)(w0 + u * LP_NR));
            /* (A ^ B) & C = 0x28 with A = 0xF0, B = 0xCC, C = 0xAA */
            const __m512i lo0 = _mm512_ternarylogic_epi32(v0, x88, m0f, 0x28);
            const __m512i hi0 = _mm512_ternarylogic_epi32(_mm512_srli_epi32(v0, 4), x88, m0f, 0x28);
            __m512i lo1 = lo0, hi1 = hi0;
            if (NP > 1) {
                const __m512i v1 = _mm512_loadu_si512((const void *)(w1 + u * LP_NR));
                lo1 = _mm512_ternarylogic_epi32(v1, x88, m0f, 0x28);
                hi1 = _mm512_ternarylogic_epi32(_mm512_srli_epi32(v1, 4), x88, m0f, 0x28);
            }
            for (int r = 0; r < MR; r++) {
                const int8_t *e = ar[r] + 64 * u;
                LP_DPBUSD_BCST(d[r][0][0], lo0, e);
                if (NP > 1) LP_DPBUSD_BCST(d[r][1][0], lo1, e);
                LP_DPBUSD_BCST(d[r][0][SPLIT - 1], hi0, e + 4);
                if (NP > 1) LP_DPBUSD_BCST(d[r][1][SPLIT - 1], hi1, e + 4);
            }
        }
        if (SPLIT > 1)
            for (int r = 0; r < MR; r++)
                for (int c = 0; c < NP; c++) d[r][c][0] = _mm512_add_epi32(d[r][c][0], d[r][c][1]);
        const __m512 eight = _mm512_set1_ps(8.0f);
        __m512 s[2], z[2];
        for (int c = 0; c < NP; c++) {
            s[c] = _mm512_loadu_ps(p->scales + ((q0 + c) * ng + g) * LP_NR);
            z[c] = p->zeros ? _mm512_add_ps(_mm512_loadu_ps(p->zeros + ((q0 + c) * ng + g) * LP_NR), eight)
                            : eight;
        }
        for (int r = 0; r < MR; r++) {
            const __m512 sa = _mm512_set1_ps(p->asc[(i0 + r) * ng + g]);
            const __m512 A = _mm512_set1_ps(p->asm_[(i0 + r) * ng + g]);
            for (int c = 0; c < NP; c++) {
                /* D - z A: integers below 2^24 in magnitude, exact in float32 */
                __m512 t = _mm512_fnmadd_ps(z[c], A, _mm512_cvtepi32_ps(d[r][c][0]));
                float *f = facc + (r * NP + c) * LP_NR;
                _mm512_store_ps(f, _mm512_fmadd_ps(_mm512_mul_ps(t, sa), s[c], _mm512_load_ps(f)));
            }
        }
    }
    for (int c = 0; c < NP; c++) {
        int64_t nc = p->n - (q0 + c) * LP_NR;
        const __mmask16 mk = nc >= LP_NR ? (__mmask16)0xFFFF : (__mmask16)((1u << nc) - 1);
        const __m512 b = p->bias ? _mm512_maskz_loadu_ps(mk, p->bias + (q0 + c) * LP_NR)
                                 : _mm512_setzero_ps();
        for (int r = 0; r < MR; r++) {
            __m512 v = _mm512_load_ps(facc + (r * NP + c) * LP_NR);
            if (p->bias) v = _mm512_add_ps(v, b);
            _mm512_mask_storeu_ps(p->out + (i0 + r) * p->ldo + (q0 + c) * LP_NR, mk, v);
        }
    }
}

#define LP_I8_CASE(MR)                                                                          \
    LOWPREC_TARGET_AVX512VNNI static void int4i8_block_##MR##_1(const lp_int4i8_args *p,        \
                                                                int64_t i0, int64_t q0)         \
    {                                                                                           \
        int4i8_block(p, i0, MR, q0, 1);                                                         \
    }                                                                                           \
    LOWPREC_TARGET_AVX512VNNI static void int4i8_block_##MR##_2(const lp_int4i8_args *p,        \
                                                                int64_t i0, int64_t q0)         \
    {                                                                                           \
        int4i8_block(p, i0, MR, q0, 2);                                                         \
    }
LP_I8_CASE(1)
LP_I8_CASE(2)
LP_I8_CASE(3)
LP_I8_CASE(4)
LP_I8_CASE(5)
LP_I8_CASE(6)
LP_I8_CASE(7)
LP_I8_CASE(8)


/* The full 8 x 32 block with named accumulators: with arrays GCC kept copying the vpdpbusd
 * accumulators between registers and the stack inside the k loop (the generic template above
 * serves the row / column tails).  The 8 rows' activation dwords of one k step are one 64-byte
 * line (aq interleaved by 8 rows), so each broadcast is a load at a constant offset. */
#define LP_D8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

LOWPREC_TARGET_AVX512VNNI static void int4i8_block_8x32(const lp_int4i8_args *p, int64_t i0,
                                                        int64_t q0)
{
    int64_t k = p->k, ku = k / 8, G = p->group, ng = k / G, gu = G / 8;
    const uint32_t *w0 = p->bp + q0 * ku * LP_NR, *w1 = w0 + ku * LP_NR;
    const int8_t *pa = p->aq + (i0 / LP_I8_MR) * LP_I8_MR * k;
    const __m512i m0f = _mm512_set1_epi32(0x0F0F0F0F), x88 = _mm512_set1_epi32((int)0x88888888u);
    float facc[8 * 2 * LP_NR] __attribute__((aligned(64)));
    memset(facc, 0, sizeof(facc));
    for (int64_t g = 0; g < ng; g++) {
#define LP_DECL(r) __m512i d##r##0 = _mm512_setzero_si512(), d##r##1 = _mm512_setzero_si512();
        LP_D8(LP_DECL)
#undef LP_DECL
        const int8_t *a = pa + g * gu * 64;
        const uint32_t *x0 = w0 + g * gu * LP_NR, *x1 = w1 + g * gu * LP_NR;
        for (int64_t u = 0; u < gu; u++, a += 64, x0 += LP_NR, x1 += LP_NR) {
            const __m512i v0 = _mm512_loadu_si512((const void *)x0);
            const __m512i v1 = _mm512_loadu_si512((const void *)x1);
            const __m512i lo0 = _mm512_ternarylogic_epi32(v0, x88, m0f, 0x28);
            const __m512i lo1 = _mm512_ternarylogic_epi32(v1, x88, m0f, 0x28);
            const __m512i hi0 = _mm512_ternarylogic_epi32(_mm512_srli_epi32(v0, 4), x88, m0f, 0x28);
            const __m512i hi1 = _mm512_ternarylogic_epi32(_mm512_srli_epi32(v1, 4), x88, m0f, 0x28);
#define LP_ROW(r)                                                                               \
            {                                                                                   \
                LP_DPBUSD_BCST(d##r##0, lo0, a + 8 * (r));                                      \
                LP_DPBUSD_BCST(d##r##1, lo1, a + 8 * (r));                                      \
                LP_DPBUSD_BCST(d##r##0, hi0, a + 8 * (r) + 4);                                  \
                LP_DPBUSD_BCST(d##r##1, hi1, a + 8 * (r) + 4);                                  \
            }
            LP_D8(LP_ROW)
#undef LP_ROW
        }
        const __m512 eight = _mm512_set1_ps(8.0f);
        const __m512 s0 = _mm512_loadu_ps(p->scales + (q0 * ng + g) * LP_NR);
        const __m512 s1 = _mm512_loadu_ps(p->scales + ((q0 + 1) * ng + g) * LP_NR);
        __m512 z0 = eight, z1 = eight;
        if (p->zeros) {
            z0 = _mm512_add_ps(_mm512_loadu_ps(p->zeros + (q0 * ng + g) * LP_NR), eight);
            z1 = _mm512_add_ps(_mm512_loadu_ps(p->zeros + ((q0 + 1) * ng + g) * LP_NR), eight);
        }
#define LP_RESCALE(r)                                                                           \
        {                                                                                       \
            const __m512 sa = _mm512_set1_ps(p->asc[(i0 + (r)) * ng + g]);                      \
            const __m512 A = _mm512_set1_ps(p->asm_[(i0 + (r)) * ng + g]);                      \
            __m512 t0 = _mm512_fnmadd_ps(z0, A, _mm512_cvtepi32_ps(d##r##0));                   \
            __m512 t1 = _mm512_fnmadd_ps(z1, A, _mm512_cvtepi32_ps(d##r##1));                   \
            float *f = facc + (r) * 2 * LP_NR;                                                  \
            _mm512_store_ps(f, _mm512_fmadd_ps(_mm512_mul_ps(t0, sa), s0, _mm512_load_ps(f)));  \
            _mm512_store_ps(f + LP_NR,                                                          \
                            _mm512_fmadd_ps(_mm512_mul_ps(t1, sa), s1, _mm512_load_ps(f + LP_NR))); \
        }
        LP_D8(LP_RESCALE)
#undef LP_RESCALE
    }
    for (int c = 0; c < 2; c++) {
        int64_t nc = p->n - (q0 + c) * LP_NR;
        const __mmask16 mk = nc >= LP_NR ? (__mmask16)0xFFFF : (__mmask16)((1u << nc) - 1);
        const __m512 b = p->bias ? _mm512_maskz_loadu_ps(mk, p->bias + (q0 + c) * LP_NR)
                                 : _mm512_setzero_ps();
        for (int r = 0; r < 8; r++) {
            __m512 v = _mm512_load_ps(facc + (r * 2 + c) * LP_NR);
            if (p->bias) v = _mm512_add_ps(v, b);
            _mm512_mask_storeu_ps(p->out + (i0 + r) * p->ldo + (q0 + c) * LP_NR, mk, v);
        }
    }
}

typedef void (*lp_i8_block_fn)(const lp_int4i8_args *, int64_t, int64_t);
#define LP_I8_ENTRY(MR) {int4i8_block_##MR##_1, int4i8_block_##MR##_2}
static const lp_i8_block_fn lp_i8_blocks[][2] = {
    LP_I8_ENTRY(1), LP_I8_ENTRY(2), LP_I8_ENTRY(3), LP_I8_ENTRY(4),
    LP_I8_ENTRY(5), LP_I8_ENTRY(6), LP_I8_ENTRY(7), LP_I8_ENTRY(8),
};

LOWPREC_TARGET_AVX512VNNI void lowprec_int4i8_block_avx512(const lp_int4i8_args *p, int64_t i0,
                                                            int mr, int64_t q0, int np)
{
    if (mr == 8 && np == 2)
        int4i8_block_8x32(p, i0, q0);
    else
        lp_i8_blocks[mr - 1][np - 1](p, i0, q0);
}
#endif
