"""int4 weight-only quantized products: group-wise int4 weights, float32 activations, float32
accumulation (docs/bf16_int4_gemm.md).

- :func:`pack_weights_int4`: quantize a float weight ``(out_features, in_features)`` group-wise
  along K (group 32, 64, 128 or any multiple of 8 dividing K; per-group float32 scale, and a
  per-group zero point 0..15 or symmetric with zero point 8).
- :class:`PackedInt4Weights`: ``.linear(x)``, ``.dequantize()``, ``.unpack()``, pickle,
  ``to_bytes``/``from_bytes``/``save``/``load``; import/export of llama.cpp Q4_0 blocks
  (:meth:`~PackedInt4Weights.from_q4_0`, :meth:`~PackedInt4Weights.to_q4_0`) and ONNX Runtime
  MatMulNBits tensors (:meth:`~PackedInt4Weights.from_matmulnbits`,
  :meth:`~PackedInt4Weights.to_matmulnbits`).
- :func:`linear_int4`: ``x @ dequantize(w).T + bias``; ``activations="int8"`` (opt-in) quantizes
  the activations per row and group to int8 and uses integer dot products (several times
  faster at the avx512vnni level, less accurate: docs/bf16_int4_gemm.md); ``activations="int24"``
  (opt-in) represents them as 24-bit fixed point per row and group (three int8 digits through the
  same kernels: error ~2^-23 of the group's largest activation, 1.3-1.7x the float32 mode at M = 1).

Values: ``w[j, k] = (q[j, k] - z[j, g]) * s[j, g]``, ``g = k // group_size``, q in 0..15.

Storage layout (ISA independent; what to_bytes, pickle and MatMulNBits hold): ``qweight``
``(N, K/2)`` uint8 with element ``2i`` in the low nibble of byte ``i`` and ``2i + 1`` in the high
nibble (ONNX MatMulNBits / FBGEMM order), ``scales`` ``(N, K/group)`` float32, ``zero_points``
``(N, K/group)`` uint8 (absent = symmetric, 8).  The kernel layout (src/gemm_int4.h) is built
from it when the weight is packed.
"""

import struct

import numpy as np

from . import _dispatch
from ._kernels import _gemm_int4
from ._packed_format import (BF16, PackedFormatMixin, _activation_rows, _aligned_empty,
                             _check_activation, _check_bias, _check_size, _n_threads,
                             _read_header, _readonly)
from ._validation import as_array, check_int, check_out

_dispatch.register_family("gemm_int4", _gemm_int4)

__all__ = ["PackedInt4Weights", "linear_int4", "pack_weights_int4"]

FORMAT_MAGIC = b"LPW4"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sHHQQI")
_FLAG_ZP = 1
_FLAG_BIAS = 2
Q4_0_BLOCK = 32
Q4_0_BYTES = 18  # fp16 d + 16 bytes


def _check_group(group_size, k):
    g = check_int(group_size, "group_size", minimum=8)
    if g % 8:
        raise ValueError(f"group_size must be a multiple of 8 (32, 64, 128 ...), got {g}")
    if k % g:
        raise ValueError(
            f"in_features={k} is not a multiple of group_size={g} (pad K with zeros, or pick a "
            "group size that divides it)")
    return g


def _nibbles_to_values(qweight, k):
    """(N, K/2) packed bytes -> (N, K) values 0..15 (low nibble first)."""
    q = np.empty((qweight.shape[0], k), dtype=np.uint8)
    q[:, 0::2] = qweight & 15
    q[:, 1::2] = qweight >> 4
    return q


def _values_to_nibbles(q):
    return (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)


