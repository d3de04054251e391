"""Soft-error detection of the exact int8 GEMM (issue 7): fault injection table and overhead.

    python benchmarks/soft_errors.py [--flips 10000] [--clean 10000] [--quick]
    python benchmarks/soft_errors.py --detection-only [--detection-threads 2]
    python benchmarks/soft_errors.py --cpu-time-only [--threads 1,2] [--shapes 64x512x512]

For every int8 benchmark shape: >= 10,000 single-bit flips per target (weights, activations,
int32 accumulators, outputs) and 10,000 clean runs through lowprec.faults.evaluate_gemm, then the
overhead of check="report" against check="off" (lowprec.bench.harness.compare: alternating,
ratio of medians, default thread count).  Prints the table next to Li et al. 2021's figures.
--cpu-time-only: the overhead alone on the int8 issue's nine shapes at 1 and 2 threads
(cpu_time_overhead).
"""

import argparse
import time

import numpy as np

from lowprec import faults
from lowprec._kernels import _gemm_int8

SHAPES = [(1, 1024, 1024), (64, 512, 512), (256, 1024, 4096)]
BARS = {"detection": 0.999, "false_positives": 0}


#: The int8 issue's shapes (the overhead bar of issue 7 applies to all of them).
OVERHEAD_SHAPES = [(1, 1024, 1024), (16, 1024, 1024), (64, 512, 512), (128, 1024, 1024),
                   (256, 1024, 4096), (1024, 1024, 1024), (2048, 2048, 2048), (37, 1000, 300),
                   (1, 4096, 4096)]


