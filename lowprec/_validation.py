"""Argument checks shared by the public functions.

Everything is checked before a kernel touches memory: a call either raises a clear
exception naming the argument, or runs to completion.  A kernel never writes into ``out``
before every check has passed.
"""

import numpy as np


def dtype_name(dtype):
    return np.dtype(dtype).name


def as_array(x, name, dtypes=None):
    """``x`` as an ndarray (array-likes accepted, never copied when already an ndarray).

    With ``dtypes`` (a tuple of NumPy dtypes), a TypeError names the accepted ones.
    """
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} must be array-like: {exc}") from None
    if dtypes is not None and x.dtype not in [np.dtype(d) for d in dtypes]:
        accepted = ", ".join(dtype_name(d) for d in dtypes)
        raise TypeError(f"{name} has dtype {x.dtype}; expected one of: {accepted}")
    return x


def check_out(out, shape, dtype, inputs=(), name="out"):
    """Validate a caller-supplied output array, or allocate one when ``out`` is None.

    ``out`` must be an ndarray of exactly ``dtype`` and ``shape``, C-contiguous, writeable and
    share no memory with any of ``inputs``.
    """
    shape = tuple(shape)
    dtype = np.dtype(dtype)
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}; expected {dtype}")
    if out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape}; expected {shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    for arr in inputs:
        if isinstance(arr, np.ndarray) and np.may_share_memory(out, arr):
            raise ValueError(f"{name} overlaps an input array")
    return out


def check_positive_int(value, name):
    try:
        value = int(value) if not isinstance(value, (bool, np.bool_)) else None
    except (TypeError, ValueError):
        value = None
    if value is None or value < 1:
        raise ValueError(f"{name} must be a positive integer")
    return value
