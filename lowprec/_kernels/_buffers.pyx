# cython: language_level=3
"""NumPy memory handler with a bounded cache of large freed output buffers (src/buffers.h)."""

import numpy as np

cimport numpy as cnp
from libc.stdint cimport uint64_t

cnp.import_array()

cdef extern from "buffers.h":
    void lowprec_buf_set_limit(size_t limit) nogil
    void lowprec_buf_stats(size_t *limit, size_t *cached, size_t *blocks, uint64_t *hits,
                           uint64_t *misses) nogil
    size_t LOWPREC_BUF_MIN

cdef extern from *:
    """
    /* The handler NumPy calls for arrays allocated while it is set (and, for the array's whole
     * life, to free them): the cache of src/buffers.h. */
    static PyDataMem_Handler lowprec_buf_handler = {
        "lowprec_buffer_cache", 1,
        {NULL, lowprec_buf_malloc, lowprec_buf_calloc, lowprec_buf_realloc, lowprec_buf_free}};

    static PyObject *lowprec_buf_capsule(void) {
        return PyCapsule_New(&lowprec_buf_handler, "mem_handler", NULL);
    }
    """
    object lowprec_buf_capsule()
    object PyDataMem_SetHandler(object handler)

_handler = lowprec_buf_capsule()
MIN_BYTES = LOWPREC_BUF_MIN


def empty(shape, dtype):
    """``numpy.empty(shape, dtype)`` allocated through the buffer cache."""
    old = PyDataMem_SetHandler(_handler)
    try:
        return np.empty(shape, dtype)
    finally:
        PyDataMem_SetHandler(old)


def set_limit(size_t limit):
    lowprec_buf_set_limit(limit)


def stats():
    cdef size_t limit, cached, blocks
    cdef uint64_t hits, misses
    lowprec_buf_stats(&limit, &cached, &blocks, &hits, &misses)
    return {"limit": limit, "cached_bytes": cached, "cached_blocks": blocks, "hits": hits,
            "misses": misses}