def cpu_time_overhead(shapes=OVERHEAD_SHAPES, repeats=31, threads=(1, 2), outs=("uint8", "int32")):
    """Overhead of check="report" against check="off", alternating off / report in one process,
    ratio of medians.  One thread: CPU time of the calling thread (time.thread_time), far less
    sensitive than wall time to the other processes of a shared, loaded machine.  More threads:
    the other threads' time is not the caller's, so wall time (perf_counter), from many short
    samples (~1 ms: a sample is then either clean or hit by another process, and the median
    stays a clean one while less than half are hit); the 10th percentiles' ratio is printed too."""
    from lowprec import gemm

    rng = np.random.default_rng(0)

    def timed(clock, f, number):
        t = clock()
        for _ in range(number):
            f()
        return (clock() - t) / number

    print("| shape | out | threads | clock | off (us) | report (us) | overhead | p10 ratio | bar |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m, n, k in shapes:
        w = rng.integers(-128, 128, (n, k), dtype=np.int8)
        a = rng.integers(0, 256, (m, k), dtype=np.uint8)
        pw = gemm.pack_weights(w, scale=0.01)
        for nt in threads:
            clock = time.thread_time if nt == 1 else time.perf_counter
            for od in outs:
                kw = dict(a_zero_point=3, n_threads=nt)
                if od == "uint8":
                    kw.update(a_scale=0.02, out_scale=0.5, out_dtype=np.uint8)
                est = m * n * k / 1e11 / nt + 5e-6
                number = max(1, int((0.02 if nt == 1 else 1e-3) / est))
                reps = repeats if nt == 1 else max(repeats, min(301, int(0.3 / (number * est))))
                off = lambda: gemm.qmatmul(a, pw, **kw)  # noqa: E731
                rep = lambda: gemm.qmatmul(a, pw, check="report", **kw)  # noqa: E731
                off(), rep()
                s1, s2 = [], []
                for _ in range(reps):
                    s1.append(timed(clock, off, number))
                    s2.append(timed(clock, rep, number))
                t1, t2 = np.median(s1), np.median(s2)
                p10 = np.percentile(s2, 10) / np.percentile(s1, 10) - 1
                bar = 10 if m >= 64 else 20
                print(f"| {(m, n, k)} | {od} | {nt} | {'cpu' if nt == 1 else 'wall'} |"
                      f" {t1 * 1e6:.1f} | {t2 * 1e6:.1f} | {100 * (t2 / t1 - 1):.1f}% |"
                      f" {100 * p10:.1f}% | <= {bar}% |", flush=True)


def _parse_shape(s):
    """'64x512x512' -> (64, 512, 512)."""
    return tuple(int(v) for v in s.lower().split("x"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flips", type=int, default=10000)
    ap.add_argument("--clean", type=int, default=10000)
    ap.add_argument("--big-flips", type=int, default=None,
                    help="flips per target for (256, 1024, 4096) (default: --flips)")
    ap.add_argument("--quick", action="store_true", help="1000 flips / clean runs")
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--cpu-time-only", action="store_true",
                    help="only the overhead table (check='report' vs 'off') on the int8 issue's "
                         "shapes: CPU time of the calling thread at 1 thread, wall clock at more")
    ap.add_argument("--threads", default="1,2",
                    help="thread counts of the overhead table (default 1,2)")
    ap.add_argument("--shapes", default=None,
                    help="overhead table shapes, e.g. 64x512x512,1x1024x1024 (default: all nine)")
    ap.add_argument("--outs", default="uint8,int32", help="output dtypes of the overhead table")
    ap.add_argument("--overhead-repeats", type=int, default=31)
    ap.add_argument("--detection-only", action="store_true",
                    help="only the fault-injection table (no timing)")
    ap.add_argument("--detection-threads", type=int, default=1,
                    help="threads of the fault-injection runs (flags never depend on it)")
    args = ap.parse_args()
    if args.cpu_time_only:
        cpu_time_overhead(
            shapes=OVERHEAD_SHAPES if args.shapes is None
            else [_parse_shape(s) for s in args.shapes.split(",")],
            repeats=args.overhead_repeats,
            threads=tuple(int(t) for t in args.threads.split(",")),
            outs=tuple(args.outs.split(",")))
        return
    if args.quick:
        args.flips = args.clean = 1000
    print(f"ISA: {_gemm_int8.KERNELS[_gemm_int8._get_isa()]}")
    summary = []
    for shape in SHAPES:
        nf = args.flips
        nc = args.clean
        if shape[0] * shape[1] * shape[2] > 1 << 28 and args.big_flips is not None:
            nf = nc = args.big_flips
        t0 = time.perf_counter()
        r = faults.evaluate_gemm(shape, n_flips=nf, n_clean=nc, overhead=not args.detection_only,
                                 overhead_repeats=args.repeats, seed=1,
                                 n_threads=args.detection_threads)
        print(r.table())
        if not args.detection_only:
            print(f"  check off {r['times']['off_us']:.1f} us,"
                  f" report {r['times']['report_us']:.1f} us;", end="")
        print(f"  injection loop {r['times']['injection_s']:.1f} s,"
              f" total {time.perf_counter() - t0:.1f} s")
        for t, tr in r["targets"].items():
            missed_bits = {b: v for b, v in tr["by_bit"].items() if v[0] != v[1]}
            if missed_bits:
                print(f"  {t}: misses by bit {missed_bits}")
        bar = 0.10 if shape[0] >= 64 else 0.20
        rates = [tr["detection_rate"] for tr in r["targets"].values() if tr["detection_rate"] is not None]
        summary.append((shape, min(rates), r["false_positives"], r["overhead"], bar))
        print(flush=True)
    print("| shape | min detection (bar 99.9%) | false positives (bar 0) | overhead | bar | paper |")
    print("|---|---|---|---|---|---|")
    for shape, rate, fp, ov, bar in summary:
        ovs = "-" if ov is None else f"{100 * ov:.1f}%"
        print(f"| {shape} | {100 * rate:.3f}% | {fp} | {ovs} | <= {100 * bar:.0f}% |"
              f" > 95% / < 20% |")


if __name__ == "__main__":
    main()
