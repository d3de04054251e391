"""Fault injection for evaluating lowprec's soft-error checks (docs/soft_errors.md).

EmbeddingBag's fault injection lives in :mod:`lowprec.embedding_faults` and is re-exported here
(:func:`evaluate_embedding`); the rest of this module is the int8 GEMM's.

Flip chosen or random bits in the packed weights, the activations, the int32 accumulators or
the outputs of the exact int8 GEMM, run it with ``check="report"``, and measure detection
rate, false positives and overhead - the kind of table Li et al. (2021), "Efficient Soft-Error
Detection for Low-precision Deep Learning Recommendation Models", report (GEMM: > 95 %
detection at < 20 % overhead).

Fault models (what a flip means for each target):

- ``"weights"``: a bit of the packed weight buffer in memory (the layout the ISA in use reads:
  int8 for Q4x32, int16 for AVX2's P2x16; padding bytes included), flipped before the call and
  restored after it - a corrupted weight at rest, which the checksum stored at pack time sees.
- ``"activations"``: a bit of ``a[i, k]`` flipped while the kernel runs (after the check's
  right-hand sides were taken from the clean row).  A flip that happened *before* the call is
  indistinguishable from a different input and cannot be detected by any check of the product.
- ``"accumulators"``: bit ``b`` of the int32 accumulator ``acc[i, j]`` right after the
  micro-kernel, before requantization (the kernel's C injection hook).
- ``"outputs"``: a bit of the stored output element after the output pipeline wrote it.

A flip is *effective* when it changes the int32 result (weights, activations, accumulators: the
int32 product is compared with the clean one) or the stored output (outputs).  The bars of issue 7
concern effective flips; non-effective flips (a weight flip in a padding byte, an activation flip
in a row multiplied by an all-zero weight column) are counted separately.

Examples
--------
>>> import numpy as np
>>> from lowprec import gemm
>>> from lowprec.faults import flip_bit, run_with_fault
>>> pw = gemm.pack_weights(np.ones((4, 8), dtype=np.int8))
>>> a = np.full((2, 8), 3, dtype=np.uint8)
>>> y, flags = run_with_fault(a, pw, "accumulators", (1, 2, 5))
>>> flags.tolist()
[False, True]
>>> flip_bit(np.zeros(2, dtype=np.uint8), 1, 3).tolist()
[0, 8]
"""

import time
from contextlib import contextmanager

import numpy as np

from . import gemm as _gemm
from ._kernels import _gemm_int8
from .embedding_faults import PAPER_EMBEDDING, EmbeddingFaultReport, evaluate_embedding

__all__ = [
    "EmbeddingFaultReport",
    "GemmFaultReport",
    "PAPER_EMBEDDING",
    "PAPER_GEMM",
    "evaluate_embedding",
    "evaluate_gemm",
    "flip_bit",
    "flipped_weight_bit",
    "run_with_fault",
]

TARGETS = ("weights", "activations", "accumulators", "outputs")

#: Li et al. 2021, quantized GEMM: detection > 95 % at < 20 % overhead.
PAPER_GEMM = {"detection": 0.95, "overhead": 0.20}


