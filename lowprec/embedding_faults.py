"""Fault injection for EmbeddingBag's soft-error check (docs/soft_errors.md, "EmbeddingBag").

Flip single bits in the rows of an embedding table (codes, scales, biases of a row-wise
quantized table; the values of a float table) or in the pooled output, run ``embedding_bag``
with ``check="report"``, and measure detection by bit position, false positives on clean runs
and the check's overhead: the table Li et al. (2021) report for EmbeddingBag (99 % of
significant flips detected, < 10 % false positives, < 26 % overhead).

Fault models:

- ``"codes"``, ``"scales"``, ``"biases"`` (quantized tables) and ``"values"`` (float tables): a
  bit of a row that some bag reads, flipped in memory before the call and restored after it -
  corruption at rest, after the row checksums were taken.  For 4/2-bit rows a flip in a code
  byte changes one code (or a padding bit, which changes nothing).
- ``"outputs"``: a bit of a stored output element, flipped after the pooling wrote it and before
  the check reads it (a fault between the kernel and the caller).

A flip is *significant* (the paper's definition) when it changes some output element of a bag
by more than ``1e-3`` times that bag's clean output L2 norm; the detection rate is over
significant flips.  Non-significant flips that are flagged are counted separately (they are
real corruptions, not false positives).

Examples
--------
>>> import numpy as np
>>> from lowprec.rowwise import quantize_rowwise
>>> from lowprec.embedding_faults import evaluate_embedding
>>> x = np.random.default_rng(0).uniform(-1, 1, (500, 16)).astype(np.float32)
>>> r = evaluate_embedding(x, bits=8, n_bags=64, bag_size=8, n_flips=50, n_clean=20,
...                        overhead=False)
>>> r["false_positives"], r["targets"]["scales"]["flips"]
(0, 50)
"""

import time

import numpy as np

from . import embedding as _eb
from . import embedding_checks as _checks
from .rowwise import fused_row_bytes, quantize_rowwise

__all__ = ["EmbeddingFaultReport", "PAPER_EMBEDDING", "evaluate_embedding"]

#: Li et al. 2021, EmbeddingBag: 99 % of significant flips detected, < 10 % false positives,
#: < 26 % overhead.
PAPER_EMBEDDING = {"detection": 0.99, "false_positives": 0.10, "overhead": 0.26}

#: A flip is significant when it moves an output element by more than this times its bag's
#: clean output L2 norm.
SIGNIFICANCE = 1e-3

QUANTIZED_TARGETS = ("codes", "scales", "biases", "outputs")
FLOAT_TARGETS = ("values", "outputs")


class EmbeddingFaultReport(dict):
    """Result of :func:`evaluate_embedding`: a dict with ``"table"`` (a description),
    ``"targets"`` (per target: ``flips``, ``significant``, ``detected`` (significant and
    flagged), ``missed``, ``flagged_insignificant``, ``detection_rate``, ``bags_localised``
    (detections whose flagged bags all use the corrupted row / element) and ``by_bit``: bit ->
    [significant, detected]), ``"clean_runs"``, ``"false_positives"``, ``"overhead"`` (dict
    threads -> check="report" vs "off", ratio of medians - 1) and ``"times"``.
    :meth:`table` formats it next to the paper's figures."""

    def table(self):
        rows = [
            f"table {self['table']}, {self['bags']} bags x {self['bag_size']}, ISA {self['isa']}",
            "| target | flips | significant | detected | rate | bags exact | paper |",
            "|---|---|---|---|---|---|---|",
        ]
        for t, r in self["targets"].items():
            rate = r["detection_rate"]
            rows.append(
                f"| {t} | {r['flips']} | {r['significant']} | {r['detected']} | "
                f"{'n/a' if rate is None else f'{100 * rate:.2f}%'} | {r['bags_localised']} | "
                f"{100 * PAPER_EMBEDDING['detection']:.0f}% |"
            )
        fp = self["false_positives"] / max(1, self["clean_runs"])
        rows.append(f"| clean runs | {self['clean_runs']} | | false positives: "
                    f"{self['false_positives']} | {100 * fp:.2f}% | | "
                    f"< {100 * PAPER_EMBEDDING['false_positives']:.0f}% |")
        for nt, ov in (self.get("overhead") or {}).items():
            rows.append(f"| overhead, {nt} thread(s) | | | | {100 * ov:.1f}% | | "
                        f"< {100 * PAPER_EMBEDDING['overhead']:.0f}% |")
        return "\n".join(rows)

    def bits_table(self):
        """Detection rate by bit position, one line per target."""
        lines = []
        for t, r in self["targets"].items():
            cells = [f"{b}: {d}/{s}" for b, (s, d) in r["by_bit"].items() if s]
            lines.append(f"{t}: " + ", ".join(cells))
        return "\n".join(lines)


