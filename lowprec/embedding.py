"""EmbeddingBag: pooled (sum / mean / max) lookups of embedding-table rows, FBGEMM's EmbeddingSpMDM.

:func:`embedding_bag` gathers rows of a table and reduces them per *bag*; :func:`embedding_bags`
does the same for several tables in one call (the table-batched form of recommendation models).

Tables: a float32, float16 or bfloat16 (``ml_dtypes``) ndarray of shape ``(R, D)`` (NumPy memory
maps included: rows are read in place), or a :class:`lowprec.rowwise.RowwiseQuantizedTable`
(8, 4 or 2 bits, FBGEMM's fused rows, from ``quantize_rowwise`` or PyTorch's prepack ops).

Bags, three ways (indices are int32 or int64):

* ``offsets`` (PyTorch): bag ``b`` is ``indices[offsets[b]:offsets[b+1]]``; the last bag ends at
  ``len(indices)``, or, with ``include_last_offset=True``, ``offsets`` has ``B + 1`` entries and
  the last bag ends at ``offsets[B]`` (indices after it are checked but not pooled).
* ``lengths`` (Caffe2's SparseLengthsSum): bag ``b`` has ``lengths[b]`` consecutive indices.
* neither: ``indices`` is 2-D ``(B, L)``, one bag per row.

Arithmetic (all accumulation in float32, entries in index order; docs/embedding_bag.md has the
evidence that this is bit for bit what PyTorch / FBGEMM compute):

* float tables: ``acc += row`` or, with per-sample weights, ``acc = fma(w, row, acc)``;
* quantized rows: ``acc = fma(scale*w, q, acc + bias*w)`` (FBGEMM's order; ``w = 1`` without
  weights);
* ``mode="mean"``: ``acc / count``, ``count`` = entries not skipped (padding / pruned);
* ``mode="max"``: element-wise maximum of the (dequantized, ``fma(q, scale, bias)``) rows;
  ``v > acc ? v : acc``, so a NaN in the first counted row propagates and later NaNs are ignored;
* an empty bag (or one whose entries were all skipped) gives 0 in every mode (as PyTorch);
* float16 / bfloat16 output is the float32 result rounded once, to nearest even.

Skipped entries: ``indices == padding_idx`` (PyTorch's semantics: not counted in the mean), and,
with ``compressed_indices_mapping`` (pruned tables: original row -> stored row, ``-1`` = pruned),
entries whose row was pruned.  Pruned entries are skipped the same way (not counted in the mean;
FBGEMM's ``normalize_by_lengths`` would count them as zero rows).

Errors, all raised before anything is written to ``out``: an index ``< 0`` or ``>=`` the number
of rows (or the mapping's length) raises ``IndexError`` naming its position and value, so does a
mapping entry (selected by an index) outside ``[-1, R)``; bad offsets / lengths / weights /
``padding_idx`` / mapping shapes raise ``ValueError``; unsupported dtypes ``TypeError``.

Threads: bags are split into chunks of about equal work (indices, not bags) and every bag is
pooled by one thread, so results do not depend on ``n_threads``.  libgomp is not fork-safe: in
forked children use ``n_threads=1`` or the "spawn" start method.
"""

import operator
import os
import warnings

import ml_dtypes
import numpy as np

from . import _dispatch, embedding_checks
from ._kernels import _embedding, _runtime
from ._packed_format import _aligned_empty
from ._threads import resolve_n_threads
from ._validation import as_array, check_out
from .rowwise import RowwiseQuantizedTable

_dispatch.register_family("embedding", _embedding)

PREFETCH_ENV_VAR = "LOWPREC_EB_PREFETCH"


def _two_level_prefetch():
    """Whether the AVX-512 kernel prefetches rows in two levels (into L2 far ahead, into L1 near).

    On by default where ``prefetcht1`` fills L2 only (AMD Zen 4 and later) and, judging by the
    speed-ups, does not tie up the L1's miss buffers: many more rows in flight, 2-3x FBGEMM's
    speed on fresh quantized lookups.  Elsewhere (Intel, not measured) rows are prefetched into
    L1 only, as FBGEMM does.  ``LOWPREC_EB_PREFETCH=l2`` / ``l1`` (read at import) forces either.

    Examples
    --------
    >>> from lowprec import embedding
    >>> embedding._two_level_prefetch() in (True, False)
    True
    """
    requested = os.environ.get(PREFETCH_ENV_VAR, "").strip().lower()
    if requested in ("l1", "l2"):
        return requested == "l2"
    if requested not in ("", "auto"):
        warnings.warn(f"{PREFETCH_ENV_VAR}={requested!r} is not one of 'l1', 'l2', 'auto'; "
                      "using 'auto'", RuntimeWarning, stacklevel=2)
    return bool(_runtime.cpu_features().get("prefetcht1_l2", False))


