# EmbeddingBag soft-error check and per-row table checksums: the thin Cython layer over
# src/bag_checksum.c.  Rows and bags are cut into fixed chunks taken by the OpenMP threads;
# every row checksum and every bag verdict is computed by one thread with the same code, so
# nothing depends on the thread count.  Arguments are validated by lowprec/embedding_checks.py.

from cython.parallel cimport prange
from libc.stdint cimport int32_t, int64_t, uint8_t

from ._openmp_helpers cimport lowprec_omp_max_threads  # noqa: F401  (keeps the shim linked)

cdef extern from "bag_checksum.h" nogil:
    ctypedef struct lowprec_bag_check_args:
        const float *checksums
        int64_t n_rows
        int64_t dim
        int mean
        const void *indices
        int idx64
        const int64_t *offsets
        int64_t n_bags
        const float *weights
        const int32_t *mapping
        int64_t padding_idx
        const uint8_t *out
        int64_t out_stride
        int out_fmt
    void lowprec_bag_check(const lowprec_bag_check_args *a, int64_t bag_begin, int64_t bag_end,
                           uint8_t *flags)
    void lowprec_row_checksums(const uint8_t *table, int64_t row_stride, int64_t dim, int fmt,
                               int64_t row_begin, int64_t row_end, float *checksums)

# Bags / rows per OpenMP work item: 256 bags of 32 entries or 4096 rows are ~10-50 us.  The
# check is portable C on every ISA (a gather and a pass over the output): no dispatch.
cdef enum:
    BAG_CHUNK = 256
    ROW_CHUNK = 4096


def row_checksums(const uint8_t[:, :] table, int64_t dim, int fmt, float[:, ::1] out,
                  int n_threads):
    """Fill ``out`` (R, 2) with (sum, abs_sum) of every row of ``table`` (a byte view of the
    rows, rows contiguous, any row stride) in format ``fmt`` (embedding's FMT_*)."""
    cdef int64_t n = table.shape[0]
    if out.shape[0] != n or out.shape[1] != 2:
        raise ValueError("out must have shape (rows, 2)")
    if table.shape[1] > 1 and table.strides[1] != 1:
        raise ValueError("table rows must be contiguous")
    if n == 0:
        return
    cdef const uint8_t *t = &table[0, 0]
    cdef int64_t stride = table.strides[0]
    cdef float *o = &out[0, 0]
    cdef int64_t n_chunks = (n + ROW_CHUNK - 1) // ROW_CHUNK, c
    with nogil:
        if n_threads <= 1 or n_chunks == 1:
            lowprec_row_checksums(t, stride, dim, fmt, 0, n, o)
        else:
            for c in prange(n_chunks, num_threads=n_threads, schedule='static'):
                lowprec_row_checksums(t, stride, dim, fmt, c * ROW_CHUNK,
                                      min(n, (c + 1) * ROW_CHUNK), o)


def check_bags(const float[:, ::1] checksums, int64_t dim, bint mean,
               const uint8_t[::1] indices, int idx64, const int64_t[::1] offsets,
               const float[::1] weights, const int32_t[::1] mapping, int64_t padding_idx,
               const uint8_t[:, :] out, int out_fmt, uint8_t[::1] flags, int n_threads):
    """Verify every bag of ``out`` (a byte view of the output rows) against ``checksums``;
    ``flags[b]`` = 1 for a failed bag.  Indices must already be validated."""
    cdef lowprec_bag_check_args a
    cdef int64_t n_bags = offsets.shape[0] - 1
    if flags.shape[0] != n_bags or out.shape[0] != n_bags:
        raise ValueError("flags and out must have one entry per bag")
    if out.shape[1] > 1 and out.strides[1] != 1:
        raise ValueError("out rows must be contiguous")
    if n_bags == 0:
        return
    a.checksums = &checksums[0, 0] if checksums.shape[0] > 0 else NULL
    a.n_rows = checksums.shape[0]
    a.dim = dim
    a.mean = mean
    a.indices = <const void *>&indices[0] if indices.shape[0] > 0 else NULL
    a.idx64 = idx64
    a.offsets = &offsets[0]
    a.n_bags = n_bags
    a.weights = &weights[0] if weights is not None and weights.shape[0] > 0 else NULL
    a.mapping = &mapping[0] if mapping is not None and mapping.shape[0] > 0 else NULL
    a.padding_idx = padding_idx
    a.out = &out[0, 0] if out.shape[1] > 0 else NULL
    a.out_stride = out.strides[0]
    a.out_fmt = out_fmt
    cdef uint8_t *f = &flags[0]
    cdef int64_t n_chunks = (n_bags + BAG_CHUNK - 1) // BAG_CHUNK, c
    with nogil:
        if n_threads <= 1 or n_chunks == 1:
            lowprec_bag_check(&a, 0, n_bags, f)
        else:
            for c in prange(n_chunks, num_threads=n_threads, schedule='static'):
                lowprec_bag_check(&a, c * BAG_CHUNK, min(n_bags, (c + 1) * BAG_CHUNK), f)
