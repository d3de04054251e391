"""EmbeddingBag (sum pooling): lowprec next to PyTorch / FBGEMM, in one process.

    python benchmarks/compare_embedding.py --threads 1 2 --tables 1000000x64,1000000x128,100000x128 \
        --dist uniform zipf --repeats 5

For every table shape, index distribution, format and thread count: 2048 bags of 32 indices
(``--bags``, ``--bag-size``), ``lowprec.embedding.embedding_bag`` against

* fp32 / fp16 / bf16 tables: ``torch.nn.functional.embedding_bag(..., mode="sum")`` on a torch
  tensor sharing the same memory (same dtype, fp16/bf16 output);
* 8/4/2-bit rows: ``torch.ops.quantized.embedding_bag_{byte,4bit,2bit}_rowwise_offsets`` on the
  SAME fused bytes (``torch.from_numpy(table.data)``: lowprec's rows are byte-identical to
  ``embedding_bag_*_prepack``'s).

Both allocate their output on every call.  Sampled round-robin with
``lowprec.bench.harness.compare`` (untimed call first, pause between libraries, medians); trust
the ratio, not the absolute figures (the machine is shared, see targets.md).  Results are
checked for equality before timing (bit-identical for fp32/fp16/8/4/2-bit; bf16 differs at
exact ties, docs/embedding_bag.md).  Also printed: rows gathered per second (Mrows/s) — compare
with the machine's random-gather rate in targets.md (64-byte rows: 26 / 70 Mrows/s at 1 / 2
threads with 4 KiB pages; 256-byte rows: 12 / 28 Mrows/s).

``--clock thread``: short samples (3 calls after an untimed one), libraries in a random order
each round, ``--rounds`` rounds, ratio of the medians; at 1 thread the calling thread's CPU
time (``thread_time``), at 2+ threads the wall clock (a 2-thread call's time is the slower
thread's).  Far steadier than ``--clock wall``'s 5 samples of 50 ms when other processes share
the cores (those swung by +-20% between consecutive runs on the loaded 2-core machine).

Next to the ratio of the medians: the quartiles of the per-round ratios (torch's sample over
lowprec's in the same round, ``pairs``).  The host switches between memory modes every few
seconds (docs/embedding_bag.md, "Session 8"); in one of them the two-level prefetch gains
nothing on fp32 1M x 64, and a wide or straddling range shows such a mix.

``--index-sets K``: K index sets of each distribution, the calls cycling through them (both
libraries the same sets, in the same order).  One set (the default before session 7) reuses
the same 65,536 rows every call, so after the first call they sit in L3 (a 1M x 128 8-bit
table's looked-up rows are 9-13 MB): an L3-resident gather, not the production case of a new
batch of indices per call.  The default, 8 sets (0.5M lookups), leaves the rows to memory.

``--align 64``: the float tables (fp32 / fp16 / bf16) copied once by
``lowprec.embedding.aligned_table`` to a 64-byte boundary, both libraries reading that copy (as
``torch.empty`` would allocate a table).  The default, ``numpy``, keeps numpy's allocation, 16
bytes past a page, where a row of a multiple of 64 bytes straddles one cache line more.
Quantized tables are not affected.

Zipf: ``perm[(zipf(a) - 1) % R]`` with a=1.05 and a random permutation ``perm`` (hot rows spread
over the table, as in production traffic).
"""

import argparse
import time

import ml_dtypes
import numpy as np

from lowprec.bench.harness import compare, format_table, median
from lowprec.embedding import aligned_table, embedding_bag
from lowprec.rowwise import quantize_rowwise

FORMATS = ("fp32", "fp16", "bf16", "8bit", "4bit", "2bit")
BF16 = np.dtype(ml_dtypes.bfloat16)


def make_indices(rng, dist, rows, n, zipf_a):
    if dist == "uniform":
        return rng.integers(0, rows, n, dtype=np.int64)
    perm = rng.permutation(rows)
    return perm[(rng.zipf(zipf_a, n) - 1) % rows].astype(np.int64)


