# EmbeddingBag kernels: the thin Cython layer.
#
# The C kernels (src/embedding*.c) pool a range of bags serially.  Here the bags are cut into
# chunks of about equal work (indices + bags, from the offsets prefix: a few long bags do not
# unbalance the threads) and the chunks are taken dynamically by the threads of one OpenMP
# region (or, opted into with LOWPREC_EB_TEAM=1, of a work-sharing team: src/embedding.c).  Each bag
# is computed by exactly one thread with the same code, so the output does not depend on the
# thread count or the schedule.  Before any kernel runs, a serial pre-pass checks every index
# (and the mapping entries they select): a bad index raises IndexError with `out` untouched.
# Arguments are validated by lowprec/embedding.py before they get here.

cimport numpy as cnp
from cython.parallel cimport parallel
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t
from libc.stdlib cimport free, malloc

from ._openmp_helpers cimport lowprec_omp_max_threads  # noqa: F401  (keeps the shim linked)
from ._openmp_helpers cimport lowprec_fork_guard, lowprec_region_threads

import os

import numpy as np

cnp.import_array()
lowprec_fork_guard()  # forked children run parallel regions on one thread

cdef extern from *:
    """
    /* The next chunk index of a parallel loop (a shared counter). */
    static inline int64_t lowprec_eb_next_chunk(int64_t *counter) {
        return __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
    }
    """
    int64_t lowprec_eb_next_chunk(int64_t *counter) nogil

cdef extern from *:
    """
    /* embedding.c: run fn(ctx, c) for every chunk c on up to n_threads threads (-1: busy or
     * unavailable, nothing was run). */
    int lowprec_eb_team_run(int n_threads, int64_t n_chunks, void (*fn)(void *, int64_t),
                            void *ctx);
    """
    int lowprec_eb_team_run(int n_threads, int64_t n_chunks,
                            void (*fn)(void *, int64_t) noexcept nogil, void *ctx) nogil

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
        const float *row_checks
        int64_t check_stride
        uint8_t *check_flags
        const uint8_t *row_nibbles
        int prefetch_l2
    void lowprec_embedding_bags_generic(const lowprec_eb_args *a, int64_t b0, int64_t b1)
    void lowprec_embedding_bags_avx2(const lowprec_eb_args *a, int64_t b0, int64_t b1)
    void lowprec_embedding_bags_avx512(const lowprec_eb_args *a, int64_t b0, int64_t b1)
    int64_t lowprec_embedding_check_generic(const lowprec_eb_args *a)
    int64_t lowprec_embedding_check_avx512(const lowprec_eb_args *a)
    void lowprec_embedding_partition(const int64_t *offsets, int64_t n_bags, int64_t n_chunks,
                                     int64_t *bounds)

cdef extern from "bag_check.h" nogil:
    void lowprec_bag_check(const lowprec_eb_args *a, int64_t bag_begin, int64_t bag_end,
                           uint8_t *flags)
    void lowprec_float_bag_check(const lowprec_eb_args *a, int64_t bag_begin, int64_t bag_end,
                                 const uint8_t *again, int64_t again_stride, uint8_t *flags)
# Bags pooled and then checked at a time by the soft-error check: the checksums the kernel
# prefetched for them and their output rows are still in L1/L2 when the check reads them.
cdef enum:
    CHECK_BAGS = 32

# 0 = portable C, 1 = AVX2 (+FMA +F16C), 2 = AVX-512 F/BW/VL/DQ (sum / mean without weights,
# mapping or padding; the other cases run the AVX2 kernel).
cdef int _isa = 0

# A table without rows still marks a float-table check (row_nibbles non-NULL).
cdef uint8_t _NO_ROWS = 0

FMT_F32, FMT_F16, FMT_BF16, FMT_Q8, FMT_Q4, FMT_Q2 = range(6)
OUT_F32, OUT_F16, OUT_BF16 = range(3)
MODE_SUM, MODE_MEAN, MODE_MAX = range(3)
cdef int MODE_MAX_C = 2


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


ctypedef struct _SoftCheck:
    uint8_t *flags
    int64_t inject_bag
    int64_t inject_byte
    int inject_bit


