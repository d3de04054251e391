"""bfloat16 matrix products with float32 accumulation (docs/bf16_int4_gemm.md).

- :func:`pack_weights_bf16`: pack a weight ``(out_features, in_features)`` (float32, rounded to
  bfloat16 round-to-nearest-even, or ml_dtypes bfloat16 taken as is) once for repeated products.
- :func:`linear_bf16` / :meth:`PackedBF16Weights.linear`: ``x @ w.T + bias`` for float32 or
  bfloat16 ``x``, float32 accumulation, float32 output or bfloat16 output rounded once at the end
  (the rounding modes of :func:`lowprec.to_bfloat16`).
- :func:`matmul_bf16`: ``a @ b`` on unpacked operands with NumPy broadcasting.

Accuracy: every product is accumulated in float32 (never in bfloat16) over the exact bf16
weights; against the float64 product of the same inputs,
``|y - y64| <= K * 2**-23 * sum_k |a_k| |w_k|`` (+ half an ulp of the result for the final
rounding; the bias is added once after the sum).  See docs/bf16_int4_gemm.md for the derivation.
"""

import math
import struct

import numpy as np

from . import _dispatch
from ._kernels import _gemm_bf16
from ._packed_format import (_F32, BF16, PackedFormatMixin, _activation_rows, _aligned_empty,
                             _check_activation, _check_bias, _check_size, _n_threads,
                             _read_header, _readonly)
from ._validation import as_array, check_out

_dispatch.register_family("gemm_bf16", _gemm_bf16)

__all__ = ["PackedBF16Weights", "linear_bf16", "matmul_bf16", "pack_weights_bf16"]

FORMAT_MAGIC = b"LPWB"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sHHQQ")
_FLAG_BIAS = 2


# ----------------------------------------------------------------------------------------------
# output handling (the helpers shared with gemm_int4 live in _packed_format)


def _out_kind(out_dtype):
    try:
        dt = np.dtype(out_dtype)
    except TypeError:
        raise TypeError(f"out_dtype {out_dtype!r} is not a dtype") from None
    if dt not in (_F32, BF16):
        raise TypeError(f"out_dtype must be float32 or bfloat16, got {dt}")
    return dt


def _finish(tmp, out, out_dtype, rounding, rng):
    """Round the float32 result ``tmp`` into ``out`` (bfloat16 output), once."""
    if out_dtype == BF16:
        from .bf16 import to_bfloat16

        to_bfloat16(tmp, rounding=rounding, rng=rng, out=out)
    return out


def _check_rounding(rounding):
    if rounding not in ("nearest", "truncate", "stochastic"):
        raise ValueError(f"rounding must be 'nearest', 'truncate' or 'stochastic', got {rounding!r}")


# ----------------------------------------------------------------------------------------------
# packed weights


class PackedBF16Weights(PackedFormatMixin):
    """A bfloat16 weight ``(out_features, in_features)`` packed for :func:`linear_bf16`.

    The packed layout (16-column panels of k pairs, src/gemm_bf16.h) is the same on every ISA;
    :meth:`unpack` returns the bfloat16 weight bit for bit; pickle and :meth:`to_bytes` store
    the plain bf16 matrix.

    Examples
    --------
    >>> import numpy as np
    >>> pw = pack_weights_bf16(np.array([[1.0, 2.0], [3.0, 1.00390625]], dtype=np.float32))
    >>> pw.unpack().astype(np.float32)
    array([[1., 2.],
           [3., 1.]], dtype=float32)
    >>> pw.linear(np.array([[1.0, 1.0]], dtype=np.float32))
    array([[3., 4.]], dtype=float32)
    """

    __slots__ = ("_n", "_k", "_packed", "bias", "__weakref__")

    def __init__(self, w_bits, bias=None):
        w_bits = as_array(w_bits, "w")
        if w_bits.dtype == BF16:
            w_bits = w_bits.view(np.uint16)
        if w_bits.dtype != np.uint16 or w_bits.ndim != 2:
            raise TypeError("PackedBF16Weights needs a 2-D bfloat16 (or uint16 bits) array")
        self._n, self._k = w_bits.shape
        packed = _aligned_empty(_gemm_bf16.packed_words(self._n, self._k), np.uint32)
        if w_bits.size and (w_bits.strides[0] % 2 or w_bits.strides[1] % 2):
            w_bits = np.ascontiguousarray(w_bits)
        _gemm_bf16.pack(w_bits, packed)
        packed.setflags(write=False)
        self._packed = packed
        self.bias = None if bias is None else _check_bias(bias, self._n)
        _readonly(self.bias)

    @property
    def nbytes(self):
        return self._packed.nbytes

    def unpack(self):
        """The bfloat16 weight ``(out_features, in_features)``, bit for bit."""
        w = np.empty((self._n, self._k), dtype=np.uint16)
        _gemm_bf16.unpack(self._packed, self._n, self._k, w)
        return w.view(BF16)

    def linear(self, x, bias=None, *, out=None, out_dtype=np.float32, rounding="nearest",
               rng=None, n_threads=None):
        """``x @ w.T + bias``; see :func:`linear_bf16`."""
        return linear_bf16(x, self, bias, out=out, out_dtype=out_dtype, rounding=rounding,
                           rng=rng, n_threads=n_threads)

    # -- serialization -------------------------------------------------------------------
    def to_bytes(self):
        """ISA-independent bytes: header ``<4sHHQQ`` (b"LPWB", version 1, flags (2 = bias), N,
        K), the bf16 bits row-major (N, K) little-endian, then N float32 bias values."""
        flags = _FLAG_BIAS if self.bias is not None else 0
        parts = [_HEADER.pack(FORMAT_MAGIC, FORMAT_VERSION, flags, self._n, self._k),
                 self.unpack().view(np.uint16).astype("<u2").tobytes()]
        if self.bias is not None:
            parts.append(self.bias.astype("<f4").tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data):
        data, (_, _, flags, n, k) = _read_header(data, _HEADER, FORMAT_MAGIC, (FORMAT_VERSION,),
                                                 _FLAG_BIAS, "bf16 ")
        nb = n if flags & _FLAG_BIAS else 0
        _check_size(data, _HEADER.size + 2 * n * k + 4 * nb, "bf16 ")
        w = np.frombuffer(data, dtype="<u2", count=n * k, offset=_HEADER.size).reshape(n, k)
        bias = None
        if nb:
            bias = np.frombuffer(data, dtype="<f4", count=n, offset=_HEADER.size + 2 * n * k)
        return cls(w.astype(np.uint16), None if bias is None else bias.astype(np.float32))

    def __repr__(self):
        return (f"PackedBF16Weights(out_features={self._n}, in_features={self._k}, bfloat16, "
                f"bias={self._bias_flag()}, layout=bf16x2-panel16, {self._size_summary()})")