_embedding._set_prefetch_l2(_two_level_prefetch())

__all__ = ["aligned_table", "embedding_bag", "embedding_bags"]

_BF16 = np.dtype(ml_dtypes.bfloat16)
_F32 = np.dtype(np.float32)
_F16 = np.dtype(np.float16)
_TABLE_FMTS = {_F32: _embedding.FMT_F32, _F16: _embedding.FMT_F16, _BF16: _embedding.FMT_BF16}
_Q_FMTS = {8: _embedding.FMT_Q8, 4: _embedding.FMT_Q4, 2: _embedding.FMT_Q2}
_OUT_FMTS = {_F32: _embedding.OUT_F32, _F16: _embedding.OUT_F16, _BF16: _embedding.OUT_BF16}
_MODES = {"sum": _embedding.MODE_SUM, "mean": _embedding.MODE_MEAN, "max": _embedding.MODE_MAX}
_INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
_WEIGHT_DTYPES = (_F32, _F16, _BF16, np.dtype(np.float64))

# Serial below this many (indices + bags) per thread: a parallel region costs a few
# microseconds, 2048 lookups of a cached row take ~10-20 us.
_MIN_WORK_PER_THREAD = 2048


class _Plan:
    """Everything one table's lookup needs, validated; built before any kernel runs."""

    __slots__ = ("table_bytes", "n_rows", "dim", "fmt", "mode", "indices", "idx64", "offsets",
                 "weights", "mapping", "padding_idx", "n_bags", "inputs", "index_shape",
                 "index_values", "mapping_values")


def _native(a):
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def _as_int(value, name):
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None


def _float_table_dtype(table, quantized_ok=False):
    """The native dtype of a 2-D float32 / float16 / bfloat16 ndarray ``table``; TypeError or
    ValueError naming what is wrong otherwise (``quantized_ok``: the messages also name
    RowwiseQuantizedTable, which the caller handles before)."""
    if not isinstance(table, np.ndarray):
        raise TypeError(
            "table must be a float32 / float16 / bfloat16 ndarray"
            + (" or a RowwiseQuantizedTable" if quantized_ok else "")
            + f", got {type(table).__name__}"
        )
    dtype = table.dtype.newbyteorder("=")
    if dtype not in _TABLE_FMTS:
        raise TypeError(
            f"table has dtype {table.dtype}; expected one of: float32, float16, bfloat16"
            + (" (or a RowwiseQuantizedTable)" if quantized_ok else "")
        )
    if table.ndim != 2:
        raise ValueError(f"table must be 2-D (rows, dim), got {table.ndim}-D")
    return dtype


def _table_view(table):
    """(byte view of the rows (R, row_bytes), R, D, fmt, the array to check overlaps against)."""
    if isinstance(table, RowwiseQuantizedTable):
        data = table.data
        return data, data.shape[0], table.dim, _Q_FMTS[table.bits], data
    dtype = _float_table_dtype(table, quantized_ok=True)
    if table.dtype != dtype:
        table = table.astype(dtype)  # non-native byte order: a copy
    t = table
    if t.shape[1] > 0 and t.strides[1] != t.itemsize or t.strides[0] < 0:
        # Rows must be contiguous (any row stride is fine); other layouts are copied.
        t = np.ascontiguousarray(t)
    if t.dtype == _BF16:
        t = t.view(np.uint16)
    if t.shape[1] == 0:
        raw = np.empty((t.shape[0], 0), dtype=np.uint8)
    else:
        raw = t.view(np.uint8)
    return raw, table.shape[0], table.shape[1], _TABLE_FMTS[table.dtype], table