def _field_bytes(bits, dim):
    """(code bytes, scale offset, scale size) of a fused row."""
    code = dim if bits == 8 else -(-dim * bits // 8)
    return code, code, 4 if bits == 8 else 2


def _flip_location(target, rng, bits, dim, itemsize, row_bytes):
    """(byte offset within the row or output element, bit within that byte, bit position
    within the field (for the by-bit report))."""
    if target == "values":
        elem = int(rng.integers(dim))
        bit = int(rng.integers(8 * itemsize))
        return elem * itemsize + bit // 8, bit % 8, bit
    code_bytes, scale_off, fsize = _field_bytes(bits, dim)
    if target == "codes":
        byte = int(rng.integers(code_bytes))
        bit = int(rng.integers(8))
        return byte, bit, bit
    off = scale_off if target == "scales" else scale_off + fsize
    bit = int(rng.integers(8 * fsize))
    return off + bit // 8, bit % 8, bit


def _significant_bags(y, clean, norms):
    """Bags whose output moved by more than SIGNIFICANCE x their clean L2 norm (NaN counts)."""
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(y.astype(np.float64) - clean)
    diff[np.isnan(diff)] = np.inf
    return diff.max(axis=1) > SIGNIFICANCE * norms


def evaluate_embedding(table, *, bits=8, n_bags=2048, bag_size=32, n_flips=10000,
                       n_clean=10000, targets=None, seed=0, n_threads=1, overhead=True,
                       overhead_threads=(1, 2), overhead_repeats=15):
    """Inject ``n_flips`` random single-bit flips per target and report detection.

    Parameters
    ----------
    table : float32 ndarray (R, D)
        The float table; with ``bits`` in (8, 4, 2) it is quantized row-wise first (min-max),
        with ``bits=None`` it is used as a float table (its dtype: float32, float16, bfloat16).
    n_bags, bag_size : int
        The lookup: ``n_bags`` bags of ``bag_size`` uniform random indices (sum pooling).
    n_flips, n_clean : int
        Flips per target; clean runs (fresh indices each, alternating sum / weighted sum /
        mean) for false positives.
    targets : tuple of str, optional
        Default: ("codes", "scales", "biases", "outputs") for quantized tables, ("values",
        "outputs") for float ones.
    overhead : bool
        Also time check="report" against "off" (lowprec.bench.harness.compare, alternating,
        ratio of medians) at each of ``overhead_threads``.

    Returns
    -------
    EmbeddingFaultReport
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(table)
    n_rows, dim = x.shape
    if bits is None:
        buf = np.array(x, copy=True, order="C")  # flipped in place, restored after each run
        tab = buf
        checksums = _checks.row_checksums(tab)
        row_view = buf.view(np.uint8).reshape(n_rows, -1)
        desc = f"{x.dtype.name} {n_rows}x{dim}"
        targets = targets or FLOAT_TARGETS
    else:
        # The checked layout that ships (each row's checksum pair stored after it); flips go
        # to the rows' bytes in that store, never to the stored pairs.
        tab = quantize_rowwise(x, bits=bits, row_checksums=True)
        checksums = None
        row_view = tab._store[:, : fused_row_bytes(dim, bits)]
        desc = f"{bits}-bit {n_rows}x{dim}"
        targets = targets or QUANTIZED_TARGETS
    itemsize = x.dtype.itemsize
    idx = rng.integers(0, n_rows, (n_bags, bag_size)).astype(np.int64)
    kw = dict(n_threads=n_threads, checksums=checksums)
    clean = _eb.embedding_bag(tab, idx, **kw).astype(np.float64)
    norms = np.sqrt((clean ** 2).sum(axis=1))
    t_start = time.perf_counter()
    res = {}
    for target in targets:
        by_bit = {}
        sig = det = flagged_insig = exact = 0
        for _ in range(n_flips):
            if target == "outputs":
                b, d = int(rng.integers(n_bags)), int(rng.integers(dim))
                bit = int(rng.integers(32))
                y, flags = _run_with_output_flip(tab, idx, checksums, n_threads, (b, d, bit))
                users = np.zeros(n_bags, dtype=bool)
                users[b] = True
            else:
                pos = int(rng.integers(idx.size))
                row = int(idx.reshape(-1)[pos])
                byte, bit8, bit = _flip_location(target, rng, bits, dim, itemsize,
                                                 row_view.shape[1])
                row_view[row, byte] ^= np.uint8(1 << bit8)
                try:
                    y, flags = _eb.embedding_bag(tab, idx, check="report", **kw)
                finally:
                    row_view[row, byte] ^= np.uint8(1 << bit8)
                users = (idx == row).any(axis=1)
            # Only the bags that read the corrupted row (or hold the flipped output) can move.
            moved = _significant_bags(y[users], clean[users], norms[users])
            bb = by_bit.setdefault(bit, [0, 0])
            if moved.any():
                sig += 1
                bb[0] += 1
                if flags.any():
                    det += 1
                    bb[1] += 1
                    exact += bool(not (flags & ~users).any())
            elif flags.any():
                flagged_insig += 1
        res[target] = {
            "flips": n_flips, "significant": sig, "detected": det, "missed": sig - det,
            "flagged_insignificant": flagged_insig,
            "detection_rate": det / sig if sig else None, "bags_localised": exact,
            "by_bit": dict(sorted(by_bit.items())),
        }
    fp = 0
    for r in range(n_clean):
        ci = rng.integers(0, n_rows, (n_bags, bag_size)).astype(np.int64)
        kind = r % 3
        extra = {}
        if kind == 1:
            extra["per_sample_weights"] = rng.standard_normal((n_bags, bag_size)).astype(
                np.float32)
        elif kind == 2:
            extra["mode"] = "mean"
        _, flags = _eb.embedding_bag(tab, ci, check="report", **kw, **extra)
        fp += int(flags.any())
    report = EmbeddingFaultReport(
        table=desc, bags=n_bags, bag_size=bag_size, isa=_isa_name(), targets=res,
        clean_runs=n_clean, false_positives=fp, overhead=None,
        times={"injection_s": time.perf_counter() - t_start},
    )
    if overhead:
        report["overhead"] = {}
        for nt in overhead_threads:
            report["overhead"][nt] = measure_overhead(tab, idx, checksums, nt, overhead_repeats)
    return report


def measure_overhead(table, indices, checksums=None, n_threads=1, repeats=15):
    """check="report" against check="off" on one lookup: ratio of medians - 1 (alternating).

    Examples
    --------
    >>> import numpy as np
    >>> from lowprec.embedding_faults import measure_overhead
    >>> t = np.ones((100, 8), np.float32)
    >>> from lowprec.embedding_checks import row_checksums
    >>> isinstance(measure_overhead(t, np.zeros((4, 2), np.int64), row_checksums(t),
    ...                             repeats=3), float)
    True
    """
    from .bench.harness import compare, median

    kw = dict(n_threads=n_threads, checksums=checksums)
    s = compare({
        "off": lambda: _eb.embedding_bag(table, indices, **kw),
        "report": lambda: _eb.embedding_bag(table, indices, check="report", **kw),
    }, repeats=repeats, min_sample_time=0.03)
    return median(s["report"]) / median(s["off"]) - 1.0


def _run_with_output_flip(table, indices, checksums, n_threads, where):
    """embedding_bag(check="report") with bit ``where[2]`` of float32 output element
    ``where[:2]`` flipped between the pooling of its bag and the check (the seam the check
    covers)."""
    b, d, bit = where
    return _eb.embedding_bag(table, indices, check="report", checksums=checksums,
                             n_threads=n_threads, _inject=(b, 4 * d + bit // 8, bit % 8))


def _isa_name():
    from ._kernels import _embedding

    return {0: "generic", 1: "avx2", 2: "avx512"}.get(_embedding._get_isa(), "?")
