/* Exact u8 x s8 -> s32 GEMM: packing, cache blocking, output pipeline and the portable
 * reference micro-kernels.  (ISA micro-kernels: gemm_int8_avx2.c, gemm_int8_avx512.c.)
 *
 * ==== Exactness ===========================================================================
 * Every product a*b (a in [0,255], b in [-128,127]) and every partial sum is formed exactly:
 *  - AVX512-VNNI: vpdpbusd multiplies 4 u8 x s8 pairs, sums them into 32 bits and adds the
 *    accumulator without any intermediate saturation (we never use the saturating vpdpbusds).
 *    4 * 255 * 128 = 130560 fits easily.
 *  - AVX2: the usual vpmaddubsw (u8 x s8 pairs -> saturating int16) is NOT used: 255*(-128) *2
 *    = -65280 does not fit int16 (formats.md 4; 211*71 + 171*107 = 33578 > 32767 already
 *    saturates).  Instead both operands are widened to int16 (A per tile, B when packed) and
 *    vpmaddwd forms a*b + a'*b' in int32 exactly (|.| <= 65280).  vpmaddwd is one multiply-port
 *    uop for 16 products, the same multiply-port cost as vpmaddubsw + vpmaddwd(ones) for 32
 *    products, so the peak is the same; the price is twice the bytes for packed B and A.
 *  - portable C: int32 multiply-adds.
 *  The int32 accumulator wraps modulo 2^32 only if K > 2^31 / (255*128) = 65793; every
 *  correction below is done in wrapping (unsigned) 32-bit arithmetic, so the corrected result
 *  equals the exact integer modulo 2^32 (and exactly whenever it fits int32).
 *
 * ==== Register blocking (micro-kernels) ====================================================
 *  avx512vnni 8x32: 8 rows x 32 columns = 16 zmm accumulators (2 per row), 2 zmm of B per
 *    k-quad, A as a vpbroadcastd from memory (the u8 operand of vpdpbusd must be a register):
 *    19 of 32 zmm.  vpdpbusd zmm runs at 1/cycle on this Zen 4 (measured: 460-468 GOP/s per
 *    core with 12 independent chains), latency ~4-5, so >= 5 independent accumulators keep
 *    it busy; 16 leave margin.  Per k-quad: 2 B loads + 8 broadcasts for 16 vpdpbusd (1024
 *    multiply-adds): far below the 2-3 loads/cycle limit.  vpdpbusd is issued by inline asm
 *    (GCC 12 adds two zmm moves per intrinsic call).  At 2048^3 the kernel reaches ~94% of
 *    the measured peak; at K = 128..512 the per-call overhead (zeroing, 16 stores, the
 *    pipeline) costs 10-25%.
 *  avx2 6x16: 12 ymm accumulators + 2 B + 1 broadcast = 15 of 16 ymm (the BLIS haswell shape).
 *    Per k-pair: 2 B loads + 6 broadcasts, 12 vpmaddwd + 12 vpaddd.
 *  generic 8x32 and 6x16: the same shapes in plain C (reference twins, same layouts).
 *  Rows m < MR (M tails and the M = 1..4 GEMV case) get kernels instantiated for that m, so a
 *  GEMV does 1 row of work per B byte read: it is bandwidth bound, as it should be.
 *
 * ==== Packing layout of B (= W^T, W the n x k weight) =======================================
 *  Q4x32 (generic, avx512vnni): panels of 32 columns, padded with zero columns; inside a panel
 *    k runs in groups of 4 (k padded with zeros to a multiple of 4):
 *       panel[p][q][c][u] = B[4q + u][32p + c]      (q < K4/4, c < 32, u < 4), 128 B per q
 *    so one 64-byte load gives 16 columns x 4 k, exactly the operand of one vpdpbusd.
 *  P2x16 (avx2): panels of 16 columns of int16, k in pairs (padded to even):
 *       panel[p][q][c][u] = B[2q + u][16p + c]      (q < K2/2, c < 16, u < 2), 64 B per q
 *  Panels are contiguous and each is streamed once per MR rows of A.
 *
 * ==== Cache blocking (this file) ===========================================================
 *  The output is cut into tiles of mc rows x nc columns; a tile is one unit of parallel work
 *  (the Cython layer runs the tiles under OpenMP, lowprec_gemm_sched: own tiles first, then the
 *  others' leftovers; or with no parallel region at all on one thread) and is computed over the full K with the accumulators held in
 *  registers: there is no K blocking and no int32 C buffer round trip.  Inside a tile: for
 *  each B panel (NR columns, K deep), for each MR rows: one micro-kernel call, then the output
 *  pipeline on the MR x NR accumulators while they are in L1.
 *  - mc: the tile's A block (mc x K bytes, x2 when widened) is re-read once per panel and must
 *    stay in L2 (512 KiB on Zen 3, 1 MiB on Zen 4): mc = 384 KiB / (K * bytes), rounded down to
 *    a multiple of MR, between MR and 192 (beyond ~192 rows the panel reuse gains nothing).
 *    On several threads mc is then lowered (to no less than half) where that evens out the
 *    threads' initial tile ranges: M = 1024 with mc = 192 gave one thread 576 rows and the
 *    other 448 (12% idle at the end, less what stealing whole tiles recovers); mc = 128 gives
 *    512 + 512.
 *  - a B panel (NR x K bytes, <= 128 KiB at K = 4096) is re-read mc/MR times consecutively,
 *    from L1 when K <= 1024 and from L2 otherwise; the kernel needs ~10 B/cycle, L2 gives 32.
 *  - nc: 256 columns (8 Q4x32 panels); when that gives fewer than 2 tiles per thread, small-M
 *    products (GEMV) split N into about 2 tiles per thread of equal numbers of panels.
 *  - P2x16 (AVX2) widens the tile's A rows into a per-thread workspace allocated once per call
 *    (lowprec_gemm_u8s8_work_size bytes per thread), not per tile.
 *  K blocking (BLIS's kc) would only pay when a B panel overflows L2 (K > 16384 in Q4x32);
 *  at 2048^3 the kernel already runs at ~94% of the vpdpbusd peak measured on Zen 4.
 *
 * ==== Output pipeline (formats.md 1), per MR x NR block, straight from the accumulators ====
 *  corr = acc + coloff[j] - rowsum[i]*bzp[j]   (= sum_k (a - a_zp)(b - b_zp), wrapping)
 *  INT32: corr.  FLOAT32: fl32(corr * mult[j] + bias[j]) in double (mul, then add: the build
 *  uses -std=c11, so no FMA contraction), then ReLU.
 *  UINT8/INT8: clamp(rint((corr + bias[j]) * mult[j]) + y_zp, lo, hi), all in double (rint =
 *  round half to even), mult[j] = a_s*b_s[j]/y_s and bias[j] = bias/(a_s*b_s[j]) precomputed
 *  in double by the caller, the same operations in the same order as the float64 reference.
 *  AVX512-VNNI runs full 32-column blocks through explicit zmm code (gemm_int8_avx512.c:
 *  vcvtdq2pd, add, mul, clamp to [lo - zp, hi - zp], vcvtpd2dq with embedded round-to-nearest
 *  -even, + zp, vpmovdb): ~0.25 ns per output; the other paths use the auto-vectorised body
 *  in gemm_int8.h.  All give the same bits.  Calls through qmatmul's fast path may also carry
 *  a float32 form of the UINT8/INT8 pipeline (lowprec_gemm_requant_f32_setup, below; the
 *  proof is in gemm_int8.h) that the AVX-512 full-block code uses where it is proven to give
 *  the same bits (~half the cost).  Such calls (soft-error checksums and fault injection
 *  included) go through lowprec_gemm_tile_q8_avx512vnni instead: the float32 pipeline of each
 *  full 8 x 32 block runs inside the next block's micro-kernel call (overlapped with its
 *  vpdpbusd stream: the pipeline cost 7-17% of the time when it ran between the calls).
 *
 * ==== Dynamic quantization (linear) =========================================================
 *  One pass for min/max of x (AVX2, NaN/inf detected by summing x * 0), PyTorch's
 *  ChooseQuantizationParams in C (lowprec_choose_qparams_u8, the twin of
 *  lowprec.quantization.choose_qparams), one pass q = clamp(rint(fma(x, 1/s, zp)), 0, 255)
 *  (torch's dynamic / per-tensor rule, measured), then the GEMM.  Both passes are parallel
 *  over row blocks only for >= 2^17 elements, and on the GEMM's thread count, so no call ever
 *  alternates OpenMP team sizes (on a loaded 2-core machine that alternation cost ~1 ms).
 */
