"""bfloat16 conversions with selectable rounding.

bfloat16 here is ml_dtypes' dtype (``ml_dtypes.bfloat16``, the one JAX, TensorFlow and ONNX
tooling use), not a new one: results are ordinary NumPy arrays of that dtype.

- :func:`to_bfloat16` converts float32, float64 (or float16) to bfloat16 with round-to-nearest-even
  (bit for bit what ml_dtypes does for float32), truncation, or unbiased stochastic rounding.
  float64 is rounded once, correctly; ml_dtypes rounds it twice (through float32).
- :func:`from_bfloat16` widens bfloat16 to float32 or float64 (exact).
- :func:`round_bfloat16` rounds float32 values to the nearest bfloat16 value but keeps them in
  float32 ("fake quantization", for simulating bf16 storage in a float32 pipeline).

Rounding modes
--------------
``"nearest"``
    Round to nearest, ties to even.  Finite values that round past the largest bfloat16
    (3.3895e38) become inf; subnormals are kept (no flush to zero).
``"truncate"``
    Round toward zero: the low 16 bits of the float32 are dropped.  For float64 input the result
    is the float64 value rounded toward zero (values beyond the bfloat16 range give the largest
    finite bfloat16; infinities stay infinite).
``"stochastic"``
    Round up or down at random, up with probability equal to the distance from the lower
    neighbour divided by the spacing (resolution 2**-16 of a bf16 ulp), so the expected value of
    the result equals the input: ``bits += r; bits &= 0xFFFF0000`` with ``r`` 16 uniform random
    bits.  Values just below the largest float32 may round up to inf, as that is the next value
    after the largest bfloat16.  float64 input is truncated to float32 first.

In every mode a NaN becomes the quiet NaN ``0x7FC0`` (``0xFFC0`` when its sign bit is set), as
ml_dtypes does: truncating the bits of a signalling NaN whose payload sits in the low 16 bits
would otherwise give inf.

Random bits for ``"stochastic"``: ``rng`` is None (fresh OS entropy), an int seed (the same as
``numpy.random.default_rng(seed)``) or a ``numpy.random.Generator``, from which exactly one 64-bit
key is drawn with ``rng.integers(0, 2**64, dtype=np.uint64)``.  Element ``i`` (C order) gets the
16 bits ``16*(i % 4) ..`` of splitmix64's output number ``i // 4`` for that key, a counter-based
stream: the result depends only on the key and the data, never on the thread count or ISA.

Threads: ``n_threads=`` (else :func:`lowprec.set_num_threads`, else OpenMP's budget); arrays
below 65536 elements per thread run serially.  Results never depend on the thread count.
"""

import ml_dtypes
import numpy as np

from . import _dispatch
from ._kernels import _bf16
from ._threads import resolve_n_threads
from ._validation import as_array, check_out

__all__ = ["bfloat16", "from_bfloat16", "round_bfloat16", "to_bfloat16"]

#: The bfloat16 dtype (ml_dtypes').
bfloat16 = np.dtype(ml_dtypes.bfloat16)

_dispatch.register_family("bf16", _bf16)

_ROUNDING = {
    "nearest": _bf16.NEAREST,
    "truncate": _bf16.TRUNCATE,
    "stochastic": _bf16.STOCHASTIC,
}

_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)

# Below this many elements per thread a parallel region costs more than it saves (one chunk is
# ~30 us of memory traffic; starting a parallel region a few us).
_MIN_ITEMS_PER_THREAD = _bf16.CHUNK


def _native(x):
    """Byte-swapped float arrays in native order (so the dtype checks below accept them)."""
    if x.dtype.kind == "f" and not x.dtype.isnative:
        return x.astype(x.dtype.newbyteorder("="))
    return x


def _rounding_code(rounding):
    try:
        return _ROUNDING[rounding]
    except (KeyError, TypeError):
        raise ValueError(
            f"rounding must be one of {', '.join(map(repr, _ROUNDING))}; got {rounding!r}"
        ) from None


