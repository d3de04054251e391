"""Reuse of large output buffers: the first touch of fresh pages is not free.

A new NumPy array of several megabytes gets fresh pages from the operating system, and the
kernel zeroes each page when it is first written.  For lowprec's streaming kernels that costs
more than the work: converting 16M float32 values to bfloat16 takes ~2.5 ms into an existing
array and ~7 ms into a fresh one (the 32 MB output's page faults).  So lowprec allocates the
outputs it returns (1 MiB and larger) through a small cache: when such an array is garbage
collected its memory is kept, up to a byte limit, and the next output of about the same size
(within 25%) reuses it.  Arrays from the cache are ordinary NumPy arrays; only their memory
comes from (and returns to) the cache.  ``out=`` avoids allocation altogether.

The limit defaults to 256 MiB (environment variable ``LOWPREC_BUFFER_CACHE_MB`` at import);
``set_buffer_cache(0)`` turns the cache off and releases what it holds.

Examples
--------
>>> import lowprec
>>> info = lowprec.buffer_cache_info()
>>> sorted(info)
['cached_blocks', 'cached_bytes', 'hits', 'limit', 'misses']
"""

import os

import numpy as np

from ._kernels import _buffers

__all__ = ["set_buffer_cache", "buffer_cache_info"]

_DEFAULT_MB = 256


def set_buffer_cache(max_bytes):
    """Set the byte limit of the output-buffer cache (0 disables it); returns the old limit.

    Examples
    --------
    >>> import lowprec
    >>> old = lowprec.set_buffer_cache(64 << 20)
    >>> lowprec.buffer_cache_info()["limit"]
    67108864
    >>> _ = lowprec.set_buffer_cache(old)
    """
    if isinstance(max_bytes, (bool, np.bool_)) or not isinstance(max_bytes, (int, np.integer)):
        raise TypeError(f"max_bytes must be an integer, got {max_bytes!r}")
    if max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
    old = _buffers.stats()["limit"]
    _buffers.set_limit(int(max_bytes))
    return old


def buffer_cache_info():
    """The cache's state: ``limit``, ``cached_bytes``, ``cached_blocks``, ``hits``, ``misses``.

    Examples
    --------
    >>> import lowprec
    >>> lowprec.buffer_cache_info()["limit"] >= 0
    True
    """
    return _buffers.stats()


def empty_output(shape, dtype):
    """``numpy.empty(shape, dtype)``, from the cache when it is 1 MiB or larger."""
    dtype = np.dtype(dtype)
    n = dtype.itemsize
    for s in shape:
        n *= s
    if n < _buffers.MIN_BYTES:
        return np.empty(shape, dtype)
    return _buffers.empty(shape, dtype)


def _limit_from_env():
    raw = os.environ.get("LOWPREC_BUFFER_CACHE_MB", "")
    try:
        mb = float(raw) if raw.strip() else _DEFAULT_MB
    except ValueError:
        mb = _DEFAULT_MB
    return max(0, int(mb * (1 << 20)))


_buffers.set_limit(_limit_from_env())
