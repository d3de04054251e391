"""Argument checks shared by the public functions.

Everything is checked before a kernel touches memory: a call either raises a clear
exception naming the argument, or runs to completion.  A kernel never writes into ``out``
before every check has passed.
"""

import operator

import numpy as np

from .buffers import empty_output


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
        return empty_output(shape, dtype)  # large outputs reuse freed memory (buffers.py)
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


def check_int(value, name, *, choices=None, minimum=None):
    """``value`` as a Python int: TypeError unless it is an integer (bools are not), ValueError
    unless it is one of ``choices`` / at least ``minimum``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if choices is not None and value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def normalize_axis(axis, ndim):
    """``axis`` in ``[0, ndim)``; negative axes count from the end (NumPy's rule)."""
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an integer, got {type(axis).__name__}") from None
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim)
    return axis % ndim