cdef void _run_checked(int isa, const lowprec_eb_args *a, int64_t b0, int64_t b1,
                       const _SoftCheck *sc) noexcept nogil:
    """Pool the bags [b0, b1) CHECK_BAGS at a time, each piece verified right after it is
    pooled, while its rows are still in cache."""
    cdef int64_t c0, c1
    if a.check_flags != NULL:  # verified inside the kernel (see pool)
        _run(isa, a, b0, b1)
        return
    # Float tables: each piece is pooled a second time into `again` (bag_check.h).
    cdef lowprec_eb_args twice
    cdef uint8_t *again = NULL
    cdef int64_t again_stride = (4 if a.out_fmt == 0 else 2) * a.dim
    if a.row_nibbles != NULL:
        again = <uint8_t *>malloc(<size_t>(CHECK_BAGS * again_stride + 1))
        if again == NULL:  # no memory for the check: every bag of the range fails it
            _run(isa, a, b0, b1)
            for c0 in range(b0, b1):
                sc.flags[c0] = 1
            return
        twice = a[0]
        twice.out = again
        twice.out_stride = again_stride
    c0 = b0
    while c0 < b1:
        c1 = min(c0 + CHECK_BAGS, b1)
        _run(isa, a, c0, c1)
        if c0 <= sc.inject_bag < c1:
            a.out[sc.inject_bag * a.out_stride + sc.inject_byte] ^= <uint8_t>(1 << sc.inject_bit)
        if again != NULL:
            # The kernel writes bag b at out + b * out_stride: offsets shifted to start at c0.
            twice.offsets = a.offsets + c0
            twice.n_bags = c1 - c0
            _run(isa, &twice, 0, c1 - c0)
            lowprec_float_bag_check(a, c0, c1, again, again_stride, sc.flags)
        else:
            lowprec_bag_check(a, c0, c1, sc.flags)
        c0 = c1
    free(again)


