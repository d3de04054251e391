# EmbeddingBag kernels: the thin Cython layer.
#
# The C kernels (src/embedding*.c) pool a range of bags serially.  Here the bags are cut into
# chunks of about equal work (indices + bags, from the offsets prefix: a few long bags do not
# unbalance the threads) and the chunks are taken dynamically by the OpenMP threads.  Each bag
# is computed by exactly one thread with the same code, so the output does not depend on the
# thread count or the schedule.  Before any kernel runs, a serial pre-pass checks every index
# (and the mapping entries they select): a bad index raises IndexError with `out` untouched.
# Arguments are validated by lowprec/embedding.py before they get here.

from cython.parallel cimport prange
from libc.stdint cimport int32_t, int64_t, uint8_t

from ._openmp_helpers cimport lowprec_omp_max_threads  # noqa: F401  (keeps the shim linked)

import numpy as np

cdef extern from "embedding.h" nogil:
    ctypedef struct lowprec_eb_args:
        const uint8_t *table
        int64_t row_stride
        int64_t n_rows
        int64_t dim
        int fmt
        int mode
        const void *indices
        int idx64
        int64_t n_indices
        const int64_t *offsets
        int64_t n_bags
        const float *weights
        const int32_t *mapping
        int64_t n_mapping
        int64_t padding_idx
        uint8_t *out
        int64_t out_stride
        int out_fmt
    void lowprec_embedding_bags_generic(const lowprec_eb_args *a, int64_t b0, int64_t b1)
    void lowprec_embedding_bags_avx2(const lowprec_eb_args *a, int64_t b0, int64_t b1)
    void lowprec_embedding_bags_avx512(const lowprec_eb_args *a, int64_t b0, int64_t b1)
    int64_t lowprec_embedding_check_generic(const lowprec_eb_args *a)
    int64_t lowprec_embedding_check_avx512(const lowprec_eb_args *a)
    void lowprec_embedding_partition(const int64_t *offsets, int64_t n_bags, int64_t n_chunks,
                                     int64_t *bounds)

# 0 = portable C, 1 = AVX2 (+FMA +F16C), 2 = AVX-512 F/BW/VL/DQ (sum / mean without weights,
# mapping or padding; the other cases run the AVX2 kernel).
cdef int _isa = 0

FMT_F32, FMT_F16, FMT_BF16, FMT_Q8, FMT_Q4, FMT_Q2 = range(6)
OUT_F32, OUT_F16, OUT_BF16 = range(3)
MODE_SUM, MODE_MEAN, MODE_MAX = range(3)


#: The best ISA level this module implements; lowprec._dispatch never sets a higher one.
BEST_ISA = 2


def _set_isa(int level):
    """Run the kernels of ISA ``level`` (0 generic, 1 AVX2, 2 AVX-512); set by lowprec._dispatch."""
    global _isa
    _isa = level


def _get_isa():
    return _isa


cdef inline void _run(int isa, const lowprec_eb_args *a, int64_t b0, int64_t b1) noexcept nogil:
    if isa == 2:
        lowprec_embedding_bags_avx512(a, b0, b1)
    elif isa == 1:
        lowprec_embedding_bags_avx2(a, b0, b1)
    else:
        lowprec_embedding_bags_generic(a, b0, b1)


def partition(const int64_t[::1] offsets, int64_t n_chunks):
    """Bag boundaries of ``n_chunks`` chunks of about equal work (tests, benchmarks)."""
    cdef int64_t n_bags = offsets.shape[0] - 1
    bounds = np.empty(n_chunks + 1, dtype=np.int64)
    cdef int64_t[::1] b = bounds
    lowprec_embedding_partition(&offsets[0], n_bags, n_chunks, &b[0])
    return bounds


