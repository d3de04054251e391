"""Affine quantization: choose (scale, zero point), quantize float32 to 8- or 4-bit codes, dequantize.

``real = scale * (q - zero_point)``.  Every function matches PyTorch's x86 CPU kernels (FBGEMM
underneath) bit for bit; the exact conventions, and the evidence for them, are:

Quantize (``q`` from ``x``; ``inv = 1.0f / scale`` is the float32 reciprocal: FBGEMM and PyTorch
multiply by it rather than divide, and the two differ on ties, 127.5 vs 127.499992):

============================  =========================================  ===================
dtype, layout                 formula (rint = round half to even)        NaN goes to
============================  =========================================  ===================
uint8 / int8, per tensor      ``clamp(rint(fma(x, inv, zp)))``            qmax
uint8 / int8, per axis        ``clamp(rint(float32(x * inv) + zp))``      0
uint4 / int4, either          ``clamp(rint(float32(x * inv)) + zp)``      0
============================  =========================================  ===================

Measured against torch 2.13 (x86 engine): ``torch.quantize_per_tensor(..., quint8/qint8)`` adds
the zero point *before* rounding with a single (fused) rounding of ``x * inv + zp``;
``torch.quantize_per_channel`` adds it before rounding but rounds the product to float32 first;
``torch.quint4x2`` (the only 4-bit type there is) adds it *after* rounding, as FBGEMM's
non-legacy ``Quantize`` and formats.md section 1 describe.  The three differ only on values
within an ulp of a half-integer; tests/test_quantization.py compares ``.int_repr()`` on random
data full of exact ties.  NaN maps to qmax per tensor and to 0 (not the zero point) per channel
and for 4 bits, as in torch.  +-inf and huge values saturate to qmax / qmin (torch's quint4x2
maps huge finite values such as 1e10 to the zero point: a torch defect that lowprec does not
copy).

4-bit codes are stored one per byte: ``"int4"`` in int8 arrays (values -8..7), ``"uint4"`` in
uint8 arrays (0..15); :func:`lowprec.packing.pack_bits` packs two per byte.  Passing
``ml_dtypes.int4`` / ``ml_dtypes.uint4`` as ``dtype`` returns an array of that dtype instead.

Dequantize: ``float32(q - zp) * scale`` in float32, one rounding (``q - zp`` is exact), the same
bits as torch's ``dequantize()`` per tensor and per channel.

Scales are float32 (a Python float is rounded to float32 first, as FBGEMM does); they must be
finite, positive, and have a finite float32 reciprocal.
"""

import numbers

import numpy as np

from . import _dispatch, _threads, _validation
from ._kernels import _affine

try:  # ml_dtypes is a run-time dependency, but keep this module importable without it
    import ml_dtypes as _ml
except ImportError:  # pragma: no cover
    _ml = None

_dispatch.register_family("affine", _affine)

__all__ = ["choose_qparams", "quantize", "dequantize"]

#: FBGEMM's SMALL_SCALE_THRESHOLD: the smallest normal fp16 (scales below it are clamped).
SMALL_SCALE_THRESHOLD = np.float32(6.1e-5)
#: torch observers' eps (torch.finfo(torch.float32).eps): the smallest symmetric scale.
_OBSERVER_EPS = np.float32(np.finfo(np.float32).eps)

# name -> (storage dtype, qmin, qmax, bits)
_QTYPES = {
    "uint8": (np.dtype(np.uint8), 0, 255, 8),
    "int8": (np.dtype(np.int8), -128, 127, 8),
    "uint4": (np.dtype(np.uint8), 0, 15, 4),
    "int4": (np.dtype(np.int8), -8, 7, 4),
}
_FLOAT_INPUTS = (np.float32, np.float64, np.float16)


