"""PackedWeights: an int8 weight matrix packed once for repeated exact int8 products.

Orientation: like ``torch.nn.Linear.weight`` the weight is ``(out_features, in_features)``
= ``(N, K)``; products compute ``a @ w.T`` (FBGEMM packs ``B = w.T`` the same way).

The in-memory packed layout depends on the ISA path that runs the product (Q4x32 for the
generic and AVX512-VNNI kernels, P2x16 int16 pairs for AVX2); a layout is built on first use and
cached.  The serialized format (:meth:`PackedWeights.to_bytes`, pickle) never contains a packed
layout: it is the plain int8 matrix plus the quantization parameters, so a weight packed on one
machine loads on any other.

Byte format, version 1 (all little-endian)::

    offset  size      field
    0       4         magic b"LPW8"
    4       2         uint16 format version (1)
    6       2         uint16 flags: 1 = per-channel scales, 2 = bias present,
                                    4 = per-channel zero points
    8       8         uint64 N (out_features)
    16      8         uint64 K (in_features)
    24      N*K       int8 weight, row-major (N, K)
    ...     4*S       float32 scales, S = N if per-channel else 1
    ...     4*Z       int32 zero points, Z = N if per-channel zero points else 1
    ...     4*N       float32 bias (only if flag 2)
"""

import struct
import threading

import numpy as np

from ._kernels import _gemm_int8

FORMAT_MAGIC = b"LPW8"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sHHQQ")
_FLAG_PER_CHANNEL_SCALE = 1
_FLAG_BIAS = 2
_FLAG_PER_CHANNEL_ZP = 4
_LAYOUT_NAMES = {_gemm_int8.LAYOUT_Q4X32: "Q4x32", _gemm_int8.LAYOUT_P2X16: "P2x16"}


def _aligned_empty(nbytes, align=64):
    raw = np.empty(nbytes + align, dtype=np.uint8)
    offset = (-raw.ctypes.data) % align
    return raw[offset : offset + nbytes]


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


class PackedWeights:
    """An int8 weight ``(out_features, in_features)`` packed for :func:`lowprec.gemm.qmatmul`.

    Build it with :func:`lowprec.gemm.pack_weights`.  Holds the packed matrix, the column sums
    ``colsum[j] = sum_k w[j, k]`` (zero-point correction), the weight scales (per tensor or per
    output channel), the weight zero points and an optional float32 bias.

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

    __slots__ = ("_n", "_k", "scale", "zero_point", "bias", "colsum", "_buffers", "_lock", "_cache")

    def __init__(self, w, scale, zero_point, bias, *, _layouts=()):
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
        self._lock = threading.Lock()
        self._cache = {}
        self._buffers = {}
        layouts = set(_layouts) or {_gemm_int8.layout_for_isa(_gemm_int8._get_isa())}
        for layout in layouts:
            self._buffers[layout] = _pack_layout(w, layout)

    # -- shape and parameters ------------------------------------------------------------
    @property
    def shape(self):
        """``(out_features, in_features)``."""
        return (self._n, self._k)

    @property
    def out_features(self):
        return self._n

    @property
    def in_features(self):
        return self._k

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
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data):
        """Load a weight written by :meth:`to_bytes` (on any machine); repacks for this CPU."""
        data = memoryview(bytes(data))
        if len(data) < _HEADER.size:
            raise ValueError("not a lowprec packed weight: too short")
        magic, version, flags, n, k = _HEADER.unpack_from(data, 0)
        if magic != FORMAT_MAGIC:
            raise ValueError("not a lowprec packed weight (bad magic)")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"packed weight format version {version} is not supported by this lowprec "
                f"(supports version {FORMAT_VERSION}); repack the weight"
            )
        if flags & ~(_FLAG_PER_CHANNEL_SCALE | _FLAG_BIAS | _FLAG_PER_CHANNEL_ZP):
            raise ValueError(f"packed weight has unknown flags {flags:#x}")
        n_s = n if flags & _FLAG_PER_CHANNEL_SCALE else 1
        n_z = n if flags & _FLAG_PER_CHANNEL_ZP else 1
        n_b = n if flags & _FLAG_BIAS else 0
        expected = _HEADER.size + n * k + 4 * (n_s + n_z + n_b)
        if len(data) != expected:
            raise ValueError(f"packed weight is {len(data)} bytes; expected {expected}")
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
        from .gemm import _check_weight_params

        _check_weight_params(scale, zp, n)
        return cls(w, scale, zp, bias)

    def save(self, path):
        """Write :meth:`to_bytes` to ``path``."""
        with open(path, "wb") as f:
            f.write(self.to_bytes())

    @classmethod
    def load(cls, path):
        """Read a file written by :meth:`save`."""
        with open(path, "rb") as f:
            return cls.from_bytes(f.read())

    def __reduce__(self):
        return (_from_bytes, (self.to_bytes(),))

    # -- display -------------------------------------------------------------------------
    def __repr__(self):
        scales = "per-channel" if self.scale.shape[0] > 1 else "per-tensor"
        zp = "symmetric" if self.symmetric else (
            "zp per-channel" if self.zero_point.shape[0] > 1 else f"zp={int(self.zero_point[0])}"
        )
        layouts = ",".join(_LAYOUT_NAMES.get(lay, str(lay)) for lay in sorted(self._buffers))
        nb = self.nbytes
        ratio = (4.0 * self._n * self._k / nb) if nb else 0.0
        return (
            f"PackedWeights(out_features={self._n}, in_features={self._k}, int8, {scales} scales, "
            f"{zp}, bias={'yes' if self.bias is not None else 'no'}, layout={layouts}, "
            f"{_fmt_bytes(nb)}, {ratio:.1f}x smaller than float32)"
        )

    def _repr_html_(self):
        import html

        return f"<code>{html.escape(repr(self))}</code>"


def _fmt_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024.0


def _from_bytes(data):
    return PackedWeights.from_bytes(data)
