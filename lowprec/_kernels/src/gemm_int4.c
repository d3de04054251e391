/* int4-weight products: packing into the kernel layout, portable twins, the tile driver.
 * Layout and arithmetic: gemm_int4.h. */
#define LP_F32ACC_IMPL
#include <math.h>
#include "gemm_int4.h"

void lowprec_int4_pack(const uint8_t *qv, const float *scale, const uint8_t *zp, int64_t n,
                       int64_t k, int64_t group, uint32_t *words, float *scales, float *zeros)
{
    /* qv: n x k values 0..15; scale, zp: n x (k / group); zp NULL = 8 everywhere */
    int64_t np = (n + LP_NR - 1) / LP_NR, ku = k / 8, ng = k / group;
    for (int64_t q = 0; q < np; q++)
        for (int c = 0; c < LP_NR; c++) {
            int64_t j = q * LP_NR + c;
            for (int64_t u = 0; u < ku; u++) {
                uint32_t w = 0;
                if (j < n)
                    for (int b = 0; b < 8; b++)
                        w |= (uint32_t)((qv[j * k + 8 * u + b] ^ 8) & 15) << (4 * b);
                words[(q * ku + u) * LP_NR + c] = w;
            }
            for (int64_t g = 0; g < ng; g++) {
                scales[(q * ng + g) * LP_NR + c] = j < n ? scale[j * ng + g] : 0.0f;
                if (zeros) zeros[(q * ng + g) * LP_NR + c] = (j < n && zp) ? (float)zp[j * ng + g] - 8.0f : 0.0f;
            }
        }
}

void lowprec_int4_unpack(const uint32_t *words, int64_t n, int64_t k, uint8_t *qv)
{
    int64_t ku = k / 8;
    for (int64_t j = 0; j < n; j++) {
        const uint32_t *wj = words + (j / LP_NR) * ku * LP_NR + (j % LP_NR);
        for (int64_t kk = 0; kk < k; kk++)
            qv[j * k + kk] = (uint8_t)(((wj[(kk / 8) * LP_NR] >> (4 * (kk % 8))) & 15) ^ 8);
    }
}

void lowprec_int4_group_sums(const float *a, int64_t lda, int64_t m, int64_t k, int64_t group,
                             float *asum)
{
    int64_t ng = k / group;
    for (int64_t i = 0; i < m; i++)
        for (int64_t g = 0; g < ng; g++) {
            float s = 0.0f;
            for (int64_t kk = 0; kk < group; kk++) s += a[i * lda + g * group + kk];
            asum[i * ng + g] = s;
        }
}

static inline int32_t lp_nib(uint32_t w, int j)
{
    int32_t v = (int32_t)((w >> (4 * j)) & 15);
    return v >= 8 ? v - 16 : v; /* q - 8 */
}

static void int4_panel_f32_generic(const lp_f32acc_args *p, int64_t q, int64_t k0, int64_t k1,
                                   float *buf)
{
    int64_t k = p->k, ku = k / 8, ng = k / p->group;
    const uint32_t *wq = (const uint32_t *)p->bp + q * ku * LP_NR;
    for (int64_t kk = k0; kk < k1; kk++) {
        int64_t g = kk / p->group;
        const float *s = p->scales + (q * ng + g) * LP_NR;
        const float *z = p->zeros ? p->zeros + (q * ng + g) * LP_NR : NULL;
        for (int c = 0; c < LP_NR; c++) {
            float v = (float)lp_nib(wq[(kk / 8) * LP_NR + c], (int)(kk % 8));
            if (z) v -= z[c];
            buf[(kk - k0) * LP_NR + c] = v * s[c];
        }
    }
}