def _qtype(dtype):
    """``(name, storage dtype, qmin, qmax, bits, result dtype)`` for a ``dtype=`` argument."""
    if isinstance(dtype, str) and dtype in _QTYPES:
        name = dtype
    else:
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise TypeError(
                f"dtype must be one of uint8, int8, 'uint4', 'int4'; got {dtype!r}"
            ) from None
        if _ml is not None and dt == np.dtype(_ml.int4):
            name = "int4"
        elif _ml is not None and dt == np.dtype(_ml.uint4):
            name = "uint4"
        elif dt in (np.dtype(np.uint8), np.dtype(np.int8)):
            name = dt.name
        else:
            raise TypeError(f"dtype must be one of uint8, int8, 'uint4', 'int4'; got {dt}")
        if name in ("int4", "uint4"):
            storage, qmin, qmax, bits = _QTYPES[name]
            return name, storage, qmin, qmax, bits, dt
    storage, qmin, qmax, bits = _QTYPES[name]
    return name, storage, qmin, qmax, bits, storage


def _qrange(name, reduce_range):
    _, qmin, qmax, _ = _QTYPES[name]
    if reduce_range:
        # PyTorch: qmin // 2, qmax // 2 with C truncation: uint8 [0, 127], int8 [-64, 63].
        qmin, qmax = int(qmin / 2), int(qmax / 2)
    return qmin, qmax


def _as_float32(x, name="x"):
    x = _validation.as_array(x, name)
    if x.dtype not in [np.dtype(d) for d in _FLOAT_INPUTS]:
        raise TypeError(f"{name} has dtype {x.dtype}; expected float32 (or float16 / float64)")
    # float16/float64 are rounded to float32 first (the kernels' and torch's input type).
    return np.asarray(x, dtype=np.float32, order="C")  # keeps 0-d arrays 0-d


# ---------------------------------------------------------------------------------------------
# choose_qparams


def _fbgemm_qparams(mn, mx, qmin, qmax):
    """PyTorch's ``ChooseQuantizationParams`` (preserve_sparsity=False), vectorised.

    ``mn``, ``mx``: float32 arrays.  Each step keeps the C++ precision (aten/src/ATen/native/
    quantized/cpu/QuantUtils.h): the scale is a double, checked as a float; the stretched range
    is float; the zero point is computed in double from the double scale.  FBGEMM's own copy
    differs in two details (float scale, error terms added): PyTorch is the one users compare
    to, via ``torch._choose_qparams_per_tensor`` and dynamic quantization.
    """
    f32 = np.float32
    mn = np.minimum(mn.astype(f32), f32(0))  # widen the range to include 0 (0 must be exact)
    mx = np.maximum(mx.astype(f32), f32(0))
    n = qmax - qmin
    scale = (mx.astype(np.float64) - mn.astype(np.float64)) / n
    with np.errstate(divide="ignore", over="ignore"):
        s32 = scale.astype(f32)
        bad = (s32 == 0) | np.isinf(f32(1) / s32)
    scale = np.where(bad, 0.1, scale)
    thr = SMALL_SCALE_THRESHOLD
    small = scale < np.float64(thr)
    if small.any():
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            amp = (thr / scale.astype(f32)).astype(f32)  # float org_scale, float amplifier
            stretched_mx = np.where(mn == 0, thr * f32(n), np.where(mx == 0, mx, mx * amp))
            stretched_mn = np.where(mn == 0, mn, np.where(mx == 0, -thr * f32(n), mn * amp))
        mn = np.where(small, stretched_mn, mn).astype(f32)
        mx = np.where(small, stretched_mx, mx).astype(f32)
        scale = np.where(small, np.float64(thr), scale)
    zp_from_min = qmin - mn.astype(np.float64) / scale
    zp_from_max = qmax - mx.astype(np.float64) / scale
    # PyTorch's version of the heuristic subtracts the terms (FBGEMM's adds them).
    err_min = abs(qmin) - np.abs(mn.astype(np.float64) / scale)
    err_max = abs(qmax) - np.abs(mx.astype(np.float64) / scale)
    initial = np.where(err_min < err_max, zp_from_min, zp_from_max)
    zp = np.where(initial < qmin, qmin, np.where(initial > qmax, qmax, np.rint(initial)))
    # The kernels (and torch's quantize) use the scale as float32.
    return scale.astype(f32), zp.astype(np.int32)


