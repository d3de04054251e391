"""lowprec's bf16-weight and int4-weight products next to numpy float32 and PyTorch.

Run:  python benchmarks/compare_gemm_bf16_int4.py --threads 1 2 --repeats 5
      python benchmarks/compare_gemm_bf16_int4.py --shapes 1,4096,4096 1,8192,8192

Contenders are sampled round-robin in one process (lowprec.bench.harness.compare: one untimed
call before each sample, a pause after it); trust the ratios from one run, not absolute numbers
(targets.md: the shared machine moves absolute figures by 1.3-2x between runs).

- numpy fp32:  x @ w.T (float32, OpenBLAS; threads via threadpoolctl)
- lp bf16:     lowprec.gemm_bf16.linear_bf16(x float32, bf16 weight)        float32 out
- lp bf16xbf16: linear_bf16(x bfloat16, bf16 weight): vdpbf16ps where the CPU has AVX512_BF16
               (torch bf16's inputs; float32 out)
- torch bf16:  torch.matmul(x_bf16, w_bf16.T)                               bf16 out
- lp int4:     lowprec.gemm_int4.linear_int4(x float32, int4 g128 weight)    float32 out
- lp int4 i8a: linear_int4(..., activations="int8"): activations quantized to int8 per row and
               group of 128 on the fly, integer dot products (vpdpbusd), float32 rescale
               (opt-in: less accurate than float32 activations; docs/bf16_int4_gemm.md)
- lp int4 i24a: linear_int4(..., activations="int24"): activations as 24-bit fixed point per row
               and group of 128 (error <= max|x| / 8355711 per element, ~float32), three int8
               digit rows through the same vpdpbusd kernel (opt-in; docs/bf16_int4_gemm.md)
- torch int4:  torch.ops.aten._weight_int4pack_mm_for_cpu(x_bf16, packed, 128, scales_zeros)
               with packed = _convert_weight_to_int4pack_for_cpu(q int32 (N, K), 1)

GOP/s = 2*M*N*K / median time; for M = 1 also the GB/s of weights read (bf16: 2*N*K bytes,
int4: N*K/2 + scales, float32: 4*N*K).

Two things distort the 2-thread rows (issue 4):
- numpy's OpenBLAS worker threads busy-wait ~2**28 TSC cycles (~100 ms at 2.6 GHz) after every
  call; with the harness's default 50 ms pause the contender sampled right after numpy (lp bf16)
  shared the 2 cores with a spinning thread and looked single-threaded.  --pause (0.15 s).
- other jobs: with the 1-minute load average ("load" column) above ~1, a 2-thread call of any
  library waits for its second thread to be scheduled (lowprec and numpy both measured 2-4x
  slower than 1 thread at load 4); such 2-thread rows say nothing about the kernels.

OPENBLAS_CORETYPE, if set in the environment, applies to numpy only; the OpenBLAS kernel in use
is printed (threadpoolctl).
"""

import argparse
import os

import ml_dtypes
import numpy as np

from lowprec.bench.harness import compare, format_table, median
from lowprec.gemm_bf16 import pack_weights_bf16
from lowprec.gemm_int4 import pack_weights_int4

DEFAULT_SHAPES = [
    (1, 1024, 1024), (16, 1024, 1024), (64, 512, 512), (128, 1024, 1024), (256, 1024, 4096),
    (1024, 1024, 1024), (2048, 2048, 2048), (37, 1000, 300), (1, 4096, 4096), (1, 8192, 8192),
]
GROUP = 128


