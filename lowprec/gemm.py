"""Exact int8 matrix products: packed weights, a fused quantized product, dynamic linear.

Unlike FBGEMM's and ONNX Runtime's AVX2 kernels (which saturate in ``vpmaddubsw`` for
full-range uint8 activations, formats.md section 4), every int32 result here equals an int64
reference bit for bit, on every ISA path.  See docs/int8_gemm.md.

- :func:`pack_weights`: pack an int8 weight ``(out_features, in_features)`` (or quantize a float
  one, symmetric, per tensor or per output channel) once for repeated products.
- :func:`qmatmul`: uint8 / int8 activations times a packed weight, int32 accumulation and a fused
  output pipeline (zero points, scales, bias, ReLU; uint8 / int8 / float32 / int32 output).
- :func:`linear`: dynamic quantization, float32 in and out (like
  ``torch.ops.quantized.linear_dynamic`` but with full 8-bit activations).
- :func:`matmul_int8`: int8 / uint8 x int8 -> int32 on unpacked operands, with broadcasting.
"""

import math
import operator

import numpy as np

from . import _dispatch
from ._errors import SoftErrorDetected
from ._kernels import _gemm_int8
from ._packed_weights import FORMAT_VERSION, PackedWeights
from .quantization import choose_qparams, quantize
from ._threads import resolve_n_threads
from ._validation import as_array, check_out
from .gemm_bf16 import PackedBF16Weights
from .gemm_int4 import PackedInt4Weights

_dispatch.register_family("gemm_int8", _gemm_int8)

__all__ = ["PackedWeights", "SoftErrorDetected", "linear", "matmul_int8", "pack_weights",
           "qmatmul"]

_CHECKS = ("off", "raise", "report")

#: Multiply-adds per thread below which a product stays serial (~5 us of work: a parallel region
#: costs a few microseconds).
_MIN_MACS_PER_THREAD = 1 << 19

_OUT_KINDS = {
    np.dtype(np.int32): _gemm_int8.OUT_INT32,
    np.dtype(np.float32): _gemm_int8.OUT_FLOAT32,
    np.dtype(np.uint8): _gemm_int8.OUT_UINT8,
    np.dtype(np.int8): _gemm_int8.OUT_INT8,
}
_I32 = np.iinfo(np.int32)
_U8, _S8 = np.dtype(np.uint8), np.dtype(np.int8)
_F32_MAX = float(np.finfo(np.float32).max)


# ----------------------------------------------------------------------------------------------
# parameter checks


def _scalar(value, name, kind):
    """A Python int/float from a scalar argument (0-d arrays and NumPy scalars accepted)."""
    if isinstance(value, np.ndarray):
        if value.ndim != 0:
            raise ValueError(f"{name} must be a scalar")
        value = value.item()
    if kind is int:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be an integer")
        try:
            return operator.index(value)
        except TypeError:
            raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}") from None


def _check_scale(value, name):
    s = value if type(value) is float else _scalar(value, name, float)
    if not math.isfinite(s) or not s > 0.0 or s > _F32_MAX:
        raise ValueError(f"{name} must be a finite positive float32 number, got {s!r}")
    s32 = float(np.float32(s))
    if s32 == 0.0:
        raise ValueError(f"{name} underflows float32: {s!r}")
    return s32


def _check_zp(value, name, lo, hi):
    z = value if type(value) is int else _scalar(value, name, int)
    if not lo <= z <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {z}")
    return z


def _check_weight_params(scale, zero_point, n):
    """Validate weight scales (1 or n, finite > 0) and zero points (1 or n, int8 range)."""
    scale = np.asarray(scale, dtype=np.float64).reshape(-1)
    if scale.shape[0] not in (1, n):
        raise ValueError(f"weight scale must be a scalar or have {n} entries, got {scale.shape[0]}")
    if not np.all(np.isfinite(scale)) or not np.all(scale > 0) or np.any(scale > _F32_MAX):
        raise ValueError("weight scales must be finite and positive")
    if np.any(scale.astype(np.float32) == 0):
        raise ValueError("weight scales underflow float32")
    zp = np.asarray(zero_point)
    if zp.dtype.kind not in "iub":
        raise TypeError("weight zero_point must be integer")
    zp = zp.astype(np.int64).reshape(-1)
    if zp.shape[0] not in (1, n):
        raise ValueError(f"weight zero_point must be a scalar or have {n} entries")
    if np.any(zp < -128) or np.any(zp > 127):
        raise ValueError("weight zero_point must be in [-128, 127]")
    return scale.astype(np.float32), zp.astype(np.int32)


