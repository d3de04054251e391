"""lowprec's bfloat16 conversions next to the peers a user would otherwise call.

Contenders, all in one process, sampled round-robin (lowprec.bench.harness.compare):

  float32 -> bf16   lowprec to_bfloat16(out=)   torch Tensor.copy_ into a preallocated bf16 tensor
                    lowprec to_bfloat16()       ml_dtypes x.astype(bfloat16)
                                                ml_dtypes np.copyto(preallocated, x)
  bf16 -> float32   the same, reversed (from_bfloat16)
  float64 -> bf16   lowprec (correctly rounded) vs ml_dtypes astype (double rounding)
  stochastic / truncate float32 -> bf16: lowprec only (no peer has them on NumPy arrays)

GB/s counts input + output bytes.  "vs torch" compares the preallocated calls (lowprec out= vs
copy_), "vs astype" the allocating ones: lowprec's output comes from its cache of freed output
buffers (lowprec/buffers.py), so repeated calls, as here, reuse the previous output's memory
and its mapped pages.  "lowprec fresh" allocates a fresh NumPy array per call (what the first
call pays: the kernel zeroes the new pages on first touch, as for astype's output); "fresh vs
astype" compares it.  "out= vs astype": lowprec writing into a preallocated array vs astype.  Run on a quiet machine for absolute numbers; on a busy
one trust only the ratios.

    python benchmarks/compare_bf16.py --threads 1 2 --n 16777216 --repeats 7
"""

import argparse
import sys
import time

import ml_dtypes
import numpy as np

import lowprec
from lowprec import _dispatch
from lowprec.bench.harness import compare, format_table, median
from lowprec.bf16 import from_bfloat16, to_bfloat16

try:
    import torch
except ImportError:  # torch is an optional peer
    torch = None

BF16 = ml_dtypes.bfloat16


def contenders_for(op, n, n_threads):
    """(name -> callable, bytes moved per call) for one operation."""
    rng = np.random.default_rng(0)
    x32 = rng.standard_normal(n, dtype=np.float32)
    c = {}
    if op == "f32->bf16":
        out = np.empty(n, BF16)
        c["lowprec out="] = lambda: to_bfloat16(x32, out=out, n_threads=n_threads)
        c["lowprec"] = lambda: to_bfloat16(x32, n_threads=n_threads)
        c["lowprec fresh"] = lambda: to_bfloat16(x32, out=np.empty(n, BF16), n_threads=n_threads)
        if torch is not None:
            tx, tb = torch.from_numpy(x32), torch.empty(n, dtype=torch.bfloat16)
            c["torch copy_"] = lambda: tb.copy_(tx)
        c["ml_dtypes astype"] = lambda: x32.astype(BF16)
        out2 = np.empty(n, BF16)
        c["np.copyto"] = lambda: np.copyto(out2, x32, casting="unsafe")
        nbytes = 6 * n
    elif op == "bf16->f32":
        b = x32.astype(BF16)
        out = np.empty(n, np.float32)
        c["lowprec out="] = lambda: from_bfloat16(b, out=out, n_threads=n_threads)
        c["lowprec"] = lambda: from_bfloat16(b, n_threads=n_threads)
        c["lowprec fresh"] = lambda: from_bfloat16(b, out=np.empty(n, np.float32),
                                                   n_threads=n_threads)
        if torch is not None:
            tb, t32 = torch.from_numpy(b.view(np.int16)).view(torch.bfloat16), torch.empty(n)
            c["torch copy_"] = lambda: t32.copy_(tb)
        c["ml_dtypes astype"] = lambda: b.astype(np.float32)
        out2 = np.empty(n, np.float32)
        c["np.copyto"] = lambda: np.copyto(out2, b)
        nbytes = 6 * n
    elif op == "f64->bf16":
        x64 = x32.astype(np.float64) * (1 + 2**-30)
        out = np.empty(n, BF16)
        c["lowprec out="] = lambda: to_bfloat16(x64, out=out, n_threads=n_threads)
        c["lowprec"] = lambda: to_bfloat16(x64, n_threads=n_threads)
        c["lowprec fresh"] = lambda: to_bfloat16(x64, out=np.empty(n, BF16), n_threads=n_threads)
        if torch is not None:
            tx, tb = torch.from_numpy(x64), torch.empty(n, dtype=torch.bfloat16)
            c["torch copy_"] = lambda: tb.copy_(tx)
        c["ml_dtypes astype"] = lambda: x64.astype(BF16)
        nbytes = 10 * n
    elif op in ("f32->bf16 truncate", "f32->bf16 stochastic"):
        mode = op.split()[-1]
        out = np.empty(n, BF16)
        c["lowprec out="] = lambda: to_bfloat16(
            x32, rounding=mode, rng=1, out=out, n_threads=n_threads
        )
        if torch is not None:  # reference point only: torch does round-to-nearest
            tx, tb = torch.from_numpy(x32), torch.empty(n, dtype=torch.bfloat16)
            c["torch copy_"] = lambda: tb.copy_(tx)
        c["ml_dtypes astype"] = lambda: x32.astype(BF16)
        nbytes = 6 * n
    else:
        raise ValueError(op)
    return c, nbytes


