# int4-weight products (group-wise quantized weights, float32 activations and accumulation):
# the thin Cython layer between lowprec/gemm_int4.py and src/gemm_int4*.c (driver:
# src/gemm_f32acc.h).  Same threading rules as _gemm_bf16.pyx (shared driver: _f32acc.pxd): tiles
# over the output, each computed by one thread over the full K; the kernel for a row depends on
# M and K only.

from cython.parallel cimport prange
from ._openmp_helpers cimport lowprec_fork_guard, lowprec_region_threads
from libc.stdint cimport int8_t, int64_t, uint8_t, uint32_t
from libc.stdlib cimport free, malloc

from ._f32acc cimport lp_f32acc_args, prepare, run_tiles


lowprec_fork_guard()  # forked children run parallel regions on one thread


cdef extern from "gemm_int4.h":
    void lowprec_int4_pack(const uint8_t *qv, const float *scale, const uint8_t *zp, int64_t n,
                           int64_t k, int64_t group, uint32_t *words, float *scales,
                           float *zeros) noexcept nogil
    void lowprec_int4_unpack(const uint32_t *words, int64_t n, int64_t k, uint8_t *qv) noexcept nogil
    void lowprec_int4_plan(lp_f32acc_args *p, int n_threads) noexcept nogil
    int lowprec_int4_tile(const lp_f32acc_args *p, int64_t t) noexcept nogil
    void lowprec_int4_group_sums(const float *a, int64_t lda, int64_t m, int64_t k, int64_t group,
                                 float *asum) noexcept nogil

    ctypedef struct lp_int4i8_args:
        const int8_t *aq
        const float *asc
        const float *asm_ "asm_"
        int64_t m, n, k, group
        const uint32_t *bp
        const float *scales
        const float *zeros
        const float *bias
        float *out
        int64_t ldo
        int isa
        int64_t mc, nc, tiles_m, tiles_n
    void lowprec_int4i8_quantize(const float *a, int64_t lda, int64_t m, int64_t k,
                                 int64_t group, int8_t *aq, float *asc, float *asm_,
                                 int isa) noexcept nogil
    void lowprec_int4i24_quantize(const float *a, int64_t lda, int64_t m, int64_t k,
                                  int64_t group, int8_t *aq, float *asc, float *asm_,
                                  int isa) noexcept nogil
    void lowprec_int4i24_combine(const float *y, int64_t m, int64_t n, const float *bias,
                                 float *out, int64_t ldo) noexcept nogil
    void lowprec_int4i8_plan(lp_int4i8_args *p, int n_threads) noexcept nogil
    void lowprec_int4i8_tile(const lp_int4i8_args *p, int64_t t) noexcept nogil
    int LP_I8_MAX_GROUP

KERNELS = {
    0: "lowprec_sgemm_generic_6x16 + int4 panel dequant / generic GEMV; int8 activations: generic",
    1: "lowprec_sgemm_avx2_6x16 + int4 shift dequant, avx2 GEMV m<=4; int8 activations: generic",
    2: "lowprec_sgemm_avx2_6x16 + int4 shift dequant, avx512 vpermps-decode GEMV m<=4; "
       "int8 activations: vpdpbusd 8x32 (int24: three int8 digit rows per row)",
}
NR = 16

cdef int _isa = 0


#: The best ISA level this module implements; lowprec._dispatch never sets a higher one.
BEST_ISA = 2


def _set_isa(int level):
    """Run the kernels of ISA ``level`` (0 generic, 1 AVX2, 2 AVX-512); set by lowprec._dispatch."""
    global _isa
    _isa = level


def _get_isa():
    return _isa