def _check_rng(rng):
    """Check ``rng``'s type without drawing from it (nothing is consumed if a later check fails)."""
    if rng is None or isinstance(rng, (np.random.Generator, np.random.SeedSequence)):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_)):
        if rng < 0:
            raise ValueError(f"rng seed must be non-negative, got {rng}")
        return rng
    raise TypeError(
        "rng must be None, an int seed, a numpy.random.SeedSequence or a numpy.random.Generator; "
        f"got {type(rng).__name__}"
    )


def _draw_key(rng):
    """One 64-bit key for the counter-based generator of the stochastic kernels."""
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return int(gen.integers(0, 2**64, dtype=np.uint64))


def _flat(a):
    """1-D C-ordered view of ``a`` (a copy only when ``a`` is not C-contiguous or not aligned:
    the portable kernels read whole elements, which some CPUs cannot do at odd addresses)."""
    if not a.flags.aligned:
        a = np.array(a, order="C")
    return np.ascontiguousarray(a).reshape(-1)


def to_bfloat16(x, *, rounding="nearest", rng=None, out=None, n_threads=None):
    """Convert an array to bfloat16 with the chosen rounding.

    Parameters
    ----------
    x : array_like of float32, float64, float16 or bfloat16
        Any shape and memory layout; read-only and memory-mapped arrays are fine; ``x`` is
        never modified.  float16 is widened to float32 first (exact); bfloat16 is copied.
        Other dtypes (integers, complex, ...) raise TypeError: convert them explicitly.
    rounding : {"nearest", "truncate", "stochastic"}
        See the module documentation.  "nearest" gives the same bits as
        ``x.astype(ml_dtypes.bfloat16)`` for float32 input; for float64 it is the correctly
        rounded result (ml_dtypes rounds float64 twice).
    rng : None, int, numpy.random.SeedSequence or numpy.random.Generator
        Source of the random key for "stochastic" (one 64-bit draw from a Generator); ignored by
        the other modes.  The same key and data give the same bits for every ``n_threads``.
    out : ndarray of bfloat16, optional
        C-contiguous, writeable, of ``x``'s shape, not overlapping ``x``.
    n_threads : int, optional
        Threads to use; results do not depend on it.

    Returns
    -------
    ndarray of ml_dtypes.bfloat16, of ``x``'s shape (``out`` if given).

    Examples
    --------
    >>> import numpy as np
    >>> from lowprec.bf16 import to_bfloat16
    >>> to_bfloat16(np.array([1.0, 1.00390625, 1.01171875], dtype=np.float32))
    array([1, 1, 1.01562], dtype=bfloat16)
    >>> to_bfloat16(np.array([1 + 2**-8 + 2**-40]))  # float64, rounded once
    array([1.00781], dtype=bfloat16)
    >>> to_bfloat16(np.float32([-1.99]), rounding="truncate")
    array([-1.98438], dtype=bfloat16)
    >>> y = to_bfloat16(np.full(100000, 1 + 2**-9, dtype=np.float32), rounding="stochastic", rng=0)
    >>> bool(abs(y.astype(np.float64).mean() - (1 + 2**-9)) < 1e-4)
    True
    """
    x0 = as_array(x, "x")
    x = _native(x0)
    if x.dtype not in (_F32, _F64, _F16, bfloat16):
        raise TypeError(
            f"x has dtype {x.dtype}; expected one of: float32, float64, float16, bfloat16"
        )
    mode = _rounding_code(rounding)
    rng = _check_rng(rng)
    out = check_out(out, x.shape, bfloat16, inputs=(x0,))
    nt = resolve_n_threads(n_threads, x.size, _MIN_ITEMS_PER_THREAD)
    # All checks passed: from here on we may draw from rng and write into out.
    key = _draw_key(rng) if mode == _bf16.STOCHASTIC else 0
    dst = out.reshape(-1).view(np.uint16)
    if x.dtype == bfloat16:
        np.copyto(dst, _flat(x).view(np.uint16))
        return out
    src = _flat(x)
    if src.dtype == _F16:
        src = src.astype(_F32)  # exact: every float16 is a float32
    _bf16.from_float(src, dst, mode, key, nt)
    return out


