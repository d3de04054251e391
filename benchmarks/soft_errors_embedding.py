"""Soft-error detection of EmbeddingBag (issue 7): fault-injection table, detection by bit
position, false positives and overhead, next to Li et al. 2021's figures.

    python benchmarks/soft_errors_embedding.py [--flips 10000] [--clean 10000] [--quick]

For the main table (1,000,000 x 128) and each format (8/4/2-bit rows, float32 / float16 /
bfloat16 values): ``--flips`` single-bit flips per target (codes, scales, biases or values,
outputs) and ``--clean`` clean runs through lowprec.embedding_faults.evaluate_embedding, on the
EmbeddingBag benchmark lookup (2048 bags of 32 uniform indices).  The other benchmark tables
(1,000,000 x 64, 100,000 x 128) get ``--other-flips``.  Then the overhead of check="report"
against check="off" on the plain table (see overhead()): CPU time of the calling thread at 1
thread (robust to the other processes of a shared machine), wall clock at 2 threads, variants
alternating call by call, on uniform and Zipf indices.
"""

import argparse
import time

import ml_dtypes
import numpy as np

from lowprec.embedding import embedding_bag
from lowprec.embedding_checks import row_checksums
from lowprec.embedding_faults import PAPER_EMBEDDING, evaluate_embedding
from lowprec.rowwise import quantize_rowwise

TABLES = [(1_000_000, 128), (1_000_000, 64), (100_000, 128)]
FORMATS = [8, 4, 2, "float32", "float16", "bfloat16"]
BARS = {"detection": 0.99, "false_positives": 0.01, "overhead": 0.15}
DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def _table(rows, dim, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (rows, dim)).astype(np.float32)


def _indices(rows, dist, rng, bags=2048, size=32):
    """The lookups of benchmarks/compare_embedding.py: uniform, or Zipf (a = 1.05) with the
    hot rows spread over the table by a random permutation."""
    if dist == "uniform":
        return rng.integers(0, rows, (bags, size)).astype(np.int64)
    perm = rng.permutation(rows)
    return perm[(rng.zipf(1.05, (bags, size)) - 1) % rows].astype(np.int64)


def detection(args):
    summary = []
    for rows, dim in TABLES:
        x = _table(rows, dim)
        flips = args.flips if (rows, dim) == TABLES[0] else args.other_flips
        clean = args.clean if (rows, dim) == TABLES[0] else args.other_flips
        for fmt in FORMATS:
            bits = fmt if isinstance(fmt, int) else None
            tab = x if bits else x.astype(DTYPES[fmt])
            t0 = time.perf_counter()
            r = evaluate_embedding(tab, bits=bits, n_flips=flips, n_clean=clean, seed=1,
                                   overhead=False)
            print(r.table())
            print("by bit (bit: detected/significant):")
            print(r.bits_table())
            print(f"  {time.perf_counter() - t0:.1f} s", flush=True)
            rates = [t["detection_rate"] for t in r["targets"].values()
                     if t["detection_rate"] is not None]
            summary.append((r["table"], min(rates), r["false_positives"], r["clean_runs"]))
            print()
    print("| table | min detection of significant flips (bar 99%) | false positives (bar 1%) |"
          " paper |")
    print("|---|---|---|---|")
    for desc, rate, fp, n in summary:
        print(f"| {desc} | {100 * rate:.2f}% | {fp}/{n} | {100 * PAPER_EMBEDDING['detection']:.0f}%"
              f" / < {100 * PAPER_EMBEDDING['false_positives']:.0f}% |")


def _alternate(variants, index_sets, rounds, clock):
    """Median time per call of each variant, the variants alternating call by call; each
    variant runs every index set once per round, variant v at step j on set (j + v * K / n)
    mod K: two calls in a row never share a lookup, so that no variant finds the rows the one
    before it just fetched in cache (unless all the sets are one)."""
    samples = {k: [] for k in variants}
    n_sets = len(index_sets)
    shift = max(1, n_sets // len(variants))
    for _ in range(rounds):
        for j in range(n_sets):
            for v, (k, f) in enumerate(variants.items()):
                idx = index_sets[(j + v * shift) % n_sets]
                t = clock()
                f(idx)
                samples[k].append(clock() - t)
    return {k: float(np.median(v)) for k, v in samples.items()}


def overhead(args):
    """Overhead of check="report" against a lookup without checks.

    The baseline is what a user who does not check runs: check="off" on the plain table
    (quantize_rowwise without checksums: FBGEMM's contiguous rows).  The checked table stores
    each row's checksum right after it (rowwise.checked_row_store); "layout" is what that
    layout costs with the check off, "check" the check alone on the checked table.  Lookups:
    "fresh" cycles through --index-sets different index sets (rows mostly not in cache, as in
    serving a 1M-row table); "repeat" reuses one set (rows cached in L3, as in
    compare_embedding.py).  1 thread: CPU time of the calling thread; 2 threads: wall clock.
    """
    rng = np.random.default_rng(2)
    print("| table | format | indices | lookups | threads | plain off us | checked report us |"
          " overhead | layout | check | bar |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for rows, dim in TABLES:
        x = _table(rows, dim)
        for fmt in FORMATS:
            if isinstance(fmt, int):
                plain = quantize_rowwise(x, bits=fmt)
                checked, cs = quantize_rowwise(x, bits=fmt, row_checksums=True), None
            else:
                plain = checked = x.astype(DTYPES[fmt])
                cs = row_checksums(checked)
            for dist in args.dist:
                fresh = [_indices(rows, dist, rng) for _ in range(args.index_sets)]
                for lookups, sets in (("fresh", fresh), ("repeat", fresh[:1] * args.index_sets)):
                    for nt in (1, 2):
                        v = {
                            "plain": lambda i: embedding_bag(plain, i, n_threads=nt),
                            "off": lambda i: embedding_bag(checked, i, n_threads=nt),
                            "report": lambda i: embedding_bag(checked, i, n_threads=nt,
                                                              checksums=cs, check="report"),
                        }
                        if checked is plain:
                            del v["off"]
                        m = _alternate(v, sets, args.repeats,
                                       time.thread_time if nt == 1 else time.perf_counter)
                        off = m.get("off", m["plain"])
                        print(f"| {rows}x{dim} | {fmt} | {dist} | {lookups} | {nt} | "
                              f"{m['plain'] * 1e6:.0f} | {m['report'] * 1e6:.0f} | "
                              f"{100 * (m['report'] / m['plain'] - 1):.1f}% | "
                              f"{100 * (off / m['plain'] - 1):+.1f}% | "
                              f"{100 * (m['report'] / off - 1):.1f}% | <= 15% |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flips", type=int, default=10000)
    ap.add_argument("--clean", type=int, default=10000)
    ap.add_argument("--other-flips", type=int, default=1000,
                    help="flips per target and clean runs for the other tables")
    ap.add_argument("--quick", action="store_true", help="1000 flips / clean runs")
    ap.add_argument("--repeats", type=int, default=5,
                    help="overhead: rounds over the index sets")
    ap.add_argument("--index-sets", type=int, default=16,
                    help="overhead: different lookups per round (2048 x 32 indices each)")
    ap.add_argument("--dist", nargs="+", default=["uniform", "zipf"])
    ap.add_argument("--overhead-only", action="store_true")
    ap.add_argument("--detection-only", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.flips = args.clean = 1000
        args.other_flips = 200
    if not args.overhead_only:
        detection(args)
    if not args.detection_only:
        overhead(args)


if __name__ == "__main__":
    main()