def aligned_table(table):
    """A copy of a float embedding table whose first row starts on a 64-byte (cache-line) boundary.

    NumPy puts a large array 16 bytes past a page boundary, so every row of such a table
    straddles one cache line more than it needs when the row is a multiple of 64 bytes: five
    lines instead of four for fp32 D = 64, three instead of two for fp16 / bf16 D = 64.  A
    lookup from memory reads them all.  Copy a table once with this function before serving
    lookups from it.  On this project's Zen 4 machine, 1M x 64 lookups took 1.45-1.6x less time
    (fp32) and 2.1-3.2x less (fp16) on the aligned copy; PyTorch's on the same copy 1.2-1.55x
    less (docs/embedding_bag.md, "Aligned tables").  Rows whose size is not a multiple of
    64 bytes cannot all start on a line; the copy still starts on one.  Tables from
    ``torch.empty`` (64-byte aligned) and the rows of a memory-mapped ``.npy`` file (its header
    is a multiple of 64 bytes) are aligned already.

    Parameters
    ----------
    table : ndarray, shape (rows, dim)
        float32, float16 or bfloat16 (ml_dtypes), any layout and byte order.

    Returns
    -------
    ndarray
        A new C-contiguous, writable table of the same shape and values, native byte order.

    Examples
    --------
    >>> import numpy as np
    >>> from lowprec.embedding import aligned_table, embedding_bag
    >>> t = aligned_table(np.arange(12, dtype=np.float32).reshape(4, 3))
    >>> t.ctypes.data % 64, t.shape, t.dtype
    (0, (4, 3), dtype('float32'))
    >>> embedding_bag(t, [0, 3], [0]).tolist()
    [[9.0, 11.0, 13.0]]
    """
    dtype = _float_table_dtype(table)
    out = _aligned_empty(table.size, dtype).reshape(table.shape)
    out[...] = table
    return out


def _check_index_array(x, name, ndims=(1,)):
    x = as_array(x, name)
    if x.dtype not in _INDEX_DTYPES:
        raise TypeError(f"{name} has dtype {x.dtype}; expected int32 or int64")
    if x.ndim not in ndims:
        raise ValueError(f"{name} must be {' or '.join(f'{d}-D' for d in ndims)}, got {x.ndim}-D")
    return np.ascontiguousarray(_native(x))


def _offsets_error(o, n, include_last_offset):
    """Raise the ValueError that names the first problem of ``offsets`` (the slow path)."""
    if include_last_offset:
        if o.size == 0:
            raise ValueError("offsets must hold at least one entry with "
                             "include_last_offset=True")
        offs = o.astype(np.int64)
    else:
        offs = np.empty(o.size + 1, dtype=np.int64)
        offs[:-1] = o
        offs[-1] = n
    if offs.size > 1 or include_last_offset:
        if offs[0] != 0:
            raise ValueError(f"offsets must start at 0, got offsets[0] = {int(offs[0])}")
        user = offs if include_last_offset else offs[:-1]
        if user.size and user.max() > n:
            pos = int(np.argmax(user > n))
            raise ValueError(
                f"offsets[{pos}] = {int(user[pos])} exceeds the number of indices ({n})"
            )
        d = np.diff(offs)
        if d.size and d.min() < 0:
            pos = int(np.argmax(d < 0))
            raise ValueError(
                f"offsets must not decrease: offsets[{pos + 1}] = {int(offs[pos + 1])} < "
                f"offsets[{pos}] = {int(offs[pos])}"
            )
    raise AssertionError("offsets_int64 flagged valid offsets")  # pragma: no cover