def build_tables(rows, dim, formats, seed=0, align=False):
    """Every format of one (rows, dim) table; built once and reused (``align``: the float
    tables on a 64-byte boundary)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, dim), dtype=np.float32)
    out = {}
    for f in formats:
        if f == "fp32":
            out[f] = x
        elif f == "fp16":
            out[f] = x.astype(np.float16)
        elif f == "bf16":
            out[f] = x.astype(BF16)
        else:
            out[f] = quantize_rowwise(x, bits=int(f[0]))
        if align and f in ("fp32", "fp16", "bf16"):
            out[f] = aligned_table(out[f])
    if "fp32" not in formats:
        del x
    print(f"# built {rows}x{dim} tables in {time.perf_counter() - t0:.1f} s", flush=True)
    return out


def torch_callable(torch, fmt, table, idx, offs):
    ti, to = torch.from_numpy(idx), torch.from_numpy(offs)
    if fmt in ("fp32", "fp16", "bf16"):
        if fmt == "bf16":
            tw = torch.from_numpy(table.view(np.uint16)).view(torch.bfloat16)
        else:
            tw = torch.from_numpy(table)
        F = torch.nn.functional
        return lambda: F.embedding_bag(ti, tw, to, mode="sum")
    q = torch.ops.quantized
    op = {"8bit": q.embedding_bag_byte_rowwise_offsets, "4bit": q.embedding_bag_4bit_rowwise_offsets,
          "2bit": q.embedding_bag_2bit_rowwise_offsets}[fmt]
    tw = torch.from_numpy(np.asarray(table.data)) if table.data.flags.writeable else \
        torch.from_numpy(table.data.copy())
    return lambda: op(tw, ti, to, False, 0, False, None, None, False)


def compare_short(contenders, rounds, clock, calls=3):
    """name -> [s per call by ``clock`` (ns)], one sample of ``calls`` calls per name per round
    (after one untimed call), the names in a random order each round.  ``contenders``: name ->
    list of callables (one per index set), cycled through call by call."""
    names = list(contenders)
    samples = {name: [] for name in names}
    rng = np.random.default_rng(0)
    step = 0
    for _ in range(rounds):
        for name in rng.permutation(names):
            fns = contenders[name]
            fns[step % len(fns)]()
            t0 = clock()
            for k in range(calls):
                fns[(step + 1 + k) % len(fns)]()
            samples[name].append((clock() - t0) / calls / 1e9)
        step += calls + 1
    return samples


def cycling(fns):
    """One callable that calls ``fns`` in turn (compare()'s samples over several index sets)."""
    state = [0]

    def call():
        fns[state[0] % len(fns)]()
        state[0] += 1
    return call


def to_numpy(torch, y):
    if y.dtype == torch.bfloat16:
        return y.view(torch.int16).numpy().view(BF16)
    return y.numpy()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tables", default="1000000x64,1000000x128,100000x128")
    p.add_argument("--dist", nargs="+", default=["uniform", "zipf"], choices=["uniform", "zipf"])
    p.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--bags", type=int, default=2048)
    p.add_argument("--bag-size", type=int, default=32)
    p.add_argument("--zipf-a", type=float, default=1.05)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--min-sample-time", type=float, default=0.05)
    p.add_argument("--clock", choices=["wall", "thread"], default="wall",
                   help="thread: short samples, CPU time of the calling thread at 1 thread "
                        "(see above)")
    p.add_argument("--index-sets", type=int, default=8,
                   help="index sets per distribution, cycled through call by call (see above)")
    p.add_argument("--rounds", type=int, default=60, help="rounds of --clock thread")
    p.add_argument("--align", choices=["numpy", "64"], default="numpy",
                   help="float tables where numpy puts them, or copied to a 64-byte boundary")
    args = p.parse_args(argv)

    import torch

    torch.backends.quantized.engine = "fbgemm"
    from lowprec import _dispatch

    print(f"# lowprec embedding ISA: {_dispatch.family_isas().get('embedding')}; torch "
          f"{torch.__version__}; {args.bags} bags x {args.bag_size} indices; "
          f"{args.index_sets} index set(s) per distribution; clock {args.clock}; "
          f"float tables aligned: {args.align}")
    rows_out = []
    rng = np.random.default_rng(1)
    n = args.bags * args.bag_size
    offs = np.arange(0, n, args.bag_size, dtype=np.int64)
    for spec in args.tables.split(","):
        rows, dim = (int(v) for v in spec.lower().split("x"))
        tables = build_tables(rows, dim, args.formats, align=args.align == "64")
        for dist in args.dist:
            idx_sets = [make_indices(rng, dist, rows, n, args.zipf_a)
                        for _ in range(args.index_sets)]
            for fmt in args.formats:
                table = tables[fmt]
                tfns = [torch_callable(torch, fmt, table, idx, offs) for idx in idx_sets]
                out_dtype = {"fp16": np.float16, "bf16": BF16}.get(fmt, np.float32)
                # correctness first
                mine = embedding_bag(table, idx_sets[0], offs, out_dtype=out_dtype)
                theirs = to_numpy(torch, tfns[0]())
                if fmt == "bf16":
                    same = np.mean(mine.view(np.uint16) == theirs.view(np.uint16))
                else:
                    same = float(np.array_equal(mine.view(np.uint8), theirs.view(np.uint8)))
                for nt in args.threads:
                    torch.set_num_threads(nt)
                    contenders = {
                        "lowprec": [
                            (lambda idx: lambda: embedding_bag(
                                table, idx, offs, out_dtype=out_dtype, n_threads=nt))(idx)
                            for idx in idx_sets],
                        "torch": tfns,
                    }
                    if args.clock == "thread":
                        clock = time.thread_time_ns if nt == 1 else time.perf_counter_ns
                        s = compare_short(contenders, args.rounds, clock)
                    else:
                        s = compare({k: cycling(v) for k, v in contenders.items()},
                                    repeats=args.repeats, min_sample_time=args.min_sample_time)
                    lo, to = median(s["lowprec"]), median(s["torch"])
                    # Both lists hold one sample per round, in round order.
                    p25, p75 = np.percentile(
                        [t / m for m, t in zip(s["lowprec"], s["torch"])], [25, 75])
                    row_bytes = (table.row_bytes if hasattr(table, "row_bytes")
                                 else dim * table.itemsize)
                    rows_out.append({
                        "table": spec, "dist": dist, "fmt": fmt, "row B": row_bytes,
                        "thr": nt, "lowprec Mbags/s": args.bags / lo / 1e6,
                        "torch Mbags/s": args.bags / to / 1e6, "ratio": to / lo,
                        "pairs p25": p25, "pairs p75": p75,
                        "lowprec Mrows/s": n / lo / 1e6, "equal": same,
                    })
                    r = rows_out[-1]
                    print(f"{spec:>12} {dist:>7} {fmt:>5} t={nt}: lowprec "
                          f"{r['lowprec Mbags/s']:.2f} torch {r['torch Mbags/s']:.2f} Mbags/s "
                          f"ratio {r['ratio']:.2f} (pairs {p25:.2f}-{p75:.2f})  "
                          f"({r['lowprec Mrows/s']:.0f} Mrows/s)",
                          flush=True)
        del tables
    cols = ["table", "dist", "fmt", "row B", "thr", "lowprec Mbags/s", "torch Mbags/s", "ratio",
            "pairs p25", "pairs p75", "lowprec Mrows/s", "equal"]
    print()
    print(format_table(rows_out, cols))
    print("\nrandom-gather limit (targets.md, 4 KiB pages): 64 B rows 26 / 70 Mrows/s, "
          "256 B rows 12 / 28 Mrows/s at 1 / 2 threads")


if __name__ == "__main__":
    main()