def pack_weights_bf16(w, *, bias=None):
    """Pack a weight ``(out_features, in_features)`` for :func:`linear_bf16`.

    ``w`` is ml_dtypes bfloat16 (taken bit for bit) or float32 (rounded to bfloat16,
    round-to-nearest-even, NaN -> quiet NaN: :func:`lowprec.to_bfloat16`).  ``bias``: N floats,
    stored as float32 and added after the float32 sum.

    Examples
    --------
    >>> import numpy as np, lowprec
    >>> w = np.random.default_rng(0).standard_normal((64, 256), dtype=np.float32)
    >>> pw = lowprec.pack_weights_bf16(w)
    >>> x = np.ones((2, 256), np.float32)
    >>> wb = lowprec.from_bfloat16(pw.unpack())
    >>> bool(np.allclose(pw.linear(x), x @ wb.T, rtol=1e-5, atol=1e-4))
    True
    """
    w = as_array(w, "w")
    if w.dtype == _F32:
        from .bf16 import to_bfloat16

        w = to_bfloat16(np.ascontiguousarray(w))
    elif w.dtype != BF16:
        raise TypeError(f"w has dtype {w.dtype}; expected float32 or bfloat16")
    if w.ndim != 2:
        raise ValueError(f"w must be 2-D (out_features, in_features), got shape {w.shape}")
    return PackedBF16Weights(w.view(np.uint16), bias)


# ----------------------------------------------------------------------------------------------
# products


def linear_bf16(x, w_packed, bias=None, *, out=None, out_dtype=np.float32, rounding="nearest",
                rng=None, n_threads=None):
    """``x @ w.T + bias`` with a packed bfloat16 weight and float32 accumulation.

    Parameters
    ----------
    x : array_like, float32 or bfloat16, shape (..., K)
        Activations (bfloat16 is widened exactly; float32 is used as is: fp32 x bf16).
    w_packed : PackedBF16Weights, shape (N, K)
    bias : N floats, optional (overrides the packed bias)
    out : ndarray, optional
        C-contiguous (..., N) of ``out_dtype``, writeable, not overlapping ``x``.
    out_dtype : float32 or ml_dtypes.bfloat16
        bfloat16 output is the float32 result rounded once (``rounding``, ``rng`` as in
        :func:`lowprec.to_bfloat16`).
    n_threads : int, optional

    Examples
    --------
    >>> import numpy as np
    >>> pw = pack_weights_bf16(np.eye(2, dtype=np.float32), bias=[0.5, 0.0])
    >>> linear_bf16(np.array([[1.0, -1.0]], dtype=np.float32), pw)
    array([[ 1.5, -1. ]], dtype=float32)
    """
    if not isinstance(w_packed, PackedBF16Weights):
        raise TypeError("w_packed must be a PackedBF16Weights (use pack_weights_bf16)")
    n, k = w_packed.shape
    x = _check_activation(x, k)
    out_dtype = _out_kind(out_dtype)
    _check_rounding(rounding)
    b = w_packed.bias if bias is None else _check_bias(bias, n)
    out = check_out(out, x.shape[:-1] + (n,), out_dtype, inputs=(x,))
    # every check passed
    m = math.prod(x.shape[:-1])  # not np.prod: 3 us of a 8 us call at small shapes
    res = out if out_dtype == _F32 else np.empty(out.shape, dtype=np.float32)
    _gemm_rows(x, k, w_packed._packed, n, res.reshape(m, n), b, n_threads)
    return _finish(res, out, out_dtype, rounding, rng)