def _symmetric_qparams(mn, mx, qmin, qmax, signed):
    """torch.ao.quantization observers, qscheme per_tensor/per_channel_symmetric."""
    f32 = np.float32
    amax = np.maximum(-np.minimum(mn.astype(f32), f32(0)), np.maximum(mx.astype(f32), f32(0)))
    scale = (amax / f32((qmax - qmin) / 2)).astype(f32)  # float32 division, as the observer
    scale = np.maximum(scale, _OBSERVER_EPS).astype(f32)
    # signed: 0; unsigned: the (upper) midpoint, 128 for uint8 like the observer, 8 for uint4.
    zp_value = 0 if signed else (qmin + qmax + 1) // 2
    return scale, np.full(scale.shape, zp_value, dtype=np.int32)


def _qparams_from_range(mn, mx, qmin, qmax, symmetric, signed):
    if symmetric:
        return _symmetric_qparams(mn, mx, qmin, qmax, signed)
    return _fbgemm_qparams(mn, mx, qmin, qmax)


def choose_qparams(
    x, *, dtype=np.uint8, symmetric=False, axis=None, method="minmax", reduce_range=False
):
    """Choose ``(scale, zero_point)`` that quantize ``x`` to ``dtype``.

    Parameters
    ----------
    x : array_like of float32 (float16 / float64 are rounded to float32)
        Values to cover.  NaN or infinity raise ``ValueError`` (no range can be chosen), and so
        does an empty ``x`` (or an empty slice along ``axis``).
    dtype : {numpy.uint8, numpy.int8, "uint4", "int4"}
        Target codes.  ``ml_dtypes.int4`` / ``ml_dtypes.uint4`` are accepted too.
    symmetric : bool
        ``False``: FBGEMM's ``ChooseQuantizationParams`` in PyTorch's version (the one behind
        dynamic quantization and ``torch._choose_qparams_per_tensor``; lowprec returns the same
        zero point and the float32 rounding of torch's double scale): the range is widened to
        include 0, ``scale = (max - min) / (qmax - qmin)`` in double, a scale that is 0 in
        float32 (or has an infinite reciprocal) becomes 0.1, scales below 6.1e-5 are clamped
        and the range stretched, and the zero point comes from whichever end has the smaller
        error term (``|qmin| - |min/scale|`` vs ``|qmax| - |max/scale|``), computed from the
        double scale, rounded half-to-even and clamped.
        ``True``: the symmetric scheme of PyTorch's observers (``MinMaxObserver`` /
        ``PerChannelMinMaxObserver`` with ``per_tensor_symmetric`` / ``per_channel_symmetric``,
        the reference for int8 weights): ``scale = max(|min|, |max|) / ((qmax - qmin) / 2)`` in
        float32, at least float32 eps; zero point 0 for signed types, the midpoint
        ``(qmin + qmax + 1) // 2`` for unsigned ones (128 for uint8, 8 for uint4).  (Deviation:
        the observer keeps 128 even with ``reduce_range``, outside [0, 127]; lowprec uses 64.)
    axis : int or None
        ``None``: one pair for the whole tensor.  An int: one pair per slice along ``axis``.
    method : {"minmax", "mse"}
        ``"minmax"`` covers [min, max].  ``"mse"`` shrinks that range by factors in
        [0.05, 1] (a grid of 96) and keeps, per slice, the one with the least squared error of
        ``dequantize(quantize(x))``; factor 1 (minmax) is a candidate and wins ties, so the
        result is never worse than minmax.
    reduce_range : bool
        Halve the code range as PyTorch does: uint8 [0, 127], int8 [-64, 63], uint4 [0, 7],
        int4 [-4, 3].

    Returns
    -------
    scale, zero_point
        Per tensor: a Python float (holding a float32 value) and a Python int.  Per axis:
        a float32 array and an int32 array of length ``x.shape[axis]``.

    Examples
    --------
    >>> import numpy as np
    >>> from lowprec.quantization import choose_qparams
    >>> choose_qparams(np.array([-1.0, 2.0], dtype=np.float32))
    (0.0117647061124444, 85)
    >>> choose_qparams(np.array([-1.0, 2.0], dtype=np.float32), dtype=np.int8, symmetric=True)
    (0.01568627543747425, 0)
    >>> s, zp = choose_qparams(np.array([[0, 1], [-4, 4]], dtype=np.float32), dtype=np.int8,
    ...                        symmetric=True, axis=0)
    >>> s.dtype, zp.tolist()
    (dtype('float32'), [0, 0])
    """
    name, _, _, _, _, _ = _qtype(dtype)
    qmin, qmax = _qrange(name, bool(reduce_range))
    if method not in ("minmax", "mse"):
        raise ValueError(f"method must be 'minmax' or 'mse', got {method!r}")
    xf = _as_float32(x)
    if axis is not None:
        ax = _validation.normalize_axis(axis, xf.ndim)
    if xf.size == 0:
        raise ValueError("cannot choose quantization parameters for an empty array")
    if not np.isfinite(xf).all():
        raise ValueError("x contains NaN or infinity: no quantization range can be chosen")
    signed = qmin < 0
    if axis is None:
        mn = np.array([xf.min()], dtype=np.float32)
        mx = np.array([xf.max()], dtype=np.float32)
    else:
        other = tuple(i for i in range(xf.ndim) if i != ax)
        mn = xf.min(axis=other).astype(np.float32)
        mx = xf.max(axis=other).astype(np.float32)
    scale, zp = _qparams_from_range(mn, mx, qmin, qmax, symmetric, signed)
    if method == "mse":
        scale, zp = _mse_search(xf, None if axis is None else ax, name, mn, mx, qmin, qmax,
                                symmetric, signed, scale, zp)
    if axis is None:
        return float(scale[0]), int(zp[0])
    return scale.astype(np.float32), zp.astype(np.int32)


