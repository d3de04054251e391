"""PackedWeights: an int8 weight matrix packed once for repeated exact int8 products.

Orientation: like ``torch.nn.Linear.weight`` the weight is ``(out_features, in_features)``
= ``(N, K)``; products compute ``a @ w.T`` (FBGEMM packs ``B = w.T`` the same way).

The in-memory packed layout depends on the ISA path that runs the product (Q4x32 for the
generic and AVX512-VNNI kernels, P2x16 int16 pairs for AVX2); a layout is built on first use and
cached.  The serialized format (:meth:`PackedWeights.to_bytes`, pickle) never contains a packed
layout: it is the plain int8 matrix plus the quantization parameters, so a weight packed on one
machine loads on any other.

Byte format, version 2 (all little-endian)::

    offset  size      field
    0       4         magic b"LPW8"
    4       2         uint16 format version (2; version 1 blobs still load)
    6       2         uint16 flags: 1 = per-channel scales, 2 = bias present,
                                    4 = per-channel zero points
    8       8         uint64 N (out_features)
    16      8         uint64 K (in_features)
    24      N*K       int8 weight, row-major (N, K)
    ...     4*S       float32 scales, S = N if per-channel else 1
    ...     4*Z       int32 zero points, Z = N if per-channel zero points else 1
    ...     4*N       float32 bias (only if flag 2)
    ...     4*N       int32 odd checksum weights r[j] (version 2 only)
    ...     4*K       int32 weight checksum wsum[k] = sum_j r[j] * w[j, k] mod 2**32 (version 2)

Version 1 is version 2 without the checksum: it still loads and the checksum is recomputed.
Loading a version 2 blob recomputes ``wsum`` from the weight and the stored ``r`` and raises
ValueError when the two differ (the weight bytes or the checksum were corrupted at rest).
"""

import struct
import threading

import numpy as np

from ._kernels import _gemm_int8
from ._packed_format import PackedFormatMixin, _aligned_empty, _check_size, _read_header

FORMAT_MAGIC = b"LPW8"
FORMAT_VERSION = 2
_READ_VERSIONS = (1, 2)
_HEADER = struct.Struct("<4sHHQQ")
_FLAG_PER_CHANNEL_SCALE = 1
_FLAG_BIAS = 2
_FLAG_PER_CHANNEL_ZP = 4
_LAYOUT_NAMES = {_gemm_int8.LAYOUT_Q4X32: "Q4x32", _gemm_int8.LAYOUT_P2X16: "P2x16"}


_CHK_MASK = (1 << 25) - 1


