# Affine quantization kernels: the thin Cython layer between lowprec/quantization.py and
# src/affine*.c.
#
# Every function takes flat C-contiguous memoryviews (the Python layer reshapes), releases the
# GIL and splits the flat element range into fixed chunks of CHUNK elements that OpenMP threads
# process independently.  Every output element is computed by exactly one chunk with the same
# arithmetic, so results never depend on the thread count.  Arguments are validated in
# quantization.py; the checks here only keep a direct caller from writing out of bounds.

from cython.parallel cimport prange
from ._openmp_helpers cimport lowprec_fork_guard, lowprec_region_threads
from libc.stdint cimport int8_t, int32_t, uint8_t


lowprec_fork_guard()  # forked children run parallel regions on one thread


cdef extern from *:
    """
    #include "affine.h"
    #if !LOWPREC_BUILD_AVX2
    /* No AVX2 twins in this build (non-x86 or non-GCC/Clang): _set_isa never selects them,
     * alias them to the portable kernels so that the module still links. */
    #define lowprec_affine_quantize_u8_avx2 lowprec_affine_quantize_u8_generic
    #define lowprec_affine_quantize_s8_avx2 lowprec_affine_quantize_s8_generic
    #define lowprec_affine_quantize_pc_u8_avx2 lowprec_affine_quantize_pc_u8_generic
    #define lowprec_affine_quantize_pc_s8_avx2 lowprec_affine_quantize_pc_s8_generic
    #define lowprec_affine_dequantize_u8_avx2 lowprec_affine_dequantize_u8_generic
    #define lowprec_affine_dequantize_s8_avx2 lowprec_affine_dequantize_s8_generic
    #define lowprec_affine_dequantize_pc_u8_avx2 lowprec_affine_dequantize_pc_u8_generic
    #define lowprec_affine_dequantize_pc_s8_avx2 lowprec_affine_dequantize_pc_s8_generic
    #endif
    """
    int LOWPREC_AFFINE_FMA_BEFORE, LOWPREC_AFFINE_ADD_BEFORE, LOWPREC_AFFINE_ADD_AFTER
    void lowprec_affine_quantize_u8_generic(const float *x, uint8_t *q, Py_ssize_t n, float inv,
        int32_t zp, int32_t qmin, int32_t qmax, int mode) noexcept nogil
    void lowprec_affine_quantize_u8_avx2(const float *x, uint8_t *q, Py_ssize_t n, float inv,
        int32_t zp, int32_t qmin, int32_t qmax, int mode) noexcept nogil
    void lowprec_affine_quantize_s8_generic(const float *x, int8_t *q, Py_ssize_t n, float inv,
        int32_t zp, int32_t qmin, int32_t qmax, int mode) noexcept nogil
    void lowprec_affine_quantize_s8_avx2(const float *x, int8_t *q, Py_ssize_t n, float inv,
        int32_t zp, int32_t qmin, int32_t qmax, int mode) noexcept nogil
    void lowprec_affine_quantize_pc_u8_generic(const float *x, uint8_t *q, Py_ssize_t start,
        Py_ssize_t end, Py_ssize_t C, Py_ssize_t inner, const float *inv, const int32_t *zp,
        int32_t qmin, int32_t qmax, int mode) noexcept nogil
    void lowprec_affine_quantize_pc_u8_avx2(const float *x, uint8_t *q, Py_ssize_t start,
        Py_ssize_t end, Py_ssize_t C, Py_ssize_t inner, const float *inv, const int32_t *zp,
        int32_t qmin, int32_t qmax, int mode) noexcept nogil
    void lowprec_affine_quantize_pc_s8_generic(const float *x, int8_t *q, Py_ssize_t start,
        Py_ssize_t end, Py_ssize_t C, Py_ssize_t inner, const float *inv, const int32_t *zp,
        int32_t qmin, int32_t qmax, int mode) noexcept nogil
    void lowprec_affine_quantize_pc_s8_avx2(const float *x, int8_t *q, Py_ssize_t start,
        Py_ssize_t end, Py_ssize_t C, Py_ssize_t inner, const float *inv, const int32_t *zp,
        int32_t qmin, int32_t qmax, int mode) noexcept nogil
    void lowprec_affine_dequantize_u8_generic(const uint8_t *q, float *y, Py_ssize_t n,
        float scale, int32_t zp) noexcept nogil
    void lowprec_affine_dequantize_u8_avx2(const uint8_t *q, float *y, Py_ssize_t n,
        float scale, int32_t zp) noexcept nogil
    void lowprec_affine_dequantize_s8_generic(const int8_t *q, float *y, Py_ssize_t n,
        float scale, int32_t zp) noexcept nogil
    void lowprec_affine_dequantize_s8_avx2(const int8_t *q, float *y, Py_ssize_t n,
        float scale, int32_t zp) noexcept nogil
    void lowprec_affine_dequantize_pc_u8_generic(const uint8_t *q, float *y, Py_ssize_t start,
        Py_ssize_t end, Py_ssize_t C, Py_ssize_t inner, const float *scale,
        const int32_t *zp) noexcept nogil
    void lowprec_affine_dequantize_pc_u8_avx2(const uint8_t *q, float *y, Py_ssize_t start,
        Py_ssize_t end, Py_ssize_t C, Py_ssize_t inner, const float *scale,
        const int32_t *zp) noexcept nogil
    void lowprec_affine_dequantize_pc_s8_generic(const int8_t *q, float *y, Py_ssize_t start,
        Py_ssize_t end, Py_ssize_t C, Py_ssize_t inner, const float *scale,
        const int32_t *zp) noexcept nogil
    void lowprec_affine_dequantize_pc_s8_avx2(const int8_t *q, float *y, Py_ssize_t start,
        Py_ssize_t end, Py_ssize_t C, Py_ssize_t inner, const float *scale,
        const int32_t *zp) noexcept nogil

