"""Row-wise quantized embedding tables in FBGEMM's "fused" layout.

:func:`quantize_rowwise` turns a float table of shape ``(R, D)`` into a
:class:`RowwiseQuantizedTable`: one ``uint8`` matrix whose rows hold each table row's codes
followed by its own scale and bias (``x[j] ~= q[j] * scale + bias``), byte for byte what
PyTorch's ``torch.ops.quantized.embedding_bag_{byte,4bit,2bit}_prepack`` produce on x86
(FBGEMM's AVX2 kernels), so a table packed here can be handed to PyTorch and back:

=====  ===========================================  ===============================
bits   row layout                                   scale / bias
=====  ===========================================  ===============================
8      ``D`` code bytes                             fp32 scale, fp32 bias (8 bytes)
4      ``ceil(D/2)`` bytes, element 2k = low nibble  fp16 scale, fp16 bias (4 bytes)
2      ``ceil(D/4)`` bytes, element j at bits 2*(j%4) fp16 scale, fp16 bias (4 bytes)
=====  ===========================================  ===============================

Conventions (see ``formats.md`` section 2 of the project notes):

* 8-bit: ``scale = (max - min) / 255``, ``bias = min``,
  ``q = round_half_even((x - min) * (255 / (range + 1e-8)))`` in float32, subtraction then
  multiplication (no fused multiply-add, as in FBGEMM).
* 4/2-bit: the minimum is rounded to fp16 *before* the range is taken; the scale is rounded to
  fp16 (1.0 if it rounds to 0); ``q = clamp(round_half_even((x - min_h) * (1 / scale_h)))``.
* Which of ``0.0`` and ``-0.0`` is the minimum of a row is decided in FBGEMM's AVX2 order, because
  the sign is stored in the bias.
* PyTorch requires ``D`` to be a multiple of ``8 / bits``; lowprec accepts any ``D`` and pads the
  last code byte of each row with zero bits (such tables are not accepted by PyTorch).
* Rows holding NaN or infinity raise ``ValueError`` naming the first such row (PyTorch silently
  writes meaningless scales for them).

``method="greedy"`` (4/2-bit) searches a clipping range per row as in Guan et al., 2019 (PyTorch's
``optimized_qparams=True``), with the loss computed under the deployed numerics above, vectorised
and in parallel.  The chosen range is never worse in L2 error than the min-max one.

Thread count: ``n_threads=``, else :func:`lowprec.set_num_threads`, else OpenMP's budget; the
bytes never depend on it.  libgomp is not fork-safe: in forked children use ``n_threads=1`` or the
"spawn" start method.
"""

import math

import numpy as np

from . import _dispatch
from ._kernels import _rowwise
from ._threads import resolve_n_threads
from ._validation import as_array, check_int, check_out

_dispatch.register_family("rowwise", _rowwise)

__all__ = ["RowwiseQuantizedTable", "quantize_rowwise", "fused_row_bytes"]

_BITS = (8, 4, 2)
_METHODS = ("minmax", "greedy")

# Rows per OpenMP work item.  A min-max row of D=128 costs ~0.1 us, so 256 rows (~25 us) keep
# scheduling overhead negligible while leaving enough chunks to balance 2-8 threads on small
# tables; a greedy row costs ~65 loss evaluations, so 32 rows are already ~40 us.
_CHUNK_ROWS_MINMAX = 256
_CHUNK_ROWS_GREEDY = 32
# Rows are converted/copied (non-float32 or strided input) and handed to the kernel in blocks of
# about this many input bytes: memory maps larger than RAM stream through, and a converted
# block stays a small temporary.
_BLOCK_BYTES = 32 << 20


def _float_dtypes():
    dts = [np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64)]
    try:
        import ml_dtypes

        dts.append(np.dtype(ml_dtypes.bfloat16))
    except ImportError:  # pragma: no cover - ml_dtypes is a run-time dependency
        pass
    return tuple(dts)


_FLOAT_DTYPES = _float_dtypes()