def _check_bias(bias, n, name="bias"):
    if bias is None:
        return None
    b = as_array(bias, name)
    if b.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real array, got dtype {b.dtype}")
    if b.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {b.shape}")
    b = b.astype(np.float32)
    if not np.all(np.isfinite(b)):
        raise ValueError(f"{name} must be finite")
    return b


def _check_packed(w_packed):
    if not isinstance(w_packed, PackedWeights):
        raise TypeError(
            f"w_packed must be a PackedWeights (from lowprec.gemm.pack_weights), "
            f"got {type(w_packed).__name__}"
        )
    try:
        w_packed._buffers  # noqa: B018  (an object unpickled from another version lacks it)
        w_packed.colsum  # noqa: B018
        w_packed.wsum  # noqa: B018
        w_packed.chk_r  # noqa: B018
    except AttributeError:
        raise ValueError(
            "w_packed comes from an incompatible lowprec version "
            f"(this one reads format version {FORMAT_VERSION}); repack the weight"
        ) from None


# ----------------------------------------------------------------------------------------------
# packing


def _choose_weight_scale(w, per_channel):
    """Symmetric int8 scales: amax / 127 (the range is [-127, 127]; -128 is never produced)."""
    amax = np.abs(w).max(axis=1) if per_channel else np.array([np.abs(w).max()] if w.size else [0.0])
    if amax.size == 0:
        amax = np.zeros(max(1, w.shape[0] if per_channel else 1))
    scale = (amax.astype(np.float64) / 127.0).astype(np.float32)
    scale[~(scale > 0)] = 1.0  # all-zero rows (or weights): any scale works; 1.0 like FBGEMM's 0.1
    return scale


def pack_weights(w, *, scale=None, zero_point=0, bias=None, per_channel=True):
    """Pack a weight ``(out_features, in_features)`` for repeated exact int8 products.

    Parameters
    ----------
    w : array_like, int8 or float, shape (out_features, in_features)
        The weight in ``torch.nn.Linear`` orientation; products compute ``a @ w.T``.
        int8: used as is.  float: quantized symmetrically, ``scale = max|w| / 127`` per output
        channel (``per_channel=True``) or per tensor, ``q = clamp(rint(w * (1/scale)), -127, 127)``
        with a float32 reciprocal (FBGEMM's rule), zero point 0.
    scale : float or array of out_features floats, optional
        Weight scales for an int8 ``w`` (default 1.0).  Not allowed for a float ``w``.
    zero_point : int or array of out_features ints, default 0
        Weight zero points for an int8 ``w``, in [-128, 127].
    bias : array of out_features floats, optional
        Float bias added in the output pipeline (``qmatmul``, ``linear``), stored as float32.
    per_channel : bool, default True
        Quantization granularity for a float ``w``.

    Returns
    -------
    PackedWeights

    Examples
    --------
    >>> import numpy as np
    >>> pw = pack_weights(np.eye(3, dtype=np.float32))
    >>> pw.shape, pw.scale.tolist()
    ((3, 3), [0.007874015718698502, 0.007874015718698502, 0.007874015718698502])
    """
    w = as_array(w, "w")
    if w.ndim != 2:
        raise ValueError(f"w must be 2-D (out_features, in_features), got shape {w.shape}")
    n, k = w.shape
    if w.dtype == np.int8:
        s = 1.0 if scale is None else scale
        s, zp = _check_weight_params(s, zero_point, n)
        wq = w
    elif w.dtype.kind == "f":
        if scale is not None:
            raise ValueError("scale is chosen from a float weight; pass an int8 w to set it")
        if np.any(np.asarray(zero_point) != 0):
            raise ValueError("float weights are quantized symmetrically (zero_point 0)")
        w32 = w.astype(np.float32)
        if not np.all(np.isfinite(w32)):
            raise ValueError("w must be finite")
        s = _choose_weight_scale(w32, bool(per_channel))
        inv = (np.float32(1.0) / s).astype(np.float32)
        q = np.rint(w32 * (inv[:, None] if s.shape[0] > 1 else inv[0]))
        wq = np.clip(q, -127, 127).astype(np.int8)
        s, zp = _check_weight_params(s, 0, n)
    else:
        raise TypeError(f"w has dtype {w.dtype}; expected int8 or a float dtype")
    b = _check_bias(bias, n)
    return PackedWeights(wq, s, zp, b)


