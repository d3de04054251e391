"""Soft-error checks of EmbeddingBag: per-row table checksums and the per-bag verification.

``embedding_bag(..., check="raise"|"report")`` verifies every pooled bag against checksums of
the table rows taken when the table was quantized (``RowwiseQuantizedTable.row_checksums``) or,
for float tables, by :func:`row_checksums` when the table was known to be good.  For each bag

    sum_j out[b, j]  ==  sum_i w_i * rowsum[r_i]      (up to float32 rounding)

where ``rowsum[r] = sum_j table[r, j]`` (quantized rows: ``scale * sum(q) + D * bias``, exact in
the integer code sum) and the tolerance is a rigorous bound of the kernel's float32 rounding,
``gamma(2n + 3) * sum_i |w_i| * abs_sum[r_i]`` plus the rounding of the output
(docs/soft_errors.md derives it).  A flipped bit in a code, scale or bias of a row at rest, or in
a stored output element, moves the left side by the flip's change and is flagged when that
exceeds the tolerance; the clean arithmetic never exceeds it, so a correct result is never
flagged.  The check runs inside the lookup, a few dozen bags at a time right after they are
pooled (the pooling kernel prefetches the rows' checksums with the rows).  Max pooling is not
linear and has no check.

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
    """Per-row soft-error checksums of an embedding table: float32 array ``(R, 2)``.

    Column 0 is each row's sum, column 1 a bound of the magnitudes the EmbeddingBag kernel adds
    (``sum |v|``; quantized rows ``|scale| * sum(q) + D * |bias|``), rounded up.  Take them once,
    when the table is known to be good, and pass them to ``embedding_bag(..., check=...,
    checksums=...)``.  Quantized tables carry theirs (``table.row_checksums``).

    Parameters
    ----------
    table : ndarray (R, D) of float32, float16 or bfloat16, or RowwiseQuantizedTable
    out : ndarray (R, 2) of float32, optional
        Where to write them (each pair contiguous, any row stride).
    n_threads : int, optional

    Examples
    --------
    >>> import numpy as np
    >>> from lowprec.embedding_checks import row_checksums
    >>> row_checksums(np.array([[1.0, -2.0], [0.5, 0.25]], np.float32))
    array([[-1.  ,  3.  ],
           [ 0.75,  0.75]], dtype=float32)
    """
    from .embedding import _table_view  # the one place that maps tables to kernel formats

    raw, n_rows, dim, fmt, _ = _table_view(table)
    if out is None:
        out = np.empty((n_rows, 2), dtype=np.float32)
    elif not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != (n_rows, 2):
        raise ValueError(f"out must be a float32 array of shape ({n_rows}, 2)")
    nt = resolve_n_threads(n_threads, work_items=n_rows,
                           min_items_per_thread=_MIN_ROWS_PER_THREAD)
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
    """The (R, 2) float32 checksums to verify ``table``'s bags with (validated)."""
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