def _mse_search(xf, ax, name, mn, mx, qmin, qmax, symmetric, signed, scale, zp):
    """Per slice, the shrink factor of [min, max] with the least L2 error (factor 1 first)."""
    if ax is None:
        xs = xf.reshape(1, -1)
    else:
        xs = np.moveaxis(xf, ax, 0).reshape(xf.shape[ax], -1)
    xs = np.ascontiguousarray(xs)
    C = xs.shape[0]
    best_err = None
    best_scale, best_zp = scale, zp
    for f in np.linspace(1.0, 0.05, 96, dtype=np.float32):
        if f == 1:
            s, z = scale, zp
        else:
            s, z = _qparams_from_range(mn * f, mx * f, qmin, qmax, symmetric, signed)
        # The error is measured with the real kernels (this dtype's rounding convention).
        if ax is None:
            q = quantize(xs, float(s[0]), int(z[0]), dtype=name)
            d = dequantize(q, float(s[0]), int(z[0]))
        else:
            q = quantize(xs, s, z, dtype=name, axis=0)
            d = dequantize(q, s, z, axis=0)
        diff = (d - xs).astype(np.float64)
        err = np.einsum("ij,ij->i", diff, diff)
        if best_err is None:
            best_err = err
            continue
        better = err < best_err
        if better.any():
            best_err = np.where(better, err, best_err)
            best_scale = np.where(better, s, best_scale).astype(np.float32)
            best_zp = np.where(better, z, best_zp).astype(np.int32)
    return best_scale, best_zp


# ---------------------------------------------------------------------------------------------
# quantize / dequantize


def _scale_array(scale, n_channels, name="scale"):
    """Validated float32 scales: a 1-element array (per tensor) or one per channel."""
    try:
        s = np.asarray(scale)
    except Exception as exc:
        raise TypeError(f"{name} must be a float or an array of floats: {exc}") from None
    if s.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be real numbers, got dtype {s.dtype}")
    if n_channels is None:
        if s.ndim != 0 and s.size != 1:
            raise ValueError(f"{name} must be a scalar without axis, got shape {s.shape}")
        s = s.reshape(1)
    else:
        if s.shape != (n_channels,):
            raise ValueError(
                f"{name} must have shape ({n_channels},) (x.shape[axis]), got {s.shape}"
            )
    s32 = s.astype(np.float32)  # the kernels and FBGEMM use float32 scales
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        ok = np.isfinite(s32) & (s32 > 0) & np.isfinite(np.float32(1) / s32)
    if not ok.all():
        bad = s[~ok][0] if s.ndim else s
        raise ValueError(
            f"{name} must be finite and positive with a finite float32 reciprocal, got {bad!r}"
        )
    return np.ascontiguousarray(s32)


