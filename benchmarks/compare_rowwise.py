"""Row-wise quantization of an embedding table: lowprec next to PyTorch (FBGEMM), in one process.

    python benchmarks/compare_rowwise.py --rows 1000000 --dim 128 --threads 1 2 --repeats 7

Min-max (8/4/2-bit): GB/s of fp32 input for ``lowprec.rowwise.quantize_rowwise`` and
``torch.ops.quantized.embedding_bag_{byte,4bit,2bit}_prepack``, sampled round-robin with
lowprec.bench.harness.compare (medians and their ratio; targets.md explains why).  Both allocate
their output on every call (the speed-up compares like with like); lowprec with ``out=`` into a
reused buffer is shown beside.  The outputs are checked to be byte-identical first.

Greedy (4-bit): torch's ``optimized_qparams=True`` search is serial and slow, so it runs once on
the first ``--greedy-rows`` rows and its time is scaled to the whole table; lowprec runs on the
whole table.  Both total L2 errors on that subset are printed (and the min-max one).
"""

import argparse
import time

import numpy as np

from lowprec.bench.harness import compare, format_table, median
from lowprec.rowwise import RowwiseQuantizedTable, fused_row_bytes, quantize_rowwise


def l2(table, x):
    return float(((table.dequantize().astype(np.float64) - x) ** 2).sum())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--bits", type=int, nargs="+", default=[8, 4, 2])
    p.add_argument("--greedy-rows", type=int, default=20_000,
                   help="rows of the torch greedy run (scaled to --rows)")
    p.add_argument("--no-greedy", action="store_true")
    args = p.parse_args(argv)

    import torch

    from lowprec import _dispatch

    print(f"lowprec rowwise ISA: {_dispatch.family_isas().get('rowwise')}; torch {torch.__version__}")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, args.dim), dtype=np.float32)
    xt = torch.from_numpy(x)
    gb = x.nbytes / 1e9
    ops = {8: torch.ops.quantized.embedding_bag_byte_prepack,
           4: torch.ops.quantized.embedding_bag_4bit_prepack,
           2: torch.ops.quantized.embedding_bag_2bit_prepack}

    rows = []
    for nt in args.threads:
        torch.set_num_threads(nt)
        for bits in args.bits:
            ref = ops[bits](xt).numpy()
            same = np.array_equal(quantize_rowwise(x, bits=bits, n_threads=nt).data, ref)
            del ref
            buf = np.empty((args.rows, fused_row_bytes(args.dim, bits)), np.uint8)
            samples = compare(
                {
                    "lowprec": lambda b=bits, n=nt: quantize_rowwise(x, bits=b, n_threads=n),
                    "torch": lambda b=bits: ops[b](xt),
                    # into a reused buffer: no fresh pages for the kernel to zero
                    "lowprec out=": lambda b=bits, n=nt, o=buf: quantize_rowwise(
                        x, bits=b, n_threads=n, out=o),
                },
                repeats=args.repeats,
                min_sample_time=0.2,
                pause=0.1,
            )
            tl, tt = median(samples["lowprec"]), median(samples["torch"])
            to = median(samples["lowprec out="])
            rows.append({"method": "minmax", "bits": bits, "threads": nt,
                         "lowprec GB/s": gb / tl, "torch GB/s": gb / tt,
                         "speed-up": tt / tl, "identical": str(same),
                         "lowprec out= GB/s": gb / to})
            del buf
    print(format_table(rows, ["method", "bits", "threads", "lowprec GB/s", "torch GB/s",
                              "speed-up", "identical", "lowprec out= GB/s"]))

    if args.no_greedy:
        return
    n_sub = min(args.greedy_rows, args.rows)
    sub = x[:n_sub]
    torch.set_num_threads(1)  # the search is serial in torch anyway
    t0 = time.perf_counter()
    tref = torch.ops.quantized.embedding_bag_4bit_prepack(
        torch.from_numpy(sub), optimized_qparams=True).numpy()
    t_torch_sub = time.perf_counter() - t0
    t_torch = t_torch_sub * args.rows / n_sub
    e_torch = l2(RowwiseQuantizedTable.from_fused(tref, 4, args.dim), sub)
    e_minmax = l2(quantize_rowwise(sub, bits=4), sub)
    grows = []
    for nt in args.threads:
        ts = []
        for _ in range(max(1, args.repeats // 2)):
            t0 = time.perf_counter()
            g = quantize_rowwise(x, bits=4, method="greedy", n_threads=nt)
            ts.append(time.perf_counter() - t0)
        t_low = median(ts)
        e_low = l2(RowwiseQuantizedTable(np.array(g.data[:n_sub]), 4, args.dim), sub)
        grows.append({"threads": nt, "lowprec s": t_low, "torch s (scaled)": t_torch,
                      "speed-up": t_torch / t_low, "us/row lowprec": 1e6 * t_low / args.rows,
                      "us/row torch": 1e6 * t_torch_sub / n_sub,
                      "L2^2 lowprec": e_low, "L2^2 torch": e_torch, "L2^2 minmax": e_minmax})
    print(f"\ngreedy 4-bit (torch measured on {n_sub} rows and scaled; errors on those rows)")
    print(format_table(grows, ["threads", "lowprec s", "torch s (scaled)", "speed-up",
                               "us/row lowprec", "us/row torch", "L2^2 lowprec", "L2^2 torch",
                               "L2^2 minmax"]))


if __name__ == "__main__":
    main()
