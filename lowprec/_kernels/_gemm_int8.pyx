# Exact int8 GEMM kernels: the thin Cython layer between lowprec/gemm.py and src/gemm_int8*.c.
#
# Arguments are validated in gemm.py; the checks here only keep a direct caller from reading or
# writing out of bounds.  Parallelism: the output is cut into tiles (lowprec_gemm_u8s8_plan) and
# OpenMP threads compute whole tiles over the full K (lowprec_gemm_sched: each thread its own range
# of tiles first, then the others' leftovers, one tile at a time): every
# output element is computed by one thread in a fixed order, so results never depend on the
# thread count.  One thread: no parallel region at all.

from cython.parallel cimport prange, threadid
from ._openmp_helpers cimport lowprec_fork_guard, lowprec_region_threads
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset
from libc.math cimport INFINITY
cimport numpy as cnp

cnp.import_array()
lowprec_fork_guard()  # forked children run parallel regions on one thread


cdef extern from "gemm_int8.h":
    int LOWPREC_GEMM_LAYOUT_Q4X32, LOWPREC_GEMM_LAYOUT_P2X16
    int LOWPREC_GEMM_OUT_INT32, LOWPREC_GEMM_OUT_FLOAT32, LOWPREC_GEMM_OUT_UINT8, LOWPREC_GEMM_OUT_INT8
    ctypedef struct lowprec_gemm_u8s8_args:
        const uint8_t *a
        Py_ssize_t lda
        int64_t m, n, k
        const void *bp
        int layout
        void *out
        Py_ssize_t ldo
        int out_kind
        const int32_t *coloff
        const int32_t *rowsum
        const int32_t *bzp
        const double *mult
        int mult_per_channel
        const double *bias
        int32_t y_zp, lo, hi
        int relu
        int isa
        int64_t mc, nc, tiles_m, tiles_n
        uint32_t *chk_part
        uint8_t *chk_flags
        const void *chk_w
        uint32_t *chk_rhs
        const int32_t *chk_r
        int inj_target, inj_bit
        int64_t inj_i, inj_j
        const int32_t *q_cl
        const int32_t *q_ch
        const float *q_m32
        const float *q_bm32
        float q_thresh
    int lowprec_gemm_requant_f32_setup(int64_t n, const double *mult, int mult_per_channel,
                                       const double *bias, int32_t y_zp, int32_t lo, int32_t hi,
                                       int32_t *cl, int32_t *ch, float *m32, float *bm32,
                                       float *thresh) noexcept nogil
    int LOWPREC_GEMM_INJ_ACC, LOWPREC_GEMM_INJ_OUT, LOWPREC_GEMM_INJ_ACT
    int LOWPREC_GEMM_MAX_THREADS
    ctypedef struct lowprec_gemm_sched:
        int nt
    void lowprec_gemm_sched_init(lowprec_gemm_sched *s, int64_t n_tiles, int nt) noexcept nogil
    int64_t lowprec_gemm_sched_next(lowprec_gemm_sched *s, int tid) noexcept nogil
    int64_t lowprec_gemm_check_w_size(const lowprec_gemm_u8s8_args *p) noexcept nogil
    void lowprec_gemm_check_w_prepare(const lowprec_gemm_u8s8_args *p, const int32_t *wsum,
                                      void *dst) noexcept nogil
    void lowprec_gemm_check_rhs(const lowprec_gemm_u8s8_args *p, int64_t i0,
                                int64_t i1) noexcept nogil
    void lowprec_gemm_check_finish(const lowprec_gemm_u8s8_args *p) noexcept nogil
    int lowprec_gemm_layout_for_isa(int isa) noexcept nogil
    int64_t lowprec_gemm_layout_nr(int layout) noexcept nogil
    int64_t lowprec_gemm_layout_ku(int layout) noexcept nogil
    int64_t lowprec_gemm_layout_elem_size(int layout) noexcept nogil
    int64_t lowprec_gemm_packed_size(int layout, int64_t n, int64_t k) noexcept nogil
    void lowprec_gemm_pack_b_s8(const int8_t *w, Py_ssize_t ldw, int64_t n, int64_t k,
                                int layout, void *dst) noexcept nogil
    void lowprec_gemm_u8s8_plan(lowprec_gemm_u8s8_args *p, int n_threads) noexcept nogil
    int64_t lowprec_gemm_u8s8_work_size(const lowprec_gemm_u8s8_args *p) noexcept nogil
    int lowprec_gemm_u8s8_tile(const lowprec_gemm_u8s8_args *p, int64_t t, void *work) noexcept nogil
    void lowprec_quantize_u8_f32_generic(const float *x, int64_t n, float inv_scale, int32_t zp,
                                         uint8_t *q) noexcept nogil
    void lowprec_quantize_u8_f32_avx2(const float *x, int64_t n, float inv_scale, int32_t zp,
                                      uint8_t *q) noexcept nogil
    void lowprec_s8_to_u8(const int8_t *x, int64_t n, uint8_t *q) noexcept nogil
    int lowprec_minmax_f32_generic(const float *x, Py_ssize_t ldx, int64_t m, int64_t k,
                                   float *mn, float *mx) noexcept nogil
    int lowprec_minmax_f32_avx2(const float *x, Py_ssize_t ldx, int64_t m, int64_t k,
                                float *mn, float *mx) noexcept nogil
    void lowprec_choose_qparams_u8(float mn, float mx, float *scale, int32_t *zp) noexcept nogil

LAYOUT_Q4X32 = LOWPREC_GEMM_LAYOUT_Q4X32
LAYOUT_P2X16 = LOWPREC_GEMM_LAYOUT_P2X16
OUT_INT32 = LOWPREC_GEMM_OUT_INT32
OUT_FLOAT32 = LOWPREC_GEMM_OUT_FLOAT32
OUT_UINT8 = LOWPREC_GEMM_OUT_UINT8
OUT_INT8 = LOWPREC_GEMM_OUT_INT8
INJ_ACC = LOWPREC_GEMM_INJ_ACC
INJ_OUT = LOWPREC_GEMM_INJ_OUT
INJ_ACT = LOWPREC_GEMM_INJ_ACT

#: Micro-kernel names per ISA level (for show_config-like reports and the docs).
KERNELS = {
    0: "lowprec_gemm_u8s8s32_generic_8x32",
    1: "lowprec_gemm_u8s8s32_avx2_6x16",
    2: "lowprec_gemm_u8s8s32_avx512vnni_8x32",
}

cdef int _isa = 0


#: The best ISA level this module implements; lowprec._dispatch never sets a higher one.
BEST_ISA = 2


def _set_isa(int level):
    """Run the kernels of ISA ``level`` (0 generic, 1 AVX2, 2 AVX-512); set by lowprec._dispatch."""
    global _isa
    _isa = level