static void int4_gemv_generic(const lp_f32acc_args *p, int64_t q, int nc)
{
    int64_t k = p->k, ku = k / 8, G = p->group, ng = k / G;
    int m = (int)p->m;
    const uint32_t *wq = (const uint32_t *)p->bp + q * ku * LP_NR;
    float acc[LP_GEMV_MAX_M * LP_NR], t[LP_GEMV_MAX_M * LP_NR];
    memset(acc, 0, sizeof(acc));
    for (int64_t g = 0; g < ng; g++) {
        memset(t, 0, sizeof(t));
        for (int64_t kk = g * G; kk < (g + 1) * G; kk++)
            for (int i = 0; i < m; i++) {
                float ai = p->a[i * p->lda + kk];
                for (int c = 0; c < LP_NR; c++)
                    t[i * LP_NR + c] += ai * (float)lp_nib(wq[(kk / 8) * LP_NR + c], (int)(kk % 8));
            }
        const float *s = p->scales + (q * ng + g) * LP_NR;
        const float *z = p->zeros ? p->zeros + (q * ng + g) * LP_NR : NULL;
        for (int i = 0; i < m; i++) {
            float as = z ? p->asum[i * ng + g] : 0.0f;
            for (int c = 0; c < LP_NR; c++) {
                float v = t[i * LP_NR + c];
                if (z) v -= z[c] * as;
                acc[i * LP_NR + c] += s[c] * v;
            }
        }
    }
    lp_store_block(p->out + q * LP_NR, p->ldo, m, nc, acc, p->bias ? p->bias + q * LP_NR : NULL);
}

/* K is never blocked for int4: its packed weights are 4x smaller than bf16's, so the decode
 * seldom waits on memory; measured in-process, 1 thread (mc <= 384): K-blocking gained 3% at
 * 256x1024x4096 and lost 4.5% at 2048^3 (bf16: +24% / +4%). */
void lowprec_int4_plan(lp_f32acc_args *p, int n_threads) { lp_f32acc_plan(p, n_threads, INT64_MAX); }

int lowprec_int4_tile(const lp_f32acc_args *p, int64_t t)
{
#if LOWPREC_BUILD_AVX2
    if (p->isa >= LOWPREC_ISA_AVX512VNNI)
        return lp_f32acc_tile(p, t, lowprec_int4_panel_f32_avx2, lowprec_int4_gemv_avx512);
    if (p->isa >= LOWPREC_ISA_AVX2)
        return lp_f32acc_tile(p, t, lowprec_int4_panel_f32_avx2, lowprec_int4_gemv_avx2);
#endif
    return lp_f32acc_tile(p, t, int4_panel_f32_generic, int4_gemv_generic);
}

/* ---- int8 activations: quantization, planning, the portable block kernel -------------------
 * Arithmetic and layout: gemm_int4.h (lp_int4i8_args).  The portable twin computes the same
 * exact integers (D - z A in int32) and the same float32 steps, except that t * sa * s is two
 * rounded products and an add instead of a product and an fma (within the same bound). */

/* byte kg of row `row` in the permuted, 8-row interleaved layout (gemm_int4.h): k = 8u + j goes
 * to byte pos[j] of its block (byte b holds k = 8u + {0,2,4,6,1,3,5,7}[b]) */
