# Row-wise quantization kernels (fused embedding rows): the thin Cython layer.
#
# The C kernels (src/rowwise*.c) are serial and work on a range of rows; here the rows are cut
# into fixed-size chunks that the OpenMP threads take.  Each row is computed by exactly one
# thread with the same code and nothing is reduced across rows, so the bytes depend neither on
# the thread count nor on which thread takes which chunk.  That frees the schedule: it is
# dynamic, because on a shared machine (2 cores and other processes) a statically assigned
# half of the table waits for a descheduled thread, while dynamic chunks let the running thread
# take over the work.  A chunk is 32-256 rows (about 10-40 us), far above the cost of taking one.
# Arguments are validated by lowprec/rowwise.py before they get here.

from cython.parallel cimport prange
from libc.stdint cimport int64_t, uint8_t, uint16_t

from ._openmp_helpers cimport lowprec_omp_max_threads  # noqa: F401  (keeps the shim linked)
from ._openmp_helpers cimport lowprec_fork_guard, lowprec_region_threads

lowprec_fork_guard()  # forked children run parallel regions on one thread


cdef extern from "rowwise.h" nogil:
    void lowprec_rowwise_f32_to_f16_generic(const float *x, int64_t n, uint16_t *out)
    void lowprec_rowwise_f32_to_f16_avx2(const float *x, int64_t n, uint16_t *out)
    int64_t lowprec_rowwise_quantize8_generic(const float *x, int64_t ldx, int64_t n_rows,
                                              int64_t dim, uint8_t *out, int64_t ldo)
    int64_t lowprec_rowwise_quantize8_avx2(const float *x, int64_t ldx, int64_t n_rows,
                                           int64_t dim, uint8_t *out, int64_t ldo)
    int64_t lowprec_rowwise_quantizen_generic(const float *x, int64_t ldx, int64_t n_rows,
                                              int64_t dim, int bits, uint8_t *out, int64_t ldo)
    int64_t lowprec_rowwise_quantizen_avx2(const float *x, int64_t ldx, int64_t n_rows,
                                           int64_t dim, int bits, uint8_t *out, int64_t ldo)
    int64_t lowprec_rowwise_greedy_generic(const float *x, int64_t ldx, int64_t n_rows,
                                           int64_t dim, int bits, int n_bins, int min_bins,
                                           uint8_t *out, int64_t ldo)
    int64_t lowprec_rowwise_greedy_avx2(const float *x, int64_t ldx, int64_t n_rows,
                                        int64_t dim, int bits, int n_bins, int min_bins,
                                        uint8_t *out, int64_t ldo)
    float lowprec_rowwise_nbit_loss_generic(const float *x, int64_t dim, int bits, float lo,
                                            float hi)
    float lowprec_rowwise_nbit_loss_avx2(const float *x, int64_t dim, int bits, float lo,
                                         float hi)

cdef extern from "row_checksum.h" nogil:
    void lowprec_row_checksum(const uint8_t *row, int64_t dim, int fmt, float *checksum)
    unsigned lowprec_row_bytesum_mod15(const uint8_t *row, int64_t n_bytes)

# 0 = portable C, 1 = AVX2 (+FMA +F16C).  There is no AVX-512 kernel: level 2 runs AVX2.
cdef int _isa = 0

METHOD_MINMAX = 0
METHOD_GREEDY = 1


#: The best ISA level this module implements; lowprec._dispatch never sets a higher one.
BEST_ISA = 1


def _set_isa(int level):
    """Run the kernels of ISA ``level`` (0 generic, 1 AVX2, 2 AVX-512); set by lowprec._dispatch."""
    global _isa
    _isa = level


def _get_isa():
    return _isa


cdef inline int64_t _run_rows(int isa, int method, const float *x, int64_t ldx, int64_t n,
                              int64_t dim, int bits, int n_bins, int min_bins, uint8_t *out,
                              int64_t ldo) noexcept nogil:
    if method == 1:
        if isa == 1:
            return lowprec_rowwise_greedy_avx2(x, ldx, n, dim, bits, n_bins, min_bins, out, ldo)
        return lowprec_rowwise_greedy_generic(x, ldx, n, dim, bits, n_bins, min_bins, out, ldo)
    if bits == 8:
        if isa == 1:
            return lowprec_rowwise_quantize8_avx2(x, ldx, n, dim, out, ldo)
        return lowprec_rowwise_quantize8_generic(x, ldx, n, dim, out, ldo)
    if isa == 1:
        return lowprec_rowwise_quantizen_avx2(x, ldx, n, dim, bits, out, ldo)
    return lowprec_rowwise_quantizen_generic(x, ldx, n, dim, bits, out, ldo)