def fused_row_bytes(dim, bits):
    """Bytes of one fused row of ``dim`` elements at ``bits`` bits.

    Examples
    --------
    >>> from lowprec.rowwise import fused_row_bytes
    >>> fused_row_bytes(128, 8), fused_row_bytes(128, 4), fused_row_bytes(7, 2)
    (136, 68, 6)
    """
    bits = check_int(bits, "bits", choices=_BITS)
    dim = check_int(dim, "dim", minimum=1)
    if bits == 8:
        return dim + 8
    per_byte = 8 // bits
    return -(-dim // per_byte) + 4


def _checksum_offset(row_bytes):
    """Where a row's checksum pair starts in a checked row store: after the row, 4-byte
    aligned (so the float32 pair is aligned whenever the store is)."""
    return -(-row_bytes // 4) * 4


def checked_row_store(n_rows, row_bytes):
    """An uninitialised uint8 buffer for ``n_rows`` fused rows of ``row_bytes`` bytes, each
    followed by its soft-error checksum pair (float32 ``(sum, abs_sum)``).

    One buffer, so that an EmbeddingBag lookup reads a row's checksum from the cache lines it
    fetches for the row: with 1M rows of 72 bytes the pair costs no extra memory access, where
    a separate (R, 2) array costs one per row (+30-50% of a checked lookup).  The padding bytes
    between a row and its pair are zero.

    Examples
    --------
    >>> from lowprec.rowwise import checked_row_store
    >>> checked_row_store(3, 10).shape   # 10 bytes, 2 of padding, then the pair
    (3, 20)
    """
    off = _checksum_offset(row_bytes)
    store = np.empty((n_rows, off + 8), dtype=np.uint8)
    store[:, row_bytes:off] = 0
    return store


def _code_bytes(dim, bits):
    return dim if bits == 8 else -(-dim // (8 // bits))


class RowwiseQuantizedTable:
    """A row-wise quantized embedding table: fused rows of codes, scale and bias.

    Build one with :func:`quantize_rowwise` or wrap existing fused rows (for instance from
    PyTorch's ``embedding_bag_4bit_prepack``) with :meth:`from_fused`.

    Attributes
    ----------
    data : ndarray of uint8, shape (R, row_bytes), read-only
        The fused rows in FBGEMM's byte layout (see the module docstring).
    bits : int
        8, 4 or 2.
    dim : int
        D, the number of elements of a row.
    row_checksums : ndarray of float32, shape (R, 2), read-only, or None
        Each row's soft-error checksum, ``(sum, abs_sum)`` of its dequantized values
        (``scale * sum(q) + D * bias`` and ``|scale| * sum(q) + D * |bias|``, the latter
        rounded up), taken when the table was quantized or wrapped: ``embedding_bag(...,
        check="raise"|"report")`` verifies every bag against them (docs/soft_errors.md).  None
        when built without ``row_checksums=True``.  With ``row_checksums=True`` each pair is
        stored right after its row (the row padded to a multiple of 4 bytes, then 8 bytes):
        a lookup finds it in the cache lines it fetches for the row anyway, where a separate
        array would cost one more memory access per row.  ``data`` is then a strided view
        whose rows are still byte for byte PyTorch's.

    Examples
    --------
    >>> import numpy as np
    >>> from lowprec.rowwise import quantize_rowwise
    >>> t = quantize_rowwise(np.array([[10.0, 20.0]], dtype=np.float32))
    >>> t.data.tolist()
    [[0, 255, 161, 160, 32, 61, 0, 0, 32, 65]]
    >>> t.shape, t.bits, len(t)
    ((1, 2), 8, 1)
    """

    # Everything in _cache is derived from `data` and is dropped when pickling; the checksums
    # are not derived lazily (they must describe the rows as they were when quantized).
    def __init__(self, data, bits, dim, *, row_checksums=False, n_threads=None):
        bits = check_int(bits, "bits", choices=_BITS)
        dim = check_int(dim, "dim", minimum=1)
        if not isinstance(data, np.ndarray):
            raise TypeError(f"data must be a numpy.ndarray, got {type(data).__name__}")
        if data.dtype != np.uint8:
            raise TypeError(f"data has dtype {data.dtype}; expected uint8")
        if data.ndim != 2:
            raise ValueError(f"data must be 2-D (rows, row_bytes), got {data.ndim}-D")
        expected = fused_row_bytes(dim, bits)
        if data.shape[1] != expected:
            raise ValueError(
                f"data rows have {data.shape[1]} bytes; a {bits}-bit row of dim={dim} has "
                f"{expected} bytes"
            )
        self.bits = bits
        self.dim = dim
        self._cache = {}
        self._store = None
        if row_checksums is True:
            # Rows and checksums in one store (a copy of the rows), the checksums taken in it.
            from .embedding_checks import row_checksums as compute

            store = checked_row_store(data.shape[0], expected)
            store[:, :expected] = data
            self._attach_store(store)
            off = _checksum_offset(expected)
            compute(self, out=store[:, off : off + 8].view(np.float32), n_threads=n_threads)
            return
        data = np.ascontiguousarray(data)
        if data.flags.writeable:
            # A read-only view: the table is immutable (cached codes and future checksums stay
            # valid); the caller's own buffer keeps its flags.
            data = data.view()
            data.flags.writeable = False
        self.data = data
        self.row_checksums = self._checksums_arg(row_checksums)

    @classmethod
    def _from_store(cls, store, bits, dim):
        """A table over a filled checked row store (:func:`checked_row_store`)."""
        table = cls.__new__(cls)
        table.bits, table.dim, table._cache = bits, dim, {}
        table._attach_store(store)
        return table

    def _attach_store(self, store):
        """Take ``data`` and ``row_checksums`` as read-only views of a checked row store
        (:func:`checked_row_store`); its checksums are filled by the caller."""
        row_bytes = fused_row_bytes(self.dim, self.bits)
        off = _checksum_offset(row_bytes)
        self._store = store
        self.data = store[:, :row_bytes]
        self.row_checksums = store[:, off : off + 8].view(np.float32)
        self.data.flags.writeable = False
        self.row_checksums.flags.writeable = False

    def _checksums_arg(self, row_checksums):
        """The ``row_checksums`` argument as the read-only (R, 2) float32 array (or None)."""
        if row_checksums is None or row_checksums is False:
            return None
        c = as_array(row_checksums, "row_checksums")
        if c.dtype != np.float32 or c.shape != (self.data.shape[0], 2):
            raise ValueError(
                f"row_checksums must be a float32 array of shape ({self.data.shape[0]}, 2), got "
                f"{c.dtype} {c.shape}"
            )
        c = np.ascontiguousarray(c).view()
        c.flags.writeable = False
        return c

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_fused(cls, buffer, bits, dim, *, copy=False, row_checksums=False, n_threads=None):
        """Wrap existing fused rows (``uint8``, shape ``(R, row_bytes)``) as a table.

        ``buffer`` may be any array-like, including a CPU ``torch.Tensor`` from
        ``torch.ops.quantized.embedding_bag_{byte,4bit,2bit}_prepack``.  It is not copied
        unless ``copy=True`` (or it is not C-contiguous).  ``row_checksums=True`` copies the
        rows into a store with each row's soft-error checksum after it, taken now in one pass
        (for ``embedding_bag(..., check=...)``; see ``row_checksums`` above); an (R, 2) float32
        array supplies stored ones, kept apart from the rows.

        Examples
        --------
        >>> import numpy as np
        >>> from lowprec.rowwise import RowwiseQuantizedTable, quantize_rowwise
        >>> t = quantize_rowwise(np.arange(16, dtype=np.float32).reshape(2, 8), bits=4)
        >>> u = RowwiseQuantizedTable.from_fused(t.data, bits=4, dim=8)
        >>> np.array_equal(u.dequantize(), t.dequantize())
        True
        """
        buf = as_array(buffer, "buffer")
        if buf.dtype != np.uint8:
            raise TypeError(f"buffer has dtype {buf.dtype}; expected uint8")
        if copy:
            buf = buf.copy()
        return cls(buf, bits, dim, row_checksums=row_checksums, n_threads=n_threads)

    # -- shape ----------------------------------------------------------------------------
    @property
    def shape(self):
        """``(R, D)``: the shape of the float table this one stands for."""
        return (self.data.shape[0], self.dim)

    @property
    def row_bytes(self):
        """Bytes per fused row (codes + scale + bias)."""
        return self.data.shape[1]

    @property
    def nbytes(self):
        """Bytes of the fused rows.

        Examples
        --------
        >>> import numpy as np
        >>> from lowprec.rowwise import quantize_rowwise
        >>> quantize_rowwise(np.zeros((10, 16), np.float32), bits=4).nbytes
        120
        """
        return self.data.nbytes

    def __len__(self):
        return self.data.shape[0]

    # -- decoded views --------------------------------------------------------------------
    @property
    def scale(self):
        """Per-row scales as float32, shape ``(R,)``.

        For 8-bit tables a read-only zero-copy view into :attr:`data` (strided, and unaligned
        when ``D`` is not a multiple of 4); for 4/2-bit tables decoded from fp16.

        Examples
        --------
        >>> import numpy as np
        >>> from lowprec.rowwise import quantize_rowwise
        >>> quantize_rowwise(np.array([[0.0, 255.0]], np.float32)).scale
        array([1.], dtype=float32)
        """
        return self._param(0)

    @property
    def bias(self):
        """Per-row biases (the additive offset, the row minimum) as float32, shape ``(R,)``.

        Examples
        --------
        >>> import numpy as np
        >>> from lowprec.rowwise import quantize_rowwise
        >>> quantize_rowwise(np.array([[-1.0, 3.0, 2.0, 0.5]], np.float32), bits=4).bias
        array([-1.], dtype=float32)
        """
        return self._param(1)

    def _param(self, which):
        nb = _code_bytes(self.dim, self.bits)
        if self.bits == 8:
            start = nb + 4 * which
            v = self.data[:, start : start + 4].view("<f4")[:, 0]
            v.flags.writeable = False
            return v
        key = ("param", which)
        if key not in self._cache:
            start = nb + 2 * which
            v = self.data[:, start : start + 2].view("<f2")[:, 0].astype(np.float32)
            v.flags.writeable = False
            self._cache[key] = v
        return self._cache[key]

    @property
    def codes(self):
        """Unpacked codes, uint8 of shape ``(R, D)`` (computed once, then cached; read-only).

        Examples
        --------
        >>> import numpy as np
        >>> from lowprec.rowwise import quantize_rowwise
        >>> quantize_rowwise(np.arange(8, dtype=np.float32)[None], bits=4).codes
        array([[ 0,  2,  4,  6,  9, 11, 13, 15]], dtype=uint8)
        """
        if "codes" not in self._cache:
            c = self._unpack(self.data)
            c.flags.writeable = False
            self._cache["codes"] = c
        return self._cache["codes"]

    def _unpack(self, data):
        nb = _code_bytes(self.dim, self.bits)
        packed = data[:, :nb]
        if self.bits == 8:
            return np.array(packed)
        per_byte = 8 // self.bits
        mask = (1 << self.bits) - 1
        shifts = (np.arange(per_byte, dtype=np.uint8) * self.bits).astype(np.uint8)
        c = (packed[:, :, None] >> shifts) & np.uint8(mask)
        return np.ascontiguousarray(c.reshape(data.shape[0], nb * per_byte)[:, : self.dim])

    def dequantize(self, rows=None):
        """The float32 table ``q * scale + bias`` (all rows, or the rows at index array ``rows``).

        Each element is ``fmaf(q, scale, bias)`` (one rounding), bit for bit what PyTorch's
        ``embedding_bag_{byte,4bit,2bit}_unpack`` return on x86.

        Examples
        --------
        >>> import numpy as np
        >>> from lowprec.rowwise import quantize_rowwise
        >>> t = quantize_rowwise(np.array([[10.0, 20.0], [1.0, 2.0]], np.float32))
        >>> t.dequantize()
        array([[10., 20.],
               [ 1.,  2.]], dtype=float32)
        >>> t.dequantize(rows=[1])
        array([[1., 2.]], dtype=float32)
        """
        if rows is None:
            data, codes = self.data, self.codes
            scale, bias = self.scale, self.bias
        else:
            idx = as_array(rows, "rows")
            if idx.dtype.kind not in "iu":
                raise TypeError(f"rows must hold integers, got dtype {idx.dtype}")
            idx = idx.astype(np.int64, copy=False).reshape(-1)
            n = len(self)
            bad = np.nonzero((idx < 0) | (idx >= n))[0]
            if bad.size:
                p = int(bad[0])
                raise IndexError(f"rows[{p}] = {int(idx[p])} is out of range for a table of {n} rows")
            data = self.data[idx]
            codes = self._unpack(data)
            sub = RowwiseQuantizedTable.__new__(RowwiseQuantizedTable)
            sub.data, sub.bits, sub.dim, sub._cache = data, self.bits, self.dim, {}
            sub.row_checksums, sub._store = None, None
            scale, bias = sub.scale, sub.bias
        return _fmaf(codes, scale[:, None], bias[:, None])

    # -- display --------------------------------------------------------------------------
    def _layout(self):
        return "fp32" if self.bits == 8 else "fp16"

    def __repr__(self):
        r, d = self.shape
        fp32 = 4 * r * d
        ratio = f"{fp32 / self.nbytes:.2f}x smaller than fp32" if self.nbytes else "empty"
        return (
            f"RowwiseQuantizedTable(shape=({r}, {d}), bits={self.bits}, "
            f"scale/bias={self._layout()} per row after the codes, "
            f"nbytes={_fmt_bytes(self.nbytes)}, {ratio})"
        )

    def _repr_html_(self):
        r, d = self.shape
        fp32 = 4 * r * d
        ratio = f"{fp32 / self.nbytes:.2f}x" if self.nbytes else "-"
        cells = [
            ("shape", f"({r}, {d})"),
            ("bits", str(self.bits)),
            ("row layout", f"{_code_bytes(d, self.bits)} code bytes + {self._layout()} scale, bias"),
            ("bytes", _fmt_bytes(self.nbytes)),
            ("vs fp32", ratio),
        ]
        rows = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{v}</td></tr>" for k, v in cells)
        return f"<table><caption>RowwiseQuantizedTable</caption>{rows}</table>"

    # -- pickling -------------------------------------------------------------------------
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"] = {}
        if self._store is not None:
            # The store alone: rows and checksums keep their shared layout.
            del state["data"], state["row_checksums"]
        else:
            state["data"] = np.array(self.data)  # plain array; the view's base is not pickled
        return state

    def __setstate__(self, state):
        state.setdefault("row_checksums", None)  # pickled before checksums existed
        state.setdefault("_store", None)
        self.__dict__.update(state)
        if self._store is not None:
            self._attach_store(self._store)
            return
        self.data.flags.writeable = False
        if self.row_checksums is not None:
            self.row_checksums.flags.writeable = False


def _fmaf(a, b, c):
    """float32 fused multiply-add ``a*b + c`` with one rounding, in NumPy (which has no fma).

    ``a*b`` of two float32 values is exact in float64 (48 bits).  The float64 sum may round; to
    avoid a second, wrong rounding to float32 the sum is made "round-to-odd" (its last bit set
    when it is inexact, by stepping towards the exact value), which is correct for a final
    rounding to any precision of at most 51 bits.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        p = np.asarray(a, np.float64) * np.asarray(b, np.float32).astype(np.float64)
        c = np.asarray(c, np.float32).astype(np.float64)
        s = p + c
        # TwoSum: the exact rounding error of p + c
        bb = s - p
        err = (p - (s - bb)) + (c - bb)
        inexact = np.isfinite(s) & (err != 0) & ((s.view(np.uint64) & np.uint64(1)) == 0)
        if inexact.any():
            s = np.where(inexact, np.nextafter(s, s + err), s)
        return s.astype(np.float32)


def _fmt_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def quantize_rowwise(
    table, *, bits=8, method="minmax", n_bins=200, ratio=0.16, out=None, n_threads=None,
    row_checksums=False,
):
    """Quantize each row of a float table into FBGEMM's fused row-wise format.

    Parameters
    ----------
    table : array-like, shape (R, D)
        float32 (float16, float64 and bfloat16 are converted to float32 first, block by block;
        other dtypes raise TypeError).  Any layout; NumPy memory maps larger than RAM are read
        in blocks of rows.  Never modified.
    bits : {8, 4, 2}
    method : {"minmax", "greedy"}
        ``"minmax"`` is PyTorch's ``embedding_bag_*_prepack`` byte for byte.  ``"greedy"`` (4 and
        2 bits only) searches a clipping range per row (PyTorch's ``optimized_qparams=True``
        algorithm, with the loss measured under the deployed numerics and at most ``n_bins``
        steps); a row's result is never worse in L2 error than min-max, and codes outside the
        clipped range saturate.
    n_bins : int, default 200
        Greedy search: the range is scanned in steps of ``(max - min) / n_bins``.
    ratio : float in [0, 1), default 0.16
        Greedy search: at most this fraction of the range is clipped away.
    out : ndarray of uint8, shape (R, fused_row_bytes(D, bits)), optional
        Where to write the fused rows (C-contiguous, writeable, not overlapping ``table``), for
        instance a ``numpy.memmap`` or a buffer reused across calls (a fresh output costs the
        kernel zeroing its pages).  The returned table wraps it without a copy.  Its shape,
        dtype and layout are checked before anything is written; if a row turns out to hold
        NaN or infinity, the rows before it may already have been written.
    n_threads : int, optional
    row_checksums : bool, default False
        Also store each row's soft-error checksum (``table.row_checksums``, taken while the
        freshly quantized rows are in cache) for ``embedding_bag(..., check=...)``, each right
        after its row in one buffer (see :class:`RowwiseQuantizedTable`; with ``out=`` they are
        kept in a separate array instead, which makes checked lookups slower).  Off by
        default: it adds 20-40% to the quantization of a 1M x 128 table (measured), and the
        check is opt-in too.

    Returns
    -------
    RowwiseQuantizedTable

    Raises
    ------
    TypeError
        ``table`` is not a floating-point array, or ``out`` is not a uint8 ndarray.
    ValueError
        ``out`` has the wrong shape, is not C-contiguous or writeable, or overlaps ``table``;
        ``table`` is not 2-D or has no columns, ``bits``/``method``/``n_bins``/``ratio`` are
        invalid, ``method="greedy"`` with ``bits=8``, or a row holds NaN or infinity (the
        message names the first such row).

    Examples
    --------
    >>> import numpy as np
    >>> from lowprec.rowwise import quantize_rowwise
    >>> quantize_rowwise(np.array([[10.0, 20.0]], np.float32)).data.tolist()
    [[0, 255, 161, 160, 32, 61, 0, 0, 32, 65]]
    >>> t = quantize_rowwise(np.arange(8, dtype=np.float32)[None], bits=4)
    >>> [hex(b) for b in t.data[0]]
    ['0x20', '0x64', '0xb9', '0xfd', '0x77', '0x37', '0x0', '0x0']
    >>> rng = np.random.default_rng(0)
    >>> w = rng.standard_normal((1000, 64)).astype(np.float32)
    >>> g = quantize_rowwise(w, bits=4, method="greedy")
    >>> m = quantize_rowwise(w, bits=4)
    >>> bool(((g.dequantize() - w) ** 2).sum() <= ((m.dequantize() - w) ** 2).sum())
    True
    """
    # --- every check first -----------------------------------------------------------------
    bits = check_int(bits, "bits", choices=_BITS)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    n_bins = check_int(n_bins, "n_bins", minimum=1)
    if n_bins > 1 << 20:
        raise ValueError(f"n_bins must be <= 2**20, got {n_bins}")
    try:
        ratio = float(ratio)
    except (TypeError, ValueError):
        raise ValueError(f"ratio must be a float in [0, 1), got {ratio!r}") from None
    if not (math.isfinite(ratio) and 0.0 <= ratio < 1.0):
        raise ValueError(f"ratio must be a float in [0, 1), got {ratio!r}")
    if method == "greedy" and bits == 8:
        raise ValueError(
            "method='greedy' is for 4- and 2-bit rows; 8-bit rows use min-max ranges "
            "(as PyTorch's embedding_bag_byte_prepack)"
        )
    x = as_array(table, "table")
    if x.dtype not in _FLOAT_DTYPES:
        accepted = ", ".join(d.name for d in _FLOAT_DTYPES)
        raise TypeError(f"table has dtype {x.dtype}; expected one of: {accepted}")
    if x.ndim != 2:
        raise ValueError(f"table must be 2-D (rows, dim), got shape {x.shape}")
    n_rows, dim = x.shape
    if dim < 1:
        raise ValueError("table must have at least one column")

    # --- run -------------------------------------------------------------------------------
    row_bytes = fused_row_bytes(dim, bits)
    store = checks = None
    if row_checksums and out is None:
        # Rows and checksums in one store (RowwiseQuantizedTable.row_checksums says why).
        store = checked_row_store(n_rows, row_bytes)
        off = _checksum_offset(row_bytes)
        out, checks = store[:, :row_bytes], store[:, off : off + 8].view(np.float32)
    else:
        out = check_out(out, (n_rows, row_bytes), np.uint8, inputs=(x,))
        if row_checksums:
            checks = np.empty((n_rows, 2), dtype=np.float32)  # beside the caller's `out`
    greedy = method == "greedy"
    # PyTorch: int min_bins = n_bins * (1.0 - (float) ratio);
    min_bins = int(n_bins * (1.0 - float(np.float32(ratio))))
    nt = resolve_n_threads(
        n_threads, work_items=n_rows * dim, min_items_per_thread=(1 << 10) if greedy else (1 << 15)
    )
    chunk = _CHUNK_ROWS_GREEDY if greedy else _CHUNK_ROWS_MINMAX
    if x.dtype == np.float32 and x.flags.c_contiguous:
        # Zero-copy (memory maps included: the kernel streams through the mapped pages once).
        # One parallel region for the whole table: on a shared machine every region's end
        # waits for the slowest thread, so fewer regions means fewer such waits.
        block = max(1, n_rows)
    else:
        block = max(1, _BLOCK_BYTES // (4 * dim))
    kernel_method = _rowwise.METHOD_GREEDY if greedy else _rowwise.METHOD_MINMAX
    # The soft-error checksums are taken chunk by chunk, right after each chunk is quantized.
    for start in range(0, n_rows, block):
        stop = min(start + block, n_rows)
        # A converted (or compacted) copy of this block only, or the table itself.
        xb = np.ascontiguousarray(x[start:stop], dtype=np.float32)
        bad = _rowwise.quantize_rows(
            xb, out[start:stop], bits, kernel_method, n_bins, min_bins, nt, chunk,
            None if checks is None else checks[start:stop],
        )
        if bad >= 0:
            raise ValueError(
                f"row {start + bad} of table contains NaN or infinity; row-wise quantization "
                "needs finite values"
            )
    if store is not None:
        return RowwiseQuantizedTable._from_store(store, bits, dim)
    return RowwiseQuantizedTable(out, bits, dim, row_checksums=checks if row_checksums else False)