def _prepare(table, indices, offsets, lengths, mode, per_sample_weights, include_last_offset,
             padding_idx, mapping):
    p = _Plan()
    p.table_bytes, p.n_rows, p.dim, p.fmt, table_arr = _table_view(table)

    if not isinstance(mode, str) or mode not in _MODES:
        raise ValueError(f"mode must be one of {tuple(_MODES)}, got {mode!r}")
    p.mode = _MODES[mode]

    if offsets is not None and lengths is not None:
        raise ValueError("give offsets or lengths, not both")
    idx = _check_index_array(indices, "indices", ndims=(1, 2))
    p.index_shape = idx.shape
    n = idx.size
    offs = None
    if offsets is None and lengths is None:
        if idx.ndim != 2:
            raise ValueError(
                "indices must be 2-D (bags, length) when neither offsets nor lengths is given"
            )
        if include_last_offset:
            raise ValueError("include_last_offset needs offsets")
        b, L = idx.shape
        offs = np.arange(b + 1, dtype=np.int64) * L
    else:
        if idx.ndim != 1:
            raise ValueError(f"indices must be 1-D when offsets or lengths are given, got 2-D")
        if lengths is not None:
            if include_last_offset:
                raise ValueError("include_last_offset applies to offsets, not lengths")
            lens = _check_index_array(lengths, "lengths")
            if lens.size and lens.min() < 0:
                pos = int(np.argmax(lens < 0))
                raise ValueError(f"lengths[{pos}] = {int(lens[pos])} is negative")
            offs = np.zeros(lens.size + 1, dtype=np.int64)
            np.cumsum(lens, out=offs[1:])
            if offs[-1] != n:
                raise ValueError(
                    f"lengths sum to {int(offs[-1])} but there are {n} indices"
                )
        else:
            o = _check_index_array(offsets, "offsets")
            # One C pass validates and widens to int64; on a problem, _offsets_error finds
            # it again with NumPy and names it.
            offs, status = _embedding.offsets_int64(o, n, include_last_offset)
            if status:
                offs = _offsets_error(o, n, include_last_offset)
    p.offsets = offs
    p.n_bags = offs.size - 1
    p.indices = idx.reshape(-1)
    p.idx64 = int(idx.dtype == np.int64)

    if per_sample_weights is not None:
        if mode != "sum":
            raise ValueError(
                f"per_sample_weights is only supported for mode='sum', got mode={mode!r}"
            )
        w = as_array(per_sample_weights, "per_sample_weights", _WEIGHT_DTYPES)
        if w.shape != idx.shape:
            raise ValueError(
                f"per_sample_weights has shape {w.shape}; expected {idx.shape} (like indices)"
            )
        p.weights = np.ascontiguousarray(w.reshape(-1), dtype=np.float32)
    else:
        p.weights = None

    if mapping is not None:
        m = _check_index_array(mapping, "compressed_indices_mapping")
        if m.dtype == np.int64:
            if m.size and (m.min() < -1 or m.max() >= p.n_rows):
                pos = int(np.argmax((m < -1) | (m >= p.n_rows)))
                raise IndexError(
                    f"compressed_indices_mapping[{pos}] = {int(m[pos])} is out of range for a "
                    f"table of {p.n_rows} rows (expected -1 or 0 <= entry < {p.n_rows})"
                )
            m = m.astype(np.int32)
        p.mapping = m
        space = m.size
    else:
        p.mapping = None
        space = p.n_rows

    if padding_idx is None:
        p.padding_idx = -1
    else:
        pi = _as_int(padding_idx, "padding_idx")
        if not -space <= pi < space:
            raise ValueError(
                f"padding_idx = {pi} is out of range for {space} rows (expected "
                f"{-space} <= padding_idx < {space})"
            )
        p.padding_idx = pi + space if pi < 0 else pi
    p.inputs = tuple(a for a in (table_arr, idx, p.weights, p.mapping) if a is not None) + (
        indices, offsets, lengths, per_sample_weights, mapping)
    p.inputs = tuple(a for a in p.inputs if isinstance(a, np.ndarray))
    return p


def _out_dtype(out_dtype, out):
    if out_dtype is None:
        dt = out.dtype if isinstance(out, np.ndarray) else _F32
    else:
        try:
            dt = np.dtype(out_dtype)
        except TypeError:
            raise TypeError(f"out_dtype {out_dtype!r} is not a dtype") from None
    if dt not in _OUT_FMTS:
        raise TypeError(f"out_dtype {dt} is not supported; expected float32, float16 or bfloat16")
    return dt


def _bad_index_error(p, pos):
    value = int(p.indices[pos])
    where = f"indices[{pos}]"
    if len(p.index_shape) == 2 and p.index_shape[1] > 0:
        where = f"indices[{pos // p.index_shape[1]}, {pos % p.index_shape[1]}]"
    if p.mapping is not None:
        space = p.mapping.size
        if 0 <= value < space:
            m = int(p.mapping[value])
            return IndexError(
                f"{where} = {value} selects compressed_indices_mapping[{value}] = {m}, out of "
                f"range for a table of {p.n_rows} stored rows (expected -1 or 0 <= entry < "
                f"{p.n_rows})"
            )
        return IndexError(
            f"{where} = {value} is out of range for a compressed_indices_mapping of {space} "
            f"entries"
        )
    return IndexError(f"{where} = {value} is out of range for a table of {p.n_rows} rows")