cdef inline int64_t _run_chunk(int isa, int method, const float *x, int64_t ldx, int64_t n,
                               int64_t dim, int bits, int n_bins, int min_bins, uint8_t *out,
                               int64_t ldo, char *checks, int64_t ldc) noexcept nogil:
    """Quantize n rows, then (with ``checks``, pairs ``ldc`` bytes apart) take their checksums
    while they are in cache."""
    cdef int64_t status = _run_rows(isa, method, x, ldx, n, dim, bits, n_bins, min_bins, out, ldo)
    cdef int64_t r
    # Table formats of row_checksum.h: 3 = 8-bit, 4 = 4-bit, 5 = 2-bit rows.
    cdef int fmt = 3 if bits == 8 else (4 if bits == 4 else 5)
    if checks != NULL and status < 0:
        for r in range(n):
            lowprec_row_checksum(out + r * ldo, dim, fmt, <float *>(checks + r * ldc))
    return status


def quantize_rows(const float[:, ::1] x, uint8_t[:, :] out, int bits, int method,
                  int n_bins, int min_bins, int n_threads, int chunk_rows,
                  float[:, :] checks=None):
    """Quantize the rows of ``x`` into the fused rows ``out`` (same number of rows; rows
    contiguous, any row stride), and with ``checks`` ((rows, 2) float32, pairs contiguous, any
    row stride) store each row's soft-error checksum (row_checksum.h).

    Returns -1, or the index of the first row holding a NaN or an infinity (``out`` is then
    partly written; the caller discards it).
    """
    cdef int64_t n = x.shape[0], dim = x.shape[1]
    if out.shape[0] != n:
        raise ValueError("row count mismatch")
    if out.shape[1] > 1 and out.strides[1] != 1:
        raise ValueError("out rows must be contiguous")
    if n == 0:
        return -1
    cdef int64_t n_chunks = (n + chunk_rows - 1) // chunk_rows
    cdef int64_t c, start, stop, status, first = -1
    cdef int isa = _isa
    cdef const float *xp = &x[0, 0]
    cdef int64_t ldo = out.strides[0]
    cdef uint8_t *op = &out[0, 0]
    cdef char *cp = NULL
    cdef int64_t ldc = 0
    if checks is not None:
        if checks.shape[0] != n or checks.shape[1] != 2 or checks.strides[1] != 4:
            raise ValueError("checks must have shape (rows, 2), pairs contiguous")
        cp = <char *>&checks[0, 0]
        ldc = checks.strides[0]
    # One status per chunk, so that the first bad row is found whatever the thread count.
    cdef int64_t[::1] bad = _empty_int64(n_chunks)
    with nogil:
        if n_threads <= 1 or n_chunks == 1:
            for c in range(n_chunks):
                start = c * chunk_rows
                stop = min(start + chunk_rows, n)
                status = _run_chunk(isa, method, xp + start * dim, dim, stop - start, dim,
                                    bits, n_bins, min_bins, op + start * ldo, ldo,
                                    cp + start * ldc if cp != NULL else NULL, ldc)
                bad[c] = status
                if status >= 0:
                    break
        else:
            for c in prange(n_chunks, num_threads=lowprec_region_threads(n_threads), schedule='dynamic'):
                start = c * chunk_rows
                stop = min(start + chunk_rows, n)
                bad[c] = _run_chunk(isa, method, xp + start * dim, dim, stop - start, dim,
                                    bits, n_bins, min_bins, op + start * ldo, ldo,
                                    cp + start * ldc if cp != NULL else NULL, ldc)
    for c in range(n_chunks):
        if bad[c] >= 0:
            return c * chunk_rows + bad[c]
    return -1