def from_bfloat16(x, *, dtype=None, out=None, n_threads=None):
    """Widen a bfloat16 array to float32 or float64 (exact).

    Parameters
    ----------
    x : array_like of ml_dtypes.bfloat16
        Any shape and memory layout; never modified.  Other dtypes raise TypeError (a uint16
        array of raw bits can be passed as ``bits.view(ml_dtypes.bfloat16)``).
    dtype : {numpy.float32, numpy.float64}, optional
        Output dtype; default ``out.dtype`` when ``out`` is given, else float32.
    out : ndarray, optional
        C-contiguous, writeable, of ``x``'s shape and ``dtype``, not overlapping ``x``.
    n_threads : int, optional
        Threads to use.

    Returns
    -------
    ndarray of ``dtype``, of ``x``'s shape (``out`` if given).  NaN payloads and signs are kept.

    Examples
    --------
    >>> import numpy as np, ml_dtypes
    >>> from lowprec.bf16 import from_bfloat16
    >>> b = np.array([1.5, -2.0, np.inf], dtype=ml_dtypes.bfloat16)
    >>> from_bfloat16(b)
    array([ 1.5, -2. ,  inf], dtype=float32)
    >>> from_bfloat16(b, dtype=np.float64).dtype
    dtype('float64')
    """
    x = as_array(x, "x")
    if x.dtype != bfloat16:
        raise TypeError(f"x has dtype {x.dtype}; expected bfloat16")
    if dtype is None:
        dtype = out.dtype if isinstance(out, np.ndarray) else _F32
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dtype not in (_F32, _F64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    out = check_out(out, x.shape, dtype, inputs=(x,))
    nt = resolve_n_threads(n_threads, x.size, _MIN_ITEMS_PER_THREAD)
    src = _flat(x).view(np.uint16)
    dst = out.reshape(-1)
    _bf16.to_float(src, dst, nt)
    return out


def round_bfloat16(x, *, rounding="nearest", rng=None, out=None, n_threads=None):
    """Round float32 values to bfloat16 values, keeping float32 storage ("fake quantization").

    Equal to ``from_bfloat16(to_bfloat16(x, ...))`` (same bits, same random stream for
    "stochastic" with the same key) in one pass and without the bfloat16 intermediate.

    Parameters
    ----------
    x : array_like of float32
        Any shape and layout; never modified.  Other dtypes raise TypeError.
    rounding : {"nearest", "truncate", "stochastic"}
        See :func:`to_bfloat16`.
    rng : None, int, numpy.random.SeedSequence or numpy.random.Generator
        Key source for "stochastic" (see :func:`to_bfloat16`).
    out : ndarray of float32, optional
        C-contiguous, writeable, of ``x``'s shape.  It must not overlap ``x``: in-place rounding
        (``out=x``) is refused like every other overlap, as lowprec's convention is that inputs
        are never modified; write ``x[...] = round_bfloat16(x)`` to round in place.
    n_threads : int, optional
        Threads to use; results do not depend on it.

    Returns
    -------
    ndarray of float32, of ``x``'s shape (``out`` if given), every value exactly representable
    in bfloat16 (NaNs are the quiet NaN 0x7FC00000, with the input's sign).

    Examples
    --------
    >>> import numpy as np
    >>> from lowprec.bf16 import round_bfloat16
    >>> round_bfloat16(np.float32([3.14159265, 1001.0]))
    array([   3.140625, 1000.      ], dtype=float32)
    >>> round_bfloat16(np.float32([3.14159265]), rounding="truncate")
    array([3.140625], dtype=float32)
    """
    x0 = as_array(x, "x")
    x = _native(x0)
    if x.dtype != _F32:
        raise TypeError(f"x has dtype {x.dtype}; expected float32")
    mode = _rounding_code(rounding)
    rng = _check_rng(rng)
    out = check_out(out, x.shape, _F32, inputs=(x0,))
    nt = resolve_n_threads(n_threads, x.size, _MIN_ITEMS_PER_THREAD)
    key = _draw_key(rng) if mode == _bf16.STOCHASTIC else 0
    _bf16.round_f32(_flat(x), out.reshape(-1), mode, key, nt)
    return out
