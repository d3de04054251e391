"""What the packed-weight classes share (PackedWeights, PackedBF16Weights, PackedInt4Weights).

- :class:`PackedFormatMixin`: shape properties, save/load, pickling through ``to_bytes``,
  ``_repr_html_`` and the size summary that ends every repr.
- :func:`_read_header` / :func:`_check_size`: header checks of ``from_bytes`` (magic, version,
  flags, total size), with each class's own wording (``kind``: "", "bf16 ", "int4 ").
- Helpers of the float32-activation products shared by gemm_bf16 and gemm_int4
  (:func:`_activation_rows`, :func:`_check_bias`, :func:`_n_threads`, ...).

The byte formats themselves stay with their classes (module docstrings of _packed_weights,
gemm_bf16 and gemm_int4); nothing here writes or reads a field.
"""

import ml_dtypes
import numpy as np

from ._threads import resolve_n_threads
from ._validation import as_array

BF16 = np.dtype(ml_dtypes.bfloat16)
_F32 = np.dtype(np.float32)
#: Multiply-adds per thread below which a product stays serial (a parallel region costs us).
_MIN_MACS_PER_THREAD = 1 << 19


# ----------------------------------------------------------------------------------------------
# buffers and display


def _aligned_empty(count, dtype=np.uint8, align=64):
    """``count`` uninitialised items of ``dtype`` starting on an ``align``-byte boundary."""
    dtype = np.dtype(dtype)
    raw = np.empty(count * dtype.itemsize + align, dtype=np.uint8)
    off = (-raw.ctypes.data) % align
    return raw[off : off + count * dtype.itemsize].view(dtype)


def _fmt_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024.0


# ----------------------------------------------------------------------------------------------
# byte format: header checks


def _read_header(data, header, magic, versions, known_flags, kind="", version_hint=""):
    """``(memoryview, header fields)`` of a blob, after the checks every format makes: length,
    magic, version in ``versions``, no flag outside ``known_flags``."""
    data = memoryview(bytes(data))
    if len(data) < header.size:
        raise ValueError(f"not a lowprec {kind}packed weight: too short")
    fields = header.unpack_from(data, 0)
    if fields[0] != magic:
        raise ValueError(f"not a lowprec {kind}packed weight (bad magic)")
    version, flags = fields[1], fields[2]
    if version not in versions:
        raise ValueError(f"{kind}packed weight format version {version} is not supported"
                         f"{version_hint}")
    if flags & ~known_flags:
        raise ValueError(f"{kind}packed weight has unknown flags {flags:#x}")
    return data, fields


def _check_size(data, expected, kind=""):
    if len(data) != expected:
        raise ValueError(f"{kind}packed weight is {len(data)} bytes; expected {expected}")


class PackedFormatMixin:
    """Shared behaviour; a class using it sets ``_n``, ``_k`` and ``bias`` and defines
    ``nbytes``, ``to_bytes`` and ``from_bytes``."""

    __slots__ = ()

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
        return (type(self).from_bytes, (self.to_bytes(),))

    def _bias_flag(self):
        return "yes" if self.bias is not None else "no"

    def _size_summary(self):
        """``"<bytes held>, <ratio>x smaller than float32"``: the end of every repr."""
        nb = self.nbytes
        ratio = (4.0 * self._n * self._k / nb) if nb else 0.0
        return f"{_fmt_bytes(nb)}, {ratio:.1f}x smaller than float32"

    def _repr_html_(self):
        import html

        return f"<code>{html.escape(repr(self))}</code>"


# ----------------------------------------------------------------------------------------------
# float32-activation products (gemm_bf16 and gemm_int4)


def _n_threads(n_threads, work):
    if work < 2 * _MIN_MACS_PER_THREAD and (n_threads is None or (
            type(n_threads) is int and n_threads >= 1)):
        return 1
    return resolve_n_threads(n_threads, work_items=work, min_items_per_thread=_MIN_MACS_PER_THREAD)


def _bf16_to_f32(x):
    """Exact widening of a bfloat16 array (bits << 16), C-contiguous float32."""
    u = np.ascontiguousarray(x).view(np.uint16)
    return (u.astype(np.uint32) << 16).view(np.float32)


def _activation_rows(x, k, name="x"):
    """(float32 2-D rows with a unit column stride, leading shape) for float32 / bf16 ``x``."""
    if x.dtype == BF16:
        x = _bf16_to_f32(x)
    elif x.dtype != _F32:
        raise TypeError(f"{name} has dtype {x.dtype}; expected float32 or bfloat16")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k) if x.ndim != 2 else x
    if x2.shape[0] and k > 1 and x2.strides[1] != 4:
        x2 = np.ascontiguousarray(x2)
    if x2.shape[0] and x2.strides[0] % 4:
        x2 = np.ascontiguousarray(x2)
    return x2, lead


def _check_activation(x, k):
    """``x`` as an array of float32 / bfloat16 with last axis ``k`` (TypeError / ValueError)."""
    x = as_array(x, "x")
    if x.dtype != _F32 and x.dtype != BF16:
        raise TypeError(f"x has dtype {x.dtype}; expected float32 or bfloat16")
    if x.ndim == 0 or x.shape[-1] != k:
        raise ValueError(f"x has shape {x.shape} but the weight has in_features={k} (mismatched K)")
    return x


def _check_bias(bias, n):
    if bias is None:
        return None
    b = as_array(bias, "bias")
    if b.dtype.kind not in "fiu" and b.dtype != BF16:
        raise TypeError(f"bias has dtype {b.dtype}; expected a real dtype")
    b = np.ascontiguousarray(b, dtype=np.float32).reshape(-1)
    if b.shape[0] != n:
        raise ValueError(f"bias has {b.shape[0]} entries; expected {n} (out_features)")
    return b


def _readonly(*arrays):
    """Mark every array that is not None read-only."""
    for arr in arrays:
        if arr is not None:
            arr.setflags(write=False)
