# What _gemm_bf16.pyx and _gemm_int4.pyx share: the argument block of src/gemm_f32acc.h, the
# checks that keep a direct caller in bounds, and the tile loop (plan, then tiles over the output,
# each computed by one thread over the full K; dynamic schedule, one tile at a time).

from cython.parallel cimport prange
from ._openmp_helpers cimport lowprec_region_threads
from libc.stdint cimport int64_t

cdef extern from "gemm_f32acc.h":
    ctypedef struct lp_f32acc_args:
        const float *a
        int64_t lda
        int64_t m, n, k
        const void *bp
        const float *scales
        const float *zeros
        int64_t group
        const float *asum
        const float *bias
        float *out
        int64_t ldo
        int isa
        int64_t mc, nc, tiles_m, tiles_n
        int64_t kc
        int64_t panel_bytes, k_bytes

ctypedef void (*lp_plan_fn)(lp_f32acc_args *p, int n_threads) noexcept nogil
ctypedef int (*lp_tile_fn)(const lp_f32acc_args *p, int64_t t) noexcept nogil


cdef inline bint prepare(lp_f32acc_args *p, const void *a, Py_ssize_t a_row_stride,
                         Py_ssize_t a_col_stride, Py_ssize_t a_itemsize, int64_t m, int64_t k,
                         const void *bp, int64_t n, float[:, ::1] out, const float[::1] bias,
                         int isa) except -1:
    """Check ``out``, ``bias`` and the activation strides (ValueError) and fill ``p`` for a
    product without scales (int4 sets scales / zeros / group after); False when the output is
    empty (nothing to run).  ``a`` / ``bp``: first element, or NULL when there is none."""
    if out.shape[0] != m or out.shape[1] != n:
        raise ValueError("out has the wrong shape")
    if bias is not None and bias.shape[0] != n:
        raise ValueError("bias has the wrong length")
    if m > 0 and k > 1 and a_col_stride != a_itemsize:
        raise ValueError("a needs a unit column stride")
    if m == 0 or n == 0:
        return False
    p.a = <const float *>a
    p.lda = a_row_stride // a_itemsize
    p.m = m
    p.n = n
    p.k = k
    p.bp = bp
    p.scales = NULL
    p.zeros = NULL
    p.group = 1
    p.asum = NULL
    p.bias = &bias[0] if bias is not None else NULL
    p.out = &out[0, 0]
    p.ldo = out.strides[0] // 4
    p.isa = isa
    p.panel_bytes = 0  # set by the bf16 plan (prefetch of the K-blocked path)
    p.k_bytes = 0
    return True


cdef inline int run_tiles(lp_f32acc_args *p, lp_plan_fn plan, lp_tile_fn tile,
                          int nt) noexcept nogil:
    """Plan, then run every tile (``nt`` threads at most); the number of failed tiles."""
    cdef int64_t t, n_tiles
    cdef int err = 0
    plan(p, nt)
    n_tiles = p.tiles_m * p.tiles_n
    if nt > n_tiles:
        nt = <int>n_tiles
    if nt > 1:
        for t in prange(n_tiles, num_threads=lowprec_region_threads(nt), schedule='dynamic',
                       chunksize=1):
            err += tile(p, t)
    else:
        for t in range(n_tiles):
            err += tile(p, t)
    return err
