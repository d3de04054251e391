/* bfloat16-weight products: packing, the portable panel decoder and GEMV kernel, the tile
 * driver (gemm_f32acc.h).  Layout: gemm_bf16.h. */
#define LP_F32ACC_IMPL
#include "gemm_bf16.h"

int64_t lowprec_bf16_packed_words(int64_t n, int64_t k)
{
    return ((n + LP_NR - 1) / LP_NR) * ((k + 1) / 2) * LP_NR;
}

void lowprec_bf16_pack(const uint16_t *w, int64_t s_n, int64_t s_k, int64_t n, int64_t k,
                       uint32_t *dst)
{
    int64_t np = (n + LP_NR - 1) / LP_NR, kp = (k + 1) / 2;
    for (int64_t q = 0; q < np; q++)
        for (int64_t t = 0; t < kp; t++)
            for (int c = 0; c < LP_NR; c++) {
                int64_t j = q * LP_NR + c;
                uint32_t lo = 0, hi = 0;
                if (j < n) {
                    lo = w[j * s_n + 2 * t * s_k];
                    if (2 * t + 1 < k) hi = w[j * s_n + (2 * t + 1) * s_k];
                }
                dst[(q * kp + t) * LP_NR + c] = lo | (hi << 16);
            }
}

void lowprec_bf16_unpack(const uint32_t *src, int64_t n, int64_t k, uint16_t *w)
{
    int64_t kp = (k + 1) / 2;
    for (int64_t j = 0; j < n; j++) {
        const uint32_t *panel = src + (j / LP_NR) * kp * LP_NR + (j % LP_NR);
        for (int64_t kk = 0; kk < k; kk++) {
            uint32_t word = panel[(kk / 2) * LP_NR];
            w[j * k + kk] = (uint16_t)((kk & 1) ? (word >> 16) : (word & 0xFFFF));
        }
    }
}

static inline float lp_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void bf16_panel_f32_generic(const lp_f32acc_args *p, int64_t q, int64_t k0, int64_t k1,
                                   float *buf)
{
    int64_t kp = (p->k + 1) / 2;
    const uint32_t *wq = (const uint32_t *)p->bp + q * kp * LP_NR;
    for (int64_t kk = k0; kk < k1; kk++)
        for (int c = 0; c < LP_NR; c++) {
            uint32_t word = wq[(kk / 2) * LP_NR + c];
            buf[(kk - k0) * LP_NR + c] =
                lp_bits_f32((kk & 1) ? (word & 0xFFFF0000u) : (word << 16));
        }
}

/* Portable GEMV twin: m <= 4 rows x one panel, k in increasing order. */
static void bf16_gemv_generic(const lp_f32acc_args *p, int64_t q, int nc)
{
    int64_t k = p->k, kp = (k + 1) / 2;
    int m = (int)p->m;
    const uint32_t *wq = (const uint32_t *)p->bp + q * kp * LP_NR;
    float acc[LP_GEMV_MAX_M * LP_NR];
    memset(acc, 0, sizeof(acc));
    for (int64_t kk = 0; kk < k; kk++) {
        const uint32_t *wk = wq + (kk / 2) * LP_NR;
        for (int i = 0; i < m; i++) {
            float ai = p->a[i * p->lda + kk];
            for (int c = 0; c < LP_NR; c++) {
                uint32_t word = wk[c];
                float wv = lp_bits_f32((kk & 1) ? (word & 0xFFFF0000u) : (word << 16));
                acc[i * LP_NR + c] += ai * wv;
            }
        }
    }
    lp_store_block(p->out + q * LP_NR, p->ldo, m, nc, acc,
                   p->bias ? p->bias + q * LP_NR : NULL);
}

void lowprec_bf16_plan(lp_f32acc_args *p, int n_threads)
{
    lp_f32acc_plan(p, n_threads, LP_KC_MAX);
    p->panel_bytes = (p->k + 1) / 2 * LP_NR * 4;
    p->k_bytes = LP_NR * 2;
}

void lowprec_bf16_plan_bf16dot(lp_f32acc_args *p, int n_threads)
{
    lp_f32acc_plan(p, n_threads, INT64_MAX);
}

int lowprec_bf16_tile(const lp_f32acc_args *p, int64_t t)
{
#if LOWPREC_BUILD_AVX2
    if (p->isa >= LOWPREC_ISA_AVX2)
        return lp_f32acc_tile(p, t, lowprec_bf16_panel_f32_avx2, lowprec_bf16_gemv_avx2);
#endif
    return lp_f32acc_tile(p, t, bf16_panel_f32_generic, bf16_gemv_generic);
}
