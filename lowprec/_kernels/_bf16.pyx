# bfloat16 conversion kernels: the thin Cython layer between lowprec/bf16.py and src/bf16*.c.
#
# Every function takes 1-D C-contiguous memoryviews (bf16 as its uint16 bits: bf16 cannot pass
# the buffer protocol), releases the GIL and splits the range into fixed chunks of CHUNK
# elements that OpenMP threads convert independently.  The chunking does not depend on the
# thread count, and the stochastic generator is counter-based (element index -> random bits), so
# every result is the same for any n_threads.  ``index0`` (stochastic only) is the index of
# src[0] in a larger array: converting the pieces of an array gives the bits of converting it
# whole.  ``nontemporal``: 1 / 0 force streaming stores on / off, -1 (default) decides by size.
# Arguments are validated in bf16.py; the checks here only keep a direct caller from writing out
# of bounds.
#
# schedule="dynamic": every chunk's output depends only on its own elements and index, so the
# schedule cannot change a result, and on a shared machine a thread that lost its core then
# holds up only the chunk it is on (with "static" it owns half the array).  The cost is one
# atomic increment per 64K-element chunk.

from cython.parallel cimport prange
from ._openmp_helpers cimport lowprec_fork_guard, lowprec_region_threads
from libc.stdint cimport uint16_t, uint64_t


lowprec_fork_guard()  # forked children run parallel regions on one thread


cdef extern from "bf16.h":
    int LOWPREC_BF16_NEAREST, LOWPREC_BF16_TRUNCATE, LOWPREC_BF16_STOCHASTIC
    void lowprec_bf16_from_f32_generic(const float *src, uint16_t *dst, size_t n, int rounding,
                                       uint64_t key, uint64_t index0, int nontemporal) noexcept nogil
    void lowprec_bf16_from_f32_avx2(const float *src, uint16_t *dst, size_t n, int rounding,
                                    uint64_t key, uint64_t index0, int nontemporal) noexcept nogil
    void lowprec_bf16_from_f64_generic(const double *src, uint16_t *dst, size_t n, int rounding,
                                       uint64_t key, uint64_t index0, int nontemporal) noexcept nogil
    void lowprec_bf16_from_f64_avx2(const double *src, uint16_t *dst, size_t n, int rounding,
                                    uint64_t key, uint64_t index0, int nontemporal) noexcept nogil
    void lowprec_bf16_round_f32_generic(const float *src, float *dst, size_t n, int rounding,
                                        uint64_t key, uint64_t index0, int nontemporal) noexcept nogil
    void lowprec_bf16_round_f32_avx2(const float *src, float *dst, size_t n, int rounding,
                                     uint64_t key, uint64_t index0, int nontemporal) noexcept nogil
    void lowprec_bf16_to_f32_generic(const uint16_t *src, float *dst, size_t n, int nontemporal) noexcept nogil
    void lowprec_bf16_to_f32_avx2(const uint16_t *src, float *dst, size_t n, int nontemporal) noexcept nogil
    void lowprec_bf16_to_f64_generic(const uint16_t *src, double *dst, size_t n, int nontemporal) noexcept nogil
    void lowprec_bf16_to_f64_avx2(const uint16_t *src, double *dst, size_t n, int nontemporal) noexcept nogil

ctypedef void (*from_f32_fn)(const float *, uint16_t *, size_t, int, uint64_t, uint64_t, int) noexcept nogil
ctypedef void (*from_f64_fn)(const double *, uint16_t *, size_t, int, uint64_t, uint64_t, int) noexcept nogil
ctypedef void (*round_f32_fn)(const float *, float *, size_t, int, uint64_t, uint64_t, int) noexcept nogil
ctypedef void (*to_f32_fn)(const uint16_t *, float *, size_t, int) noexcept nogil
ctypedef void (*to_f64_fn)(const uint16_t *, double *, size_t, int) noexcept nogil

#: Rounding mode numbers (src/bf16.h).
NEAREST = LOWPREC_BF16_NEAREST
TRUNCATE = LOWPREC_BF16_TRUNCATE
STOCHASTIC = LOWPREC_BF16_STOCHASTIC

# Elements per parallel work item.  64K float32 -> bf16 is 384 KB of traffic (~30 us at memory
# speed): large enough that scheduling costs vanish, small enough that 2 threads balance on a few
# MB.  A multiple of 16 (the vector step) and of 4 (the generator's group), so chunk starts never
# need the kernels' scalar heads.
cdef enum:
    _CHUNK = 65536
CHUNK = _CHUNK

# Outputs of at least this many bytes are written with non-temporal (streaming) stores, which
# skip the read-for-ownership of each output line: measured on the 2-core Zen machine, float32 ->
# bf16 at 16M elements went from ~27 to ~40 GB/s on one thread; at 1M elements (6 MB, in cache)
# it made no difference either way.  Below the threshold the output stays in the cache for
# whatever reads it next.  The result bits never depend on it.
NONTEMPORAL_MIN_BYTES = 8 << 20

cdef int _isa = 0


cdef inline int _use_nt(int nontemporal, Py_ssize_t out_bytes) noexcept:
    """nontemporal: 1 force on, 0 force off, -1 automatic (by the output's size)."""
    if nontemporal >= 0:
        return nontemporal != 0
    return out_bytes >= NONTEMPORAL_MIN_BYTES