#: Rounding-mode numbers (src/affine.h).
FMA_BEFORE = LOWPREC_AFFINE_FMA_BEFORE
ADD_BEFORE = LOWPREC_AFFINE_ADD_BEFORE
ADD_AFTER = LOWPREC_AFFINE_ADD_AFTER

# Elements per parallel work item.  64K float32 -> uint8 is 320 KB of traffic (~25 us at memory
# speed): large enough that OpenMP scheduling costs vanish, small enough that 2 threads balance
# on a few MB.  A multiple of 32 (the quantize vector step), so only the last chunk has a tail.
cdef enum:
    _CHUNK = 65536
CHUNK = _CHUNK

cdef int _isa = 0


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


def _check_mode(int mode):
    if mode not in (LOWPREC_AFFINE_FMA_BEFORE, LOWPREC_AFFINE_ADD_BEFORE, LOWPREC_AFFINE_ADD_AFTER):
        raise ValueError(f"unknown rounding mode {mode}")


ctypedef fused qint_t:
    uint8_t
    int8_t


def quantize(const float[::1] x, qint_t[::1] q, float inv, int zp, int qmin, int qmax,
             int mode, int n_threads=1):
    """Per tensor: ``q = Q(x)`` into uint8 or int8 storage (see src/affine.h for ``mode``)."""
    cdef Py_ssize_t n = x.shape[0], c, start, stop
    cdef int isa = _isa
    if q.shape[0] != n:
        raise ValueError("q must have the length of x")
    _check_mode(mode)
    if n == 0:
        return
    with nogil:
        for c in prange(_n_chunks(n), num_threads=lowprec_region_threads(n_threads), schedule='static'):
            start = c * _CHUNK
            stop = min(start + _CHUNK, n)
            if qint_t is uint8_t:
                if isa >= 1:
                    lowprec_affine_quantize_u8_avx2(&x[start], &q[start], stop - start, inv, zp,
                                                    qmin, qmax, mode)
                else:
                    lowprec_affine_quantize_u8_generic(&x[start], &q[start], stop - start, inv,
                                                       zp, qmin, qmax, mode)
            else:
                if isa >= 1:
                    lowprec_affine_quantize_s8_avx2(&x[start], &q[start], stop - start, inv, zp,
                                                    qmin, qmax, mode)
                else:
                    lowprec_affine_quantize_s8_generic(&x[start], &q[start], stop - start, inv,
                                                       zp, qmin, qmax, mode)


def _check_pc(Py_ssize_t n, Py_ssize_t n_out, Py_ssize_t C, Py_ssize_t inner,
              Py_ssize_t n_inv, Py_ssize_t n_zp):
    if n_out != n:
        raise ValueError("output must have the length of the input")
    if C < 1 or inner < 1 or n % (C * inner) != 0:
        raise ValueError("bad (C, inner) for this length")
    if n_inv != C or n_zp != C:
        raise ValueError("per-channel parameters must have length C")