def _zp_array(zero_point, n_channels, qmin, qmax, name="zero_point"):
    try:
        z = np.asarray(zero_point)
    except Exception as exc:
        raise TypeError(f"{name} must be an integer or an array of integers: {exc}") from None
    if z.dtype.kind not in "iu" and not (z.dtype == object and all(
        isinstance(v, numbers.Integral) for v in z.ravel()
    )):
        raise TypeError(f"{name} must be integers, got dtype {z.dtype}")
    if n_channels is None:
        if z.ndim != 0 and z.size != 1:
            raise ValueError(f"{name} must be a scalar without axis, got shape {z.shape}")
        z = z.reshape(1)
    elif z.shape != (n_channels,):
        raise ValueError(f"{name} must have shape ({n_channels},) (x.shape[axis]), got {z.shape}")
    zi = z.astype(np.int64) if z.dtype != object else np.array([int(v) for v in z], np.int64)
    if zi.size and (zi.min() < qmin or zi.max() > qmax):
        bad = zi[(zi < qmin) | (zi > qmax)][0]
        raise ValueError(f"{name} {int(bad)} is outside the code range [{qmin}, {qmax}]")
    return np.ascontiguousarray(zi.astype(np.int32))


def _layout(shape, ax):
    """(C, inner) of a C-contiguous array viewed as (outer, C, inner) around ``ax``."""
    C = shape[ax]
    inner = int(np.prod(shape[ax + 1 :], dtype=np.int64))
    return C, inner


def _n_threads(n_threads, n):
    n_chunks = (n + _affine.CHUNK - 1) // _affine.CHUNK
    return _threads.resolve_n_threads(n_threads, n_chunks, 1)


def quantize(x, scale, zero_point, *, dtype, axis=None, out=None, n_threads=None):
    """Quantize float32 values to 8- or 4-bit affine codes, exactly as PyTorch does.

    ``q = clamp(round_half_even(x * (1/scale) + zero_point), qmin, qmax)``; see the module
    docstring for where the zero point is added and how NaN is mapped (each matches torch's
    ``quantize_per_tensor`` / ``quantize_per_channel`` / ``quint4x2`` bit for bit).

    Parameters
    ----------
    x : array_like of float32 (float16 / float64 are rounded to float32 first)
        Any shape and layout; never modified (non-contiguous inputs are copied).
    scale : float, or 1-D array of length ``x.shape[axis]``
        Rounded to float32; must be finite and positive with a finite reciprocal.
    zero_point : int, or 1-D integer array of length ``x.shape[axis]``
        Within the code range of ``dtype``.
    dtype : {numpy.uint8, numpy.int8, "uint4", "int4", ml_dtypes.uint4, ml_dtypes.int4}
        Codes: uint8 [0, 255], int8 [-128, 127], uint4 [0, 15] stored one per byte in uint8,
        int4 [-8, 7] stored one per byte in int8 (ml_dtypes types return that dtype).
    axis : int or None
        Per-tensor (``None``) or per-slice along ``axis`` (PyTorch's per-channel).
    out : ndarray, optional
        C-contiguous, writeable, of ``x``'s shape and the storage dtype, not overlapping ``x``.
    n_threads : int, optional
        Threads for this call (default: :func:`lowprec.get_num_threads`).  Results never
        depend on it.

    Returns
    -------
    ndarray of the storage dtype, shape of ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> from lowprec.quantization import quantize
    >>> quantize(np.array([-1.0, 0.0, 0.25, 0.75, 100.0], dtype=np.float32), 0.5, 1,
    ...          dtype=np.uint8).tolist()
    [0, 1, 2, 2, 201]
    >>> quantize(np.array([[1.0, -1.0], [1.0, -1.0]], dtype=np.float32), [0.5, 0.25], [0, 0],
    ...          dtype=np.int8, axis=1).tolist()
    [[2, -4], [2, -4]]
    >>> quantize(np.array([2.0, -9.0], dtype=np.float32), 1.0, 0, dtype="int4").tolist()
    [2, -8]
    """
    name, storage, qmin, qmax, bits, result_dtype = _qtype(dtype)
    x_in = x
    xf = _as_float32(x)
    ax = None if axis is None else _validation.normalize_axis(axis, xf.ndim)
    n_ch = None if ax is None else xf.shape[ax]
    s = _scale_array(scale, n_ch)
    z = _zp_array(zero_point, n_ch, qmin, qmax)
    ml_out = result_dtype != storage
    if ml_out:
        # ml_dtypes int4 stores the nibble unextended: compute in int8 / uint8, convert after.
        if out is not None:
            _validation.check_out(out, xf.shape, result_dtype, inputs=(x_in, xf))
        q = np.empty(xf.shape, dtype=storage)
    else:
        q = _validation.check_out(out, xf.shape, storage, inputs=(x_in, xf))
    # -- every check has passed: only now is memory written --
    nt = _n_threads(n_threads, xf.size)
    xflat = xf.reshape(-1)
    qflat = q.reshape(-1)
    if bits == 4:
        mode = _affine.ADD_AFTER  # torch quint4x2 / FBGEMM non-legacy
    elif ax is None:
        mode = _affine.FMA_BEFORE  # torch.quantize_per_tensor
    else:
        mode = _affine.ADD_BEFORE  # torch.quantize_per_channel
    if ax is None:
        inv = np.float32(1) / s[0]  # float32 reciprocal, as FBGEMM: 1.0f / scale
        _affine.quantize(xflat, qflat, float(inv), int(z[0]), qmin, qmax, mode, nt)
    else:
        inv = (np.float32(1) / s).astype(np.float32)
        C, inner = _layout(xf.shape, ax)
        if xf.size:
            _affine.quantize_per_channel(xflat, qflat, C, inner, inv, z, qmin, qmax, mode, nt)
    if ml_out:
        res = q.astype(result_dtype)
        if out is None:
            return res
        np.copyto(out, res)
        return out
    return q