#: The best ISA level this module implements; lowprec._dispatch never sets a higher one.
BEST_ISA = 1


def _set_isa(int level):
    """Run the kernels of ISA ``level`` (0 generic, 1 AVX2, 2 AVX-512); set by lowprec._dispatch."""
    global _isa
    _isa = level


def _get_isa():
    return _isa


cdef inline Py_ssize_t _n_chunks(Py_ssize_t n) noexcept nogil:
    return (n + _CHUNK - 1) // _CHUNK


def _check_rounding(int rounding):
    if rounding not in (LOWPREC_BF16_NEAREST, LOWPREC_BF16_TRUNCATE, LOWPREC_BF16_STOCHASTIC):
        raise ValueError(f"unknown rounding code {rounding}")


ctypedef fused real_t:
    float
    double


def from_float(const real_t[::1] src, uint16_t[::1] dst, int rounding=0, uint64_t key=0,
               int n_threads=1, uint64_t index0=0, int nontemporal=-1):
    """float32 or float64 -> bf16 bits (``dst`` is the bf16 output viewed as uint16).

    float64 is rounded once (see src/bf16.h), not through float32 with two roundings.
    """
    cdef Py_ssize_t n = src.shape[0], c, start
    if dst.shape[0] != n:
        raise ValueError("src and dst differ in length")
    _check_rounding(rounding)
    if n == 0:
        return
    cdef from_f32_fn fn32 = lowprec_bf16_from_f32_avx2 if _isa >= 1 else lowprec_bf16_from_f32_generic
    cdef from_f64_fn fn64 = lowprec_bf16_from_f64_avx2 if _isa >= 1 else lowprec_bf16_from_f64_generic
    cdef Py_ssize_t n_chunks = _n_chunks(n)
    cdef int nt = _use_nt(nontemporal, n * dst.itemsize)
    if n_threads <= 1 or n_chunks == 1:
        with nogil:
            if real_t is float:
                fn32(&src[0], &dst[0], n, rounding, key, index0, nt)
            else:
                fn64(&src[0], &dst[0], n, rounding, key, index0, nt)
        return
    for c in prange(n_chunks, nogil=True, num_threads=lowprec_region_threads(n_threads), schedule="dynamic"):
        start = c * _CHUNK
        if real_t is float:
            fn32(&src[start], &dst[start], min(<Py_ssize_t>_CHUNK, n - start), rounding, key,
                 index0 + <uint64_t>start, nt)
        else:
            fn64(&src[start], &dst[start], min(<Py_ssize_t>_CHUNK, n - start), rounding, key,
                 index0 + <uint64_t>start, nt)


def round_f32(const float[::1] src, float[::1] dst, int rounding=0, uint64_t key=0,
              int n_threads=1, uint64_t index0=0, int nontemporal=-1):
    """float32 -> float32 rounded to a bf16 value."""
    cdef Py_ssize_t n = src.shape[0], c, start
    if dst.shape[0] != n:
        raise ValueError("src and dst differ in length")
    _check_rounding(rounding)
    if n == 0:
        return
    cdef round_f32_fn fn = lowprec_bf16_round_f32_avx2 if _isa >= 1 else lowprec_bf16_round_f32_generic
    cdef Py_ssize_t n_chunks = _n_chunks(n)
    cdef int nt = _use_nt(nontemporal, n * dst.itemsize)
    if n_threads <= 1 or n_chunks == 1:
        with nogil:
            fn(&src[0], &dst[0], n, rounding, key, index0, nt)
        return
    for c in prange(n_chunks, nogil=True, num_threads=lowprec_region_threads(n_threads), schedule="dynamic"):
        start = c * _CHUNK
        fn(&src[start], &dst[start], min(<Py_ssize_t>_CHUNK, n - start), rounding, key,
           index0 + <uint64_t>start, nt)


def to_float(const uint16_t[::1] src, real_t[::1] dst, int n_threads=1, int nontemporal=-1):
    """bf16 bits -> float32 or float64 (exact)."""
    cdef Py_ssize_t n = src.shape[0], c, start
    if dst.shape[0] != n:
        raise ValueError("src and dst differ in length")
    if n == 0:
        return
    cdef to_f32_fn fn32 = lowprec_bf16_to_f32_avx2 if _isa >= 1 else lowprec_bf16_to_f32_generic
    cdef to_f64_fn fn64 = lowprec_bf16_to_f64_avx2 if _isa >= 1 else lowprec_bf16_to_f64_generic
    cdef Py_ssize_t n_chunks = _n_chunks(n)
    cdef int nt = _use_nt(nontemporal, n * dst.itemsize)
    if n_threads <= 1 or n_chunks == 1:
        with nogil:
            if real_t is float:
                fn32(&src[0], &dst[0], n, nt)
            else:
                fn64(&src[0], &dst[0], n, nt)
        return
    for c in prange(n_chunks, nogil=True, num_threads=lowprec_region_threads(n_threads), schedule="dynamic"):
        start = c * _CHUNK
        if real_t is float:
            fn32(&src[start], &dst[start], min(<Py_ssize_t>_CHUNK, n - start), nt)
        else:
            fn64(&src[start], &dst[start], min(<Py_ssize_t>_CHUNK, n - start), nt)