def _shape(s):
    m, n, k = (int(v) for v in s.split(","))
    return m, n, k


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="*", type=_shape, default=DEFAULT_SHAPES)
    ap.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--min-sample-time", type=float, default=0.03)
    # OpenBLAS (0.3.31, pthreads) workers spin ~2**28 TSC cycles (~100 ms here) after each call:
    # with a shorter pause the contender sampled after numpy shares the cores with them.
    ap.add_argument("--pause", type=float, default=0.15,
                    help="seconds of sleep after each sample (default 0.15)")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)

    from threadpoolctl import threadpool_info, threadpool_limits

    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("torch not installed: skipping the torch contenders")
    print("OPENBLAS_CORETYPE =", os.environ.get("OPENBLAS_CORETYPE"))
    for d in threadpool_info():
        if d.get("internal_api") == "openblas":
            print(f"numpy BLAS: OpenBLAS {d.get('version')} kernel {d.get('architecture')}")
    import lowprec

    print("lowprec ISA:", lowprec._dispatch.family_isas().get("gemm_bf16"))
    rng = np.random.default_rng(0)
    rows = []
    for (m, n, k) in args.shapes:
        w = rng.standard_normal((n, k)).astype(np.float32)
        x = rng.standard_normal((m, k)).astype(np.float32)
        pb = pack_weights_bf16(w)
        xb = x.astype(ml_dtypes.bfloat16)
        # int4 needs K % group == 0: K = 300 runs zero-padded to 384 (ops still counted at K)
        k4 = -(-k // GROUP) * GROUP
        w4 = np.zeros((n, k4), np.float32)
        w4[:, :k] = w
        x4 = np.zeros((m, k4), np.float32)
        x4[:, :k] = x
        p4 = pack_weights_int4(w4, group_size=GROUP, symmetric=False)
        yb = np.empty((m, n), np.float32)
        y4 = np.empty((m, n), np.float32)
        tw = tx = packed4 = sz = None
        if torch is not None:
            tx = torch.from_numpy(x).to(torch.bfloat16)
            tx4 = torch.from_numpy(x4).to(torch.bfloat16)
            tw = torch.from_numpy(w).to(torch.bfloat16)
            # torch needs N % 16 == 0: N = 1000 is padded to 1008 for torch (0.8% more work)
            n16 = -(-n // 16) * 16
            qn = np.full((n16, k4), 8, np.int32)
            qn[:n] = p4.unpack()
            q = torch.from_numpy(qn)
            packed4 = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
            # torch: w = (q - 8) * scale + zero per group -> zero = (8 - z) * s
            s = np.zeros((k4 // GROUP, n16), np.float32)
            s[:, :n] = p4.scales.T
            zero = np.zeros_like(s)
            zero[:, :n] = (8.0 - p4.zero_point_matrix().T.astype(np.float32)) * p4.scales.T
            sz = torch.from_numpy(np.stack([s, zero], axis=-1)).to(torch.bfloat16).contiguous()
        for nt in args.threads:
            fns = {
                "numpy fp32": lambda: x @ w.T,
                "lp bf16": lambda: pb.linear(x, out=yb, n_threads=nt),
                "lp bf16xbf16": lambda: pb.linear(xb, out=yb, n_threads=nt),
                "lp int4": lambda: p4.linear(x4, out=y4, n_threads=nt),
                "lp int4 i8a": lambda: p4.linear(x4, out=y4, n_threads=nt, activations="int8"),
                "lp int4 i24a": lambda: p4.linear(x4, out=y4, n_threads=nt, activations="int24"),
            }
            if torch is not None:
                torch.set_num_threads(nt)
                fns["torch bf16"] = lambda: torch.matmul(tx, tw.T)
                fns["torch int4"] = lambda: torch.ops.aten._weight_int4pack_mm_for_cpu(
                    tx4, packed4, GROUP, sz)
            with threadpool_limits(limits=nt, user_api="blas"):
                samples = compare(fns, repeats=args.repeats, min_sample_time=args.min_sample_time,
                                  pause=args.pause)
            t = {name: median(v) for name, v in samples.items()}
            gop = {name: 2.0 * m * n * k / v / 1e9 for name, v in t.items()}
            row = {"M,N,K": f"{m},{n},{k}", "thr": nt, "load": f"{os.getloadavg()[0]:.1f}"}
            for name in fns:
                row[name] = f"{gop[name]:.1f}"
            row["bf16/np"] = f"{t['numpy fp32'] / t['lp bf16']:.2f}"
            row["int4/np"] = f"{t['numpy fp32'] / t['lp int4']:.2f}"
            row["i8a/np"] = f"{t['numpy fp32'] / t['lp int4 i8a']:.2f}"
            row["i24a/np"] = f"{t['numpy fp32'] / t['lp int4 i24a']:.2f}"
            if torch is not None:
                row["bf16/torch"] = f"{t['torch bf16'] / t['lp bf16']:.2f}"
                row["bf16xbf16/torch"] = f"{t['torch bf16'] / t['lp bf16xbf16']:.2f}"
                row["int4/torch"] = f"{t['torch int4'] / t['lp int4']:.2f}"
                row["i8a/torch"] = f"{t['torch int4'] / t['lp int4 i8a']:.2f}"
                row["i24a/torch"] = f"{t['torch int4'] / t['lp int4 i24a']:.2f}"
            if m == 1:
                w4b = n * k4 / 2 + p4.scales.nbytes * 2
                row["GB/s np|bf16|int4|i8a|i24a"] = (
                    f"{4 * n * k / t['numpy fp32'] / 1e9:.1f}|{2 * n * k / t['lp bf16'] / 1e9:.1f}|"
                    f"{w4b / t['lp int4'] / 1e9:.1f}|{w4b / t['lp int4 i8a'] / 1e9:.1f}|"
                    f"{w4b / t['lp int4 i24a'] / 1e9:.1f}")
            rows.append(row)
            print(row, flush=True)
    cols = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    print()
    print(format_table([{c: r.get(c, "") for c in cols} for r in rows], cols))


if __name__ == "__main__":
    main()