def sizes(int64_t n, int64_t k, int64_t group):
    """(uint32 words, floats per scale / zero array) of the kernel layout."""
    cdef int64_t np_ = (n + 15) // 16
    return np_ * (k // 8) * 16, np_ * (k // group) * 16


def pack(const uint8_t[:, ::1] qv, const float[:, ::1] scale, const uint8_t[:, ::1] zp,
         int64_t group, uint32_t[::1] words, float[::1] scales, float[::1] zeros):
    """Kernel layout from values ``qv`` (n x k, 0..15), ``scale`` / ``zp`` (n x k/group)."""
    cdef int64_t n = qv.shape[0], k = qv.shape[1]
    nw, ns = sizes(n, k, group)
    if k % group or group % 8 or scale.shape[0] != n or scale.shape[1] != k // group:
        raise ValueError("wrong sizes")
    if words.shape[0] != nw or scales.shape[0] != ns:
        raise ValueError("wrong output sizes")
    if (zeros is not None and zeros.shape[0] != ns) or (zp is not None and zeros is None):
        raise ValueError("wrong zero-point sizes")
    if zp is not None and (zp.shape[0] != n or zp.shape[1] != k // group):
        raise ValueError("wrong zero-point sizes")
    if nw == 0 or ns == 0:
        return
    with nogil:
        lowprec_int4_pack(&qv[0, 0], &scale[0, 0], &zp[0, 0] if zp is not None else NULL,
                          n, k, group, &words[0], &scales[0],
                          &zeros[0] if zeros is not None else NULL)


def unpack(const uint32_t[::1] words, int64_t n, int64_t k, uint8_t[:, ::1] qv):
    if words.shape[0] != (n + 15) // 16 * (k // 8) * 16 or qv.shape[0] != n or qv.shape[1] != k:
        raise ValueError("wrong sizes")
    if n == 0 or k == 0:
        return
    with nogil:
        lowprec_int4_unpack(&words[0], n, k, &qv[0, 0])


def gemm(const float[:, :] a, const uint32_t[::1] words, const float[::1] scales,
         const float[::1] zeros, int64_t group, int64_t n, float[:, ::1] out,
         const float[::1] bias, int n_threads=1, int isa=-1):
    """out = a @ dequantize(w).T (+ bias), float32 accumulation."""
    cdef lp_f32acc_args p
    cdef int64_t m = a.shape[0], k = a.shape[1]
    cdef int err = 0, nt = max(1, n_threads)
    cdef float *asum = NULL
    if isa < 0:
        isa = _isa
    if group <= 0 or group % 8 or k % group:
        raise ValueError("group must be a multiple of 8 that divides K")
    nw, ns = sizes(n, k, group)
    if words.shape[0] != nw or scales.shape[0] != ns or (zeros is not None and zeros.shape[0] != ns):
        raise ValueError("packed weight has the wrong size")
    if not prepare(&p, &a[0, 0] if (m > 0 and k > 0) else NULL, a.strides[0], a.strides[1], 4, m,
                   k, &words[0] if nw > 0 else NULL, n, out, bias, isa):
        return
    p.scales = &scales[0] if ns > 0 else NULL
    p.zeros = &zeros[0] if (zeros is not None and ns > 0) else NULL
    p.group = group
    with nogil:
        if p.zeros != NULL and m <= 4 and k > 0:
            asum = <float *>malloc(<size_t>(m * (k // group) * 4 + 4))
            if asum == NULL:
                err = 1
            else:
                lowprec_int4_group_sums(p.a, p.lda, m, k, group, asum)
                p.asum = asum
        if not err:
            err = run_tiles(&p, lowprec_int4_plan, lowprec_int4_tile, nt)
        free(asum)
    if err:
        raise MemoryError("int4 GEMM: could not allocate a buffer")


#: Largest group size of the int8-activation product (the per-group integers stay below 2^24).
I8_MAX_GROUP = LP_I8_MAX_GROUP


def gemm_i8(const float[:, :] a, const uint32_t[::1] words, const float[::1] scales,
            const float[::1] zeros, int64_t group, int64_t n, float[:, ::1] out,
            const float[::1] bias, int n_threads=1, int isa=-1, int digits=1):
    """out = a @ dequantize(w).T (+ bias) with activations quantized per row and group
    (src/gemm_int4.h: integer dot products per group, float32 rescale and accumulation):
    digits=1: int8; digits=3: 24-bit fixed point as three int8 digit rows (activations="int24")."""
    cdef lp_int4i8_args p
    cdef int64_t m = a.shape[0], k = a.shape[1], ng, lda, ch, nch, c, r0, r1, t, n_tiles, mq
    cdef int nt = max(1, n_threads)
    cdef int8_t *aq = NULL
    cdef float *asc = NULL
    cdef float *ytmp = NULL
    if digits != 1 and digits != 3:
        raise ValueError("digits must be 1 or 3")
    if isa < 0:
        isa = _isa
    if group <= 0 or group % 8 or k % group or group > LP_I8_MAX_GROUP:
        raise ValueError("group must be a multiple of 8 that divides K, at most %d"
                         % LP_I8_MAX_GROUP)
    nw, ns = sizes(n, k, group)
    if words.shape[0] != nw or scales.shape[0] != ns or (zeros is not None and zeros.shape[0] != ns):
        raise ValueError("packed weight has the wrong size")
    if out.shape[0] != m or out.shape[1] != n:
        raise ValueError("out has the wrong shape")
    if bias is not None and bias.shape[0] != n:
        raise ValueError("bias has the wrong length")
    if m > 0 and k > 1 and a.strides[1] != 4:
        raise ValueError("a needs a unit column stride")
    if m == 0 or n == 0:
        return
    ng = k // group
    lda = a.strides[0] // 4
    mq = digits * m  # int8 rows (one per digit)
    # rows interleaved in blocks of 8 (src/gemm_int4.h): the last block is padded
    aq = <int8_t *>malloc(<size_t>(((mq + 7) // 8) * 8 * k + 64))
    asc = <float *>malloc(<size_t>(2 * mq * ng * 4 + 4))
    if digits > 1:
        ytmp = <float *>malloc(<size_t>(mq * n * 4 + 4))
    if aq == NULL or asc == NULL or (digits > 1 and ytmp == NULL):
        free(aq)
        free(asc)
        free(ytmp)
        raise MemoryError("int4 GEMM: could not allocate the int8 activations")
    p.aq = aq
    p.asc = asc
    p.asm_ = asc + mq * ng
    p.m = mq
    p.n = n
    p.k = k
    p.group = group
    p.bp = &words[0] if nw > 0 else NULL
    p.scales = &scales[0] if ns > 0 else NULL
    p.zeros = &zeros[0] if (zeros is not None and ns > 0) else NULL
    p.bias = &bias[0] if bias is not None else NULL
    p.out = &out[0, 0]
    p.ldo = out.strides[0] // 4
    p.isa = isa
    cdef const float *pbias = p.bias
    if digits > 1:
        # the digit rows' partial products go to ytmp; combined (and the bias added) after
        p.bias = NULL
        p.out = ytmp
        p.ldo = n
    with nogil:
        if digits > 1:
            if k > 0:
                lowprec_int4i24_quantize(&a[0, 0], lda, m, k, group, aq, asc, asc + mq * ng, isa)
        elif k > 0:
            # rows in chunks of 64 (whole blocks of 8; each row's quantization is independent
            # of the split)
            ch = 64
            nch = (m + ch - 1) // ch
            if nt > 1 and nch > 1 and m * k >= (1 << 16):
                for c in prange(nch, num_threads=lowprec_region_threads(nt), schedule='static'):
                    r0 = c * ch
                    r1 = min(m, r0 + ch)
                    lowprec_int4i8_quantize(&a[r0, 0], lda, r1 - r0, k, group, aq + r0 * k,
                                            asc + r0 * ng, asc + m * ng + r0 * ng, isa)
            else:
                lowprec_int4i8_quantize(&a[0, 0], lda, m, k, group, aq, asc, asc + m * ng, isa)
        lowprec_int4i8_plan(&p, nt)
        n_tiles = p.tiles_m * p.tiles_n
        if nt > n_tiles:
            nt = <int>n_tiles
        if nt > 1:
            for t in prange(n_tiles, num_threads=lowprec_region_threads(nt), schedule='dynamic', chunksize=1):
                lowprec_int4i8_tile(&p, t)
        else:
            for t in range(n_tiles):
                lowprec_int4i8_tile(&p, t)
        if digits > 1:
            lowprec_int4i24_combine(ytmp, m, n, pbias, &out[0, 0], out.strides[0] // 4)
    free(aq)
    free(asc)
    free(ytmp)