def _bf16_rows(x, k):
    """bf16 bits as 2-D uint16 rows with a unit column stride (no copy when possible)."""
    u = x.view(np.uint16) if x.ndim and x.strides[-1] == 2 else np.ascontiguousarray(x).view(np.uint16)
    u2 = u.reshape(-1, k) if u.ndim != 2 else u
    if u2.shape[0] and k > 1 and u2.strides[1] != 2:
        u2 = np.ascontiguousarray(u2)
    if u2.shape[0] and u2.strides[0] % 2:
        u2 = np.ascontiguousarray(u2)
    return u2


def _gemm_rows(x, k, packed, n, res2, b, n_threads):
    """res2 = rows of x @ w.T (+ b): bfloat16 ``x`` runs the vdpbf16ps kernel where the CPU
    has AVX512_BF16 (at the avx512vnni level), everything else the float32-FMA kernels."""
    m = res2.shape[0]
    if not (m and n):
        return
    nt = _n_threads(n_threads, m * n * max(k, 1))
    if x.dtype == BF16 and _gemm_bf16.bf16dot():
        _gemm_bf16.gemm_bf16act(_bf16_rows(x, k), packed, n, res2, b, nt)
        return
    x2, _ = _activation_rows(x, k)
    _gemm_bf16.gemm(x2, packed, n, res2, b, nt, _gemm_bf16._get_isa())


def matmul_bf16(a, b, *, out=None, out_dtype=np.float32, rounding="nearest", rng=None,
                n_threads=None):
    """``a @ b`` with float32 accumulation, NumPy matmul shapes and broadcasting.

    ``a``: float32 or bfloat16 (float32 is used as is); ``b``: bfloat16, or float32 rounded to
    bfloat16 (round to nearest even).  Never accumulates in bfloat16 (ml_dtypes' ``np.dot`` does).

    Examples
    --------
    >>> import numpy as np, ml_dtypes
    >>> a = np.ones((1, 3), dtype=ml_dtypes.bfloat16)
    >>> matmul_bf16(a, np.full((3, 2), 256, dtype=ml_dtypes.bfloat16))
    array([[768., 768.]], dtype=float32)
    """
    a = as_array(a, "a")
    b = as_array(b, "b")
    if a.dtype != _F32 and a.dtype != BF16:
        raise TypeError(f"a has dtype {a.dtype}; expected float32 or bfloat16")
    if b.dtype != _F32 and b.dtype != BF16:
        raise TypeError(f"b has dtype {b.dtype}; expected bfloat16 or float32")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul_bf16: operands must have at least 1 dimension")
    out_dtype = _out_kind(out_dtype)
    _check_rounding(rounding)
    a_vec, b_vec = a.ndim == 1, b.ndim == 1
    a3 = a[None, :] if a_vec else a
    b3 = b[:, None] if b_vec else b
    if a3.shape[-1] != b3.shape[-2]:
        raise ValueError(f"matmul_bf16: mismatched K: a has shape {a.shape}, b has shape {b.shape}")
    m, k = a3.shape[-2:]
    n = b3.shape[-1]
    try:
        batch = np.broadcast_shapes(a3.shape[:-2], b3.shape[:-2])
    except ValueError:
        raise ValueError(
            f"matmul_bf16: batch dimensions do not broadcast: {a.shape} and {b.shape}") from None
    res_shape = batch + ((m,) if not a_vec else ()) + ((n,) if not b_vec else ())
    out = check_out(out, res_shape, out_dtype, inputs=(a, b))
    if b.dtype == _F32:
        from .bf16 import to_bfloat16

        b3 = to_bfloat16(np.ascontiguousarray(b3))
    res = out if out_dtype == _F32 else np.empty(out.shape, dtype=np.float32)
    if res.size == 0:
        return _finish(res, out, out_dtype, rounding, rng)
    res_full = res.reshape(batch + (m, n))
    a_b = np.broadcast_to(a3, batch + (m, k))
    b_b = np.broadcast_to(b3, batch + (k, n))
    pw_cache = PackedBF16Weights(b3.view(np.uint16).T) if b3.ndim == 2 else None
    for idx in np.ndindex(*batch):
        pw = pw_cache if pw_cache is not None else PackedBF16Weights(b_b[idx].view(np.uint16).T)
        _gemm_rows(a_b[idx], k, pw._packed, n, res_full[idx], None, n_threads)
    return _finish(res, out, out_dtype, rounding, rng)