def _q_storage(q):
    """(int8/uint8 view or copy of q, code range) for dequantize."""
    q = _validation.as_array(q, "q")
    dt = q.dtype
    if _ml is not None and dt == np.dtype(_ml.int4):
        return np.asarray(q.astype(np.int8), order="C"), -8, 7
    if _ml is not None and dt == np.dtype(_ml.uint4):
        return np.asarray(q.astype(np.uint8), order="C"), 0, 15
    if dt == np.dtype(np.int8):
        return np.asarray(q, order="C"), -128, 127
    if dt == np.dtype(np.uint8):
        return np.asarray(q, order="C"), 0, 255
    raise TypeError(f"q has dtype {dt}; expected int8, uint8, ml_dtypes.int4 or ml_dtypes.uint4")


def dequantize(q, scale, zero_point, *, axis=None, out=None, n_threads=None):
    """Float32 values of affine codes: ``float32(q - zero_point) * scale``.

    Bit-identical to torch's ``dequantize()`` (per tensor and per channel): ``q - zero_point``
    is an exact integer, so the only rounding is the float32 product.

    Parameters
    ----------
    q : array_like of int8 or uint8 (4-bit codes one per byte), or ml_dtypes int4 / uint4
    scale, zero_point, axis :
        As for :func:`quantize`.  ``zero_point`` must lie in the range of ``q``'s dtype.
    out : ndarray of float32, optional
        C-contiguous, writeable, ``q``'s shape, not overlapping ``q``.
    n_threads : int, optional

    Examples
    --------
    >>> import numpy as np
    >>> from lowprec.quantization import dequantize
    >>> dequantize(np.array([0, 1, 2, 201], dtype=np.uint8), 0.5, 1).tolist()
    [-0.5, 0.0, 0.5, 100.0]
    >>> dequantize(np.array([[2, -4]], dtype=np.int8), [0.5, 0.25], [0, 0], axis=1).tolist()
    [[1.0, -1.0]]
    """
    q_in = q
    qc, qmin, qmax = _q_storage(q)
    ax = None if axis is None else _validation.normalize_axis(axis, qc.ndim)
    n_ch = None if ax is None else qc.shape[ax]
    s = _scale_array(scale, n_ch)
    z = _zp_array(zero_point, n_ch, qmin, qmax)
    y = _validation.check_out(out, qc.shape, np.float32, inputs=(q_in, qc))
    nt = _n_threads(n_threads, qc.size)
    qflat = qc.reshape(-1)
    yflat = y.reshape(-1)
    if ax is None:
        _affine.dequantize(qflat, yflat, float(s[0]), int(z[0]), nt)
    elif qc.size:
        C, inner = _layout(qc.shape, ax)
        _affine.dequantize_per_channel(qflat, yflat, C, inner, s, z, nt)
    return y