OPS = ("f32->bf16", "bf16->f32", "f64->bf16", "f32->bf16 truncate", "f32->bf16 stochastic")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--n", type=int, default=1 << 24, help="elements (default 16M)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--min-sample-time", type=float, default=0.05)
    p.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
    args = p.parse_args(argv)

    print(f"lowprec {lowprec.__version__}; bf16 kernels: {_dispatch.family_isas().get('bf16')}; "
          f"numpy {np.__version__}; ml_dtypes {ml_dtypes.__version__}; "
          f"torch {torch.__version__ if torch is not None else '-'}")
    if torch is None:
        print("torch not installed: torch copy_ skipped")
    print(f"n = {args.n}, repeats = {args.repeats}; GB/s = (input + output bytes) / median time")
    rows = []
    for nt in args.threads:
        lowprec.set_num_threads(nt)
        if torch is not None:
            torch.set_num_threads(nt)
        for op in args.ops:
            contenders, nbytes = contenders_for(op, args.n, nt)
            t0 = time.perf_counter()
            samples = compare(contenders, repeats=args.repeats, min_sample_time=args.min_sample_time)
            meds = {k: median(v) for k, v in samples.items()}
            row = {"op": op, "threads": nt}
            for k, m in meds.items():
                row[k] = nbytes / m / 1e9
            if "torch copy_" in meds:
                row["vs torch"] = meds["torch copy_"] / meds["lowprec out="]
            if "lowprec" in meds:
                row["vs astype"] = meds["ml_dtypes astype"] / meds["lowprec"]
                row["fresh vs astype"] = meds["ml_dtypes astype"] / meds["lowprec fresh"]
            row["out= vs astype"] = meds["ml_dtypes astype"] / meds["lowprec out="]
            rows.append(row)
            print(f"  [{op}, {nt} thread(s): {time.perf_counter() - t0:.1f} s]", file=sys.stderr)
    lowprec.set_num_threads(None)
    columns = ["op", "threads", "lowprec out=", "lowprec", "lowprec fresh", "torch copy_",
               "ml_dtypes astype", "np.copyto", "vs torch", "vs astype", "fresh vs astype",
               "out= vs astype"]
    columns = [c for c in columns if any(c in r for r in rows)]
    for r in rows:
        for c in columns:
            r.setdefault(c, "-")
    print(format_table(rows, columns))
    print("GB/s, except the 'vs' columns: speed-up of lowprec (median time ratio).  'vs torch':\n"
          "lowprec out= vs torch copy_ (both preallocated); 'vs astype': allocating lowprec (its\n"
          "output-buffer cache reusing the last call's memory) vs astype; 'fresh vs astype': lowprec\n"
          "into a fresh NumPy array per call (first-touch page faults, as astype); 'out= vs astype'.")


if __name__ == "__main__":
    main()