static inline void lp_i8_put(int8_t *aq, int64_t k, int64_t row, int64_t kg, int8_t v)
{
    static const int pos[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    aq[(row / LP_I8_MR) * LP_I8_MR * k + (kg / 8) * 64 + (row % LP_I8_MR) * 8 + pos[kg & 7]] = v;
}

/* Both activation quantizers (gemm_int4.h), portable: per row and group, `digits` int8 rows.
 * 1 (int8): |M| <= 127, M itself;  3 (int24): |M| <= LP_I24_MAX as balanced base-256 digits
 * (low byte sign-extended, subtracted, divided by 256; the last digit is what remains). */
static void int4_quantize_digits(const float *a, int64_t lda, int64_t m, int64_t k,
                                 int64_t group, int8_t *aq, float *asc, float *asm_, int digits)
{
    const int32_t qmax = digits == 1 ? 127 : LP_I24_MAX;
    int64_t ng = k / group;
    for (int64_t i = 0; i < m; i++) {
        const float *ai = a + i * lda;
        for (int64_t g = 0; g < ng; g++) {
            const float *x = ai + g * group;
            float amax = 0.0f;
            int finite = 1;
            for (int64_t kk = 0; kk < group; kk++) {
                float v = fabsf(x[kk]);
                if (!(v <= 3.4028235e38f)) finite = 0; /* inf or NaN */
                if (v > amax) amax = v;
            }
            float sa = amax / (float)qmax;
            int32_t sum[3] = {0, 0, 0};
            for (int64_t kk = 0; kk < group; kk++) {
                int32_t v = 0;
                if (finite && sa != 0.0f) {
                    float r = nearbyintf(x[kk] / sa);
                    v = r > (float)qmax ? qmax : (r < -(float)qmax ? -qmax : (int32_t)r);
                }
                for (int r = 0; r < digits; r++) {
                    const int32_t d = r < digits - 1 ? (int8_t)(uint8_t)(v & 255) : v;
                    v = (v - d) / 256;
                    sum[r] += d;
                    lp_i8_put(aq, k, digits * i + r, g * group + kk, (int8_t)d);
                }
            }
            for (int r = 0; r < digits; r++) {
                asc[(digits * i + r) * ng + g] =
                    finite ? sa * (float)(1 << (8 * r)) : __builtin_nanf("");
                asm_[(digits * i + r) * ng + g] = (float)sum[r];
            }
        }
    }
}

static void int4_quantize(const float *a, int64_t lda, int64_t m, int64_t k, int64_t group,
                          int8_t *aq, float *asc, float *asm_, int isa, int digits)
{
#if LOWPREC_BUILD_AVX2
    if (isa >= LOWPREC_ISA_AVX512VNNI && group % 16 == 0) {
        if (digits == 1) lowprec_int4i8_quantize_avx512(a, lda, m, k, group, aq, asc, asm_);
        else lowprec_int4i24_quantize_avx512(a, lda, m, k, group, aq, asc, asm_);
        return;
    }
#endif
    (void)isa;
    int4_quantize_digits(a, lda, m, k, group, aq, asc, asm_, digits);
}

void lowprec_int4i8_quantize(const float *a, int64_t lda, int64_t m, int64_t k, int64_t group,
                             int8_t *aq, float *asc, float *asm_, int isa)
{
    int4_quantize(a, lda, m, k, group, aq, asc, asm_, isa, 1);
}

void lowprec_int4i24_quantize(const float *a, int64_t lda, int64_t m, int64_t k, int64_t group,
                              int8_t *aq, float *asc, float *asm_, int isa)
{
    int4_quantize(a, lda, m, k, group, aq, asc, asm_, isa, 3);
}

void lowprec_int4i24_combine(const float *y, int64_t m, int64_t n, const float *bias, float *out,
                             int64_t ldo)
{
    for (int64_t i = 0; i < m; i++) {
        const float *y0 = y + 3 * i * n, *y1 = y0 + n, *y2 = y1 + n;
        for (int64_t j = 0; j < n; j++) {
            float v = (y0[j] + y1[j]) + y2[j];
            out[i * ldo + j] = bias ? v + bias[j] : v;
        }
    }
}

void lowprec_int4i8_plan(lp_int4i8_args *p, int n_threads)
{
    /* rows per tile: the tile's aq block (mc x K bytes) stays in L2 (~256 KiB) while the weight
     * strips of the tile stream past; columns per tile: up to 16 panels, fewer until there are
     * >= 2 tiles per thread.  Depends on M, N, K and the thread count, but the k order of every
     * output does not, so the results do not depend on the thread count. */
    int64_t m = p->m, k = p->k > 0 ? p->k : 1, n_panels = (p->n + LP_NR - 1) / LP_NR;
    int64_t mc = (256 * 1024) / k / LP_I8_MR * LP_I8_MR;
    if (mc < LP_I8_MR) mc = LP_I8_MR;
    if (mc > 512) mc = 512;
    if (mc > m) mc = m > 0 ? m : 1;
    p->mc = mc;
    p->tiles_m = (m + mc - 1) / mc;
    int64_t ncp = 16;
    if (ncp > n_panels) ncp = n_panels > 0 ? n_panels : 1;
    while (ncp > 2 && p->tiles_m * ((n_panels + ncp - 1) / ncp) < 2 * (int64_t)n_threads) ncp -= 2;
    while (ncp > 1 && p->tiles_m * ((n_panels + ncp - 1) / ncp) < 2 * (int64_t)n_threads) ncp--;
    p->nc = ncp * LP_NR;
    p->tiles_n = (n_panels + ncp - 1) / ncp;
}

static void int4i8_block_generic(const lp_int4i8_args *p, int64_t i0, int mr, int64_t q0, int np)
{
    int64_t k = p->k, ku = k / 8, G = p->group, ng = k / G;
    for (int pp = 0; pp < np; pp++) {
        int64_t q = q0 + pp;
        const uint32_t *wq = p->bp + q * ku * LP_NR;
        int64_t nc = p->n - q * LP_NR;
        if (nc > LP_NR) nc = LP_NR;
        for (int r = 0; r < mr; r++) {
            int64_t i = i0 + r;
            const int8_t *ai = p->aq + (i / LP_I8_MR) * LP_I8_MR * k + (i % LP_I8_MR) * 8;
            float acc[LP_NR];
            for (int c = 0; c < LP_NR; c++) acc[c] = 0.0f;
            for (int64_t g = 0; g < ng; g++) {
                const float *s = p->scales + (q * ng + g) * LP_NR;
                const float *z = p->zeros ? p->zeros + (q * ng + g) * LP_NR : NULL;
                float sa = p->asc[i * ng + g];
                int32_t A = (int32_t)p->asm_[i * ng + g];
                for (int c = 0; c < LP_NR; c++) {
                    int32_t d = 0;
                    for (int64_t u = g * (G / 8); u < (g + 1) * (G / 8); u++) {
                        uint32_t w = wq[u * LP_NR + c] ^ 0x88888888u; /* nibble j = q at k = 8u + j */
                        for (int b = 0; b < 4; b++) {
                            d += (int32_t)((w >> (8 * b)) & 15) * ai[64 * u + b];
                            d += (int32_t)((w >> (8 * b + 4)) & 15) * ai[64 * u + 4 + b];
                        }
                    }
                    int32_t zc = z ? (int32_t)z[c] + 8 : 8;
                    float t = (float)(d - zc * A) * sa;
                    acc[c] += t * s[c];
                }
            }
            float *o = p->out + i * p->ldo + q * LP_NR;
            const float *bias = p->bias ? p->bias + q * LP_NR : NULL;
            for (int c = 0; c < nc; c++) o[c] = bias ? acc[c] + bias[c] : acc[c];
        }
    }
}

void lowprec_int4i8_tile(const lp_int4i8_args *p, int64_t t)
{
    int64_t tm = t / p->tiles_n, tn = t % p->tiles_n;
    int64_t i0 = tm * p->mc, i1 = i0 + p->mc;
    int64_t q0 = tn * (p->nc / LP_NR), q1 = q0 + p->nc / LP_NR;
    int64_t n_panels = (p->n + LP_NR - 1) / LP_NR;
    if (i1 > p->m) i1 = p->m;
    if (q1 > n_panels) q1 = n_panels;
    /* panel pairs outer (the pair's weights, K x 32 nibbles, stay in L1/L2 across the row
     * blocks), rows inner */
    for (int64_t q = q0; q < q1; q += 2) {
        int np = q + 1 < q1 ? 2 : 1;
        for (int64_t i = i0; i < i1; i += LP_I8_MR) {
            int mr = (int)(i1 - i < LP_I8_MR ? i1 - i : LP_I8_MR);
#if LOWPREC_BUILD_AVX2
            if (p->isa >= LOWPREC_ISA_AVX512VNNI)
                lowprec_int4i8_block_avx512(p, i, mr, q, np);
            else
#endif
                int4i8_block_generic(p, i, mr, q, np);
        }
    }
}