def _check_indices(p):
    """Run the kernel's index pre-pass (no output): raise IndexError on the first bad index."""
    # pool() with an empty output checks and returns before pooling.
    empty = np.empty((0, 0), dtype=np.uint8)
    bad = _embedding.pool(
        p.table_bytes, p.n_rows, p.dim, p.fmt, p.mode, p.indices.view(np.uint8), p.idx64,
        np.zeros(1, dtype=np.int64), p.weights, p.mapping, p.padding_idx, empty,
        _embedding.OUT_F32, 1)
    if bad >= 0:
        raise _bad_index_error(p, bad)


def _execute(p, out_cols, out_fmt, n_threads, check=False, soft=None):
    """Pool plan ``p`` into ``out_cols`` (a (B, D) array whose rows are contiguous).

    With ``check``, the kernel's index pre-pass runs first (in the same call) and a bad index
    raises IndexError before anything is written.  ``soft``: ``(row_checksums, flags,
    inject)`` runs the soft-error check of every bag (flags: uint8, one per bag; inject: None or
    (bag, output byte, bit) for fault injection)."""
    if p.n_bags == 0 or p.dim == 0:
        if check:
            _check_indices(p)
        return
    extra = {}
    if soft is not None:
        checks, flags, inject = soft
        # Float tables' checksums are 4 bits per row, quantized tables' (sum, abs_sum) pairs.
        kind = "row_nibbles" if checks.dtype == np.uint8 else "row_checks"
        extra = {kind: checks, "flags": flags}
        if inject is not None:
            extra.update(inject_bag=inject[0], inject_byte=inject[1], inject_bit=inject[2])
    bad = _embedding.pool(
        p.table_bytes, p.n_rows, p.dim, p.fmt, p.mode, p.indices.view(np.uint8), p.idx64,
        p.offsets, p.weights, p.mapping, p.padding_idx, out_cols.view(np.uint8), out_fmt,
        n_threads, check, **extra)
    if bad >= 0:
        raise _bad_index_error(p, bad)


def _threads_for(plans, n_threads):
    work = sum(p.indices.size + p.n_bags for p in plans)
    return resolve_n_threads(n_threads, work_items=work, min_items_per_thread=_MIN_WORK_PER_THREAD)


def _fast_call(table, indices, offsets, mode, include_last_offset, out_dtype, n_threads):
    """The common call (ndarray table, 1-D int32/int64 ``indices`` + ``offsets``, no weights,
    mapping, padding or ``out``) validated and pooled in one C call: ~2 us of overhead instead
    of ~12 (_prepare, the separate index pre-pass, partition; measured on a 2-bag call), a few
    % of a 2048 x 32 lookup of cached rows.  Returns None for anything else, invalid input
    included: the caller's validating path then raises the exact error (pool_fast writes
    nothing visible first)."""
    if isinstance(table, RowwiseQuantizedTable):
        raw, fmt, dim = table.data, _Q_FMTS[table.bits], table.dim
    elif type(table) is np.ndarray and table.ndim == 2:
        raw, fmt, dim = table, _TABLE_FMTS.get(table.dtype), table.shape[1]
        if fmt is None:
            return None
    else:
        return None
    m = _MODES.get(mode) if type(mode) is str else None
    if m is None or type(include_last_offset) is not bool or type(offsets) is not np.ndarray:
        return None
    if out_dtype is None:
        dt = _F32
    else:
        try:
            dt = np.dtype(out_dtype)
        except TypeError:
            return None
    out_fmt = _OUT_FMTS.get(dt)
    if out_fmt is None or offsets.ndim != 1 or type(indices) is not np.ndarray:
        return None
    try:
        nt = resolve_n_threads(n_threads, work_items=indices.size + offsets.shape[0]
                               - include_last_offset, min_items_per_thread=_MIN_WORK_PER_THREAD)
    except (TypeError, ValueError):
        return None
    return _embedding.pool_fast(raw, dim, fmt, m, indices, offsets, include_last_offset, dt,
                                out_fmt, nt)