cdef _empty_int64(int64_t n):
    import numpy as np
    return np.full(n, -1, dtype=np.int64)


def f32_to_f16(const float[::1] x, uint16_t[::1] out):
    """fp32 -> fp16 bits, round half to even, on the selected ISA (for tests)."""
    cdef int64_t n = x.shape[0]
    if out.shape[0] != n:
        raise ValueError("length mismatch")
    if n == 0:
        return
    with nogil:
        if _isa == 1:
            lowprec_rowwise_f32_to_f16_avx2(&x[0], n, &out[0])
        else:
            lowprec_rowwise_f32_to_f16_generic(&x[0], n, &out[0])


def nbit_loss(const float[::1] x, int bits, float lo, float hi):
    """Squared L2 error of one row quantized with the range [lo, hi] (the greedy loss; tests)."""
    if x.shape[0] == 0:
        return 0.0
    if _isa == 1:
        return lowprec_rowwise_nbit_loss_avx2(&x[0], x.shape[0], bits, lo, hi)
    return lowprec_rowwise_nbit_loss_generic(&x[0], x.shape[0], bits, lo, hi)


def row_checksums(const uint8_t[:, :] rows, int64_t dim, int fmt, float[:, :] out,
                  int n_threads):
    """Fill ``out`` (R, 2; pairs contiguous, any row stride) with the soft-error checksum
    (row_checksum.h: sum, abs_sum) of every row of a table in format ``fmt`` (embedding's
    FMT_*), given as bytes (rows contiguous, any row stride)."""
    cdef int64_t n = rows.shape[0], c
    if out.shape[0] != n or out.shape[1] != 2 or out.strides[1] != 4:
        raise ValueError("out must have shape (rows, 2), pairs contiguous")
    if rows.shape[1] > 1 and rows.strides[1] != 1:
        raise ValueError("rows must be contiguous")
    if n == 0:
        return
    cdef const uint8_t *p = &rows[0, 0] if rows.shape[1] > 0 else NULL
    cdef int64_t stride = rows.strides[0]
    cdef char *o = <char *>&out[0, 0]
    cdef int64_t ldc = out.strides[0]
    with nogil:
        if n_threads <= 1:
            for c in range(n):
                lowprec_row_checksum(p + c * stride, dim, fmt, <float *>(o + c * ldc))
        else:
            for c in prange(n, num_threads=lowprec_region_threads(n_threads), schedule='static'):
                lowprec_row_checksum(p + c * stride, dim, fmt, <float *>(o + c * ldc))


cdef inline uint8_t _bytesum_mod15(const uint8_t *p, int64_t stride, int64_t n, int64_t nb,
                                   int64_t r) noexcept nogil:
    return <uint8_t>lowprec_row_bytesum_mod15(p + r * stride, nb) if r < n and nb > 0 else 0


def row_nibbles(const uint8_t[:, :] rows, uint8_t[::1] out, int n_threads):
    """Fill ``out`` ((R + 1) // 2,) with each row's signed byte sum mod 15, two rows per byte (row 2i
    in the low 4 bits of byte i): the float-table soft-error checksum (src/bag_check.h), given
    the rows as bytes (rows contiguous, any row stride)."""
    cdef int64_t n = rows.shape[0], c
    if out.shape[0] != (n + 1) // 2:
        raise ValueError("out must have one byte per two rows")
    if rows.shape[1] > 1 and rows.strides[1] != 1:
        raise ValueError("rows must be contiguous")
    if n == 0:
        return
    cdef int64_t nb = rows.shape[1]
    cdef const uint8_t *p = &rows[0, 0] if nb > 0 else NULL
    cdef int64_t stride = rows.strides[0]
    cdef int64_t m = out.shape[0]
    with nogil:
        if n_threads <= 1:
            for c in range(m):
                out[c] = (_bytesum_mod15(p, stride, n, nb, 2 * c)
                          | (_bytesum_mod15(p, stride, n, nb, 2 * c + 1) << 4))
        else:
            for c in prange(m, num_threads=lowprec_region_threads(n_threads), schedule='static'):
                out[c] = (_bytesum_mod15(p, stride, n, nb, 2 * c)
                          | (_bytesum_mod15(p, stride, n, nb, 2 * c + 1) << 4))
