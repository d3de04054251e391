/* int4-weight products: packing into the kernel layout, portable twins, the tile driver.
 * Layout and arithmetic: gemm_int4.h. */
#define LP_F32ACC_IMPL
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

static void int4_panel_f32_generic(const lp_f32acc_args *p, int64_t q, float *buf)
{
    int64_t k = p->k, ku = k / 8, ng = k / p->group;
    const uint32_t *wq = (const uint32_t *)p->bp + q * ku * LP_NR;
    for (int64_t kk = 0; kk < k; kk++) {
        int64_t g = kk / p->group;
        const float *s = p->scales + (q * ng + g) * LP_NR;
        const float *z = p->zeros ? p->zeros + (q * ng + g) * LP_NR : NULL;
        for (int c = 0; c < LP_NR; c++) {
            float v = (float)lp_nib(wq[(kk / 8) * LP_NR + c], (int)(kk % 8));
            if (z) v -= z[c];
            buf[kk * LP_NR + c] = v * s[c];
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

void lowprec_int4_plan(lp_f32acc_args *p, int n_threads) { lp_f32acc_plan(p, n_threads); }

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