def _odd_weights(n, seed):
    """n pseudo-random odd uint32 column weights (splitmix64 of (j, seed)), as int32."""
    with np.errstate(over="ignore"):
        x = np.arange(n, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return ((x & np.uint64(0xFFFFFFFF)) | np.uint64(1)).astype(np.uint32).view(np.int32)


def _weight_checksum(w, r):
    """wsum[k] = sum_j r[j] * w[j, k] modulo 2**32, as int32 (the soft-error row checksum)."""
    with np.errstate(over="ignore"):
        ru = r.view(np.uint32).astype(np.uint64)
        wu = w.astype(np.int64).view(np.uint64)
        s = ru @ wu if w.size else np.zeros(w.shape[1], dtype=np.uint64)
    s = np.ascontiguousarray((s & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.int32))
    s.setflags(write=False)
    return s


def _choose_checksum(w):
    """Odd weights r and wsum = r @ w such that no wsum[k] of a nonzero weight column is
    divisible by 2**25: a flip of activation bit b (b < 8) then changes the checksum by
    +-2**b * wsum[k] != 0 (mod 2**32) (docs/soft_errors.md)."""
    n, k = w.shape
    nz = np.any(w != 0, axis=0) if w.size else np.zeros(k, dtype=bool)
    for seed in range(256):
        r = _odd_weights(n, seed)
        v = _weight_checksum(w, r)
        if not np.any(nz & ((v.view(np.uint32) & _CHK_MASK) == 0)):
            break
    r = np.ascontiguousarray(r)
    r.setflags(write=False)
    return r, v


def _pack_layout(w, layout):
    n, k = w.shape
    buf = _aligned_empty(_gemm_int8.packed_size(layout, n, k))
    _gemm_int8.pack_b(w, layout, buf)
    buf.setflags(write=False)
    return buf


def _unpack_layout(buf, layout, n, k):
    nr, ku, esize = _gemm_int8.layout_info(layout)
    np_ = -(-n // nr) * nr
    kp = -(-k // ku) * ku
    dtype = np.int16 if esize == 2 else np.int8
    v = buf.view(dtype).reshape(np_ // nr, kp // ku, nr, ku)
    w = v.transpose(0, 2, 1, 3).reshape(np_, kp)[:n, :k]
    return np.ascontiguousarray(w).astype(np.int8)


class PackedWeights(PackedFormatMixin):
    """An int8 weight ``(out_features, in_features)`` packed for :func:`lowprec.gemm.qmatmul`.

    Build it with :func:`lowprec.gemm.pack_weights`.  Holds the packed matrix, the column sums
    ``colsum[j] = sum_k w[j, k]`` (zero-point correction), the weight scales (per tensor or per
    output channel), the weight zero points, an optional float32 bias, and the soft-error
    checksum ``wsum[k] = sum_j r[j] * w[j, k]`` with odd column weights ``chk_r`` (int32,
    wrapping; docs/soft_errors.md).

    Examples
    --------
    >>> import numpy as np
    >>> from lowprec.gemm import pack_weights
    >>> pw = pack_weights(np.array([[1, -2], [3, 4]], dtype=np.int8), scale=0.5)
    >>> pw.unpack()
    array([[ 1, -2],
           [ 3,  4]], dtype=int8)
    >>> pw.colsum
    array([-1,  7], dtype=int32)
    """

    __slots__ = ("_n", "_k", "scale", "zero_point", "bias", "colsum", "wsum", "chk_r", "_buffers",
                 "_lock", "_cache")

    def __init__(self, w, scale, zero_point, bias, *, _layouts=(), _chk_r=None):
        w = np.ascontiguousarray(w, dtype=np.int8)
        self._n, self._k = w.shape
        self.scale = np.ascontiguousarray(scale, dtype=np.float32).reshape(-1)
        self.zero_point = np.ascontiguousarray(zero_point, dtype=np.int32).reshape(-1)
        self.bias = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
        for arr in (self.scale, self.zero_point) + (() if self.bias is None else (self.bias,)):
            arr.setflags(write=False)
        colsum = w.sum(axis=1, dtype=np.int64).astype(np.int32)
        colsum.setflags(write=False)
        self.colsum = colsum
        if _chk_r is None:
            self.chk_r, self.wsum = _choose_checksum(w)
        else:
            self.chk_r = np.ascontiguousarray(_chk_r, dtype=np.int32)
            self.chk_r.setflags(write=False)
            self.wsum = _weight_checksum(w, self.chk_r)
        self._lock = threading.Lock()
        self._cache = {}
        self._buffers = {}
        layouts = set(_layouts) or {_gemm_int8.layout_for_isa(_gemm_int8._get_isa())}
        for layout in layouts:
            self._buffers[layout] = _pack_layout(w, layout)

    # -- parameters (shape, out_features, in_features: PackedFormatMixin) -----------------
    @property
    def per_channel(self):
        """True when the weight scales are per output channel."""
        return self.scale.shape[0] > 1

    @property
    def symmetric(self):
        return not np.any(self.zero_point)

    @property
    def nbytes(self):
        """Bytes of the packed matrices held now (one per ISA layout used)."""
        return sum(b.nbytes for b in self._buffers.values())

    def _buffer(self, layout):
        buf = self._buffers.get(layout)
        if buf is None:
            with self._lock:
                buf = self._buffers.get(layout)
                if buf is None:
                    w = self.unpack()
                    buf = _pack_layout(w, layout)
                    self._buffers = {**self._buffers, layout: buf}
        return buf

    def unpack(self):
        """The original int8 weight ``(out_features, in_features)``, exactly."""
        layout, buf = next(iter(self._buffers.items()))
        return _unpack_layout(buf, layout, self._n, self._k)

    # -- serialization -------------------------------------------------------------------
    def to_bytes(self):
        """The ISA-independent byte format (see the module docstring)."""
        flags = 0
        if self.scale.shape[0] > 1:
            flags |= _FLAG_PER_CHANNEL_SCALE
        if self.zero_point.shape[0] > 1:
            flags |= _FLAG_PER_CHANNEL_ZP
        if self.bias is not None:
            flags |= _FLAG_BIAS
        parts = [
            _HEADER.pack(FORMAT_MAGIC, FORMAT_VERSION, flags, self._n, self._k),
            self.unpack().tobytes(),
            self.scale.astype("<f4").tobytes(),
            self.zero_point.astype("<i4").tobytes(),
        ]
        if self.bias is not None:
            parts.append(self.bias.astype("<f4").tobytes())
        parts.append(self.chk_r.astype("<i4").tobytes())
        parts.append(self.wsum.astype("<i4").tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data):
        """Load a weight written by :meth:`to_bytes` (on any machine); repacks for this CPU."""
        data, (_, version, flags, n, k) = _read_header(
            data, _HEADER, FORMAT_MAGIC, _READ_VERSIONS,
            _FLAG_PER_CHANNEL_SCALE | _FLAG_BIAS | _FLAG_PER_CHANNEL_ZP,
            version_hint=f" by this lowprec (supports versions "
                         f"{', '.join(map(str, _READ_VERSIONS))}); repack the weight",
        )
        n_s = n if flags & _FLAG_PER_CHANNEL_SCALE else 1
        n_z = n if flags & _FLAG_PER_CHANNEL_ZP else 1
        n_b = n if flags & _FLAG_BIAS else 0
        n_c = k if version >= 2 else 0
        n_r = n if version >= 2 else 0
        _check_size(data, _HEADER.size + n * k + 4 * (n_s + n_z + n_b + n_r + n_c))
        off = _HEADER.size
        w = np.frombuffer(data, dtype=np.int8, count=n * k, offset=off).reshape(n, k)
        off += n * k
        scale = np.frombuffer(data, dtype="<f4", count=n_s, offset=off).astype(np.float32)
        off += 4 * n_s
        zp = np.frombuffer(data, dtype="<i4", count=n_z, offset=off).astype(np.int32)
        off += 4 * n_z
        bias = None
        if n_b:
            bias = np.frombuffer(data, dtype="<f4", count=n_b, offset=off).astype(np.float32)
        off += 4 * n_b
        from .gemm import _check_weight_params

        _check_weight_params(scale, zp, n)
        chk_r = None
        if n_r:
            chk_r = np.frombuffer(data, dtype="<i4", count=n_r, offset=off).astype(np.int32)
            off += 4 * n_r
            if np.any((chk_r & 1) == 0):
                raise ValueError("packed weight checksum weights must be odd (corrupted?)")
        pw = cls(w, scale, zp, bias, _chk_r=chk_r)
        if n_c:
            stored = np.frombuffer(data, dtype="<i4", count=n_c, offset=off)
            if not np.array_equal(stored, pw.wsum):
                bad = np.flatnonzero(stored != pw.wsum)
                raise ValueError(
                    f"packed weight checksum mismatch in {bad.size} column(s) of in_features "
                    f"(first: {int(bad[0])}): the weight or its checksum is corrupted"
                )
        return pw

    def __reduce__(self):
        # the module-level _from_bytes (not the bound classmethod): pickles written so far name it
        return (_from_bytes, (self.to_bytes(),))

    # -- display -------------------------------------------------------------------------
    def __repr__(self):
        scales = "per-channel" if self.scale.shape[0] > 1 else "per-tensor"
        zp = "symmetric" if self.symmetric else (
            "zp per-channel" if self.zero_point.shape[0] > 1 else f"zp={int(self.zero_point[0])}"
        )
        layouts = ",".join(_LAYOUT_NAMES.get(lay, str(lay)) for lay in sorted(self._buffers))
        return (
            f"PackedWeights(out_features={self._n}, in_features={self._k}, int8, {scales} scales, "
            f"{zp}, bias={self._bias_flag()}, layout={layouts}, {self._size_summary()})"
        )


def _from_bytes(data):
    return PackedWeights.from_bytes(data)