def pool(const uint8_t[:, :] table, int64_t n_rows, int64_t dim, int fmt, int mode,
         const uint8_t[::1] indices, int idx64, const int64_t[::1] offsets,
         const float[::1] weights, const int32_t[::1] mapping, int64_t padding_idx,
         uint8_t[:, :] out, int out_fmt, int n_threads, bint check=True,
         int64_t chunks_per_thread=4, const float[:, :] row_checks=None,
         uint8_t[::1] flags=None, int64_t inject_bag=-1, int64_t inject_byte=0,
         int inject_bit=0, const uint8_t[::1] row_nibbles=None):
    """Pool every bag into ``out`` (a byte view of the output rows).

    ``table``: a byte view of the rows (row stride = its first stride; rows contiguous);
    ``indices``: a byte view of the int32 (``idx64=0``) or int64 indices; ``offsets``: int64,
    n_bags + 1 entries; ``weights`` / ``mapping`` may be None.  With ``check``, every index is
    checked first.  Returns -1 after pooling, or the position of the first bad index (then
    nothing was written).

    Soft-error check: with ``row_checks`` ((sum, abs_sum) per stored row, pairs contiguous, any
    row stride: a separate array or the pairs stored after each row) every bag is verified
    right after it is pooled (src/bag_check.h) and ``flags[b]`` set to 1 when it fails.
    Float tables take ``row_nibbles`` instead (each row's byte sum mod 15, 4 bits per row, row
    2i in the low half of byte i: bag_check.h, "Float tables").
    ``inject_bag`` >= 0 (fault injection, tests): bit ``inject_bit`` of byte ``inject_byte`` of
    that bag's output row is flipped between its pooling and its check.
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
    cdef _SoftCheck sc
    a.row_checks = NULL
    a.check_stride = 0
    a.check_flags = NULL
    a.row_nibbles = NULL
    a.prefetch_l2 = _two_level(table.shape[0], a.row_stride)
    if row_checks is not None and row_nibbles is not None:
        raise ValueError("pass row_checks (quantized tables) or row_nibbles (float tables)")
    if row_nibbles is not None:
        if fmt > FMT_BF16:
            raise ValueError("row_nibbles check float tables")
        if (flags is None or flags.shape[0] != n_bags
                or row_nibbles.shape[0] != (table.shape[0] + 1) // 2):
            raise ValueError("row_nibbles needs 4 bits per row and flags one entry per bag")
        a.row_nibbles = &row_nibbles[0] if row_nibbles.shape[0] > 0 else &_NO_ROWS
    if row_checks is not None:
        if flags is None or flags.shape[0] != n_bags or row_checks.shape[0] != table.shape[0]:
            raise ValueError("row_checks needs one entry per row and flags one per bag")
        if row_checks.shape[1] != 2 or row_checks.strides[1] != 4 or row_checks.strides[0] % 4:
            raise ValueError("row_checks must hold contiguous, aligned float32 pairs")
        a.row_checks = &row_checks[0, 0] if row_checks.shape[0] > 0 else NULL
        a.check_stride = row_checks.strides[0]
    if row_checks is not None or row_nibbles is not None:
        if (_isa == 2 and mode != MODE_MAX_C and a.weights == NULL and mapping is None
                and padding_idx < 0 and 0 < dim <= 256 and inject_bag < 0 and n_bags > 0):
            # The AVX-512 kernel pools these bags in one pass: it verifies each bag itself,
            # right after storing it (nothing re-read from memory).
            a.check_flags = &flags[0]
        sc.flags = &flags[0] if n_bags > 0 else NULL
        sc.inject_bag = inject_bag
        sc.inject_byte = inject_byte
        sc.inject_bit = inject_bit
    return _pool_args(&a, n_threads, check, chunks_per_thread,
                      &sc if row_checks is not None or row_nibbles is not None else NULL)



cdef int64_t _check_args(const lowprec_eb_args *a) noexcept nogil:
    if _isa == 2:
        return lowprec_embedding_check_avx512(a)
    return lowprec_embedding_check_generic(a)


# 2+ thread calls run in an OpenMP region, the same thread pool as lowprec's GEMMs (and as
# PyTorch's when it shares the libgomp).  The work-sharing team (embedding.c) is opt-in,
# LOWPREC_EB_TEAM=1 (or _set_team, for A/B benchmarks): it spares a call the OpenMP end barrier
# when other processes oversubscribe the cores, but its helper is a thread of its own, and in a
# process that also runs OpenMP code the two pools spin against each other on the same cores.
# A DLRM-like loop (EmbeddingBag, then a 256 x 512 x 512 int8 GEMM, both at 2 threads, quiet
# host): EmbeddingBag 844-2027 us per call with the team against 349-352 us in the region for
# 1M x 128 8-bit rows, 2385-2490 against 818-1020 us for 1M x 64 fp32, and the GEMM after it
# 233-495 against 177-184 us (docs/embedding_bag.md).
cdef bint _use_team = os.environ.get("LOWPREC_EB_TEAM", "") == "1"


def _set_team(bint on):
    """Run 2+ thread calls on the work-sharing team (True) or an OpenMP region (False); returns
    the previous setting (to restore it)."""
    global _use_team
    cdef bint previous = _use_team
    _use_team = on
    return previous


# Two-level row prefetch of the AVX-512 and AVX2 kernels (embedding_avx512.c: far into L2, near
# into L1), chosen by lowprec.embedding at import (the CPU, LOWPREC_EB_PREFETCH).
cdef int _prefetch_l2 = 0


# Tables up to this size keep the L1-only prefetch: their rows come from L2 / L3, where the far
# prefetches only add instructions (fp32 D = 64, one process, alternating: 1000 and 4000 rows
# 14-32% slower with them, 16000 rows (4 MB) even, 64000 (16 MB) and more 1.4-2x faster).
cdef int64_t _TWO_LEVEL_MIN_TABLE_BYTES = 8 << 20


cdef inline int _two_level(int64_t n_rows, int64_t row_stride) noexcept:
    """Whether a lookup in a table of ``n_rows`` rows ``row_stride`` bytes apart prefetches its
    rows in two levels."""
    if row_stride < 0:
        row_stride = -row_stride
    return _prefetch_l2 and n_rows * row_stride > _TWO_LEVEL_MIN_TABLE_BYTES


def _set_prefetch_l2(bint on):
    """Prefetch rows in two levels (True) or into L1 only (False); returns the previous setting
    (to restore it).  Results are the same either way; only the speed differs."""
    global _prefetch_l2
    cdef bint previous = _prefetch_l2
    _prefetch_l2 = on
    return previous


def _set_two_level_min_table_bytes(int64_t nbytes):
    """Prefetch in two levels only for tables of more than ``nbytes`` (tests: 0, so that small
    tables take that path too); returns the previous bound."""
    global _TWO_LEVEL_MIN_TABLE_BYTES
    cdef int64_t previous = _TWO_LEVEL_MIN_TABLE_BYTES
    _TWO_LEVEL_MIN_TABLE_BYTES = nbytes
    return previous


ctypedef struct _TeamJob:
    int isa
    const lowprec_eb_args *a
    const int64_t *bounds
    const _SoftCheck *sc


cdef void _team_chunk(void *ctx, int64_t c) noexcept nogil:
    """Pool chunk ``c`` of a _TeamJob (lowprec_eb_team_run's callback)."""
    cdef _TeamJob *j = <_TeamJob *>ctx
    if j.sc != NULL:
        _run_checked(j.isa, j.a, j.bounds[c], j.bounds[c + 1], j.sc)
    else:
        _run(j.isa, j.a, j.bounds[c], j.bounds[c + 1])


cdef int64_t _pool_args(const lowprec_eb_args *a, int n_threads, bint check,
                        int64_t chunks_per_thread, const _SoftCheck *sc=NULL) except -2:
    """pool() on filled-in arguments: -1 after pooling, or the first bad index (nothing
    written)."""
    cdef int64_t bad
    if check and a.n_indices > 0:
        with nogil:
            bad = _check_args(a)
        if bad >= 0:
            return bad
    cdef int64_t n_bags = a.n_bags
    if n_bags == 0 or a.dim == 0:
        return -1
    cdef int isa = _isa
    cdef int64_t n_chunks, c
    cdef int64_t *bounds
    if n_threads <= 1:
        with nogil:
            if sc != NULL:
                _run_checked(isa, a, 0, n_bags, sc)
            else:
                _run(isa, a, 0, n_bags)
        return -1
    n_chunks = min(n_bags, n_threads * chunks_per_thread)
    bounds = <int64_t *>malloc(<size_t>(n_chunks + 1) * sizeof(int64_t))
    if bounds == NULL:
        raise MemoryError()
    cdef int64_t next_chunk = 0
    cdef _TeamJob job
    job.isa = isa
    job.a = a
    job.sc = sc
    job.bounds = bounds
    with nogil:
        lowprec_embedding_partition(a.offsets, n_bags, n_chunks, bounds)
        # The team (opt-in, above) waits only for chunks its helpers actually took, not for a
        # helper the OS has not scheduled yet (an OpenMP region's end barrier does: 16 ms per
        # call on the 2-core machine under load 4-5).  The OpenMP region below is the default,
        # and the team's fallback (another call already uses the team, or no POSIX threads).
        if not _use_team or lowprec_eb_team_run(n_threads, n_chunks, _team_chunk, &job) != 0:
            # Chunks are taken from a shared counter inside one parallel region, whose end is
            # the only barrier (a prange adds its loop's barrier before it).
            with parallel(num_threads=lowprec_region_threads(n_threads)):
                c = lowprec_eb_next_chunk(&next_chunk)
                while c < n_chunks:
                    _team_chunk(&job, c)
                    c = lowprec_eb_next_chunk(&next_chunk)
    free(bounds)
    return -1


cdef inline bint _plain_index_array(cnp.ndarray x) noexcept:
    """1-D, contiguous, native int32 or int64."""
    cdef Py_ssize_t es = cnp.PyArray_ITEMSIZE(x)
    return (cnp.PyArray_NDIM(x) == 1 and cnp.PyArray_ISSIGNED(x) and (es == 4 or es == 8)
            and cnp.PyArray_ISNOTSWAPPED(x)
            and (cnp.PyArray_DIMS(x)[0] <= 1 or cnp.PyArray_STRIDES(x)[0] == es))


cdef int _widen_offsets(const void *offsets, int o64, int64_t m, int64_t n, bint include_last,
                        int64_t *bounds) noexcept nogil:
    """Copy ``m`` PyTorch-style offsets (int64 when ``o64``, else int32) into the kernels'
    int64 bounds (the last one = ``n`` unless ``include_last``): 1 when one decreases or
    exceeds ``n``, else 0.  (Whether they start at 0 is the caller's check.)"""
    cdef int64_t i, v, prev = 0
    cdef int bad = 0
    cdef const int64_t *p64 = <const int64_t *>offsets
    cdef const int32_t *p32 = <const int32_t *>offsets
    for i in range(m):
        v = p64[i] if o64 else p32[i]
        bad |= (v < prev) | (v > n)
        prev = v
        bounds[i] = v
    if not include_last:
        bounds[m] = n
    return bad


def pool_fast(object table, int64_t dim, int fmt, int mode, object indices, object offsets,
              bint include_last, object out_dtype, int out_fmt, int n_threads):
    """The common call (1-D indices + offsets, no weights / mapping / padding / ``out``) in
    one step: validate offsets and indices, allocate the ``(B, D)`` output, pool.

    ``table``: the rows as an ndarray (the float table, or the fused bytes of a quantized
    one), ``dim`` its D.  Returns the output, or None when the arguments are not plain (any
    layout, dtype or value this function does not take, including every invalid one): the
    caller then takes the validating path, which names the problem.  Nothing the caller can
    see is written before None is returned.
    """
    if (type(table) is not np.ndarray or type(indices) is not np.ndarray
            or type(offsets) is not np.ndarray):
        return None
    cdef cnp.ndarray t = table, ix = indices, of = offsets
    if (cnp.PyArray_NDIM(t) != 2 or dim <= 0 or not _plain_index_array(ix)
            or not _plain_index_array(of)):
        return None
    cdef cnp.npy_intp *tdims = cnp.PyArray_DIMS(t)
    cdef cnp.npy_intp *tstr = cnp.PyArray_STRIDES(t)
    # Rows contiguous, non-negative row stride (else the validating path copies the table).
    if tdims[0] <= 0 or tdims[1] <= 0 or tstr[0] < 0 or (
            tdims[1] > 1 and tstr[1] != cnp.PyArray_ITEMSIZE(t)):
        return None
    cdef int64_t n = cnp.PyArray_DIMS(ix)[0]
    cdef int64_t m = cnp.PyArray_DIMS(of)[0]
    cdef int64_t nb = m - 1 if include_last else m
    if nb <= 0:
        return None
    cdef int o64 = cnp.PyArray_ITEMSIZE(of) == 8
    cdef const void *po = cnp.PyArray_DATA(of)
    cdef int64_t *bounds = NULL
    cdef int bad = 0
    cdef lowprec_eb_args a
    a.table = <const uint8_t *>cnp.PyArray_DATA(t)
    a.row_stride = tstr[0]
    a.n_rows = tdims[0]
    a.dim = dim
    a.fmt = fmt
    a.mode = mode
    a.indices = cnp.PyArray_DATA(ix)
    a.idx64 = cnp.PyArray_ITEMSIZE(ix) == 8
    a.n_indices = n
    a.n_bags = nb
    a.weights = NULL
    a.mapping = NULL
    a.n_mapping = 0
    a.padding_idx = -1
    a.out_fmt = out_fmt
    a.row_checks = NULL
    a.check_stride = 0
    a.check_flags = NULL
    a.row_nibbles = NULL
    a.prefetch_l2 = _two_level(tdims[0], tstr[0])
    # Always a private copy of the bounds (as the validating path): the kernels must not see
    # offsets that change after they were checked.
    bounds = <int64_t *>malloc(<size_t>(nb + 1) * sizeof(int64_t))
    if bounds == NULL:
        raise MemoryError()
    try:
        # Offsets: start at 0, never decrease, never exceed n (one pass, widened to int64).
        with nogil:
            bad = _widen_offsets(po, o64, m, n, include_last, bounds)
            a.offsets = bounds
            bad |= bounds[0] != 0
            if not bad and n > 0:
                bad = _check_args(&a) >= 0
        if bad:
            return None
        out = np.empty((nb, dim), dtype=out_dtype)
        a.out = <uint8_t *>cnp.PyArray_DATA(<cnp.ndarray>out)
        a.out_stride = cnp.PyArray_STRIDES(<cnp.ndarray>out)[0]
        _pool_args(&a, n_threads, False, 4)
        return out
    finally:
        free(bounds)


def offsets_int64(offsets, int64_t n, bint include_last):
    """PyTorch-style ``offsets`` (int32 or int64, 1-D, contiguous) as the kernels' int64
    ``n_bags + 1`` bounds, validated in one pass: returns ``(bounds, status)`` with status 0 =
    valid, else 1 (a problem; the caller re-derives the exact error message)."""
    cdef int64_t m = offsets.shape[0]
    cdef int64_t nb = m - 1 if include_last else m
    if nb < 0:
        return None, 1
    res = np.empty(nb + 1, dtype=np.int64)
    cdef int64_t[::1] r = res
    cdef cnp.ndarray of = offsets
    cdef const void *po = cnp.PyArray_DATA(of)
    cdef int o64 = offsets.dtype == np.int64
    cdef int bad
    with nogil:
        bad = _widen_offsets(po, o64, m, n, include_last, &r[0])
    if m > 0 and r[0] != 0:
        bad = 1
    return res, bad