def embedding_bag(table, indices, offsets=None, *, lengths=None, mode="sum",
                  per_sample_weights=None, include_last_offset=False, padding_idx=None,
                  compressed_indices_mapping=None, out=None, out_dtype=None, n_threads=None,
                  check="off", checksums=None, _inject=None):
    """Pool rows of ``table`` per bag: sum, mean or max.

    Parameters
    ----------
    table : ndarray (R, D) of float32, float16 or bfloat16, or RowwiseQuantizedTable
        The embedding table (memory maps are read in place).
    indices : array_like of int32 or int64, 1-D (N,) or 2-D (B, L)
        Row indices (into the original rows when ``compressed_indices_mapping`` is given).
    offsets : array_like of int32 or int64, optional
        Start of each bag in ``indices`` (PyTorch convention); ``B`` entries, or ``B + 1`` with
        ``include_last_offset=True``.  Must start at 0 and not decrease.
    lengths : array_like of int32 or int64, optional
        Number of indices of each bag (SparseLengthsSum convention); must sum to ``N``.
    mode : {"sum", "mean", "max"}
    per_sample_weights : array_like of float, shape like ``indices``, optional
        One weight per index (mode "sum" only), used as float32.
    include_last_offset : bool
        ``offsets`` holds the end of the last bag as its last entry.
    padding_idx : int, optional
        Entries equal to it are skipped (not counted in the mean); negative values count from
        the end, as in PyTorch.
    compressed_indices_mapping : array_like of int32 or int64, optional
        Pruned tables: original row -> stored row, -1 = pruned (skipped).  int32 is used in
        place; int64 is range-checked and converted on every call.
    out : ndarray (B, D), optional
        C-contiguous, writeable, of ``out_dtype``; untouched if the call raises.
    out_dtype : float32 (default), float16 or bfloat16
        Defaults to ``out.dtype`` when ``out`` is given.
    n_threads : int, optional
    check : {"off", "raise", "report"}, default "off"
        Soft-error check (sum and mean): every bag is verified against per-row checksums of
        the table (``lowprec.embedding_checks``, docs/soft_errors.md): quantized tables by
        the bag's output sum within a rigorous float32 tolerance, float tables by exact byte
        sums of the rows and a bit-for-bit check of the stored output; a correct result is
        never flagged.  "raise" raises ``lowprec.SoftErrorDetected`` naming the failed bags;
        "report" returns ``(out, flags)``.
    checksums : ndarray, optional
        The table's row checksums: default ``table.row_checksums`` for quantized tables
        (float32 ``(R, 2)``, taken when quantized).  Float tables need them:
        ``embedding_checks.row_checksums(table)`` (uint8, 4 bits per row).

    Returns
    -------
    ndarray (B, D) of ``out_dtype``, or ``(out, flags)`` (bool, one per bag) for "report"

    Examples
    --------
    >>> import numpy as np
    >>> from lowprec.embedding import embedding_bag
    >>> table = np.arange(12, dtype=np.float32).reshape(4, 3)
    >>> embedding_bag(table, [0, 1, 3, 2], [0, 3])
    array([[12., 15., 18.],
           [ 6.,  7.,  8.]], dtype=float32)
    >>> embedding_bag(table, [[0, 1], [2, 2]], mode="mean")
    array([[1.5, 2.5, 3.5],
           [6. , 7. , 8. ]], dtype=float32)
    """
    check = embedding_checks.check_mode(check)
    if (check == "off" and out is None and lengths is None and per_sample_weights is None
            and padding_idx is None and compressed_indices_mapping is None):
        res = _fast_call(table, indices, offsets, mode, include_last_offset, out_dtype, n_threads)
        if res is not None:
            return res
    p = _prepare(table, indices, offsets, lengths, mode, per_sample_weights, include_last_offset,
                 padding_idx, compressed_indices_mapping)
    if check != "off":
        checksums = embedding_checks.checksums_for(table, checksums, p.n_rows, mode)
    dt = _out_dtype(out_dtype, out)
    out = check_out(out, (p.n_bags, p.dim), dt, inputs=p.inputs)
    # The index pre-pass runs inside the kernel call, before the first write.
    nt = _threads_for([p], n_threads)
    if check == "off":
        _execute(p, out, _OUT_FMTS[dt], nt, check=True)
        return out
    # Every bag is verified right after it is pooled (_embedding.pool, src/bag_check.h).
    flags = np.zeros(p.n_bags, dtype=np.uint8)
    _execute(p, out, _OUT_FMTS[dt], nt, check=True, soft=(checksums, flags, _inject))
    return embedding_checks.finish(check, out, flags)


