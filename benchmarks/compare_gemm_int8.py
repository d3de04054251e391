"""lowprec's exact int8 GEMM next to FBGEMM (torch.ops.quantized) and ONNX Runtime (MatMulInteger).

Run:  python benchmarks/compare_gemm_int8.py --threads 1 2 --repeats 7
      python benchmarks/compare_gemm_int8.py --shapes 1,1024,1024 2048,2048,2048

Contenders are sampled round-robin in one process (lowprec.bench.harness.compare: one untimed
call before each sample, a pause after it) and the figure of merit is the ratio of medians from
the same run (targets.md: absolute numbers on the shared machine move by 1.3-2x between runs).

- static:  uint8 activations in, uint8 out, per-channel int8 weights, float bias.
  lowprec.gemm.qmatmul  vs  torch.ops.quantized.linear (engine fbgemm)  vs  ORT MatMulInteger
  (ORT returns raw int32 and does no requantization: it does less work).  Activations are
  7-bit (0..127) so that every peer is exact and all compute the same thing.
- dynamic: float32 in/out.  lowprec.gemm.linear  vs  torch.ops.quantized.linear_dynamic.
GOP/s = 2*M*N*K / median time.
"""

import argparse
import warnings

import numpy as np

import lowprec
from lowprec import gemm as G
from lowprec.bench.harness import compare, format_table, median

DEFAULT_SHAPES = [
    (1, 1024, 1024), (16, 1024, 1024), (64, 512, 512), (128, 1024, 1024), (256, 1024, 4096),
    (1024, 1024, 1024), (2048, 2048, 2048), (37, 1000, 300), (1, 4096, 4096),
]


def torch_static(torch, a, a_s, a_zp, w, w_s, bias, y_s, y_zp):
    n = w.shape[0]
    qw = torch._make_per_channel_quantized_tensor(
        torch.from_numpy(w.copy()), torch.from_numpy(w_s.astype(np.float64)),
        torch.zeros(n, dtype=torch.long), 0)
    packed = torch.ops.quantized.linear_prepack(qw, torch.from_numpy(bias))
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(a.copy()), a_s, a_zp)
    return lambda: torch.ops.quantized.linear(qx, packed, y_s, y_zp)


def torch_dynamic(torch, x, w, w_s):
    n = w.shape[0]
    qw = torch._make_per_channel_quantized_tensor(
        torch.from_numpy(w.copy()), torch.from_numpy(w_s.astype(np.float64)),
        torch.zeros(n, dtype=torch.long), 0)
    packed = torch.ops.quantized.linear_prepack(qw, None)
    xt = torch.from_numpy(x)
    return lambda: torch.ops.quantized.linear_dynamic(xt, packed)


def ort_matmulinteger(ort, onnx, a, a_zp, w, n_threads):
    from onnx import TensorProto, helper, numpy_helper

    m, k = a.shape
    b = np.ascontiguousarray(w.T)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B", "a_zp"], ["Y"])],
        "g",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [m, b.shape[1]])],
        initializer=[numpy_helper.from_array(b, "B"),
                     numpy_helper.from_array(np.array(a_zp, np.uint8), "a_zp")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = n_threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feed = {"A": a}
    return lambda: sess.run(None, feed)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--shapes", nargs="+", default=None, help="M,N,K triples")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--min-sample-time", type=float, default=0.05)
    ap.add_argument("--no-dynamic", action="store_true")
    args = ap.parse_args(argv)
    shapes = ([tuple(int(v) for v in s.split(",")) for s in args.shapes]
              if args.shapes else DEFAULT_SHAPES)
    warnings.filterwarnings("ignore", category=UserWarning)
    try:
        import torch
        torch.backends.quantized.engine = "fbgemm"
    except ImportError:
        torch = None
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        ort = onnx = None
    print(f"lowprec {lowprec.__version__}, gemm_int8 ISA: {lowprec._dispatch.family_isas()['gemm_int8']}")
    rng = np.random.default_rng(0)
    rows = []
    for nt in args.threads:
        if torch is not None:
            torch.set_num_threads(nt)
        for (m, n, k) in shapes:
            a = rng.integers(0, 128, (m, k), dtype=np.uint8)
            w = rng.integers(-127, 128, (n, k), dtype=np.int8)
            w_s = rng.uniform(0.001, 0.01, n).astype(np.float32)
            bias = rng.normal(size=n).astype(np.float32)
            a_s, a_zp, y_s, y_zp = 0.02, 64, 0.5, 128
            pw = G.pack_weights(w, scale=w_s, bias=bias)
            out = np.empty((m, n), np.uint8)
            c = {"lowprec": lambda: G.qmatmul(a, pw, a_scale=a_s, a_zero_point=a_zp,
                                              out_dtype=np.uint8, out_scale=y_s,
                                              out_zero_point=y_zp, out=out, n_threads=nt)}
            if torch is not None:
                c["fbgemm"] = torch_static(torch, a, a_s, a_zp, w, w_s, bias, y_s, y_zp)
            if ort is not None:
                c["ort"] = ort_matmulinteger(ort, onnx, a, a_zp, w, nt)
            if not args.no_dynamic:
                x = rng.normal(size=(m, k)).astype(np.float32)
                yd = np.empty((m, n), np.float32)
                c["lowprec_dyn"] = lambda: G.linear(x, pw, out=yd, n_threads=nt)
                if torch is not None:
                    c["fbgemm_dyn"] = torch_dynamic(torch, x, w, w_s)
            s = compare(c, repeats=args.repeats, min_sample_time=args.min_sample_time)
            ops = 2.0 * m * n * k
            row = {"threads": nt, "M,N,K": f"{m},{n},{k}"}
            for name in c:
                row[name] = ops / median(s[name]) / 1e9
            peers = [row[p] for p in ("fbgemm", "ort") if p in row]
            row["x_best_peer"] = row["lowprec"] / max(peers) if peers else float("nan")
            row["x_fbgemm"] = row["lowprec"] / row["fbgemm"] if "fbgemm" in row else float("nan")
            if "fbgemm_dyn" in row:
                row["x_dyn"] = row["lowprec_dyn"] / row["fbgemm_dyn"]
            rows.append(row)
            print(format_table([row], list(row)), flush=True)
    cols = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    for r in rows:
        for c in cols:
            r.setdefault(c, float("nan"))
    print("\nGOP/s (2*M*N*K / median time) and ratios (lowprec / peer):")
    print(format_table(rows, cols))


if __name__ == "__main__":
    main()