def flip_bit(arr, index, bit):
    """Flip bit ``bit`` of element ``index`` (flat index) of ``arr`` in place; return ``arr``.

    Works on any integer or float dtype (the element's bytes, little-endian bit order).
    """
    flat = arr.reshape(-1)
    if not np.shares_memory(flat, arr):
        raise ValueError("arr must be contiguous")
    b = flat[index : index + 1].view(np.uint8)
    nbits = 8 * arr.itemsize
    if not 0 <= bit < nbits:
        raise ValueError(f"bit must be in [0, {nbits}), got {bit}")
    b[bit // 8] ^= np.uint8(1 << (bit % 8))
    return arr


@contextmanager
def flipped_weight_bit(w_packed, byte_index, bit):
    """Context manager: bit ``bit`` (0..7) of byte ``byte_index`` of the packed buffer that the
    ISA in use reads is flipped inside the ``with`` block and restored after it."""
    layout = _gemm_int8.layout_for_isa(_gemm_int8._get_isa())
    buf = w_packed._buffer(layout)
    buf.setflags(write=True)
    try:
        buf[byte_index] ^= np.uint8(1 << bit)
        yield buf
    finally:
        buf[byte_index] ^= np.uint8(1 << bit)
        buf.setflags(write=False)


_HOOK = {
    "accumulators": _gemm_int8.INJ_ACC,
    "outputs": _gemm_int8.INJ_OUT,
    "activations": _gemm_int8.INJ_ACT,
}


def run_with_fault(a_q, w_packed, target, where, **qmatmul_kwargs):
    """Run ``qmatmul(a_q, w_packed, check="report", **kwargs)`` with one injected bit flip.

    ``where``: ``(i, j, bit)`` for "accumulators" and "outputs" (row, output column, bit),
    ``(i, k, bit)`` for "activations" (a uint8 ``a_q``: the flip happens while the kernel runs
    and is undone after it; ``a_q`` is copied first), ``(byte_index, bit)`` of the packed buffer
    for "weights".  Returns ``(result, flags)``.
    """
    if target == "weights":
        byte_index, bit = where
        with flipped_weight_bit(w_packed, byte_index, bit):
            return _gemm.qmatmul(a_q, w_packed, check="report", **qmatmul_kwargs)
    if target not in _HOOK:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    i, j, bit = where
    if target == "activations":
        a_q = np.array(a_q, dtype=np.uint8, copy=True, order="C")
    return _gemm.qmatmul(a_q, w_packed, check="report", _inject=(_HOOK[target], i, j, bit),
                         **qmatmul_kwargs)


class GemmFaultReport(dict):
    """Result of :func:`evaluate_gemm`: a dict with ``"shape"``, ``"targets"`` (per target:
    ``flips``, ``effective``, ``detected`` (effective and flagged), ``missed``,
    ``flagged_ineffective``, ``detection_rate``, ``rows_localised`` (detected flips whose flagged
    rows are exactly the changed rows) and ``by_bit``: bit -> [effective, detected]),
    ``"clean_runs"``, ``"false_positives"``, ``"overhead"`` (check="report" vs "off", ratio of
    medians - 1) and ``"times"``.  :meth:`table` formats it next to the paper's figures."""

    def table(self):
        rows = [
            f"shape (M, N, K) = {self['shape']}, ISA {self['isa']}, out {self['out_dtype']}",
            "| target | flips | effective | detected | rate | rows exact | paper |",
            "|---|---|---|---|---|---|---|",
        ]
        for t, r in self["targets"].items():
            rate = r["detection_rate"]
            rows.append(
                f"| {t} | {r['flips']} | {r['effective']} | {r['detected']} | "
                f"{'n/a' if rate is None else f'{100 * rate:.3f}%'} | {r['rows_localised']} | "
                f"> {100 * PAPER_GEMM['detection']:.0f}% |"
            )
        rows.append(
            f"| clean runs | {self['clean_runs']} | | false positives: {self['false_positives']} |"
            f" | | |"
        )
        ov = self.get("overhead")
        if ov is not None:
            rows.append(
                f"| overhead | | | {100 * ov:.1f}% | | | < {100 * PAPER_GEMM['overhead']:.0f}% |"
            )
        return "\n".join(rows)


def _problem(shape, rng):
    m, n, k = shape
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    a_zp = int(rng.integers(0, 256))
    pw = _gemm.pack_weights(w, scale=rng.uniform(0.001, 0.01, n).astype(np.float32),
                            zero_point=rng.integers(-3, 4, n).astype(np.int32))
    acc = _gemm.qmatmul(a, pw, a_zero_point=a_zp)
    a_s = 0.02
    # an output scale that spreads the uint8 outputs over the range (few clamped)
    spread = float(np.std(acc.astype(np.float64) * pw.scale.astype(np.float64))) or 1.0
    out_kw = dict(a_zero_point=a_zp, a_scale=a_s, out_scale=a_s * 6 * spread / 255,
                  out_zero_point=128)
    return a, pw, a_zp, out_kw


def evaluate_gemm(shape=(64, 512, 512), n_flips=10000, n_clean=10000, targets=TARGETS,
                  out_dtype=np.uint8, seed=0, n_threads=1, overhead=True, overhead_repeats=15):
    """Inject ``n_flips`` random single-bit flips into each target and report detection.

    Parameters
    ----------
    shape : (M, N, K)
    n_flips, n_clean : int
        Flips per target; clean runs (fresh activations and zero points each) for false
        positives.
    targets : subset of ("weights", "activations", "accumulators", "outputs")
    out_dtype : output dtype of the product for "outputs" and the clean runs (uint8 by
        default); the other targets run with int32 output (= the exact int32 result) to decide
        whether a flip is effective.
    n_threads : int
        Threads of the runs (flags never depend on it).
    overhead : bool
        Also time ``check="report"`` against ``check="off"`` (lowprec.bench.harness.compare,
        alternating, ratio of medians), with the default thread count.

    Returns
    -------
    GemmFaultReport
    """
    rng = np.random.default_rng(seed)
    m, n, k = shape
    a, pw, a_zp, out_kw = _problem(shape, rng)
    kw_out = dict(out_kw, out_dtype=out_dtype, n_threads=n_threads)
    if np.dtype(out_dtype) == np.int32:
        kw_out = dict(a_zero_point=a_zp, out_dtype=np.int32, n_threads=n_threads)
    kw_int = dict(a_zero_point=a_zp, n_threads=n_threads)
    clean_int = _gemm.qmatmul(a, pw, **kw_int)
    clean_out = _gemm.qmatmul(a, pw, **kw_out)
    layout = _gemm_int8.layout_for_isa(_gemm_int8._get_isa())
    nbuf = pw._buffer(layout).shape[0]
    out_bits = 8 * np.dtype(kw_out["out_dtype"]).itemsize
    t_start = time.perf_counter()
    res = {}
    a_work = a.copy()
    for target in targets:
        by_bit = {}
        eff = det = flagged_ineff = exact_rows = 0
        for _ in range(n_flips):
            if target == "weights":
                where = (int(rng.integers(nbuf)), int(rng.integers(8)))
                bit = where[1]
                y, f = run_with_fault(a, pw, "weights", where, **kw_int)
                ref = clean_int
            elif target == "activations":
                where = (int(rng.integers(m)), int(rng.integers(k)), int(rng.integers(8)))
                bit = where[2]
                y, f = _gemm.qmatmul(a_work, pw, check="report",
                                     _inject=(_gemm_int8.INJ_ACT,) + where, **kw_int)
                ref = clean_int
            elif target == "accumulators":
                where = (int(rng.integers(m)), int(rng.integers(n)), int(rng.integers(32)))
                bit = where[2]
                y, f = run_with_fault(a, pw, target, where, **kw_int)
                ref = clean_int
            elif target == "outputs":
                where = (int(rng.integers(m)), int(rng.integers(n)), int(rng.integers(out_bits)))
                bit = where[2]
                y, f = run_with_fault(a, pw, target, where, **kw_out)
                ref = clean_out
            else:
                raise ValueError(f"unknown target {target!r}")
            changed_rows = np.any(y.view(np.uint8).reshape(m, -1)
                                  != ref.view(np.uint8).reshape(m, -1), axis=1)
            bb = by_bit.setdefault(bit, [0, 0])
            if changed_rows.any():
                eff += 1
                bb[0] += 1
                if f.any():
                    det += 1
                    bb[1] += 1
                    exact_rows += bool(np.array_equal(f, changed_rows))
            elif f.any():
                flagged_ineff += 1
        res[target] = {
            "flips": n_flips,
            "effective": eff,
            "detected": det,
            "missed": eff - det,
            "flagged_ineffective": flagged_ineff,
            "detection_rate": (det / eff) if eff else None,
            "rows_localised": exact_rows,
            "by_bit": dict(sorted(by_bit.items())),
        }
    # clean runs: fresh activations (extremes included) and zero points, no flips
    fp = 0
    for r in range(n_clean):
        kind = r % 4
        if kind == 0:
            ac = rng.integers(0, 256, (m, k), dtype=np.uint8)
        elif kind == 1:
            ac = np.where(rng.random((m, k)) < 0.5, 0, 255).astype(np.uint8)
        elif kind == 2:
            ac = np.full((m, k), 255, dtype=np.uint8)
        else:
            ac = rng.integers(0, 256, (m, k), dtype=np.uint8)
            ac[:, : k // 2] = 0
        kw = dict(kw_out, a_zero_point=int(rng.integers(0, 256)))
        _, f = _gemm.qmatmul(ac, pw, check="report", **kw)
        fp += int(f.any())
    t_inject = time.perf_counter() - t_start
    report = GemmFaultReport(
        shape=tuple(shape), isa=_gemm_int8.KERNELS.get(_gemm_int8._get_isa()),
        out_dtype=np.dtype(kw_out["out_dtype"]).name, targets=res, clean_runs=n_clean,
        false_positives=fp, overhead=None, times={"injection_s": t_inject},
    )
    if overhead:
        from .bench.harness import compare, median

        kw = dict(out_kw, out_dtype=out_dtype) if np.dtype(out_dtype) != np.int32 else dict(
            a_zero_point=a_zp)
        s = compare({
            "off": lambda: _gemm.qmatmul(a, pw, **kw),
            "report": lambda: _gemm.qmatmul(a, pw, check="report", **kw),
        }, repeats=overhead_repeats, min_sample_time=0.03)
        report["overhead"] = median(s["report"]) / median(s["off"]) - 1.0
        report["times"]["off_us"] = median(s["off"]) * 1e6
        report["times"]["report_us"] = median(s["report"]) * 1e6
    return report