def _per_table(value, n, name):
    if value is None:
        return [None] * n
    if isinstance(value, np.ndarray) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list or tuple with one entry per table")
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} entries for {n} tables")
    return list(value)


def embedding_bags(tables, indices, offsets=None, *, lengths=None, mode="sum",
                   per_sample_weights=None, include_last_offset=False, padding_idx=None,
                   compressed_indices_mapping=None, concat=False, out=None, out_dtype=None,
                   n_threads=None):
    """Several :func:`embedding_bag` lookups in one call (one per table).

    ``indices``, ``offsets``, ``lengths``, ``per_sample_weights`` and
    ``compressed_indices_mapping`` are lists with one entry per table (or None);
    ``padding_idx`` is one value for all tables or a list; ``mode``, ``include_last_offset``
    and ``out_dtype`` apply to all.  Every argument of every table is checked before any
    output is written, and each table's result is bit-identical to a separate
    :func:`embedding_bag` call.

    Returns a list of ``(B_t, D_t)`` arrays, or with ``concat=True`` (every table must have the
    same number of bags ``B``) one ``(B, sum D_t)`` array whose column blocks are the tables'
    results in order (written in place, no copy; ``out=`` may be given then).

    Examples
    --------
    >>> import numpy as np
    >>> from lowprec.embedding import embedding_bags
    >>> a = np.ones((5, 2), np.float32); b = np.full((3, 1), 2, np.float32)
    >>> embedding_bags([a, b], [[[0, 1]], [[2, 2]]], concat=True)
    array([[2., 2., 4.]], dtype=float32)
    """
    if not isinstance(tables, (list, tuple)):
        raise TypeError("tables must be a list or tuple of tables")
    nt = len(tables)
    idx_l = _per_table(indices, nt, "indices")
    off_l = _per_table(offsets, nt, "offsets")
    len_l = _per_table(lengths, nt, "lengths")
    w_l = _per_table(per_sample_weights, nt, "per_sample_weights")
    map_l = _per_table(compressed_indices_mapping, nt, "compressed_indices_mapping")
    pad_l = (_per_table(padding_idx, nt, "padding_idx") if isinstance(padding_idx, (list, tuple))
             else [padding_idx] * nt)
    plans = []
    for t in range(nt):
        try:
            plans.append(_prepare(tables[t], idx_l[t], off_l[t], len_l[t], mode, w_l[t],
                                  include_last_offset, pad_l[t], map_l[t]))
        except (TypeError, ValueError, IndexError) as exc:
            raise type(exc)(f"table {t}: {exc}") from None
    dt = _out_dtype(out_dtype, out)
    for t, p in enumerate(plans):
        try:
            _check_indices(p)
        except IndexError as exc:
            raise IndexError(f"table {t}: {exc}") from None
    inputs = tuple(a for p in plans for a in p.inputs)
    n_threads = _threads_for(plans, n_threads)
    fmt = _OUT_FMTS[dt]
    if concat:
        bags = {p.n_bags for p in plans}
        if len(bags) > 1:
            raise ValueError(f"concat=True needs the same number of bags in every table, got "
                             f"{[p.n_bags for p in plans]}")
        b = bags.pop() if bags else 0
        total = sum(p.dim for p in plans)
        out = check_out(out, (b, total), dt, inputs=inputs)
        c = 0
        for p in plans:
            _execute(p, out[:, c:c + p.dim], fmt, n_threads)
            c += p.dim
        return out
    if out is not None:
        outs = _per_table(out, nt, "out")
        outs = [check_out(o, (p.n_bags, p.dim), dt, inputs=inputs, name=f"out[{t}]")
                for t, (o, p) in enumerate(zip(outs, plans))]
        for i in range(nt):
            for j in range(i):
                if np.may_share_memory(outs[i], outs[j]):
                    raise ValueError(f"out[{i}] overlaps out[{j}]")
    else:
        outs = [np.empty((p.n_bags, p.dim), dtype=dt) for p in plans]
    for p, o in zip(plans, outs):
        _execute(p, o, fmt, n_threads)
    return outs