def _get_isa():
    return _isa


def layout_for_isa(int isa):
    return lowprec_gemm_layout_for_isa(isa)


def layout_info(int layout):
    """(panel width NR, k unit, bytes per element) of a packed-B layout."""
    if layout not in (LOWPREC_GEMM_LAYOUT_Q4X32, LOWPREC_GEMM_LAYOUT_P2X16):
        raise ValueError(f"unknown layout {layout}")
    return (lowprec_gemm_layout_nr(layout), lowprec_gemm_layout_ku(layout),
            lowprec_gemm_layout_elem_size(layout))


def packed_size(int layout, int64_t n, int64_t k):
    layout_info(layout)
    return lowprec_gemm_packed_size(layout, n, k)


def pack_b(const int8_t[:, ::1] w, int layout, uint8_t[::1] dst):
    """Pack ``w`` (n x k, the weight; B = w.T) into ``dst`` (packed_size bytes)."""
    cdef int64_t n = w.shape[0], k = w.shape[1]
    if dst.shape[0] != packed_size(layout, n, k):
        raise ValueError("dst has the wrong size")
    if dst.shape[0] == 0:
        return
    with nogil:
        lowprec_gemm_pack_b_s8(&w[0, 0], w.strides[0], n, k, layout, &dst[0])


def gemm_u8s8(const uint8_t[:, :] a, const uint8_t[::1] bp, int layout, int64_t n, int64_t k,
              uint8_t[:, ::1] out, int out_kind,
              const int32_t[::1] coloff, const int32_t[::1] rowsum, const int32_t[::1] bzp,
              const double[::1] mult, const double[::1] bias,
              int y_zp=0, int lo=0, int hi=255, bint relu=False, int n_threads=1, int isa=-1):
    """out = pipeline(a @ B) for B packed in ``bp`` (layout ``layout``) on ISA ``isa``.

    ``out`` is the (m, n) output viewed as bytes (m, n * itemsize).
    """
    cdef lowprec_gemm_u8s8_args p
    cdef int64_t m = a.shape[0], t, n_tiles
    cdef int err = 0, nt
    cdef int64_t esize
    memset(&p, 0, sizeof(p))
    if isa < 0:
        isa = _isa
    if layout != lowprec_gemm_layout_for_isa(isa):
        raise ValueError("packed layout does not match the ISA")
    if a.shape[1] != k:
        raise ValueError("a has the wrong number of columns")
    if k > 0 and m > 0 and a.strides[1] != 1:
        raise ValueError("a needs a unit column stride")
    if bp.shape[0] != lowprec_gemm_packed_size(layout, n, k):
        raise ValueError("packed B has the wrong size")
    if out_kind == LOWPREC_GEMM_OUT_INT32 or out_kind == LOWPREC_GEMM_OUT_FLOAT32:
        esize = 4
    elif out_kind == LOWPREC_GEMM_OUT_UINT8 or out_kind == LOWPREC_GEMM_OUT_INT8:
        esize = 1
    else:
        raise ValueError("unknown out_kind")
    if out.shape[0] != m or out.shape[1] != n * esize:
        raise ValueError("out has the wrong shape")
    if coloff is not None and coloff.shape[0] != n:
        raise ValueError("coloff has the wrong length")
    if bzp is not None and (bzp.shape[0] != n or rowsum is None or rowsum.shape[0] != m):
        raise ValueError("bzp / rowsum have the wrong length")
    if out_kind != LOWPREC_GEMM_OUT_INT32:
        if mult is None or (mult.shape[0] != n and mult.shape[0] != 1):
            raise ValueError("mult has the wrong length")
    if bias is not None and bias.shape[0] != n:
        raise ValueError("bias has the wrong length")
    if m == 0 or n == 0:
        return
    p.a = &a[0, 0] if k > 0 else NULL
    p.lda = a.strides[0]
    p.m = m
    p.n = n
    p.k = k
    p.bp = &bp[0] if bp.shape[0] > 0 else NULL
    p.layout = layout
    p.out = &out[0, 0]
    p.ldo = n
    p.out_kind = out_kind
    p.coloff = &coloff[0] if coloff is not None else NULL
    p.rowsum = &rowsum[0] if bzp is not None else NULL
    p.bzp = &bzp[0] if bzp is not None else NULL
    p.mult = &mult[0] if mult is not None else NULL
    p.mult_per_channel = 1 if (mult is not None and mult.shape[0] == n and n > 1) else 0
    p.bias = &bias[0] if bias is not None else NULL
    p.y_zp = y_zp
    p.lo = lo
    p.hi = hi
    p.relu = relu
    p.isa = isa
    nt = max(1, n_threads)
    with nogil:
        err = _run_tiles(&p, nt, NULL, NULL)
    if err:
        raise MemoryError("int8 GEMM: could not allocate a tile buffer")


cdef class GemmConsts:
    """The per-weight, per-parameter part of a product's arguments, validated once and cached
    with the packed weight (packed B, column corrections, multipliers, bias terms): a call then
    only passes A and out (saves ~4 us of argument parsing per call)."""
    cdef object keep
    cdef const uint8_t *bp
    cdef int layout
    cdef int64_t n, k
    cdef const int32_t *coloff
    cdef const int32_t *bzp
    cdef const double *mult
    cdef int mult_per_channel
    cdef const double *bias
    cdef readonly int out_kind
    cdef readonly bint needs_rowsum


def make_consts(const uint8_t[::1] bp, int layout, int64_t n, int64_t k, int out_kind,
                const int32_t[::1] coloff, const int32_t[::1] bzp, const double[::1] mult,
                const double[::1] bias, keep):
    """A GemmConsts for gemm_run (``keep``: the arrays behind the pointers, kept alive)."""
    cdef GemmConsts c = GemmConsts.__new__(GemmConsts)
    layout_info(layout)
    if bp.shape[0] != lowprec_gemm_packed_size(layout, n, k):
        raise ValueError("packed B has the wrong size")
    if out_kind not in (LOWPREC_GEMM_OUT_INT32, LOWPREC_GEMM_OUT_FLOAT32, LOWPREC_GEMM_OUT_UINT8,
                        LOWPREC_GEMM_OUT_INT8):
        raise ValueError("unknown out_kind")
    if coloff is not None and coloff.shape[0] != n:
        raise ValueError("coloff has the wrong length")
    if bzp is not None and bzp.shape[0] != n:
        raise ValueError("bzp has the wrong length")
    if out_kind != LOWPREC_GEMM_OUT_INT32:
        if mult is None or (mult.shape[0] != n and mult.shape[0] != 1):
            raise ValueError("mult has the wrong length")
    if bias is not None and bias.shape[0] != n:
        raise ValueError("bias has the wrong length")
    c.keep = keep
    c.bp = &bp[0] if bp.shape[0] > 0 else NULL
    c.layout = layout
    c.n = n
    c.k = k
    c.out_kind = out_kind
    c.coloff = &coloff[0] if coloff is not None else NULL
    c.bzp = &bzp[0] if bzp is not None else NULL
    c.needs_rowsum = bzp is not None
    c.mult = &mult[0] if mult is not None else NULL
    c.mult_per_channel = 1 if (mult is not None and mult.shape[0] == n and n > 1) else 0
    c.bias = &bias[0] if bias is not None else NULL
    return c


