"""Soft-error checks of EmbeddingBag: per-row table checksums and the per-bag verification.

``embedding_bag(..., check="raise"|"report")`` verifies every pooled bag against checksums of
the table rows taken when the table was known to be good: when it was quantized
(``RowwiseQuantizedTable.row_checksums``) or, for float tables, by :func:`row_checksums`.

Quantized tables (a ``(sum, abs_sum)`` float32 pair per row, stored after the row): for each bag

    sum_j out[b, j]  ==  sum_i w_i * rowsum[r_i]      (up to float32 rounding)

where ``rowsum[r] = scale * sum(q) + D * bias`` (exact in the integer code sum) and the
tolerance is a rigorous bound of the kernel's float32 rounding, ``gamma(2n + 3) * sum_i |w_i| *
abs_sum[r_i]`` plus the rounding of the output (docs/soft_errors.md derives it).  A flipped bit
in a code, scale or bias, or in a stored output element, moves the left side by the flip's
change and is flagged when that exceeds the tolerance.

Float tables (4 bits per row, ``(sum of the row's bytes) mod 15``, two rows per byte): the bytes
of the rows a bag pools must add up, mod 15, to their stored checksums (every single-bit flip of
a row is caught, exactly, unless the row appears a multiple of 15 times in the bag), and the
stored output must equal, bit for bit, what the pooling computed.  (A separate array of
``(sum, abs_sum)`` pairs cost a cache miss per row; 512 KB per million rows mostly stays in
cache.)

Neither check ever flags a correct result.  Both run inside the lookup, right after each bag
is pooled.  Max pooling has no check.

Examples
--------
>>> import numpy as np
>>> from lowprec.embedding import embedding_bag
>>> from lowprec.embedding_checks import row_checksums
>>> table = np.arange(12, dtype=np.float32).reshape(4, 3)
>>> cs = row_checksums(table)
>>> out, flags = embedding_bag(table, [[0, 1], [3, 3]], check="report", checksums=cs)
>>> flags.tolist()
[False, False]
>>> table[3, 1] = -table[3, 1]          # a sign bit flipped after the checksums were taken
>>> embedding_bag(table, [[0, 1], [3, 3]], check="report", checksums=cs)[1].tolist()
[False, True]
"""

import numpy as np

from ._errors import SoftErrorDetected
from ._kernels import _rowwise
from ._threads import resolve_n_threads
from ._validation import as_array

__all__ = ["row_checksums"]

CHECKS = ("off", "raise", "report")

# Rows per thread below which the checksum pass stays serial (a row is ~10-50 ns).
_MIN_ROWS_PER_THREAD = 1 << 15


def row_checksums(table, *, out=None, n_threads=None):
    """Per-row soft-error checksums of an embedding table, for ``embedding_bag(..., check=)``.

    Float tables (float32, float16, bfloat16): a uint8 array ``((R + 1) // 2,)``, each row's
    byte sum mod 15 in 4 bits, row ``2i`` in the low half of byte ``i``.  Quantized tables: a
    float32 array ``(R, 2)``, each row's sum and a bound of the magnitudes the kernel adds
    (``|scale| * sum(q) + D * |bias|``, rounded up); a table quantized with
    ``row_checksums=True`` carries them (``table.row_checksums``).  Take them once, when the
    table is known to be good, and pass them as ``checksums=``.

    Parameters
    ----------
    table : ndarray (R, D) of float32, float16 or bfloat16, or RowwiseQuantizedTable
    out : ndarray, optional
        Where to write them: uint8 ``((R + 1) // 2,)`` (float tables, contiguous) or float32
        ``(R, 2)`` (quantized; each pair contiguous, any row stride).
    n_threads : int, optional

    Examples
    --------
    >>> import numpy as np
    >>> from lowprec.embedding_checks import row_checksums
    >>> row_checksums(np.array([[1.0, -2.0], [0.5, 0.25]], np.float32))  # 2 rows, 4 bits each
    array([198], dtype=uint8)
    """
    from .embedding import _table_view  # the one place that maps tables to kernel formats

    raw, n_rows, dim, fmt, _ = _table_view(table)
    nt = resolve_n_threads(n_threads, work_items=n_rows,
                           min_items_per_thread=_MIN_ROWS_PER_THREAD)
    if isinstance(table, np.ndarray):
        shape = ((n_rows + 1) // 2,)
        if out is None:
            out = np.empty(shape, dtype=np.uint8)
        elif (not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.shape != shape
              or not out.flags.c_contiguous):
            raise ValueError(f"out must be a contiguous uint8 array of shape {shape} for a "
                             "float table")
        _rowwise.row_nibbles(raw, out, nt)
        return out
    if out is None:
        out = np.empty((n_rows, 2), dtype=np.float32)
    elif not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != (n_rows, 2):
        raise ValueError(f"out must be a float32 array of shape ({n_rows}, 2)")
    _rowwise.row_checksums(raw, dim, fmt, out, nt)
    return out


def check_mode(check):
    """Validate ``check=``: "off" (also None / False), "raise" or "report"."""
    if check is None or check is False:
        return "off"
    if not isinstance(check, str) or check not in CHECKS:
        raise ValueError(f"check must be one of {CHECKS}, got {check!r}")
    return check


def checksums_for(table, checksums, n_rows, mode):
    """The checksums to verify ``table``'s bags with (validated): uint8 ``((R + 1) // 2,)``
    for a float table, float32 ``(R, 2)`` for a quantized one."""
    if mode == "max":
        raise ValueError("check= verifies sum and mean pooling; mode='max' has no checksum")
    if checksums is None:
        checksums = getattr(table, "row_checksums", None)
        if checksums is None:
            raise ValueError(
                "check= needs the table's row checksums: pass checksums="
                "lowprec.embedding_checks.row_checksums(table), taken when the table was good"
                if isinstance(table, np.ndarray) else
                "check= needs row checksums: quantize the table with quantize_rowwise(..., "
                "row_checksums=True) (or wrap it with from_fused(..., row_checksums=True))"
            )
    c = as_array(checksums, "checksums")
    if isinstance(table, np.ndarray):
        if c.dtype != np.uint8:
            raise TypeError(f"checksums has dtype {c.dtype}; a float table's are uint8, 4 bits "
                            "per row (from row_checksums)")
        if c.shape != ((n_rows + 1) // 2,):
            raise ValueError(f"checksums has shape {c.shape}; expected ({(n_rows + 1) // 2},), "
                             "4 bits per table row (from row_checksums)")
        return np.ascontiguousarray(c)
    if c.dtype != np.float32:
        raise TypeError(f"checksums has dtype {c.dtype}; expected float32 (from row_checksums)")
    if c.shape != (n_rows, 2):
        raise ValueError(f"checksums has shape {c.shape}; expected ({n_rows}, 2), one row per "
                         "table row")
    if c.strides[1] != 4 or c.strides[0] % 4 or not c.flags.aligned:
        c = np.ascontiguousarray(c)  # the kernels read aligned pairs, any row stride
    return c


def finish(check, out, flags):
    """The API's answer: ``out``, ``(out, flags)`` for "report", or SoftErrorDetected."""
    flags = flags.view(bool)
    if check == "report":
        return out, flags
    if flags.any():
        raise SoftErrorDetected(flags, out, what="EmbeddingBag", unit="bag")
    return out