def quantize_per_channel(const float[::1] x, qint_t[::1] q, Py_ssize_t C, Py_ssize_t inner,
                         const float[::1] inv, const int32_t[::1] zp, int qmin, int qmax,
                         int mode, int n_threads=1):
    """Per channel: ``x`` is a flat (outer, C, inner) array; channel ``c`` uses inv[c], zp[c]."""
    cdef Py_ssize_t n = x.shape[0], c, start, stop
    cdef int isa = _isa
    _check_pc(n, q.shape[0], C, inner, inv.shape[0], zp.shape[0])
    _check_mode(mode)
    if n == 0:
        return
    with nogil:
        for c in prange(_n_chunks(n), num_threads=lowprec_region_threads(n_threads), schedule='static'):
            start = c * _CHUNK
            stop = min(start + _CHUNK, n)
            if qint_t is uint8_t:
                if isa >= 1:
                    lowprec_affine_quantize_pc_u8_avx2(&x[0], &q[0], start, stop, C, inner,
                                                       &inv[0], &zp[0], qmin, qmax, mode)
                else:
                    lowprec_affine_quantize_pc_u8_generic(&x[0], &q[0], start, stop, C, inner,
                                                          &inv[0], &zp[0], qmin, qmax, mode)
            else:
                if isa >= 1:
                    lowprec_affine_quantize_pc_s8_avx2(&x[0], &q[0], start, stop, C, inner,
                                                       &inv[0], &zp[0], qmin, qmax, mode)
                else:
                    lowprec_affine_quantize_pc_s8_generic(&x[0], &q[0], start, stop, C, inner,
                                                          &inv[0], &zp[0], qmin, qmax, mode)


def dequantize(const qint_t[::1] q, float[::1] y, float scale, int zp, int n_threads=1):
    """Per tensor: ``y = float(q - zp) * scale`` from uint8 or int8 storage."""
    cdef Py_ssize_t n = q.shape[0], c, start, stop
    cdef int isa = _isa
    if y.shape[0] != n:
        raise ValueError("y must have the length of q")
    if n == 0:
        return
    with nogil:
        for c in prange(_n_chunks(n), num_threads=lowprec_region_threads(n_threads), schedule='static'):
            start = c * _CHUNK
            stop = min(start + _CHUNK, n)
            if qint_t is uint8_t:
                if isa >= 1:
                    lowprec_affine_dequantize_u8_avx2(&q[start], &y[start], stop - start, scale, zp)
                else:
                    lowprec_affine_dequantize_u8_generic(&q[start], &y[start], stop - start,
                                                         scale, zp)
            else:
                if isa >= 1:
                    lowprec_affine_dequantize_s8_avx2(&q[start], &y[start], stop - start, scale, zp)
                else:
                    lowprec_affine_dequantize_s8_generic(&q[start], &y[start], stop - start,
                                                         scale, zp)


def dequantize_per_channel(const qint_t[::1] q, float[::1] y, Py_ssize_t C, Py_ssize_t inner,
                           const float[::1] scale, const int32_t[::1] zp, int n_threads=1):
    """Per channel from uint8 or int8 storage; ``q`` is a flat (outer, C, inner) array."""
    cdef Py_ssize_t n = q.shape[0], c, start, stop
    cdef int isa = _isa
    _check_pc(n, y.shape[0], C, inner, scale.shape[0], zp.shape[0])
    if n == 0:
        return
    with nogil:
        for c in prange(_n_chunks(n), num_threads=lowprec_region_threads(n_threads), schedule='static'):
            start = c * _CHUNK
            stop = min(start + _CHUNK, n)
            if qint_t is uint8_t:
                if isa >= 1:
                    lowprec_affine_dequantize_pc_u8_avx2(&q[0], &y[0], start, stop, C, inner,
                                                         &scale[0], &zp[0])
                else:
                    lowprec_affine_dequantize_pc_u8_generic(&q[0], &y[0], start, stop, C, inner,
                                                            &scale[0], &zp[0])
            else:
                if isa >= 1:
                    lowprec_affine_dequantize_pc_s8_avx2(&q[0], &y[0], start, stop, C, inner,
                                                         &scale[0], &zp[0])
                else:
                    lowprec_affine_dequantize_pc_s8_generic(&q[0], &y[0], start, stop, C, inner,
                                                            &scale[0], &zp[0])