cdef class FastEntry:
    """What qmatmul_fast needs besides A and out, cached with the weight by gemm.qmatmul after
    its full validation of one combination of arguments (the key, see gemm._fast_key)."""
    cdef GemmConsts c
    cdef int32_t y_zp, lo, hi
    cdef bint relu
    cdef object descr
    cdef int typenum, esize
    cdef object wsum
    cdef object chk_r
    cdef const int32_t *wsum_p
    # the right-hand sides' weights as the ISA's kernel reads them (AVX-512: digit planes),
    # prepared once here instead of once per call; NULL: _run_tiles prepares them
    cdef void *chk_w
    cdef int chk_w_isa
    cdef const int32_t *chk_r_p
    # the float32 requantization (lowprec_gemm_requant_f32_setup), q_cl NULL when off
    cdef int32_t *q_cl
    cdef int32_t *q_ch
    cdef float *q_m32
    cdef float *q_bm32
    cdef float q_thresh

    def __dealloc__(self):
        free(self.chk_w)
        free(self.q_cl)
        free(self.q_ch)
        free(self.q_m32)
        free(self.q_bm32)

    @property
    def f32_requant(self):
        """Whether the float32 form of the requantization is proven exact for these arguments."""
        return self.q_cl != NULL


def make_fast_entry(GemmConsts c, int y_zp, int lo, int hi, bint relu, descr,
                    const int32_t[::1] wsum, const int32_t[::1] chk_r):
    """A FastEntry for the validated arguments of one qmatmul call (``descr``: the output
    dtype; ``wsum`` / ``chk_r``: the weight's soft-error checksums)."""
    cdef FastEntry e = FastEntry.__new__(FastEntry)
    if wsum.shape[0] != c.k or chk_r.shape[0] != c.n:
        raise ValueError("wsum / chk_r have the wrong length")
    e.c = c
    e.y_zp = y_zp
    e.lo = lo
    e.hi = hi
    e.relu = relu
    e.descr = descr
    e.typenum = descr.num
    e.esize = 1 if c.out_kind >= LOWPREC_GEMM_OUT_UINT8 else 4
    e.wsum = wsum
    e.chk_r = chk_r
    e.wsum_p = &wsum[0] if c.k > 0 else NULL
    cdef lowprec_gemm_u8s8_args pa
    cdef int64_t cw
    memset(&pa, 0, sizeof(pa))
    pa.isa = _isa  # the ISA of the fast key this entry is cached under
    e.chk_w_isa = _isa
    pa.k = c.k
    cw = lowprec_gemm_check_w_size(&pa)
    if cw > 0:
        e.chk_w = malloc(<size_t>cw)
        if e.chk_w != NULL:
            lowprec_gemm_check_w_prepare(&pa, e.wsum_p, e.chk_w)
    e.chk_r_p = &chk_r[0] if c.n > 0 else NULL
    if c.out_kind >= LOWPREC_GEMM_OUT_UINT8 and c.mult != NULL and c.n > 0:
        e.q_cl = <int32_t *>malloc(<size_t>(c.n * 4))
        e.q_ch = <int32_t *>malloc(<size_t>(c.n * 4))
        e.q_m32 = <float *>malloc(<size_t>(c.n * 4))
        e.q_bm32 = <float *>malloc(<size_t>(c.n * 4))
        if (e.q_cl == NULL or e.q_ch == NULL or e.q_m32 == NULL or e.q_bm32 == NULL
                or not lowprec_gemm_requant_f32_setup(c.n, c.mult, c.mult_per_channel, c.bias,
                                                      y_zp, lo, hi, e.q_cl, e.q_ch, e.q_m32,
                                                      e.q_bm32, &e.q_thresh)):
            free(e.q_cl)
            free(e.q_ch)
            free(e.q_m32)
            free(e.q_bm32)
            e.q_cl = e.q_ch = NULL
            e.q_m32 = e.q_bm32 = NULL
    return e


cdef object _DESCR_U8 = cnp.dtype("uint8")
cdef int64_t _FAST_MIN_MACS = 1 << 19  # = gemm._MIN_MACS_PER_THREAD


def _requant_f32_bounds(const double[::1] mult, const double[::1] bias, int y_zp, int lo,
                        int hi):
    """(cl, ch, ok) of lowprec_gemm_requant_f32_setup for per-channel mult and bias (tests)."""
    import numpy as np
    cdef int64_t n = mult.shape[0]
    cl = np.zeros(n, np.int32)
    ch = np.zeros(n, np.int32)
    m32 = np.zeros(n, np.float32)
    bm32 = np.zeros(n, np.float32)
    cdef int32_t[::1] clv = cl, chv = ch
    cdef float[::1] mv = m32, bv = bm32
    cdef float t = 0
    ok = lowprec_gemm_requant_f32_setup(n, &mult[0], 1, &bias[0], y_zp, lo, hi, &clv[0],
                                        &chv[0], &mv[0], &bv[0], &t)
    return cl, ch, bool(ok)