# ----------------------------------------------------------------------------------------------
# the product


def _as_rows(a, k, name):
    """``a`` (..., k) as a 2-D (m, k) array with a unit column stride, and the leading shape."""
    if a.ndim == 0:
        raise ValueError(f"{name} must have at least 1 dimension")
    if a.shape[-1] != k:
        raise ValueError(
            f"{name} has {a.shape[-1]} columns but the weight has in_features={k} (mismatched K)"
        )
    lead = a.shape[:-1]
    if a.ndim == 2:
        a2 = a
    else:
        a2 = a.reshape(-1, k)
    if a2.shape[0] > 0 and k > 1 and a2.strides[1] != a2.itemsize:
        a2 = np.ascontiguousarray(a2)
    elif k <= 1 and a2.shape[0] > 0:
        a2 = np.ascontiguousarray(a2)
    return a2, lead


def _wrap32(x):
    return (np.asarray(x, dtype=np.int64) & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


def _corrections(pw, a_zp):
    """(coloff, bzp) for the pipeline: corr = acc + coloff[j] - rowsum[i] * bzp[j] (int32)."""
    n, k = pw.shape
    bzp = None
    if np.any(pw.zero_point):
        bzp = np.ascontiguousarray(np.broadcast_to(pw.zero_point, (n,)), dtype=np.int32)
    coloff = None
    if a_zp != 0 or bzp is not None:
        off = -np.int64(a_zp) * pw.colsum.astype(np.int64)
        if bzp is not None:
            off = off + np.int64(k) * np.int64(a_zp) * bzp.astype(np.int64)
        coloff = _wrap32(off)
    return coloff, bzp


def _cached(pw, key, make):
    """Per-weight cache of the small per-call arrays (column corrections, multipliers)."""
    cache = pw._cache
    val = cache.get(key)
    if val is None:
        val = make()
        if len(cache) >= 32:
            cache.clear()
        cache[key] = val
    return val


def _consts(pw, layout, kind, a_zp, mult, bias_term):
    buf = pw._buffers.get(layout)
    if buf is None:
        buf = pw._buffer(layout)
    coloff, bzp = _cached(pw, ("corr", a_zp), lambda: _corrections(pw, a_zp))
    n, k = pw.shape
    return _gemm_int8.make_consts(buf, layout, n, k, kind, coloff, bzp, mult, bias_term,
                                  (buf, coloff, bzp, mult, bias_term))


_FAST_CHECKS = {"off": 0, "raise": 1, "report": 2}
# id(out_dtype) -> (output kind, the object): identity, not equality (np.dtype(np.uint8) ==
# "uint8"); the object is kept so that its id stays taken
_FAST_DTYPES = {id(t): (v, t) for t, v in (
    [(t, _OUT_KINDS[np.dtype(t)]) for t in (np.int32, np.float32, np.uint8, np.int8)]
    + [(dt, v) for dt, v in _OUT_KINDS.items()])}


def _fast_key(out_dtype, a_scale, a_zero_point, out_scale, out_zero_point, relu):
    """The cache key of qmatmul's fast path (the validated arguments of an earlier call), or None
    for arguments it does not take: only exact Python ints / floats / bools and NumPy's own dtype
    objects, so that no value that compares equal to a valid one (True == 1, "uint8" ==
    np.dtype(np.uint8)) but would be rejected or read differently can hit the cache."""
    if (type(a_zero_point) is not int or type(out_zero_point) is not int
            or type(relu) is not bool or (a_scale is not None and type(a_scale) is not float)
            or (out_scale is not None and type(out_scale) is not float)):
        return None
    kind = _FAST_DTYPES.get(id(out_dtype))
    if kind is None:
        return None
    return ("fast", _gemm_int8._get_isa(), kind[0], a_zero_point, a_scale, out_scale,
            out_zero_point, relu)


def _check_mode(check):
    if check is None or check is False:
        return "off"
    if check not in _CHECKS:
        raise ValueError(f"check must be one of {_CHECKS}, got {check!r}")
    return check


def _fast_answer(r, mode, what):
    """The API's answer from a fast path's result: ``y`` (mode 0, check off), ``(y, flags)``
    (mode 2, "report"), or ``y`` after raising SoftErrorDetected on a failed row ("raise")."""
    if mode == 0:
        return r
    y, flags, bad = r
    if mode == 2:
        return y, flags
    if bad:
        raise SoftErrorDetected(flags, y, what)
    return y


def _finish_check(check, out, codes, what="int8 GEMM"):
    """Turn the kernel's per-row codes into the API's answer for ``check`` "raise" / "report"."""
    flags = (codes != 0).reshape(out.shape[:-1])
    if check == "report":
        return out, flags
    if codes.any():
        raise SoftErrorDetected(flags, out, what)
    return out


def _run(a_u8, pw, out2, kind, a_zp, mult, bias_term, y_zp, lo, hi, relu, n_threads,
         consts=None, codes=None, inject=None):
    """The product.  ``consts``: a cached GemmConsts for the ISA in use (else built here).

    ``codes``: a uint8 array of m entries: run the soft-error checks and store per row
    1 (accumulator identity failed) | 2 (output checksum failed).  ``inject``:
    ``(target, i, j, bit)`` for the fault-injection hook (lowprec.faults)."""
    m, k = a_u8.shape
    n = pw._n
    isa = _gemm_int8._get_isa()
    c = consts
    if c is None:
        c = _consts(pw, _gemm_int8.layout_for_isa(isa), kind, a_zp, mult, bias_term)
    rowsum = _wrap32(a_u8.sum(axis=1, dtype=np.int64)) if c.needs_rowsum else None
    work = m * n * max(k, 1)
    if work < 2 * _MIN_MACS_PER_THREAD and (n_threads is None or (
            type(n_threads) is int and n_threads >= 1)):
        nt = 1  # serial anyway (the keyword is valid): skip the thread-count lookup
    else:
        nt = resolve_n_threads(n_threads, work_items=work,
                               min_items_per_thread=_MIN_MACS_PER_THREAD)
    out_b = out2 if out2.dtype == _U8 else out2.view(np.uint8)
    if codes is None:
        _gemm_int8.gemm_run(c, a_u8, out_b, rowsum, y_zp, lo, hi, relu, nt, isa)
    elif inject is None:
        _gemm_int8.gemm_run(c, a_u8, out_b, rowsum, y_zp, lo, hi, relu, nt, isa, pw.wsum, codes,
                            pw.chk_r)
    else:
        _gemm_int8.gemm_run(c, a_u8, out_b, rowsum, y_zp, lo, hi, relu, nt, isa, pw.wsum, codes,
                            pw.chk_r, *inject)


def _activation(a_q, k):
    """(uint8 rows, zero-point shift, leading shape) for uint8 or int8 activations."""
    a_q = as_array(a_q, "a_q")
    if a_q.dtype == np.uint8:
        a2, lead = _as_rows(a_q, k, "a_q")
        return a2, 0, lead
    if a_q.dtype == np.int8:
        a2, lead = _as_rows(a_q, k, "a_q")
        u = np.empty(a2.shape, dtype=np.uint8)
        _gemm_int8.s8_to_u8(a2, u)  # a + 128: the zero point moves by 128 too
        return u, 128, lead
    raise TypeError(
        f"a_q has dtype {a_q.dtype}; expected uint8 or int8 (quantize float activations "
        "first, or use lowprec.gemm.linear)"
    )


def _multipliers(pw, a_s, y_s, b):
    """Per-column float64 multipliers and bias terms of the output pipeline (formats.md 1)."""
    ab = np.float64(a_s) * pw.scale.astype(np.float64)  # a_s * w_s[j], exact in float64
    if y_s is None:  # float32 output: y = ab[j] * corr + bias[j]
        return ab, (None if b is None else b.astype(np.float64))
    mult = ab / np.float64(y_s)
    bias_term = None if b is None else b.astype(np.float64) / np.broadcast_to(ab, b.shape)
    return mult, bias_term


def qmatmul(a_q, w_packed, *, a_scale=None, a_zero_point=0, out_dtype=np.int32, out_scale=None,
            out_zero_point=0, bias=None, relu=False, out=None, n_threads=None, check="off",
            _inject=None):
    """Quantized product ``a_q @ w.T`` with exact int32 accumulation and a fused output pipeline.

    Parameters
    ----------
    a_q : array_like, uint8 (zero point 0..255) or int8 (zero point -128..127), shape (..., K)
        Quantized activations, full range.  Any row stride.
    w_packed : PackedWeights
        From :func:`pack_weights`, shape (N, K).
    a_scale : float
        Activation scale (needed for float32, uint8 and int8 output).
    a_zero_point : int, default 0
    out_dtype : {numpy.int32, numpy.float32, numpy.uint8, numpy.int8}, default int32
        - int32: ``sum_k (a - a_zp) * (w - w_zp)`` exactly (wraps modulo 2**32 only if
          K > 33025); no scale, bias or ReLU.
        - float32: ``a_scale * w_scale[j] * acc + bias[j]`` (in float64, rounded once), then ReLU.
        - uint8 / int8: ``clamp(rint((acc + bias[j] / (a_s * w_s[j])) * (a_s * w_s[j] / out_scale))
          + out_zero_point, lo, hi)``, round half to even, ``lo = out_zero_point`` with ReLU
          (formats.md section 1, evaluated in float64).
    out_scale, out_zero_point : float, int
        Output quantization (uint8 / int8 output only).
    bias : array of N floats, optional
        Overrides the bias stored in ``w_packed``.
    relu : bool
    out : ndarray, optional
        C-contiguous, shape (..., N), dtype ``out_dtype``; must not overlap the inputs.
    n_threads : int, optional
    check : {"off", "raise", "report"}, default "off"
        Soft-error detection (docs/soft_errors.md).  "off": none, no cost.  Otherwise every
        output row is verified by two exact checksums: ``sum_j r[j] * acc[i, j] == sum_k
        a[i, k] * wsum[k]`` (mod 2**32, ``wsum = r @ w`` and the odd ``r`` stored with the
        weights) on the int32 accumulators before requantization, and the sum of
        the stored output row against what the output pipeline emitted.  "raise": raise
        :class:`lowprec.SoftErrorDetected` (with ``.rows``) if any row fails; "report": return
        ``(result, flags)``, ``flags`` a bool array of shape ``(...)`` (True = failed).

    Returns
    -------
    ndarray of shape (..., N), or ``(ndarray, flags)`` with ``check="report"``

    Examples
    --------
    >>> import numpy as np
    >>> pw = pack_weights(np.array([[127, -128]], dtype=np.int8))
    >>> qmatmul(np.array([[255, 255]], dtype=np.uint8), pw)
    array([[-255]], dtype=int32)
    """
    fkey = None
    if type(w_packed) is PackedWeights and bias is None:
        fkey = _fast_key(out_dtype, a_scale, a_zero_point, out_scale, out_zero_point, relu)
        entry = None
        if fkey is not None:
            try:
                entry = w_packed._cache.get(fkey)
            except AttributeError:  # state from another version: _check_packed says so
                pass
        if entry is not None and type(check) is str:
            mode = _FAST_CHECKS.get(check)
            # (fault injection too: lowprec.faults measures the path that calls take)
            r = None if mode is None else _gemm_int8.qmatmul_fast(entry, a_q, out, n_threads, mode,
                                                                  _inject)
            if r is not None:
                return _fast_answer(r, mode, "int8 GEMM")
    _check_packed(w_packed)
    check = "off" if check == "off" else _check_mode(check)
    n, k = w_packed.shape
    try:
        out_dtype = out_dtype if type(out_dtype) is np.dtype else np.dtype(out_dtype)
    except TypeError:
        raise TypeError(f"out_dtype {out_dtype!r} is not a dtype") from None
    if out_dtype not in _OUT_KINDS:
        raise TypeError(f"out_dtype must be int32, float32, uint8 or int8, got {out_dtype}")
    kind = _OUT_KINDS[out_dtype]
    a_arr = as_array(a_q, "a_q")
    if a_arr.dtype == _U8:
        a_zp = _check_zp(a_zero_point, "a_zero_point", 0, 255)
    elif a_arr.dtype == _S8:
        a_zp = _check_zp(a_zero_point, "a_zero_point", -128, 127)
    else:
        raise TypeError(
            f"a_q has dtype {a_arr.dtype}; expected uint8 or int8 (quantize float activations "
            "first, or use lowprec.gemm.linear)"
        )
    if a_arr.ndim == 0 or a_arr.shape[-1] != k:
        raise ValueError(
            f"a_q has shape {a_arr.shape} but the weight has in_features={k} (mismatched K)"
        )
    relu = bool(relu)
    y_zp, lo, hi = 0, 0, 0
    mult = bias_term = None
    consts_key = None
    if kind == _gemm_int8.OUT_INT32:
        if bias is not None or relu or out_scale is not None:
            raise ValueError("int32 output is the raw corrected accumulator: no bias, relu or out_scale")
        consts_key = ()
    else:
        if a_scale is None:
            raise ValueError(f"a_scale is required for {out_dtype} output")
        a_s = _check_scale(a_scale, "a_scale")
        if kind == _gemm_int8.OUT_FLOAT32:
            if out_scale is not None:
                raise ValueError("out_scale is only used with uint8 / int8 output")
            y_s = None
        else:
            if out_scale is None:
                raise ValueError(f"out_scale is required for {out_dtype} output")
            y_s = _check_scale(out_scale, "out_scale")
            if kind == _gemm_int8.OUT_UINT8:
                y_zp = _check_zp(out_zero_point, "out_zero_point", 0, 255)
                lo, hi = 0, 255
            else:
                y_zp = _check_zp(out_zero_point, "out_zero_point", -128, 127)
                lo, hi = -128, 127
            if relu:
                lo = max(lo, y_zp)
        if bias is None:
            consts_key = (a_s, y_s)
        else:
            mult, bias_term = _multipliers(w_packed, a_s, y_s, _check_bias(bias, n))
    out_shape = a_arr.shape[:-1] + (n,)
    out = check_out(out, out_shape, out_dtype, inputs=(a_arr,))
    # every check passed: from here on nothing raises for bad arguments
    if (a_arr.dtype == _U8 and a_arr.ndim == 2 and (a_arr.strides[1] == 1 or k == 0)
            and k != 1):
        a_u8, shift = a_arr, 0  # the common case, read in place
    else:
        a_u8, shift, _ = _activation(a_arr, k)
    out2 = out.reshape(-1, n) if out.ndim != 2 else out
    consts = None
    if consts_key is not None:
        # the constant arguments (packed B, corrections, multipliers) cached with the weight
        layout = _gemm_int8.layout_for_isa(_gemm_int8._get_isa())
        key = ("consts", layout, kind, a_zp + shift) + consts_key
        consts = w_packed._cache.get(key)
        if consts is None:
            if kind != _gemm_int8.OUT_INT32:
                mult, bias_term = _multipliers(w_packed, a_s, y_s, w_packed.bias)
            consts = _cached(w_packed, key, lambda: _consts(
                w_packed, layout, kind, a_zp + shift, mult, bias_term))
        if fkey is not None and shift == 0:
            # every argument of this combination is valid: later calls with it take the fast path
            _cached(w_packed, fkey, lambda: _gemm_int8.make_fast_entry(
                consts, y_zp, lo, hi, relu, out_dtype, w_packed.wsum, w_packed.chk_r))
    if check == "off":
        _run(a_u8, w_packed, out2, kind, a_zp + shift, mult, bias_term, y_zp, lo, hi, relu,
             n_threads, consts)
        return out
    codes = np.zeros(out2.shape[0], dtype=np.uint8)
    _run(a_u8, w_packed, out2, kind, a_zp + shift, mult, bias_term, y_zp, lo, hi, relu,
         n_threads, consts, codes, _inject)
    return _finish_check(check, out, codes)


# ----------------------------------------------------------------------------------------------
# dynamic quantization


def linear(x, w_packed, bias=None, *, relu=False, out=None, n_threads=None, check="off",
           activations=None):
    """Dynamically quantized linear layer: float32 ``x (..., K)`` -> float32 ``(..., N)``.

    The range of the whole ``x`` picks ``a_scale, a_zero_point`` (PyTorch's
    ChooseQuantizationParams = :func:`lowprec.quantization.choose_qparams`, full 8 bits, no
    reduce_range), ``x`` is quantized to uint8 as ``torch.ops.quantized.linear_dynamic`` does
    (``clamp(rint(fma(x, 1/scale, zp)), 0, 255)``, = :func:`lowprec.quantization.quantize`),
    the product is exact, and ``y = a_s * w_s[j] * (acc - a_zp * colsum[j] - ...) + bias[j]``.
    Min/max, parameters, quantization and product run in one fused C call.

    ``check="raise"|"report"`` runs the soft-error checks of :func:`qmatmul` on the quantized
    product (the activations are checked from the moment they are quantized).

    ``w_packed`` may also be a bfloat16 or int4 packed weight (:func:`lowprec.pack_weights_bf16`,
    :func:`lowprec.pack_weights_int4`): ``linear`` is one entry point for every precision, and
    forwards to that weight's own product (``relu`` and ``check`` apply to int8 weights only;
    ``activations="float32"|"int8"|"int24"`` to int4 weights only, see
    :meth:`lowprec.PackedInt4Weights.linear`).

    Examples
    --------
    >>> import numpy as np
    >>> pw = pack_weights(np.eye(2, dtype=np.float32))
    >>> linear(np.array([[1.0, -1.0]], dtype=np.float32), pw).round(2)
    array([[ 1., -1.]], dtype=float32)
    """
    fkey = None
    if type(w_packed) is PackedWeights and bias is None and type(relu) is bool and activations is None:
        fkey = ("linear", _gemm_int8._get_isa(), relu)
        try:
            entry = w_packed._cache.get(fkey)
        except AttributeError:  # state from another version: _check_packed says so
            entry = None
        if entry is not None and type(check) is str:
            mode = _FAST_CHECKS.get(check)
            r = None if mode is None else _gemm_int8.linear_fast(entry, x, out, n_threads, mode)
            if r is not None:
                return _fast_answer(r, mode, "int8 linear")
    if isinstance(w_packed, (PackedBF16Weights, PackedInt4Weights)):
        if relu or check != "off":
            raise ValueError("relu= and check= apply to int8 weights only")
        if isinstance(w_packed, PackedInt4Weights) and activations is not None:
            return w_packed.linear(x, bias, out=out, n_threads=n_threads, activations=activations)
        if activations is not None:
            raise ValueError("activations= applies to int4 weights only")
        return w_packed.linear(x, bias, out=out, n_threads=n_threads)
    if activations is not None:
        raise ValueError("activations= applies to int4 weights only")
    _check_packed(w_packed)
    check = "off" if check == "off" else _check_mode(check)
    n, k = w_packed.shape
    x = as_array(x, "x")
    if x.dtype.kind != "f":
        raise TypeError(f"x has dtype {x.dtype}; expected float32 (linear quantizes it)")
    if x.ndim == 0 or x.shape[-1] != k:
        raise ValueError(f"x has shape {x.shape} but the weight has in_features={k} (mismatched K)")
    b = w_packed.bias if bias is None else _check_bias(bias, n)
    out_shape = x.shape[:-1] + (n,)
    out = check_out(out, out_shape, np.float32, inputs=(x,))
    x2, _ = _as_rows(x.astype(np.float32, copy=False), k, "x")
    m = x2.shape[0]
    isa = _gemm_int8._get_isa()
    layout = _gemm_int8.layout_for_isa(isa)
    buf = w_packed._buffers.get(layout)
    if buf is None:
        buf = w_packed._buffer(layout)
    bzp = _cached(w_packed, ("corr", 0), lambda: _corrections(w_packed, 0))[1]
    wscale = w_packed.scale
    work = m * n * max(k, 1)
    if work < 2 * _MIN_MACS_PER_THREAD and (n_threads is None or (
            type(n_threads) is int and n_threads >= 1)):
        nt = 1  # serial anyway (the keyword is valid): skip the thread-count lookup
    else:
        nt = resolve_n_threads(n_threads, work_items=work, min_items_per_thread=_MIN_MACS_PER_THREAD)
    qbuf = np.empty((m, k), dtype=np.uint8)
    out2 = out.reshape(-1, n) if out.ndim != 2 else out
    if fkey is not None:
        # the weight's arguments are valid for this ISA: later calls take the fast path
        _cached(w_packed, fkey, lambda: _gemm_int8.make_linear_entry(
            buf, layout, n, k, w_packed.colsum, bzp, wscale, b, relu, w_packed.wsum,
            w_packed.chk_r,
            (buf, w_packed.colsum, bzp, wscale, b, w_packed.wsum, w_packed.chk_r)))
    # min/max, qparams, quantization, corrections and the product in one C call; it raises
    # ValueError for a non-finite x before anything is written to out
    if check == "off":
        _gemm_int8.linear_f32(x2, buf, layout, n, out2, qbuf, w_packed.colsum, bzp, wscale, b,
                              bool(relu), nt, isa)
        return out
    codes = np.zeros(m, dtype=np.uint8)
    _gemm_int8.linear_f32(x2, buf, layout, n, out2, qbuf, w_packed.colsum, bzp, wscale, b,
                          bool(relu), nt, isa, w_packed.wsum, codes, w_packed.chk_r)
    return _finish_check(check, out, codes, "int8 linear")


def quantize_activations(x):
    """``(q, scale, zero_point)``: ``x`` quantized to uint8 exactly as :func:`linear` does.

    This is :func:`lowprec.quantization.choose_qparams` (uint8, per tensor, no reduce_range)
    followed by :func:`lowprec.quantization.quantize` (torch's per-tensor rule,
    ``clamp(rint(fma(x, 1/scale, zp)))``); :func:`linear` runs a fused C twin of both that
    gives the same bits (tests/test_gemm_int8.py pins them to each other and to torch).

    Examples
    --------
    >>> import numpy as np
    >>> q, scale, zp = quantize_activations(np.array([[-1.0, 0.0, 2.0]], dtype=np.float32))
    >>> q, float(scale), zp
    (array([[  0,  85, 255]], dtype=uint8), 0.0117647061124444, 85)
    """
    x = as_array(x, "x")
    if x.dtype.kind != "f":
        raise TypeError(f"x has dtype {x.dtype}; expected a float dtype")
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    if x32.size and not np.isfinite(x32).all():
        raise ValueError("x must be finite (NaN or inf found)")
    if x32.size:
        a_s, a_zp = choose_qparams(x32, dtype=np.uint8)
    else:
        a_s, a_zp = _gemm_int8.choose_qparams_u8(0.0, 0.0)
    q = quantize(x32, a_s, a_zp, dtype=np.uint8, n_threads=1)
    return q, np.float32(a_s), a_zp


# ----------------------------------------------------------------------------------------------
# unpacked operands


def matmul_int8(a, b, *, out=None, n_threads=None):
    """``a @ b`` for int8 or uint8 ``a`` and int8 ``b``, exact int32, NumPy broadcasting.

    Shapes follow :func:`numpy.matmul` (1-D operands are promoted and the added axis removed).
    ``b`` is packed on the fly (once when it has no batch dimensions).  The int32 result wraps
    modulo 2**32 only if K > 65793.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[255, 255]], dtype=np.uint8)
    >>> b = np.array([[127], [127]], dtype=np.int8)
    >>> matmul_int8(a, b)
    array([[64770]], dtype=int32)
    """
    a = as_array(a, "a", (np.uint8, np.int8))
    b = as_array(b, "b", (np.int8,))
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul_int8: operands must have at least 1 dimension")
    a_vec, b_vec = a.ndim == 1, b.ndim == 1
    a3 = a[None, :] if a_vec else a
    b3 = b[:, None] if b_vec else b
    if a3.shape[-1] != b3.shape[-2]:
        raise ValueError(
            f"matmul_int8: mismatched K: a has shape {a.shape}, b has shape {b.shape}"
        )
    m, k = a3.shape[-2:]
    n = b3.shape[-1]
    try:
        batch = np.broadcast_shapes(a3.shape[:-2], b3.shape[:-2])
    except ValueError:
        raise ValueError(
            f"matmul_int8: batch dimensions do not broadcast: {a.shape} and {b.shape}"
        ) from None
    full_shape = batch + (m, n)
    res_shape = batch + ((m,) if not a_vec else ()) + ((n,) if not b_vec else ())
    out = check_out(out, res_shape, np.int32, inputs=(a, b))
    if out.size == 0:
        return out
    out_full = out.reshape(full_shape)
    a_b = np.broadcast_to(a3, batch + (m, k))
    b_b = np.broadcast_to(b3, batch + (k, n))
    shift = 128 if a.dtype == np.int8 else 0
    pw_cache = None
    if b3.ndim == 2:
        pw_cache = PackedWeights(np.ascontiguousarray(b3.T), 1.0, 0, None)
    for idx in np.ndindex(*batch):
        ai = a_b[idx]
        pw = pw_cache if pw_cache is not None else PackedWeights(
            np.ascontiguousarray(b_b[idx].T), 1.0, 0, None)
        if shift:
            u = np.empty((m, k), dtype=np.uint8)
            if ai.size:
                _gemm_int8.s8_to_u8(ai if ai.strides[-1] == 1 else np.ascontiguousarray(ai), u)
            ai = u
        elif k > 0 and m > 0 and ai.strides[-1] != 1:
            ai = np.ascontiguousarray(ai)
        _run(ai, pw, out_full[idx], _gemm_int8.OUT_INT32, shift, None, None, 0, 0, 0, False,
             n_threads)
    return out