def pool(const uint8_t[:, :] table, int64_t n_rows, int64_t dim, int fmt, int mode,
         const uint8_t[::1] indices, int idx64, const int64_t[::1] offsets,
         const float[::1] weights, const int32_t[::1] mapping, int64_t padding_idx,
         uint8_t[:, :] out, int out_fmt, int n_threads, bint check=True,
         int64_t chunks_per_thread=4):
    """Pool every bag into ``out`` (a byte view of the output rows).

    ``table``: a byte view of the rows (row stride = its first stride; rows contiguous);
    ``indices``: a byte view of the int32 (``idx64=0``) or int64 indices; ``offsets``: int64,
    n_bags + 1 entries; ``weights`` / ``mapping`` may be None.  With ``check``, every index is
    checked first.  Returns -1 after pooling, or the position of the first bad index (then
    nothing was written).
    """
    cdef lowprec_eb_args a
    if (table.shape[1] > 1 and table.strides[1] != 1) or (out.shape[1] > 1 and out.strides[1] != 1):
        raise ValueError("table and out rows must be contiguous")
    cdef int64_t n_bags = offsets.shape[0] - 1
    cdef int64_t esize = 8 if idx64 else 4
    a.table = &table[0, 0] if table.shape[0] > 0 else NULL
    a.row_stride = table.strides[0] if table.shape[0] > 0 else 0
    a.n_rows = n_rows
    a.dim = dim
    a.fmt = fmt
    a.mode = mode
    a.indices = <const void *>&indices[0] if indices.shape[0] > 0 else NULL
    a.idx64 = idx64
    a.n_indices = indices.shape[0] // esize
    a.offsets = &offsets[0]
    a.n_bags = n_bags
    a.weights = &weights[0] if weights is not None and weights.shape[0] > 0 else NULL
    a.mapping = &mapping[0] if mapping is not None and mapping.shape[0] > 0 else NULL
    a.n_mapping = mapping.shape[0] if mapping is not None else 0
    a.padding_idx = padding_idx
    a.out = &out[0, 0] if out.shape[0] > 0 and out.shape[1] > 0 else NULL
    a.out_stride = out.strides[0] if out.shape[0] > 0 else 0
    a.out_fmt = out_fmt
    if mapping is not None and a.mapping == NULL and a.n_indices > 0:
        return 0  # an empty mapping: every index is out of range
    cdef int64_t bad
    if check and a.n_indices > 0:
        with nogil:
            if _isa == 2:
                bad = lowprec_embedding_check_avx512(&a)
            else:
                bad = lowprec_embedding_check_generic(&a)
        if bad >= 0:
            return bad
    if n_bags == 0 or dim == 0:
        return -1
    cdef int isa = _isa
    cdef int64_t n_chunks, c
    cdef int64_t[::1] bounds
    if n_threads <= 1:
        with nogil:
            _run(isa, &a, 0, n_bags)
        return -1
    n_chunks = min(n_bags, n_threads * chunks_per_thread)
    bounds = partition(offsets, n_chunks)
    with nogil:
        for c in prange(n_chunks, num_threads=n_threads, schedule='dynamic'):
            _run(isa, &a, bounds[c], bounds[c + 1])
    return -1


def offsets_int64(offsets, int64_t n, bint include_last):
    """PyTorch-style ``offsets`` (int32 or int64, 1-D, contiguous) as the kernels' int64
    ``n_bags + 1`` bounds, validated in one pass: returns ``(bounds, status)`` with status 0 =
    valid, else 1 (a problem; the caller re-derives the exact error message)."""
    cdef const int64_t[::1] o64
    cdef const int32_t[::1] o32
    cdef int64_t m = offsets.shape[0], i, v, prev = 0
    cdef int64_t nb = m - 1 if include_last else m
    if nb < 0:
        return None, 1
    res = np.empty(nb + 1, dtype=np.int64)
    cdef int64_t[::1] r = res
    cdef int bad = 0
    if offsets.dtype == np.int64:
        o64 = offsets
        with nogil:
            for i in range(m):
                v = o64[i]
                bad |= (v < prev) | (v > n)
                prev = v
                r[i] = v
    else:
        o32 = offsets
        with nogil:
            for i in range(m):
                v = o32[i]
                bad |= (v < prev) | (v > n)
                prev = v
                r[i] = v
    if not include_last:
        r[nb] = n
    if m > 0 and r[0] != 0:
        bad = 1
    return res, bad