cdef int _fast_threads(object n_threads, int64_t work) except? -2:
    """The fast paths' thread count: ``n_threads`` (a positive int) or lowprec's default for
    enough work, at most one thread per _FAST_MIN_MACS; -1 for any other ``n_threads`` (the
    validating path then names the problem)."""
    cdef int64_t nt
    if n_threads is None:
        nt = 1
        if work >= 2 * _FAST_MIN_MACS:
            from lowprec._threads import get_num_threads
            nt = get_num_threads()
    elif type(n_threads) is int and n_threads >= 1:
        nt = n_threads
    else:
        return -1
    return <int>max(1, min(nt, work // _FAST_MIN_MACS))


def qmatmul_fast(FastEntry e, a, out, n_threads, int check, inject=None):
    """The common case of gemm.qmatmul without its Python-level checks (~4 us per call).

    ``e`` was built after a full validation of the other arguments; this checks only ``a``
    (a NumPy uint8 matrix with unit column stride and K >= 2 columns, at least one row), ``out``
    (None or an exactly matching C-contiguous, writeable array that does not overlap ``a``) and
    ``n_threads`` (None or an int >= 1), and returns None when any of them is not the common
    case: gemm.qmatmul then takes its general path (which validates and raises as usual).
    ``check``: 0 off (returns ``out``), 1 / 2 soft-error checks (returns ``(out, flags, bad)``:
    ``flags`` a bool array of m entries, ``bad`` whether any is set).  ``inject``: None, or
    ``(target, i, j, bit)`` for the fault-injection hook (with checks only; as gemm_run).
    """
    cdef GemmConsts c = e.c
    cdef cnp.ndarray aa, oo
    cdef cnp.ndarray flags = None
    cdef lowprec_gemm_u8s8_args p
    cdef int64_t m, k = c.k, n = c.n, i, j, nt
    cdef cnp.npy_intp dims[2]
    cdef char *a_lo
    cdef char *a_hi
    cdef char *o_lo
    cdef int32_t *rowsum = NULL
    cdef uint8_t *codes = NULL
    cdef const uint8_t *ar
    cdef uint32_t s
    cdef int err = 0, bad = 0
    if type(a) is not cnp.ndarray:
        return None
    aa = <cnp.ndarray>a
    if (cnp.PyArray_NDIM(aa) != 2 or <object>cnp.PyArray_DESCR(aa) is not _DESCR_U8
            or k < 2 or n < 1 or cnp.PyArray_DIM(aa, 1) != k or cnp.PyArray_STRIDE(aa, 1) != 1):
        return None
    m = cnp.PyArray_DIM(aa, 0)
    if m < 1:
        return None
    a_lo = <char *>cnp.PyArray_DATA(aa)
    a_hi = a_lo + (m - 1) * cnp.PyArray_STRIDE(aa, 0)
    if a_hi < a_lo:
        a_lo, a_hi = a_hi, a_lo
    a_hi += k
    if out is None:
        dims[0] = m
        dims[1] = n
        oo = cnp.PyArray_EMPTY(2, dims, e.typenum, 0)
    else:
        if type(out) is not cnp.ndarray:
            return None
        oo = <cnp.ndarray>out
        if (cnp.PyArray_NDIM(oo) != 2 or <object>cnp.PyArray_DESCR(oo) is not e.descr
                or cnp.PyArray_DIM(oo, 0) != m or cnp.PyArray_DIM(oo, 1) != n
                or not cnp.PyArray_IS_C_CONTIGUOUS(oo) or not cnp.PyArray_ISWRITEABLE(oo)):
            return None
        o_lo = <char *>cnp.PyArray_DATA(oo)
        if o_lo < a_hi and a_lo < o_lo + m * n * e.esize:
            return None  # overlaps a: the general path raises
    nt = _fast_threads(n_threads, m * n * k)
    if nt < 0:
        return None
    cdef int inj_target = 0, inj_bit = 0
    cdef int64_t inj_i = 0, inj_j = 0
    if inject is not None:
        inj_target, inj_i, inj_j, inj_bit = inject
        if not check or not (0 <= inj_i < m and 0 <= inj_j < (k if inj_target == 3 else n)
                             and 0 <= inj_bit < 32):
            return None  # the general path validates (and raises)
    if check:
        dims[0] = m
        flags = cnp.PyArray_ZEROS(1, dims, cnp.NPY_BOOL, 0)
        codes = <uint8_t *>cnp.PyArray_DATA(flags)
    memset(&p, 0, sizeof(p))
    p.a = <const uint8_t *>cnp.PyArray_DATA(aa)
    p.lda = cnp.PyArray_STRIDE(aa, 0)
    p.m = m
    p.n = n
    p.k = k
    p.bp = c.bp
    p.layout = c.layout
    p.out = cnp.PyArray_DATA(oo)
    p.ldo = n
    p.out_kind = c.out_kind
    p.coloff = c.coloff
    p.bzp = c.bzp
    p.mult = c.mult
    p.mult_per_channel = c.mult_per_channel
    p.bias = c.bias
    p.y_zp = e.y_zp
    p.lo = e.lo
    p.hi = e.hi
    p.relu = e.relu
    p.isa = _isa
    p.chk_r = e.chk_r_p if check else NULL
    p.q_cl = e.q_cl
    p.q_ch = e.q_ch
    p.q_m32 = e.q_m32
    p.q_bm32 = e.q_bm32
    p.q_thresh = e.q_thresh
    p.inj_target = inj_target
    p.inj_i = inj_i
    p.inj_j = inj_j
    p.inj_bit = inj_bit
    with nogil:
        if c.needs_rowsum:
            rowsum = <int32_t *>malloc(<size_t>(m * 4))
            if rowsum == NULL:
                err = 1
            else:
                for i in range(m):
                    ar = p.a + i * p.lda
                    s = 0
                    for j in range(k):
                        s = s + ar[j]
                    rowsum[i] = <int32_t>s
                p.rowsum = rowsum
        if not err:
            err = _run_tiles(&p, <int>nt, e.wsum_p, codes, check != 0,
                             e.chk_w if e.chk_w_isa == p.isa else NULL)
        free(rowsum)
        if codes != NULL and not err:
            for i in range(m):
                if codes[i]:
                    codes[i] = 1  # the bool flag (the kernel's code says which check failed)
                    bad = 1
    if err:
        raise MemoryError("int8 GEMM: out of memory")
    if check:
        return oo, flags, bool(bad)
    return oo


def gemm_run(GemmConsts c, const uint8_t[:, :] a, uint8_t[:, ::1] out, const int32_t[::1] rowsum,
             int y_zp, int lo, int hi, bint relu, int n_threads, int isa,
             const int32_t[::1] wsum=None, uint8_t[::1] flags=None,
             const int32_t[::1] chk_r=None, int inj_target=0,
             int64_t inj_i=0, int64_t inj_j=0, int inj_bit=0):
    """out = pipeline(a @ B) with the constants of ``c`` (``out`` viewed as bytes).

    With ``wsum`` (the weight's column checksum, K int32) and ``flags`` (m uint8) the soft-error
    checks run (docs/soft_errors.md) and ``flags[i]`` gets 1 (accumulator identity failed) |
    2 (stored output differs from what the pipeline emitted).  ``inj_*``: the fault-injection
    hook (lowprec.faults; INJ_ACT writes into ``a``, so pass a private copy).
    """
    cdef lowprec_gemm_u8s8_args p
    cdef int64_t m = a.shape[0], esize
    cdef int err = 0
    memset(&p, 0, sizeof(p))
    if (wsum is None) != (flags is None):
        raise ValueError("wsum and flags go together")
    if wsum is not None and (wsum.shape[0] != c.k or flags.shape[0] != m):
        raise ValueError("wsum / flags have the wrong length")
    if chk_r is not None and chk_r.shape[0] != c.n:
        raise ValueError("chk_r has the wrong length")
    if inj_target and not (0 <= inj_i < m and 0 <= inj_j < (c.k if inj_target == 3 else c.n)
                           and 0 <= inj_bit < 32):
        raise ValueError("injection position out of range")
    if c.layout != lowprec_gemm_layout_for_isa(isa):
        raise ValueError("packed layout does not match the ISA")
    if a.shape[1] != c.k:
        raise ValueError("a has the wrong number of columns")
    if c.k > 0 and m > 0 and a.strides[1] != 1:
        raise ValueError("a needs a unit column stride")
    esize = 1 if c.out_kind >= LOWPREC_GEMM_OUT_UINT8 else 4
    if out.shape[0] != m or out.shape[1] != c.n * esize:
        raise ValueError("out has the wrong shape")
    if c.needs_rowsum and (rowsum is None or rowsum.shape[0] != m):
        raise ValueError("rowsum has the wrong length")
    if m == 0 or c.n == 0:
        return
    p.a = &a[0, 0] if c.k > 0 else NULL
    p.lda = a.strides[0]
    p.m = m
    p.n = c.n
    p.k = c.k
    p.bp = c.bp
    p.layout = c.layout
    p.out = &out[0, 0]
    p.ldo = c.n
    p.out_kind = c.out_kind
    p.coloff = c.coloff
    p.rowsum = &rowsum[0] if c.needs_rowsum else NULL
    p.bzp = c.bzp
    p.mult = c.mult
    p.mult_per_channel = c.mult_per_channel
    p.bias = c.bias
    p.y_zp = y_zp
    p.lo = lo
    p.hi = hi
    p.relu = relu
    p.isa = isa
    cdef bint check = wsum is not None
    cdef const int32_t *wsum_p = &wsum[0] if check and c.k > 0 else NULL
    cdef uint8_t *flags_p = &flags[0] if check else NULL
    p.chk_r = &chk_r[0] if chk_r is not None and c.n > 0 else NULL
    p.inj_target = inj_target
    p.inj_i = inj_i
    p.inj_j = inj_j
    p.inj_bit = inj_bit
    with nogil:
        err = _run_tiles(&p, max(1, n_threads), wsum_p, flags_p, check)
    if err:
        raise MemoryError("int8 GEMM: could not allocate a tile buffer")


#: Rows per chunk of the soft-error check's right-hand sides (units of parallel work).
cdef int64_t _RHS_ROWS = 16


cdef int _run_tiles(lowprec_gemm_u8s8_args *p, int nt, const int32_t *wsum=NULL,
                    uint8_t *flags=NULL, bint check=False,
                    const void *chk_w=NULL) noexcept nogil:
    """Plan and run every tile of ``p`` on ``nt`` threads (serially, with no parallel region,
    when nt == 1).  Returns the number of tiles that failed to allocate memory.

    ``check``: soft-error checks into ``flags`` (m bytes), all in the tiles' one parallel
    region: each thread checks each tile it computed right after it (its slots on its own
    stack: output identity and the tile's part of the row checksum), then, after its tiles,
    takes chunks of rows of the right-hand sides sum_k A[i,k] * wsum[k] (its own, then the
    others' leftovers: lowprec_gemm_sched); after the region, the row totals against the
    right-hand sides (lowprec_gemm_check_finish, O(m * tiles_n)).  Chunks after the tiles, not
    before: A is then in the cache of both cores (every tile reads all its rows of A; before,
    the chunks paid the cold misses that the tiles pay anyway with the check off), and a
    thread done with its tiles early takes the other's chunks (at (64, 512, 512) on two
    threads the caller's thread used to finish ~1 us after the other).  ``chk_w``: the
    right-hand sides' weights prepared for p.isa (lowprec_gemm_check_w_prepare), or NULL to
    prepare them here."""
    cdef int64_t t, n_tiles, ws, m = p.m, inj_off = 0, n_rc = 0, c, cw, r1
    cdef int err = 0, tid
    cdef char *work = NULL
    cdef char *cbuf = NULL
    cdef uint8_t *amut = NULL
    cdef lowprec_gemm_sched *sched = NULL
    lowprec_gemm_u8s8_plan(p, nt)
    n_tiles = p.tiles_m * p.tiles_n
    if check:
        # one buffer: the rhs weights (AVX-512 digit planes), chk_part (tiles_n x m), rhs (m)
        cw = 0 if chk_w != NULL else (lowprec_gemm_check_w_size(p) + 63) // 64 * 64
        cbuf = <char *>malloc(<size_t>(cw + (m * p.tiles_n + m) * 4 + 64))
        if cbuf == NULL:
            return 1
        if chk_w != NULL:
            p.chk_w = chk_w
        elif cw > 0:
            lowprec_gemm_check_w_prepare(p, wsum, cbuf)
            p.chk_w = cbuf
        else:
            p.chk_w = wsum
        p.chk_part = <uint32_t *>(cbuf + cw)
        p.chk_rhs = p.chk_part + m * p.tiles_n
        p.chk_flags = flags
        memset(flags, 0, <size_t>m)
        n_rc = (m + _RHS_ROWS - 1) // _RHS_ROWS
    if p.inj_target == LOWPREC_GEMM_INJ_ACT and p.k > 0:
        # the fault-injection hook: a flip in A after the right-hand sides were taken (here,
        # all of them first) and restored after the tiles
        if check:
            lowprec_gemm_check_rhs(p, 0, m)
            n_rc = 0
        inj_off = p.inj_i * p.lda + p.inj_j
        amut = <uint8_t *>p.a
        amut[inj_off] ^= <uint8_t>(1 << (p.inj_bit & 7))
    if nt > n_tiles:
        nt = <int>n_tiles
    ws = lowprec_gemm_u8s8_work_size(p)
    ws = (ws + 63) // 64 * 64
    if ws > 0:
        work = <char *>malloc(<size_t>(ws * nt + 64))
        # NULL: each tile allocates its own buffer (and reports failure itself)
    if nt > LOWPREC_GEMM_MAX_THREADS:
        nt = LOWPREC_GEMM_MAX_THREADS
    if nt > 1:
        # each thread its own tiles first, then the others' leftovers (lowprec_gemm_sched: B
        # stays in the same core's L2 between calls, and a thread that the OS runs late on a
        # loaded machine still leaves its tiles to the others); the same for the chunks of
        # the check's right-hand sides (sched[1]), taken after the tiles
        sched = <lowprec_gemm_sched *>malloc(2 * sizeof(lowprec_gemm_sched))
        if sched == NULL:
            err = 1
        else:
            lowprec_gemm_sched_init(sched, n_tiles, nt)
            lowprec_gemm_sched_init(sched + 1, n_rc, nt)
            for tid in prange(nt, num_threads=lowprec_region_threads(nt), schedule='static', chunksize=1):
                t = lowprec_gemm_sched_next(sched, tid)
                while t >= 0:
                    err += lowprec_gemm_u8s8_tile(p, t, (work + tid * ws) if work != NULL else NULL) != 0
                    t = lowprec_gemm_sched_next(sched, tid)
                c = lowprec_gemm_sched_next(sched + 1, tid)
                while c >= 0:
                    r1 = (c + 1) * _RHS_ROWS
                    lowprec_gemm_check_rhs(p, c * _RHS_ROWS, r1 if r1 < m else m)
                    c = lowprec_gemm_sched_next(sched + 1, tid)
            free(sched)
    else:
        for t in range(n_tiles):
            err += lowprec_gemm_u8s8_tile(p, t, work) != 0
        if n_rc > 0:
            lowprec_gemm_check_rhs(p, 0, m)
    free(work)
    if p.inj_target == LOWPREC_GEMM_INJ_ACT and p.k > 0:
        amut[inj_off] ^= <uint8_t>(1 << (p.inj_bit & 7))
    if check:
        if not err:
            lowprec_gemm_check_finish(p)
        free(cbuf)
        p.chk_part = NULL
        p.chk_flags = NULL
        p.chk_w = NULL
        p.chk_rhs = NULL
    return err


#: Elements of x below which the dynamic min/max and quantize passes stay serial.
cdef int64_t _PAR_MIN_ELEMS = 1 << 17


cdef struct _LinearArgs:
    const float *x
    Py_ssize_t ldx  # elements
    int64_t m, k, n
    const uint8_t *bp
    int layout
    float *out  # m x n, contiguous
    uint8_t *qbuf  # m x k, rows ldq bytes apart
    Py_ssize_t ldq
    const int32_t *colsum
    const int32_t *bzp
    const float *wscale
    bint wscale_per_channel
    const float *bias
    bint relu
    int nt, isa
    bint check
    const int32_t *wsum
    uint8_t *flags
    const int32_t *chk_r
    float a_s  # results
    int32_t a_zp


def linear_f32(const float[:, :] x, const uint8_t[::1] bp, int layout, int64_t n,
               float[:, ::1] out, uint8_t[:, ::1] qbuf, const int32_t[::1] colsum,
               const int32_t[::1] bzp, const float[::1] wscale, const float[::1] bias,
               bint relu=False, int n_threads=1, int isa=-1, const int32_t[::1] wsum=None,
               uint8_t[::1] flags=None, const int32_t[::1] chk_r=None):
    """Dynamic linear: out = fl32(a_s*w_s[j]*corr + bias[j]), x quantized on the fly.

    One pass for min/max of ``x`` (parallel over row blocks when large), PyTorch's
    ChooseQuantizationParams in C, one quantize pass into ``qbuf`` (m x k uint8 scratch), the
    corrections and multipliers in C, then the exact GEMM, all on the same ``n_threads`` team
    (no parallel region at all on one thread).  Returns ``(a_scale, a_zero_point)``; raises
    ValueError (before ``out`` is written) when ``x`` holds NaN or infinity.
    """
    cdef _LinearArgs L
    cdef int64_t m = x.shape[0], k = x.shape[1]
    cdef int res
    memset(&L, 0, sizeof(L))
    if isa < 0:
        isa = _isa
    if (wsum is None) != (flags is None):
        raise ValueError("wsum and flags go together")
    if wsum is not None and (wsum.shape[0] != k or flags.shape[0] != m):
        raise ValueError("wsum / flags have the wrong length")
    if chk_r is not None and chk_r.shape[0] != n:
        raise ValueError("chk_r has the wrong length")
    if layout != lowprec_gemm_layout_for_isa(isa):
        raise ValueError("packed layout does not match the ISA")
    if bp.shape[0] != lowprec_gemm_packed_size(layout, n, k):
        raise ValueError("packed B has the wrong size")
    if out.shape[0] != m or out.shape[1] != n or qbuf.shape[0] != m or qbuf.shape[1] != k:
        raise ValueError("out / qbuf have the wrong shape")
    if colsum.shape[0] != n or wscale.shape[0] not in (1, n):
        raise ValueError("colsum / wscale have the wrong length")
    if bzp is not None and bzp.shape[0] != n:
        raise ValueError("bzp has the wrong length")
    if bias is not None and bias.shape[0] != n:
        raise ValueError("bias has the wrong length")
    if m > 0 and k > 1 and x.strides[1] != 4:
        raise ValueError("x needs a unit column stride")
    L.check = wsum is not None
    L.wsum = &wsum[0] if L.check and k > 0 else NULL
    L.flags = &flags[0] if L.check and m > 0 else NULL
    L.chk_r = &chk_r[0] if chk_r is not None and n > 0 else NULL
    L.x = &x[0, 0] if m > 0 and k > 0 else NULL
    L.ldx = x.strides[0] // 4 if m > 0 else 0
    L.m = m
    L.k = k
    L.n = n
    L.bp = &bp[0] if bp.shape[0] > 0 else NULL
    L.layout = layout
    L.out = &out[0, 0] if m > 0 and n > 0 else NULL
    L.qbuf = &qbuf[0, 0] if m > 0 and k > 0 else NULL
    L.ldq = qbuf.strides[0]
    L.colsum = &colsum[0] if n > 0 else NULL
    L.bzp = &bzp[0] if bzp is not None else NULL
    L.wscale = &wscale[0]
    L.wscale_per_channel = wscale.shape[0] > 1
    L.bias = &bias[0] if bias is not None else NULL
    L.relu = relu
    L.nt = max(1, n_threads)
    L.isa = isa
    with nogil:
        res = _linear_run(&L)
    if res == 1:
        raise ValueError("x must be finite (NaN or inf found)")
    if res:
        raise MemoryError("int8 GEMM: out of memory")
    return float(L.a_s), int(L.a_zp)


cdef class LinearEntry:
    """The weight's part of a dynamic linear call (gemm.linear's fast path), cached with the
    weight after gemm.linear validated it once for the ISA in use and ``relu``."""
    cdef object keep
    cdef const uint8_t *bp
    cdef int layout
    cdef int64_t n, k
    cdef const int32_t *colsum
    cdef const int32_t *bzp
    cdef const float *wscale
    cdef bint wscale_per_channel
    cdef const float *bias
    cdef bint relu
    cdef const int32_t *wsum
    cdef const int32_t *chk_r


def make_linear_entry(const uint8_t[::1] bp, int layout, int64_t n, int64_t k,
                      const int32_t[::1] colsum, const int32_t[::1] bzp, const float[::1] wscale,
                      const float[::1] bias, bint relu, const int32_t[::1] wsum,
                      const int32_t[::1] chk_r, keep):
    """A LinearEntry (``keep``: the arrays behind the pointers, kept alive)."""
    cdef LinearEntry e = LinearEntry.__new__(LinearEntry)
    layout_info(layout)
    if (bp.shape[0] != lowprec_gemm_packed_size(layout, n, k) or colsum.shape[0] != n
            or wscale.shape[0] not in (1, n) or (bzp is not None and bzp.shape[0] != n)
            or (bias is not None and bias.shape[0] != n) or wsum.shape[0] != k
            or chk_r.shape[0] != n):
        raise ValueError("inconsistent weight arrays")
    e.keep = keep
    e.bp = &bp[0] if bp.shape[0] > 0 else NULL
    e.layout = layout
    e.n = n
    e.k = k
    e.colsum = &colsum[0] if n > 0 else NULL
    e.bzp = &bzp[0] if bzp is not None else NULL
    e.wscale = &wscale[0]
    e.wscale_per_channel = wscale.shape[0] > 1
    e.bias = &bias[0] if bias is not None else NULL
    e.relu = relu
    e.wsum = &wsum[0] if k > 0 else NULL
    e.chk_r = &chk_r[0] if n > 0 else NULL
    return e


cdef object _DESCR_F32 = cnp.dtype("float32")


def linear_fast(LinearEntry e, x, out, n_threads, int check):
    """The common case of gemm.linear without its Python-level checks: ``x`` a NumPy float32
    matrix (unit column stride, K >= 2, at least one row), ``out`` None or an exactly matching
    C-contiguous writeable float32 array not overlapping ``x``, ``n_threads`` None or an
    int >= 1.  Returns None otherwise (gemm.linear then takes its general path), else ``out``
    (check 0) or ``(out, flags, bad)`` as qmatmul_fast.  A non-finite ``x`` raises ValueError
    before ``out`` is written, as linear_f32."""
    cdef _LinearArgs L
    cdef cnp.ndarray xx, oo
    cdef cnp.ndarray flags = None
    cdef cnp.npy_intp dims[2]
    cdef int64_t m, k = e.k, n = e.n, nt, i
    cdef char *x_lo
    cdef char *x_hi
    cdef char *o_lo
    cdef int res, bad = 0
    if type(x) is not cnp.ndarray:
        return None
    xx = <cnp.ndarray>x
    if (cnp.PyArray_NDIM(xx) != 2 or <object>cnp.PyArray_DESCR(xx) is not _DESCR_F32
            or k < 2 or n < 1 or cnp.PyArray_DIM(xx, 1) != k or cnp.PyArray_STRIDE(xx, 1) != 4
            or cnp.PyArray_STRIDE(xx, 0) % 4 != 0):
        return None
    m = cnp.PyArray_DIM(xx, 0)
    if m < 1:
        return None
    x_lo = <char *>cnp.PyArray_DATA(xx)
    x_hi = x_lo + (m - 1) * cnp.PyArray_STRIDE(xx, 0)
    if x_hi < x_lo:
        x_lo, x_hi = x_hi, x_lo
    x_hi += 4 * k
    dims[0] = m
    dims[1] = n
    if out is None:
        oo = cnp.PyArray_EMPTY(2, dims, cnp.NPY_FLOAT32, 0)
    else:
        if type(out) is not cnp.ndarray:
            return None
        oo = <cnp.ndarray>out
        if (cnp.PyArray_NDIM(oo) != 2 or <object>cnp.PyArray_DESCR(oo) is not _DESCR_F32
                or cnp.PyArray_DIM(oo, 0) != m or cnp.PyArray_DIM(oo, 1) != n
                or not cnp.PyArray_IS_C_CONTIGUOUS(oo) or not cnp.PyArray_ISWRITEABLE(oo)):
            return None
        o_lo = <char *>cnp.PyArray_DATA(oo)
        if o_lo < x_hi and x_lo < o_lo + m * n * 4:
            return None
    nt = _fast_threads(n_threads, m * n * k)
    if nt < 0:
        return None
    if check:
        dims[0] = m
        flags = cnp.PyArray_ZEROS(1, dims, cnp.NPY_BOOL, 0)
    memset(&L, 0, sizeof(L))
    L.check = check != 0
    L.wsum = e.wsum if check else NULL
    L.flags = <uint8_t *>cnp.PyArray_DATA(flags) if check else NULL
    L.chk_r = e.chk_r if check else NULL
    L.x = <const float *>cnp.PyArray_DATA(xx)
    L.ldx = cnp.PyArray_STRIDE(xx, 0) // 4
    L.m = m
    L.k = k
    L.n = n
    L.bp = e.bp
    L.layout = e.layout
    L.out = <float *>cnp.PyArray_DATA(oo)
    L.colsum = e.colsum
    L.bzp = e.bzp
    L.wscale = e.wscale
    L.wscale_per_channel = e.wscale_per_channel
    L.bias = e.bias
    L.relu = e.relu
    L.nt = nt
    L.isa = _isa
    with nogil:
        L.qbuf = <uint8_t *>malloc(<size_t>(m * k))
        L.ldq = k
        if L.qbuf == NULL:
            res = 2
        else:
            res = _linear_run(&L)
        free(L.qbuf)
        if check and res == 0:
            for i in range(m):
                if L.flags[i]:
                    L.flags[i] = 1  # the bool flag (the kernel's code says which check failed)
                    bad = 1
    if res == 1:
        raise ValueError("x must be finite (NaN or inf found)")
    if res:
        raise MemoryError("int8 GEMM: out of memory")
    if check:
        return oo, flags, bool(bad)
    return oo


cdef int _linear_run(_LinearArgs *L) noexcept nogil:
    """linear_f32's work on validated pointers: 0, 1 (x not finite; out untouched) or 2 (out of
    memory)."""
    cdef lowprec_gemm_u8s8_args p
    cdef int64_t m = L.m, k = L.k, n = L.n, i, j, c, n_chunks, rows_per
    cdef int nt = L.nt, bad = 0, use_avx2 = L.isa >= 1, err = 0
    cdef float mn = INFINITY, mx = -INFINITY, a_s = 0.1, inv
    cdef int32_t a_zp = 0
    cdef float cmn[64]
    cdef float cmx[64]
    cdef int cbad[64]
    cdef int32_t *coloff = NULL
    cdef int32_t *rowsum = NULL
    cdef double *mult = NULL
    cdef double *bias64 = NULL
    cdef uint32_t s
    cdef const uint8_t *qr
    memset(&p, 0, sizeof(p))
    if nt > 64:
        nt = 64
    # 1. min / max (row blocks; a fixed order per block and an order-free merge)
    if m > 0 and k > 0:
        if nt > 1 and m >= nt and m * k >= _PAR_MIN_ELEMS:
            n_chunks = nt
            rows_per = (m + n_chunks - 1) // n_chunks
            for c in prange(n_chunks, num_threads=lowprec_region_threads(nt), schedule='static'):
                cmn[c] = INFINITY
                cmx[c] = -INFINITY
                cbad[c] = 0
                if c * rows_per < m:
                    cbad[c] = _minmax(use_avx2, L.x + c * rows_per * L.ldx, L.ldx,
                                      min(rows_per, m - c * rows_per), k, &cmn[c], &cmx[c])
            for c in range(n_chunks):
                bad |= cbad[c]
                mn = cmn[c] if cmn[c] < mn else mn
                mx = cmx[c] if cmx[c] > mx else mx
        else:
            bad = _minmax(use_avx2, L.x, L.ldx, m, k, &mn, &mx)
    else:
        mn = 0.0
        mx = 0.0
    if bad:
        return 1
    lowprec_choose_qparams_u8(mn, mx, &a_s, &a_zp)
    L.a_s = a_s
    L.a_zp = a_zp
    inv = 1.0 / a_s
    # 2. quantize (FMA rule of torch's dynamic linear)
    if m > 0 and k > 0:
        if nt > 1 and m >= nt and m * k >= _PAR_MIN_ELEMS:
            for i in prange(m, num_threads=lowprec_region_threads(nt), schedule='static'):
                _quantize_row(use_avx2, L.x + i * L.ldx, k, inv, a_zp, L.qbuf + i * L.ldq)
        else:
            for i in range(m):
                _quantize_row(use_avx2, L.x + i * L.ldx, k, inv, a_zp, L.qbuf + i * L.ldq)
    # 3. corrections and multipliers: corr = acc + coloff[j] - rowsum[i] * bzp[j]
    coloff = <int32_t *>malloc(<size_t>(n * 4 + 4))
    mult = <double *>malloc(<size_t>(n * 8 + 8))
    if L.bias != NULL:
        bias64 = <double *>malloc(<size_t>(n * 8 + 8))
    if L.bzp != NULL:
        rowsum = <int32_t *>malloc(<size_t>(m * 4 + 4))
    if coloff == NULL or mult == NULL or (L.bias != NULL and bias64 == NULL) or (
            L.bzp != NULL and rowsum == NULL):
        err = 2
    else:
        for j in range(n):
            s = <uint32_t>0 - <uint32_t>a_zp * <uint32_t>L.colsum[j]
            if L.bzp != NULL:
                s = s + <uint32_t>k * <uint32_t>a_zp * <uint32_t>L.bzp[j]
            coloff[j] = <int32_t>s
            mult[j] = <double>a_s * <double>(L.wscale[j] if L.wscale_per_channel else L.wscale[0])
            if L.bias != NULL:
                bias64[j] = <double>L.bias[j]
        if L.bzp != NULL:
            for i in range(m):
                s = 0
                qr = L.qbuf + i * L.ldq
                for j in range(k):
                    s = s + qr[j]
                rowsum[i] = <int32_t>s
        if m > 0 and n > 0:
            p.a = L.qbuf if k > 0 else NULL
            p.lda = L.ldq
            p.m = m
            p.n = n
            p.k = k
            p.bp = L.bp
            p.layout = L.layout
            p.out = L.out
            p.ldo = n
            p.out_kind = LOWPREC_GEMM_OUT_FLOAT32
            p.coloff = coloff
            p.rowsum = rowsum
            p.bzp = L.bzp
            p.mult = mult
            p.mult_per_channel = 1
            p.bias = bias64
            p.y_zp = 0
            p.lo = 0
            p.hi = 0
            p.relu = L.relu
            p.isa = L.isa
            p.chk_r = L.chk_r
            if _run_tiles(&p, nt, L.wsum, L.flags, L.check):
                err = 2
    free(coloff)
    free(mult)
    free(bias64)
    free(rowsum)
    return err


cdef inline int _minmax(int use_avx2, const float *x, Py_ssize_t ldx, int64_t m, int64_t k,
                        float *mn, float *mx) noexcept nogil:
    if use_avx2:
        return lowprec_minmax_f32_avx2(x, ldx, m, k, mn, mx)
    return lowprec_minmax_f32_generic(x, ldx, m, k, mn, mx)


cdef inline void _quantize_row(int use_avx2, const float *x, int64_t k, float inv, int32_t zp,
                               uint8_t *q) noexcept nogil:
    if use_avx2:
        lowprec_quantize_u8_f32_avx2(x, k, inv, zp, q)
    else:
        lowprec_quantize_u8_f32_generic(x, k, inv, zp, q)


def choose_qparams_u8(float mn, float mx):
    """The C twin of lowprec.quantization.choose_qparams (uint8, per tensor) from (min, max)."""
    cdef float s
    cdef int32_t z
    lowprec_choose_qparams_u8(mn, mx, &s, &z)
    return float(s), int(z)


def minmax_f32(const float[:, :] x, int isa=-1):
    """(min, max, nonfinite) of a 2-D float32 array with a unit column stride."""
    cdef float mn = INFINITY, mx = -INFINITY
    cdef int bad = 0
    if isa < 0:
        isa = _isa
    if x.shape[0] > 0 and x.shape[1] > 0:
        if x.shape[1] > 1 and x.strides[1] != 4:
            raise ValueError("x needs a unit column stride")
        bad = _minmax(isa >= 1, &x[0, 0], x.strides[0] // 4, x.shape[0], x.shape[1], &mn, &mx)
    return float(mn), float(mx), bool(bad)


def quantize_u8(const float[:, :] x, uint8_t[:, ::1] q, float inv_scale, int zp, int n_threads=1,
                int isa=-1):
    """q = clamp(rint(fma(x, inv_scale, zp)), 0, 255) row by row (torch's dynamic rule)."""
    cdef Py_ssize_t m = x.shape[0], k = x.shape[1], i
    if q.shape[0] != m or q.shape[1] != k:
        raise ValueError("q has the wrong shape")
    if m == 0 or k == 0:
        return
    if x.strides[1] != 4:
        raise ValueError("x needs a unit column stride")
    if isa < 0:
        isa = _isa
    cdef int use_avx2 = isa >= 1
    cdef int nt = max(1, min(n_threads, m))
    with nogil:
        for i in prange(m, num_threads=lowprec_region_threads(nt), schedule='static'):
            if use_avx2:
                lowprec_quantize_u8_f32_avx2(&x[i, 0], k, inv_scale, zp, &q[i, 0])
            else:
                lowprec_quantize_u8_f32_generic(&x[i, 0], k, inv_scale, zp, &q[i, 0])


def s8_to_u8(const int8_t[:, :] x, uint8_t[:, ::1] q):
    """q = x + 128 (as uint8), row by row."""
    cdef Py_ssize_t m = x.shape[0], k = x.shape[1], i
    if q.shape[0] != m or q.shape[1] != k:
        raise ValueError("q has the wrong shape")
    if m == 0 or k == 0:
        return
    if x.strides[1] != 1:
        raise ValueError("x needs a unit column stride")
    with nogil:
        for i in range(m):
            lowprec_s8_to_u8(&x[i, 0], k, &q[i, 0])