#include "gemm_int8.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define Q_NR 32
#define Q_MR 8
#define P_NR 16
#define P_MR 6

int lowprec_gemm_layout_for_isa(int isa) {
    return isa == LOWPREC_ISA_AVX2 ? LOWPREC_GEMM_LAYOUT_P2X16 : LOWPREC_GEMM_LAYOUT_Q4X32;
}

int64_t lowprec_gemm_layout_nr(int layout) {
    return layout == LOWPREC_GEMM_LAYOUT_P2X16 ? P_NR : Q_NR;
}

int64_t lowprec_gemm_layout_ku(int layout) {
    return layout == LOWPREC_GEMM_LAYOUT_P2X16 ? 2 : 4;
}

int64_t lowprec_gemm_layout_elem_size(int layout) {
    return layout == LOWPREC_GEMM_LAYOUT_P2X16 ? 2 : 1;
}

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

int64_t lowprec_gemm_packed_size(int layout, int64_t n, int64_t k) {
    int64_t nr = lowprec_gemm_layout_nr(layout), ku = lowprec_gemm_layout_ku(layout);
    return round_up(n, nr) * round_up(k, ku) * lowprec_gemm_layout_elem_size(layout);
}

void lowprec_gemm_pack_b_s8(const int8_t *w, ptrdiff_t ldw, int64_t n, int64_t k, int layout,
                            void *dst) {
    const int64_t nr = lowprec_gemm_layout_nr(layout), ku = lowprec_gemm_layout_ku(layout);
    const int64_t np = round_up(n, nr), kp = round_up(k, ku);
    const int64_t panel_elems = nr * kp;
    for (int64_t p = 0; p < np / nr; p++) {
        for (int64_t c = 0; c < nr; c++) {
            const int64_t j = p * nr + c;
            const int8_t *wrow = w + j * ldw;
            for (int64_t kk = 0; kk < kp; kk++) {
                const int8_t v = (j < n && kk < k) ? wrow[kk] : 0;
                const int64_t idx = p * panel_elems + (kk / ku) * (nr * ku) + c * ku + kk % ku;
                if (layout == LOWPREC_GEMM_LAYOUT_P2X16)
                    ((int16_t *)dst)[idx] = v;
                else
                    ((int8_t *)dst)[idx] = v;
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Portable reference micro-kernels                                                          */

void lowprec_gemm_u8s8s32_generic_8x32(int64_t k, const uint8_t *a, ptrdiff_t lda,
                                       const int8_t *b, int32_t *c, int m) {
    for (int r = 0; r < m; r++) {
        uint32_t acc[Q_NR] = {0};
        const uint8_t *ar = a + r * lda;
        for (int64_t kk = 0; kk < k; kk++) {
            const uint32_t av = ar[kk];
            const int8_t *bq = b + (kk >> 2) * (Q_NR * 4) + (kk & 3);
            for (int j = 0; j < Q_NR; j++) acc[j] += av * (uint32_t)(int32_t)bq[4 * j];
        }
        for (int j = 0; j < Q_NR; j++) c[r * Q_NR + j] = (int32_t)acc[j];
    }
}

void lowprec_gemm_u8s8s32_generic_6x16(int64_t k2, const uint16_t *a, ptrdiff_t lda,
                                       const int16_t *b, int32_t *c, int m) {
    for (int r = 0; r < m; r++) {
        uint32_t acc[P_NR] = {0};
        const uint16_t *ar = a + r * lda;
        for (int64_t q = 0; q < k2; q++) {
            const uint32_t a0 = ar[2 * q], a1 = ar[2 * q + 1];
            const int16_t *bq = b + q * (P_NR * 2);
            for (int j = 0; j < P_NR; j++)
                acc[j] += a0 * (uint32_t)(int32_t)bq[2 * j] + a1 * (uint32_t)(int32_t)bq[2 * j + 1];
        }
        for (int j = 0; j < P_NR; j++) c[r * P_NR + j] = (int32_t)acc[j];
    }
}

void lowprec_gemm_pipeline_generic(const lowprec_gemm_u8s8_args *p, const int32_t *c,
                                   int64_t ldc, int64_t i0, int64_t m, int64_t j0, int64_t n) {
    /* a full panel width as a constant: fully vectorised loops without tails */
    if (n == 32)
        lowprec_gemm_pipeline_body(p, c, ldc, i0, m, j0, 32);
    else
        lowprec_gemm_pipeline_body(p, c, ldc, i0, m, j0, n);
}

/* ---------------------------------------------------------------------------------------- */
/* Float32 requantization bounds (proof: gemm_int8.h)                                        */

/* The float64 pipeline's output for an accumulator c (the same operations as
 * lowprec_gemm_pipeline_body: (c + bias) * mult, rint, + zp, clamp). */
static int32_t requant64(int64_t c, double bv, double mv, int32_t zp, int32_t lo, int32_t hi) {
    const double y = ((double)c + bv) * mv;
    if (y < (double)lo - zp - 1.0) return lo;
    if (y > (double)hi - zp + 1.0) return hi;
    double q = nearbyint(y) + zp;
    return (int32_t)(q < lo ? lo : (q > hi ? hi : q));
}

int lowprec_gemm_requant_f32_setup(int64_t n, const double *mult, int mult_per_channel,
                                   const double *bias, int32_t y_zp, int32_t lo, int32_t hi,
                                   int32_t *cl, int32_t *ch, float *m32, float *bm32,
                                   float *thresh) {
    const double cmin = -2147483648.0, cmax = 2147483647.0;
    double dmax = 0.0;
    for (int64_t j = 0; j < n; j++) {
        const double mv = mult_per_channel ? mult[j] : mult[0];
        const double bv = bias ? bias[j] : 0.0;
        const double bm = bv * mv;
        if (!(mv >= 0x1p-100 && mv <= 0x1p100) || !(fabs(bm) < 0x1p20)) return 0;
        /* cl: a c with q(c') = lo for all c' <= c, from an estimate where y is about
         * lo - zp - 1, checked (and lowered) with the float64 formula.  y there is an integer
         * (less at most mv), not a tie: every saturated lane is clamped to cl or ch, and with
         * the estimate at lo - zp - 1.5 such lanes all failed the tie test of the float32
         * form (79% of row pairs took the float64 code at 256 x 1024 x 4096, 3% slower) */
        int64_t c_lo = (int64_t)cmin, c_hi = (int64_t)cmax;
        double e = floor(((double)lo - y_zp - 1.0) / mv - bv);
        if (e > cmin) {
            int64_t c = e < cmax ? (int64_t)e : (int64_t)cmax, step = 1;
            while (c > (int64_t)cmin && requant64(c, bv, mv, y_zp, lo, hi) != lo) {
                c -= step;
                step *= 2;
            }
            c_lo = c > (int64_t)cmin ? c : (int64_t)cmin;
        }
        e = ceil(((double)hi - y_zp + 1.0) / mv - bv);
        if (e < cmax) {
            int64_t c = e > cmin ? (int64_t)e : (int64_t)cmin, step = 1;
            while (c < (int64_t)cmax && requant64(c, bv, mv, y_zp, lo, hi) != hi) {
                c += step;
                step *= 2;
            }
            c_hi = c < (int64_t)cmax ? c : (int64_t)cmax;
        }
        const double a = fmax(fabs(((double)c_lo + bv) * mv), fabs(((double)c_hi + bv) * mv));
        if (!(a < 0x1p20)) return 0;
        const double delta = 0x1p-21 * (a + 2.0 * fabs(bm) + 2.0) + 0x1p-120;
        dmax = delta > dmax ? delta : dmax;
        cl[j] = (int32_t)c_lo;
        ch[j] = (int32_t)c_hi;
        m32[j] = (float)mv;
        bm32[j] = (float)bm;
    }
    const double t = 0.5 - 2.0 * dmax - 0x1p-20;
    if (!(t >= 0.25)) return 0;
    float tf = (float)t;
    if ((double)tf > t) tf = nextafterf(tf, 0.0f); /* never above t */
    *thresh = tf;
    return 1;
}

/* ---------------------------------------------------------------------------------------- */
/* Quantization helpers                                                                      */

void lowprec_quantize_u8_f32_generic(const float *x, int64_t n, float inv_scale, int32_t zp,
                                     uint8_t *q) {
    const float fzp = (float)zp;
    for (int64_t i = 0; i < n; i++) {
        float t = fmaf(x[i], inv_scale, fzp); /* one rounding of x * inv + zp */
        t = t < 0.0f ? 0.0f : (t > 255.0f ? 255.0f : t);
        /* round half to even in the default rounding mode: 1.5 * 2^23 trick (0 <= t <= 255) */
        const float r = (t + 12582912.0f) - 12582912.0f;
        q[i] = (uint8_t)(int32_t)r;
    }
}

int lowprec_minmax_f32_generic(const float *x, ptrdiff_t ldx, int64_t m, int64_t k, float *mn,
                               float *mx) {
    float lo = *mn, hi = *mx, z = 0.0f;
    for (int64_t i = 0; i < m; i++) {
        const float *xr = x + i * ldx;
        for (int64_t j = 0; j < k; j++) {
            const float v = xr[j];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
            z += v * 0.0f; /* NaN for NaN and +-inf: stays NaN */
        }
    }
    *mn = lo;
    *mx = hi;
    return z != z;
}

void lowprec_choose_qparams_u8(float mn, float mx, float *scale_out, int32_t *zp_out) {
    const int32_t qmin = 0, qmax = 255;
    const float small = 6.1e-5f; /* SMALL_SCALE_THRESHOLD: the smallest normal fp16 */
    mn = mn < 0.0f ? mn : 0.0f;
    mx = mx > 0.0f ? mx : 0.0f;
    double scale = ((double)mx - (double)mn) / (double)(qmax - qmin);
    {
        volatile float s32 = (float)scale, inv = 1.0f / s32;
        if (s32 == 0.0f || isinf(inv)) scale = 0.1;
    }
    if (scale < (double)small) {
        const float org = (float)scale;
        scale = (double)small;
        if (mn == 0.0f) {
            mx = small * (float)(qmax - qmin);
        } else if (mx == 0.0f) {
            mn = -small * (float)(qmax - qmin);
        } else {
            const float amp = small / org;
            mn *= amp;
            mx *= amp;
        }
    }
    const double zmin = (double)qmin - (double)mn / scale;
    const double zmax = (double)qmax - (double)mx / scale;
    const double emin = (double)abs(qmin) - fabs((double)mn / scale);
    const double emax = (double)abs(qmax) - fabs((double)mx / scale);
    const double z0 = emin < emax ? zmin : zmax;
    int32_t zp;
    if (z0 < qmin)
        zp = qmin;
    else if (z0 > qmax)
        zp = qmax;
    else
        zp = (int32_t)nearbyint(z0);
    *scale_out = (float)scale;
    *zp_out = zp;
}

void lowprec_s8_to_u8(const int8_t *x, int64_t n, uint8_t *q) {
    for (int64_t i = 0; i < n; i++) q[i] = (uint8_t)((uint8_t)x[i] ^ 0x80u);
}

/* ---------------------------------------------------------------------------------------- */
/* Cache blocking                                                                            */

static int64_t isa_mr(int isa) { return isa == LOWPREC_ISA_AVX2 ? P_MR : Q_MR; }

/* The work (output elements) of the tiles [0, x) in tile order (row tile major) for row tiles
 * of mc rows and column tiles of nc columns. */
static int64_t tiles_work(int64_t x, int64_t m, int64_t n, int64_t mc, int64_t nc,
                          int64_t tiles_n) {
    const int64_t tm = x / tiles_n, tn = x % tiles_n;
    const int64_t r0 = tm * mc < m ? tm * mc : m, c0 = tn * nc < n ? tn * nc : n;
    const int64_t rows = (r0 + mc < m ? r0 + mc : m) - r0;
    return r0 * n + rows * c0;
}

/* The largest work among the nt initial tile ranges of lowprec_gemm_sched (the time of a
 * parallel call when no thread has to take another's tiles). */
static int64_t makespan(int64_t m, int64_t n, int64_t mc, int64_t nc, int nt) {
    const int64_t tiles_n = (n + nc - 1) / nc, tiles = (m + mc - 1) / mc * tiles_n;
    int64_t worst = 0;
    for (int t = 0; t < nt; t++) {
        const int64_t w = tiles_work(tiles * (t + 1) / nt, m, n, mc, nc, tiles_n) -
                          tiles_work(tiles * t / nt, m, n, mc, nc, tiles_n);
        worst = w > worst ? w : worst;
    }
    return worst;
}

void lowprec_gemm_u8s8_plan(lowprec_gemm_u8s8_args *p, int n_threads) {
    const int layout = lowprec_gemm_layout_for_isa(p->isa);
    const int64_t mr = isa_mr(p->isa), nr = lowprec_gemm_layout_nr(layout);
    const int64_t abytes = layout == LOWPREC_GEMM_LAYOUT_P2X16 ? 2 : 1;
    const int64_t kk = p->k > 0 ? p->k : 1;
    int64_t mc = (384 * 1024) / (kk * abytes) / mr * mr;
    if (mc > 192 / mr * mr) mc = 192 / mr * mr;
    if (mc < mr) mc = mr;
    const int64_t m_up = round_up(p->m > 0 ? p->m : 1, mr);
    if (mc > m_up) mc = m_up;
    const int64_t n_up = round_up(p->n > 0 ? p->n : 1, nr);
    int64_t nc = 256 / nr * nr;
    if (nc > n_up) nc = n_up;
    if (n_threads > 1 && p->m > 0 && p->n > 0) {
        /* Balance the threads' initial ranges: with mc = 192, M = 1024 gave row tiles of
         * 5 x 192 + 64, so thread 0 owned 576 rows and thread 1 448, and the stolen tiles
         * (192 x 256 each) left up to ~10% idle at 2 threads.  Any mc from mc/2 to mc keeps A
         * in L2 and the micro-kernel's work the same; take the largest one whose ranges are
         * as even as any (1024 rows on 2 threads: mc = 128). */
        int64_t best = mc, best_w = makespan(p->m, p->n, mc, nc, n_threads);
        for (int64_t c = mc - mr; c >= mr && 2 * c >= mc; c -= mr) {
            const int64_t w = makespan(p->m, p->n, c, nc, n_threads);
            if (w < best_w) {
                best = c;
                best_w = w;
            }
        }
        mc = best;
    }
    const int64_t tiles_m = (p->m + mc - 1) / mc;
    if (n_threads > 1 && tiles_m * ((p->n + nc - 1) / nc) < 2 * (int64_t)n_threads) {
        /* small M: split N into about 2 tiles per thread of equal numbers of whole panels
         * (lowering nc in steps of NR gave e.g. 5 + 5 + 5 + 1 panels for N = 512: one thread
         * did 10 of 16) */
        const int64_t want = (2 * (int64_t)n_threads + tiles_m - 1) / tiles_m;
        const int64_t panels = n_up / nr;
        nc = nr * ((panels + want - 1) / want);
    }
    p->mc = mc;
    p->nc = nc;
    p->tiles_m = tiles_m;
    p->tiles_n = (p->n + nc - 1) / nc;
}

int64_t lowprec_gemm_u8s8_work_size(const lowprec_gemm_u8s8_args *p) {
    if (p->layout != LOWPREC_GEMM_LAYOUT_P2X16) return 0;
    return (p->mc * round_up(p->k, 2) + 16) * (int64_t)sizeof(uint16_t);
}

/* Fault-injection hook: flip bit inj_bit of accumulator / output element (inj_i, inj_j) when
 * it lies in this block (an accumulator right after the micro-kernel, before the checksum and
 * the pipeline see it; an output after the pipeline stored it). */
void lowprec_gemm_inject(const lowprec_gemm_u8s8_args *p, int32_t *c, int64_t ldc, int64_t i0,
                         int64_t m, int64_t j0, int64_t n, int when) {
    if (p->inj_target != when || p->inj_i < i0 || p->inj_i >= i0 + m || p->inj_j < j0 ||
        p->inj_j >= j0 + n)
        return;
    const int64_t r = p->inj_i - i0, jj = p->inj_j - j0;
    if (when == LOWPREC_GEMM_INJ_ACC) {
        c[r * ldc + jj] = (int32_t)((uint32_t)c[r * ldc + jj] ^ (1u << (p->inj_bit & 31)));
    } else if (p->out_kind == LOWPREC_GEMM_OUT_INT32 || p->out_kind == LOWPREC_GEMM_OUT_FLOAT32) {
        uint32_t *o = (uint32_t *)p->out + p->inj_i * p->ldo + p->inj_j;
        *o ^= 1u << (p->inj_bit & 31);
    } else {
        uint8_t *o = (uint8_t *)p->out + p->inj_i * p->ldo + p->inj_j;
        *o ^= (uint8_t)(1u << (p->inj_bit & 7));
    }
}

void lowprec_gemm_check_rhs_generic(const uint8_t *a, ptrdiff_t lda, int64_t k,
                                    const int32_t *wsum, int64_t i0, int64_t i1, uint32_t *rhs) {
    lowprec_gemm_rhs_body(a, lda, k, wsum, i0, i1, rhs);
}

int64_t lowprec_gemm_check_w_size(const lowprec_gemm_u8s8_args *p) {
#if LOWPREC_BUILD_AVX2
    if (p->isa == LOWPREC_ISA_AVX512VNNI) return lowprec_gemm_rhs_planes_size(p->k);
#endif
    (void)p;
    return 0;
}

void lowprec_gemm_check_w_prepare(const lowprec_gemm_u8s8_args *p, const int32_t *wsum,
                                  void *dst) {
#if LOWPREC_BUILD_AVX2
    if (p->isa == LOWPREC_ISA_AVX512VNNI) lowprec_gemm_rhs_planes_avx512vnni(p->k, wsum, (int8_t *)dst);
#endif
    (void)p;
    (void)wsum;
    (void)dst;
}

void lowprec_gemm_check_rhs(const lowprec_gemm_u8s8_args *p, int64_t i0, int64_t i1) {
    if (p->k <= 0) {
        for (int64_t i = i0; i < i1; i++) p->chk_rhs[i] = 0;
        return;
    }
#if LOWPREC_BUILD_AVX2
    if (p->isa == LOWPREC_ISA_AVX512VNNI) {
        lowprec_gemm_check_rhs_avx512vnni(p->a, p->lda, p->k, (const int8_t *)p->chk_w, i0, i1,
                                          p->chk_rhs);
        return;
    }
    if (p->isa == LOWPREC_ISA_AVX2) {
        lowprec_gemm_check_rhs_avx2(p->a, p->lda, p->k, (const int32_t *)p->chk_w, i0, i1,
                                    p->chk_rhs);
        return;
    }
#endif
    lowprec_gemm_check_rhs_generic(p->a, p->lda, p->k, (const int32_t *)p->chk_w, i0, i1,
                                   p->chk_rhs);
}

void lowprec_gemm_tile_check_generic(const lowprec_gemm_u8s8_args *p, int64_t i0, int64_t i1,
                                     int64_t j0, int64_t j1) {
    lowprec_gemm_tile_check_body(p, i0, i1, j0, j1);
}

void lowprec_gemm_check_finish(const lowprec_gemm_u8s8_args *p) {
    const int64_t m = p->m;
    for (int64_t i = 0; i < m; i++) {
        uint32_t lhs = 0;
        for (int64_t t = 0; t < p->tiles_n; t++) lhs += p->chk_part[t * m + i];
        if (lhs != p->chk_rhs[i]) p->chk_flags[i] |= 1;
    }
}

void lowprec_gemm_sched_init(lowprec_gemm_sched *s, int64_t n_tiles, int nt) {
    for (int t = 0; t < nt; t++) {
        s->slot[t].next = n_tiles * t / nt;
        s->slot[t].end = n_tiles * (t + 1) / nt;
    }
    s->nt = nt;
}

int64_t lowprec_gemm_sched_next(lowprec_gemm_sched *s, int tid) {
    for (int u = 0; u < s->nt; u++) {
        const int o = (tid + u) % s->nt;
        if (__atomic_load_n(&s->slot[o].next, __ATOMIC_RELAXED) >= s->slot[o].end) continue;
        const int64_t t = __atomic_fetch_add(&s->slot[o].next, 1, __ATOMIC_RELAXED);
        if (t < s->slot[o].end) return t;
    }
    return -1;
}

static int tile_run(const lowprec_gemm_u8s8_args *p, int64_t i0, int64_t i1, int64_t j0,
                    int64_t j1, void *work);

/* Most rows of a tile (mc <= 192 / MR * MR, lowprec_gemm_u8s8_plan). */
#define TILE_MAX_ROWS 192

int lowprec_gemm_u8s8_tile(const lowprec_gemm_u8s8_args *p, int64_t t, void *work) {
    const int64_t tm = t / p->tiles_n, tn = t % p->tiles_n;
    const int64_t i0 = tm * p->mc, i1 = (i0 + p->mc < p->m) ? i0 + p->mc : p->m;
    const int64_t j0 = tn * p->nc, j1 = (j0 + p->nc < p->n) ? j0 + p->nc : p->n;
    if (!p->chk_part) return tile_run(p, i0, i1, j0, j1, work);
    /* checks: the tile's own checksum slots on this thread's stack, checked right after the
     * tile by the thread that computed it (lowprec_gemm_tile_check_body) */
    uint32_t slots[2][TILE_MAX_ROWS / 2 * LOWPREC_GEMM_CHK_LANES] __attribute__((aligned(64)));
    if (i1 - i0 > TILE_MAX_ROWS) return -1;
    lowprec_gemm_u8s8_args q = *p;
    q.chk_acc = slots[0];
    q.chk_out = slots[1];
    q.chk_i0 = i0;
    /* one line per pair of rows (lowprec_gemm_chk_slot) */
    const size_t bytes = (size_t)(i1 - i0 + 1) / 2 * LOWPREC_GEMM_CHK_LANES * sizeof(uint32_t);
    memset(slots[0], 0, bytes);
    memset(slots[1], 0, bytes);
    const int err = tile_run(&q, i0, i1, j0, j1, work);
    void (*check)(const lowprec_gemm_u8s8_args *, int64_t, int64_t, int64_t, int64_t) =
        lowprec_gemm_tile_check_generic;
#if LOWPREC_BUILD_AVX2
    if (p->isa == LOWPREC_ISA_AVX2) check = lowprec_gemm_tile_check_avx2;
    if (p->isa == LOWPREC_ISA_AVX512VNNI) check = lowprec_gemm_tile_check_avx512vnni;
#endif
    check(&q, i0, i1, j0, j1);
    return err;
}

static int tile_run(const lowprec_gemm_u8s8_args *p, int64_t i0, int64_t i1, int64_t j0,
                    int64_t j1, void *work) {
    const int layout = p->layout;
    const int64_t nr = lowprec_gemm_layout_nr(layout), ku = lowprec_gemm_layout_ku(layout);
    const int64_t kp = round_up(p->k, ku);
    const int64_t panel_elems = nr * kp;
    int32_t cbuf[Q_MR * Q_NR] __attribute__((aligned(64)));
    void (*pipe)(const lowprec_gemm_u8s8_args *, const int32_t *, int64_t, int64_t, int64_t,
                 int64_t, int64_t) = lowprec_gemm_pipeline_generic;
#if LOWPREC_BUILD_AVX2
    if (p->isa == LOWPREC_ISA_AVX2) pipe = lowprec_gemm_pipeline_avx2;
    if (p->isa == LOWPREC_ISA_AVX512VNNI) pipe = lowprec_gemm_pipeline_avx512vnni;
#endif

    if (layout == LOWPREC_GEMM_LAYOUT_Q4X32) {
        void (*ukr)(int64_t, const uint8_t *, ptrdiff_t, const int8_t *, int32_t *, int) =
            lowprec_gemm_u8s8s32_generic_8x32;
#if LOWPREC_BUILD_AVX2
        if (p->isa == LOWPREC_ISA_AVX512VNNI) ukr = lowprec_gemm_u8s8s32_avx512vnni_8x32;
#endif
        const int8_t *bp = (const int8_t *)p->bp;
        int64_t jf = j0; /* first column left to the loop below */
#if LOWPREC_BUILD_AVX2
        /* the float32 UINT8/INT8 pipeline (checksums and fault injection taken in it): full
         * panels with the pipeline inside the next block's micro-kernel call */
        if (p->isa == LOWPREC_ISA_AVX512VNNI && p->q_cl && p->out_kind >= LOWPREC_GEMM_OUT_UINT8) {
            lowprec_gemm_tile_q8_avx512vnni(p, i0, i1, j0, j1, bp, panel_elems);
            jf = j0 + (j1 - j0) / Q_NR * Q_NR;
        }
#endif
        for (int64_t j = jf; j < j1; j += Q_NR) {
            const int8_t *panel = bp + (j / Q_NR) * panel_elems;
            const int64_t n = (j1 - j < Q_NR) ? j1 - j : Q_NR;
            void (*uk)(int64_t, const uint8_t *, ptrdiff_t, const int8_t *, int32_t *, int) = ukr;
#if LOWPREC_BUILD_AVX2
            if (n <= 16 && p->isa == LOWPREC_ISA_AVX512VNNI) uk = lowprec_gemm_u8s8s32_avx512vnni_8x16;
#endif
            for (int64_t i = i0; i < i1; i += Q_MR) {
                const int m = (int)((i1 - i < Q_MR) ? i1 - i : Q_MR);
                uk(p->k, p->a + i * p->lda, p->lda, panel, cbuf, m);
                if (p->inj_target) lowprec_gemm_inject(p, cbuf, Q_NR, i, m, j, n, LOWPREC_GEMM_INJ_ACC);
                pipe(p, cbuf, Q_NR, i, m, j, n);
                if (p->inj_target) lowprec_gemm_inject(p, cbuf, Q_NR, i, m, j, n, LOWPREC_GEMM_INJ_OUT);
            }
        }
        return 0;
    }

    /* P2x16: widen the tile's rows of A to uint16, zero padded to kp. */
    void (*ukr)(int64_t, const uint16_t *, ptrdiff_t, const int16_t *, int32_t *, int) =
        lowprec_gemm_u8s8s32_generic_6x16;
#if LOWPREC_BUILD_AVX2
    if (p->isa == LOWPREC_ISA_AVX2) ukr = lowprec_gemm_u8s8s32_avx2_6x16;
#endif
    const int64_t rows = i1 - i0;
    uint16_t *aw = (uint16_t *)work;
    if (!aw) aw = (uint16_t *)malloc((size_t)(rows * kp + 16) * sizeof(uint16_t));
    if (!aw) return -1;
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *src = p->a + (i0 + r) * p->lda;
        uint16_t *dst = aw + r * kp;
        for (int64_t kk = 0; kk < p->k; kk++) dst[kk] = src[kk];
        for (int64_t kk = p->k; kk < kp; kk++) dst[kk] = 0;
    }
    const int16_t *bp = (const int16_t *)p->bp;
    for (int64_t j = j0; j < j1; j += P_NR) {
        const int16_t *panel = bp + (j / P_NR) * panel_elems;
        const int64_t n = (j1 - j < P_NR) ? j1 - j : P_NR;
        for (int64_t i = i0; i < i1; i += P_MR) {
            const int m = (int)((i1 - i < P_MR) ? i1 - i : P_MR);
            ukr(kp / 2, aw + (i - i0) * kp, kp, panel, cbuf, m);
            if (p->inj_target) lowprec_gemm_inject(p, cbuf, P_NR, i, m, j, n, LOWPREC_GEMM_INJ_ACC);
            pipe(p, cbuf, P_NR, i, m, j, n);
            if (p->inj_target) lowprec_gemm_inject(p, cbuf, P_NR, i, m, j, n, LOWPREC_GEMM_INJ_OUT);
        }
    }
    if (aw != work) free(aw);
    return 0;
}