class PackedInt4Weights(PackedFormatMixin):
    """Group-wise int4 weight ``(out_features, in_features)`` packed for :func:`linear_int4`.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.arange(64, dtype=np.float32).reshape(2, 32) / 8 - 2
    >>> pw = pack_weights_int4(w, group_size=32)
    >>> pw.shape, pw.group_size, pw.symmetric
    ((2, 32), 32, False)
    >>> bool(np.abs(pw.dequantize() - w).max() <= pw.scales.max() / 2)
    True
    """

    __slots__ = ("_n", "_k", "group_size", "qweight", "scales", "zero_points", "bias",
                 "_words", "_kscales", "_kzeros", "__weakref__")

    def __init__(self, qweight, scales, zero_points, group_size, k, bias=None):
        qweight = np.ascontiguousarray(qweight, dtype=np.uint8)
        n = qweight.shape[0]
        g = _check_group(group_size, k)
        if qweight.shape != (n, k // 2):
            raise ValueError(f"qweight must have shape (N, K/2) = {(n, k // 2)}, got {qweight.shape}")
        scales = np.ascontiguousarray(scales, dtype=np.float32).reshape(n, k // g)
        if not np.all(np.isfinite(scales)):
            raise ValueError("int4 scales must be finite")
        if zero_points is not None:
            zero_points = np.ascontiguousarray(zero_points, dtype=np.uint8).reshape(n, k // g)
            if np.any(zero_points > 15):
                raise ValueError("int4 zero points must be in 0..15")
            if np.all(zero_points == 8):
                zero_points = None
        self._n, self._k, self.group_size = n, k, g
        self.qweight, self.scales, self.zero_points = qweight, scales, zero_points
        self.bias = None if bias is None else _check_bias(bias, n)
        _readonly(qweight, scales, zero_points, self.bias)
        nw, ns = _gemm_int4.sizes(n, k, g)
        self._words = _aligned_empty(nw, np.uint32)
        self._kscales = _aligned_empty(ns, np.float32)
        self._kzeros = None if zero_points is None else _aligned_empty(ns, np.float32)
        _gemm_int4.pack(self.unpack(), scales, zero_points, g, self._words, self._kscales,
                        self._kzeros)
        _readonly(self._words, self._kscales, self._kzeros)

    @property
    def symmetric(self):
        """True when every zero point is 8 (values ``(q - 8) * s``)."""
        return self.zero_points is None

    @property
    def nbytes(self):
        """Bytes of the kernel layout (nibbles, scales, zero points)."""
        return sum(a.nbytes for a in (self._words, self._kscales, self._kzeros) if a is not None)

    def unpack(self):
        """The int4 values ``q`` (N, K), uint8 in 0..15, exactly."""
        return _nibbles_to_values(self.qweight, self._k)

    def zero_point_matrix(self):
        """Zero points (N, K/group) uint8 (8 everywhere when symmetric)."""
        if self.zero_points is None:
            return np.full(self.scales.shape, 8, dtype=np.uint8)
        return self.zero_points.copy()

    def dequantize(self):
        """float32 ``(q - z) * s`` (N, K): one rounding, exactly the weights the M > 4 kernel uses."""
        q = self.unpack().astype(np.float64)
        z = np.repeat(self.zero_point_matrix().astype(np.float64), self.group_size, axis=1)
        s = np.repeat(self.scales.astype(np.float64), self.group_size, axis=1)
        return ((q - z) * s).astype(np.float32)

    def linear(self, x, bias=None, *, out=None, n_threads=None, activations="float32"):
        """``x @ dequantize().T + bias``; see :func:`linear_int4` (``activations="int8"``:
        activations quantized per row and group, integer dot products)."""
        return linear_int4(x, self, bias, out=out, n_threads=n_threads, activations=activations)

    # -- llama.cpp Q4_0 ------------------------------------------------------------------
    @classmethod
    def from_q4_0(cls, data, shape, *, bias=None):
        """Import llama.cpp Q4_0 blocks: ``shape = (N, K)``, K a multiple of 32, row-major blocks
        of 18 bytes ``{float16 d; uint8 qs[16]}``, element j in the low nibble of ``qs[j]`` and
        element j + 16 in its high nibble, ``x = (q - 8) * d``."""
        n, k = (check_int(s, "shape") for s in shape)
        if k % Q4_0_BLOCK:
            raise ValueError(f"Q4_0 needs K a multiple of 32, got {k}")
        raw = np.frombuffer(memoryview(bytes(data)), dtype=np.uint8)
        nb = n * k // Q4_0_BLOCK
        if raw.size != nb * Q4_0_BYTES:
            raise ValueError(f"Q4_0 data is {raw.size} bytes; expected {nb * Q4_0_BYTES}")
        blocks = raw.reshape(nb, Q4_0_BYTES)
        d = blocks[:, :2].copy().view("<f2").reshape(n, k // Q4_0_BLOCK).astype(np.float32)
        qs = blocks[:, 2:]
        q = np.concatenate([qs & 15, qs >> 4], axis=1).reshape(n, k)
        return cls(_values_to_nibbles(q), d, None, Q4_0_BLOCK, k, bias)

    def to_q4_0(self):
        """Export as llama.cpp Q4_0 bytes (group 32, symmetric; scales rounded to float16,
        ValueError if one overflows float16)."""
        if self.group_size != Q4_0_BLOCK or not self.symmetric:
            raise ValueError("Q4_0 holds symmetric weights with group_size=32 only")
        d = self.scales.astype("<f2")
        if not np.all(np.isfinite(d)):
            raise ValueError("a scale overflows float16 (Q4_0 stores float16 scales)")
        q = self.unpack().reshape(-1, Q4_0_BLOCK)
        out = np.empty((q.shape[0], Q4_0_BYTES), dtype=np.uint8)
        out[:, :2] = d.reshape(-1, 1).view(np.uint8)
        out[:, 2:] = q[:, :16] | (q[:, 16:] << 4)
        return out.tobytes()

    # -- ONNX Runtime MatMulNBits --------------------------------------------------------
    @classmethod
    def from_matmulnbits(cls, B, scales, zero_points=None, *, K, bias=None):
        """Import MatMulNBits (bits=4) inputs: ``B`` uint8 ``(N, k_blocks, block_size/2)`` (first
        value in the low nibble), ``scales`` ``(N, k_blocks)`` (or flat), ``zero_points`` uint8
        packed two per byte ``(N, ceil(k_blocks/2))`` (low nibble first; default 8), ``K``."""
        B = as_array(B, "B", (np.uint8,))
        if B.ndim != 3:
            raise ValueError("B must have shape (N, k_blocks, block_size/2)")
        n, kb, half = B.shape
        bs = 2 * half
        k = check_int(K, "K", minimum=0)
        if kb * bs != k:
            raise ValueError(f"B holds {kb * bs} values per row; K={k} (padded K is not supported)")
        sc = np.asarray(scales, dtype=np.float32).reshape(n, kb)
        zp = None
        if zero_points is not None:
            zpb = as_array(zero_points, "zero_points", (np.uint8,)).reshape(n, -1)
            if zpb.shape[1] != (kb + 1) // 2:
                raise ValueError("zero_points must be uint8 (N, ceil(k_blocks/2)), two per byte")
            zp = np.empty((n, 2 * zpb.shape[1]), dtype=np.uint8)
            zp[:, 0::2] = zpb & 15
            zp[:, 1::2] = zpb >> 4
            zp = zp[:, :kb]
        return cls(B.reshape(n, k // 2), sc, zp, bs, k, bias)

    def to_matmulnbits(self):
        """``(B, scales, zero_points)`` for MatMulNBits (bits=4, block_size=group_size,
        K=in_features, N=out_features); ``zero_points`` is None when symmetric (default 8)."""
        n, k, g = self._n, self._k, self.group_size
        B = self.qweight.reshape(n, k // g, g // 2).copy()
        zp = None
        if self.zero_points is not None:
            kb = k // g
            z = np.zeros((n, kb + (kb & 1)), dtype=np.uint8)
            z[:, :kb] = self.zero_points
            zp = (z[:, 0::2] | (z[:, 1::2] << 4)).astype(np.uint8)
        return B, self.scales.copy(), zp

    # -- serialization -------------------------------------------------------------------
    def to_bytes(self):
        """Header ``<4sHHQQI`` (b"LPW4", version 1, flags (1 zero points, 2 bias), N, K, group),
        qweight N*K/2 bytes, scales float32 (N, K/group), [zero points uint8 (N, K/group)],
        [bias float32 N]; little-endian."""
        flags = (_FLAG_ZP if self.zero_points is not None else 0) | (
            _FLAG_BIAS if self.bias is not None else 0)
        parts = [_HEADER.pack(FORMAT_MAGIC, FORMAT_VERSION, flags, self._n, self._k,
                              self.group_size),
                 self.qweight.tobytes(), self.scales.astype("<f4").tobytes()]
        if self.zero_points is not None:
            parts.append(self.zero_points.tobytes())
        if self.bias is not None:
            parts.append(self.bias.astype("<f4").tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data):
        data, (_, _, flags, n, k, g) = _read_header(data, _HEADER, FORMAT_MAGIC,
                                                    (FORMAT_VERSION,), _FLAG_ZP | _FLAG_BIAS,
                                                    "int4 ")
        if g < 8 or g % 8 or k % g:
            raise ValueError("int4 packed weight has an invalid group size")
        ng = k // g
        sizes = [n * k // 2, 4 * n * ng, n * ng if flags & _FLAG_ZP else 0,
                 4 * n if flags & _FLAG_BIAS else 0]
        _check_size(data, _HEADER.size + sum(sizes), "int4 ")
        off = _HEADER.size
        qw = np.frombuffer(data, np.uint8, sizes[0], off).reshape(n, k // 2)
        off += sizes[0]
        sc = np.frombuffer(data, "<f4", n * ng, off).reshape(n, ng).astype(np.float32)
        off += sizes[1]
        zp = np.frombuffer(data, np.uint8, sizes[2], off).reshape(n, ng) if sizes[2] else None
        off += sizes[2]
        bias = np.frombuffer(data, "<f4", n, off).astype(np.float32) if sizes[3] else None
        return cls(qw, sc, zp, g, k, bias)

    def __repr__(self):
        zp = "symmetric" if self.symmetric else "zero points"
        return (f"PackedInt4Weights(out_features={self._n}, in_features={self._k}, int4, "
                f"group_size={self.group_size} float32 scales, {zp}, "
                f"bias={self._bias_flag()}, layout=nib8-panel16, {self._size_summary()})")


def pack_weights_int4(w, *, group_size=128, symmetric=False, bias=None):
    """Quantize a float weight ``(out_features, in_features)`` to group-wise int4.

    Per group of ``group_size`` consecutive k (K must be a multiple of it: ValueError otherwise):

    - ``symmetric=True`` (llama.cpp Q4_0's rule): ``m`` = the value of largest magnitude,
      ``s = m / -8``, ``q = clip(rint(w / s) + 8, 0, 15)`` (so ``m`` maps to -8 exactly).
    - ``symmetric=False``: ``lo = min(w, 0)``, ``hi = max(w, 0)``, ``s = (hi - lo) / 15``,
      ``z = clip(rint(-lo / s), 0, 15)``, ``q = clip(rint(w / s) + z, 0, 15)``.

    An all-zero group gets ``s = 0`` (symmetric) or ``s = 1`` and q = z.  Arithmetic in float64,
    scales stored as float32.  ``w``: float32 / float64 / bfloat16, finite.

    Examples
    --------
    >>> import numpy as np, lowprec
    >>> w = np.random.default_rng(0).standard_normal((64, 256), dtype=np.float32)
    >>> pw = lowprec.pack_weights_int4(w, group_size=128)
    >>> x = np.ones((2, 256), np.float32)
    >>> y = pw.linear(x)
    >>> bool(np.allclose(y, x @ pw.dequantize().T, rtol=1e-5, atol=1e-4))
    True
    """
    w = as_array(w, "w")
    if w.dtype == BF16:
        w = w.astype(np.float32)
    if w.dtype.kind != "f":
        raise TypeError(f"w has dtype {w.dtype}; expected a float dtype")
    if w.ndim != 2:
        raise ValueError(f"w must be 2-D (out_features, in_features), got shape {w.shape}")
    n, k = w.shape
    g = _check_group(group_size, k)
    w64 = w.astype(np.float64)
    if not np.all(np.isfinite(w64)):
        raise ValueError("w must be finite (NaN or inf found)")
    wg = w64.reshape(n, k // g, g)
    if symmetric:
        idx = np.abs(wg).argmax(axis=2)[..., None]
        m = np.take_along_axis(wg, idx, axis=2)[..., 0]
        s = (m / -8.0).astype(np.float32)
        inv = np.divide(1.0, s.astype(np.float64), out=np.zeros(s.shape), where=s != 0)
        q = np.clip(np.rint(wg * inv[..., None]) + 8, 0, 15).astype(np.uint8)
        zp = None
    else:
        lo = np.minimum(wg.min(axis=2), 0.0)
        hi = np.maximum(wg.max(axis=2), 0.0)
        s = ((hi - lo) / 15.0).astype(np.float32)
        s = np.where(s > 0, s, np.float32(1.0)).astype(np.float32)
        s64 = s.astype(np.float64)
        zp = np.clip(np.rint(-lo / s64), 0, 15)
        q = np.clip(np.rint(wg / s64[..., None]) + zp[..., None], 0, 15).astype(np.uint8)
        zp = zp.astype(np.uint8)
    return PackedInt4Weights(_values_to_nibbles(q.reshape(n, k)), s, zp, g, k, bias)


ACTIVATIONS = ("float32", "int8", "int24")


def _check_activations(activations, group):
    if not isinstance(activations, str) or activations not in ACTIVATIONS:
        raise ValueError(f"activations must be 'float32', 'int8' or 'int24', got {activations!r}")
    if activations != "float32" and group > _gemm_int4.I8_MAX_GROUP:
        raise ValueError(
            f"activations={activations!r} needs group_size <= {_gemm_int4.I8_MAX_GROUP} (the "
            f"per-group integer sums must stay exact in float32), got group_size={group}")
    return activations


def linear_int4(x, w_packed, bias=None, *, out=None, n_threads=None, activations="float32"):
    """``x @ w.T + bias`` for group-wise int4 ``w`` (weight-only quantization).

    ``x``: float32 or bfloat16 (widened exactly), shape (..., K); float32 output (..., N).

    ``activations="float32"`` (default): weights are dequantized in registers and multiplied in
    float32 with float32 accumulation: M > 4 rows use ``w = (q - z) * s`` exactly as
    :meth:`PackedInt4Weights.dequantize`; M <= 4 sums ``a * (q - 8)`` per group and applies ``s``
    (and the zero point via the group sum of ``a``) once per group.

    ``activations="int8"`` (opt-in, faster: integer dot products, AVX-512 VNNI ``vpdpbusd``
    where available): each row of ``x`` is quantized per group of ``group_size`` k to int8,
    ``sa = max|x| / 127``, ``xq = rint(x / sa)`` (float32), the group dot products
    ``sum xq (q - z)`` are exact integers, rescaled by ``sa * s`` and accumulated in float32.
    This adds the activation rounding error (at most ``sa / 2`` per element: about 0.4% of the
    group's largest activation) to the int4 weight error; a group with a non-finite activation
    makes that row's outputs NaN.  Needs ``group_size <= 4096``.

    ``activations="int24"`` (opt-in): as ``"int8"`` with ``sa = max|x| / 8355711`` and
    ``xq = clip(rint(x / sa), -8355711, 8355711)``, split into three int8 digits
    (``xq = d0 + 2**8 d1 + 2**16 d2``) whose products are summed: the activation error is at most
    ``sa`` (about ``2**-23`` of the group's largest ``|x|``), close to float32 but relative to the
    group's maximum rather than to each element.  Same NaN rule and group limit as ``"int8"``.

    Error bounds of both modes: docs/bf16_int4_gemm.md.

    Examples
    --------
    >>> import numpy as np
    >>> pw = pack_weights_int4(np.ones((2, 32), dtype=np.float32), group_size=32, symmetric=True)
    >>> linear_int4(np.ones((1, 32), dtype=np.float32), pw)
    array([[32., 32.]], dtype=float32)
    >>> linear_int4(np.full((1, 32), 0.5, dtype=np.float32), pw, activations="int8")
    array([[16., 16.]], dtype=float32)
    """
    if not isinstance(w_packed, PackedInt4Weights):
        raise TypeError("w_packed must be a PackedInt4Weights (use pack_weights_int4)")
    n, k = w_packed.shape
    activations = _check_activations(activations, w_packed.group_size)
    x = _check_activation(x, k)
    b = w_packed.bias if bias is None else _check_bias(bias, n)
    out = check_out(out, x.shape[:-1] + (n,), np.float32, inputs=(x,))
    x2, _ = _activation_rows(x, k)
    m = x2.shape[0]
    if m and n:
        nt = _n_threads(n_threads, m * n * max(k, 1))
        args = (x2, w_packed._words, w_packed._kscales, w_packed._kzeros, w_packed.group_size,
                n, out.reshape(m, n), b, nt, _gemm_int4._get_isa())
        if activations == "float32":
            _gemm_int4.gemm(*args)
        else:
            _gemm_int4.gemm_i8(*args, 3 if activations == "int24" else 1)
    return out
