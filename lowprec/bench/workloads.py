"""Operations of the benchmark runner: inputs built once per shape, then lowprec and its peers.

``build(bench, shape, peers, seed)`` returns a :class:`Workload`; ``workload.contenders(n)``
gives the callables for ``n`` threads: lowprec at every configured precision, the fp32 baseline
(marked ``baseline=True``) and each installed peer that computes the same thing.  Each contender
also knows its operation count, bytes moved per call (for GB/s and the roofline), the bytes of its
weights or table (``footprint``), and how to produce its result as float for the error against
the float64 reference.

Examples
--------
>>> from lowprec.bench.peers import load_peers
>>> bench = {"operation": "linear", "precisions": ["fp32", "int8"], "group_size": 128}
>>> w = build(bench, [2, 32, 128], load_peers(["numpy"]), seed=0)
>>> [(c.name, c.precision, c.baseline) for c in w.contenders(1)]
[('numpy fp32', 'fp32', True), ('lowprec int8', 'int8', False)]
>>> c = w.contenders(1)[1]
>>> rel_l2(c.output(), w.reference) < 0.05
True
"""

import numpy as np

import lowprec

try:
    import ml_dtypes

    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes is a dependency of lowprec
    BF16 = None


class Contender:
    """One timed callable of a case."""

    def __init__(self, name, library, precision, fn, *, output=None, footprint=0, ops=0.0,
                 nbytes=0.0, baseline=False):
        self.name, self.library, self.precision = name, library, precision
        self.fn, self.output = fn, output
        self.footprint, self.ops, self.nbytes = int(footprint), float(ops), float(nbytes)
        self.baseline = baseline

    def __repr__(self):
        return f"Contender({self.name!r})"


class Workload:
    """Inputs of one (operation, shape), built once; ``contenders(n_threads)`` per thread count."""

    def __init__(self, operation, shape, unit, reference, make, info=""):
        self.operation, self.shape, self.unit = operation, list(shape), unit
        self.reference, self._make, self.info = reference, make, info

    def contenders(self, n_threads):
        return self._make(n_threads)


def rel_l2(y, ref):
    """Relative L2 error ``||y - ref|| / ||ref||`` in float64 (0.0 when both are zero).

    >>> rel_l2(np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    0.0
    """
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    den = float(np.linalg.norm(ref))
    num = float(np.linalg.norm(y - ref))
    return num / den if den else num


def _f32(a):
    """Any result (numpy array or torch tensor, any float/bf16 dtype) as a float32 numpy array."""
    if hasattr(a, "detach"):  # torch tensor
        if a.is_quantized:
            a = a.dequantize()
        return a.detach().float().numpy()
    a = np.asarray(a)
    return a.astype(np.float32)


# --------------------------------------------------------------------------------- linear
def _linear(bench, shape, peers, rng):
    m, n, k = shape
    precs = bench["precisions"]
    group = bench["group_size"]
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = (rng.standard_normal((n, k), dtype=np.float32) / np.float32(np.sqrt(k)))
    ref = x.astype(np.float64) @ w.astype(np.float64).T
    ops = 2.0 * m * n * k
    torch = peers.available.get("torch")
    ort = peers.available.get("onnxruntime")
    mld = peers.available.get("ml_dtypes")

    y32 = np.empty((m, n), np.float32)
    pb = lowprec.pack_weights_bf16(w) if "bf16" in precs else None
    pw = lowprec.pack_weights(w) if ("int8" in precs or "int8_static" in precs) else None
    p4 = lowprec.pack_weights_int4(w, group_size=group) if "int4" in precs else None
    yb, yd, y4 = (np.empty((m, n), np.float32) for _ in range(3))
    if pw is not None:
        wq, ws = pw.unpack(), np.asarray(pw.scale, np.float32)
    static = None
    if "int8_static" in precs:
        a_s, a_zp = lowprec.choose_qparams(x, dtype=np.uint8)
        a_s, a_zp = float(a_s), int(a_zp)
        a = lowprec.quantize(x, a_s, a_zp, dtype=np.uint8)
        lo, hi = min(float(ref.min()), 0.0), max(float(ref.max()), 0.0)
        y_s = (hi - lo) / 255.0 or 1.0
        y_zp = int(np.clip(round(-lo / y_s), 0, 255))
        y8 = np.empty((m, n), np.uint8)
        static = (a, a_s, a_zp, y_s, y_zp, y8)

    fp32_bytes = 4.0 * n * k
    io32 = 4.0 * m * k + 4.0 * m * n
    nom = {"fp32": 4 * n * k, "bf16": 2 * n * k, "int8": n * k + 4 * n,
           "int8_static": n * k + 4 * n, "int4": n * k // 2 + 2 * 4 * n * (k // group)}
    tcache = {}

    def torch_inputs():
        if not tcache:
            import warnings

            warnings.filterwarnings("ignore", message=".*quantized tensor creation.*")
            tcache["x"] = torch.from_numpy(x)
            tcache["w"] = torch.from_numpy(w)
            if "bf16" in precs:
                tcache["xb"] = tcache["x"].to(torch.bfloat16)
                tcache["wbT"] = tcache["w"].to(torch.bfloat16).T
            if pw is not None:
                qw = torch._make_per_channel_quantized_tensor(
                    torch.from_numpy(wq.copy()), torch.from_numpy(ws.astype(np.float64)),
                    torch.zeros(n, dtype=torch.long), 0)
                if "int8" in precs:
                    tcache["dyn"] = torch.ops.quantized.linear_prepack(qw, None)
                if static is not None:
                    tcache["static"] = torch.ops.quantized.linear_prepack(qw, None)
                    a, a_s, a_zp = static[:3]
                    tcache["qx"] = torch._make_per_tensor_quantized_tensor(
                        torch.from_numpy(a.copy()), a_s, a_zp)
            if p4 is not None and n % 16 == 0 and group in (32, 64, 128, 256):
                q = p4.unpack()
                tcache["i4"] = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
                    torch.from_numpy(np.ascontiguousarray(q, dtype=np.int32)), 1)
                s = np.ascontiguousarray(p4.scales.T, np.float32)
                zero = (8.0 - p4.zero_point_matrix().T.astype(np.float32)) * s
                tcache["sz"] = torch.from_numpy(np.stack([s, zero], axis=-1)).to(
                    torch.bfloat16).contiguous()
                tcache["xb"] = tcache["x"].to(torch.bfloat16)
        return tcache

    ort_sessions = {}

    def ort_session(nt):
        if nt not in ort_sessions:
            from onnx import TensorProto, helper, numpy_helper

            a, a_s, a_zp = static[:3]
            b = np.ascontiguousarray(wq.T)
            graph = helper.make_graph(
                [helper.make_node("MatMulInteger", ["A", "B", "a_zp"], ["Y"])], "g",
                [helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])],
                [helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])],
                initializer=[numpy_helper.from_array(b, "B"),
                             numpy_helper.from_array(np.array(a_zp, np.uint8), "a_zp")])
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
            model.ir_version = 8
            so = ort.SessionOptions()
            so.intra_op_num_threads = nt
            so.inter_op_num_threads = 1
            so.log_severity_level = 3
            ort_sessions[nt] = ort.InferenceSession(model.SerializeToString(), so,
                                                    providers=["CPUExecutionProvider"])
        return ort_sessions[nt]

    def make(nt):
        wT = w.T
        c = [Contender("numpy fp32", "numpy", "fp32", lambda: np.matmul(x, wT, out=y32),
                       output=lambda: np.matmul(x, wT), footprint=fp32_bytes, ops=ops,
                       nbytes=fp32_bytes + io32, baseline=True)]
        if "bf16" in precs:
            c.append(Contender("lowprec bf16", "lowprec", "bf16",
                               lambda: lowprec.linear_bf16(x, pb, out=yb, n_threads=nt),
                               output=lambda: lowprec.linear_bf16(x, pb, n_threads=nt),
                               footprint=pb.nbytes, ops=ops, nbytes=pb.nbytes + io32))
        if "int8" in precs:
            c.append(Contender("lowprec int8", "lowprec", "int8",
                               lambda: lowprec.linear(x, pw, out=yd, n_threads=nt),
                               output=lambda: lowprec.linear(x, pw, n_threads=nt),
                               footprint=pw.nbytes, ops=ops, nbytes=pw.nbytes + io32))
        if static is not None:
            a, a_s, a_zp, y_s, y_zp, y8 = static

            def qm(out=None):
                return lowprec.qmatmul(a, pw, a_scale=a_s, a_zero_point=a_zp, out_dtype=np.uint8,
                                       out_scale=y_s, out_zero_point=y_zp, out=out, n_threads=nt)

            c.append(Contender("lowprec int8_static", "lowprec", "int8_static",
                               lambda: qm(y8),
                               output=lambda: (qm().astype(np.float32) - y_zp) * y_s,
                               footprint=pw.nbytes, ops=ops,
                               nbytes=pw.nbytes + m * k + m * n))
        if "int4" in precs:
            c.append(Contender("lowprec int4", "lowprec", "int4",
                               lambda: lowprec.linear_int4(x, p4, out=y4, n_threads=nt),
                               output=lambda: lowprec.linear_int4(x, p4, n_threads=nt),
                               footprint=p4.nbytes, ops=ops, nbytes=p4.nbytes + io32))
        if torch is not None:
            t = torch_inputs()
            F = torch.nn.functional
            if "fp32" in precs:
                c.append(Contender("torch fp32", "torch", "fp32",
                                   lambda: F.linear(t["x"], t["w"]),
                                   output=lambda: _f32(F.linear(t["x"], t["w"])),
                                   footprint=nom["fp32"], ops=ops, nbytes=fp32_bytes + io32))
            if "bf16" in precs:
                c.append(Contender("torch bf16", "torch", "bf16",
                                   lambda: torch.matmul(t["xb"], t["wbT"]),
                                   output=lambda: _f32(torch.matmul(t["xb"], t["wbT"])),
                                   footprint=nom["bf16"], ops=ops,
                                   nbytes=nom["bf16"] + 2 * m * k + 2 * m * n))
            if "dyn" in t:
                c.append(Contender("torch fbgemm int8", "torch", "int8",
                                   lambda: torch.ops.quantized.linear_dynamic(t["x"], t["dyn"]),
                                   output=lambda: _f32(torch.ops.quantized.linear_dynamic(
                                       t["x"], t["dyn"])),
                                   footprint=nom["int8"], ops=ops, nbytes=nom["int8"] + io32))
            if "static" in t:
                y_s, y_zp = static[3], static[4]
                c.append(Contender("torch fbgemm int8_static", "torch", "int8_static",
                                   lambda: torch.ops.quantized.linear(t["qx"], t["static"],
                                                                      y_s, y_zp),
                                   output=lambda: _f32(torch.ops.quantized.linear(
                                       t["qx"], t["static"], y_s, y_zp)),
                                   footprint=nom["int8"], ops=ops,
                                   nbytes=nom["int8"] + m * k + m * n))
            if "i4" in t:
                def t4():
                    return torch.ops.aten._weight_int4pack_mm_for_cpu(t["xb"], t["i4"], group,
                                                                      t["sz"])
                c.append(Contender("torch int4", "torch", "int4", t4, output=lambda: _f32(t4()),
                                   footprint=nom["int4"], ops=ops,
                                   nbytes=nom["int4"] + 2 * m * k + 2 * m * n))
        if ort is not None and static is not None:
            sess = ort_session(nt)
            a, a_s, a_zp = static[:3]
            feed = {"A": a}
            c.append(Contender("onnxruntime MatMulInteger", "onnxruntime", "int8_static",
                               lambda: sess.run(None, feed),
                               output=lambda: sess.run(None, feed)[0] * (a_s * ws[None, :]),
                               footprint=n * k, ops=ops, nbytes=n * k + m * k + 4 * m * n))
        if mld is not None and "bf16" in precs:
            xb, wbT = x.astype(BF16), w.astype(BF16).T
            c.append(Contender("ml_dtypes bf16", "ml_dtypes", "bf16",
                               lambda: np.matmul(xb, wbT),
                               output=lambda: np.matmul(xb, wbT).astype(np.float32),
                               footprint=nom["bf16"], ops=ops,
                               nbytes=nom["bf16"] + 2 * m * k + 4 * m * n))
        return c

    return Workload("linear", shape, "GOP/s", ref, make, info=f"M,N,K={m},{n},{k}")


# -------------------------------------------------------------------------- embedding_bag
def _embedding_bag(bench, shape, peers, rng):
    rows, dim = shape
    bags, bag_size = bench["bags"], bench["bag_size"]
    precs = bench["precisions"]
    x = rng.standard_normal((rows, dim), dtype=np.float32)
    n = bags * bag_size
    if bench["distribution"] == "zipf":
        perm = rng.permutation(rows)
        idx = perm[(rng.zipf(1.05, n) - 1) % rows].astype(np.int64)
    else:
        idx = rng.integers(0, rows, n, dtype=np.int64)
    offs = np.arange(0, n, bag_size, dtype=np.int64)
    ref = x[idx].astype(np.float64).reshape(bags, bag_size, dim).sum(axis=1)
    tables = {}
    for p in dict.fromkeys(["fp32"] + list(precs)):
        if p == "fp32":
            tables[p] = x
        elif p == "fp16":
            tables[p] = x.astype(np.float16)
        elif p == "bf16":
            tables[p] = x.astype(BF16)
        else:
            tables[p] = lowprec.quantize_rowwise(x, bits=int(p[0]))
    torch = peers.available.get("torch")
    ops = float(n * dim)

    def row_bytes(t):
        return t.row_bytes if hasattr(t, "row_bytes") else dim * t.itemsize

    def io_bytes(p):
        return n * row_bytes(tables[p]) + 8.0 * n + 8.0 * bags + 4.0 * bags * dim

    tt = {}

    def torch_fn(p):
        if p not in tt:
            ti, to = torch.from_numpy(idx), torch.from_numpy(offs)
            t = tables[p]
            if p in ("fp32", "fp16", "bf16"):
                tw = (torch.from_numpy(t.view(np.uint16)).view(torch.bfloat16) if p == "bf16"
                      else torch.from_numpy(t))
                F = torch.nn.functional
                tt[p] = lambda: F.embedding_bag(ti, tw, to, mode="sum")
            else:
                q = torch.ops.quantized
                op = {"8bit": q.embedding_bag_byte_rowwise_offsets,
                      "4bit": q.embedding_bag_4bit_rowwise_offsets,
                      "2bit": q.embedding_bag_2bit_rowwise_offsets}[p]
                tw = torch.from_numpy(np.array(t.data))
                tt[p] = lambda: op(tw, ti, to, False, 0, False, None, None, False)
        return tt[p]

    def make(nt):
        c = []
        for p in dict.fromkeys(["fp32"] + list(precs)):
            t = tables[p]

            def fn(t=t):
                return lowprec.embedding_bag(t, idx, offs, n_threads=nt)

            c.append(Contender(f"lowprec {p}", "lowprec", p, fn, output=fn, footprint=t.nbytes,
                               ops=ops, nbytes=io_bytes(p), baseline=(p == "fp32")))
        if "numpy" in peers and "fp32" in precs:
            def npfn():
                return np.add.reduceat(x[idx], offs, axis=0)
            c.append(Contender("numpy fp32", "numpy", "fp32", npfn, output=npfn,
                               footprint=x.nbytes, ops=ops, nbytes=io_bytes("fp32")))
        if torch is not None:
            for p in precs:
                f = torch_fn(p)
                name = f"torch {p}" if p in ("fp32", "fp16", "bf16") else f"torch fbgemm {p}"
                c.append(Contender(name, "torch", p, f, output=lambda f=f: _f32(f()),
                                   footprint=tables[p].nbytes, ops=ops, nbytes=io_bytes(p)))
        return c

    return Workload("embedding_bag", shape, "GB/s", ref, make,
                    info=f"{rows}x{dim} table, {bags} bags x {bag_size} ({bench['distribution']})")


# --------------------------------------------------------------------------- bf16_convert
def _bf16_convert(bench, shape, peers, rng):
    (n,) = shape
    precs = bench["precisions"]
    x = rng.standard_normal(n, dtype=np.float32)
    b = x.astype(BF16)
    o32, ob = np.empty(n, np.float32), np.empty(n, BF16)
    o32b, obb = np.empty(n, np.float32), np.empty(n, BF16)
    torch = peers.available.get("torch")

    def make(nt):
        c = [Contender("numpy fp32 copy", "numpy", "fp32 copy", lambda: np.copyto(o32, x),
                       output=lambda: x.copy(), footprint=4 * n, ops=n, nbytes=8.0 * n,
                       baseline=True)]
        if "f32->bf16" in precs:
            c.append(Contender("lowprec f32->bf16", "lowprec", "f32->bf16",
                               lambda: lowprec.to_bfloat16(x, out=ob, n_threads=nt),
                               output=lambda: lowprec.to_bfloat16(x).astype(np.float32),
                               footprint=2 * n, ops=n, nbytes=6.0 * n))
            if "ml_dtypes" in peers:
                c.append(Contender("ml_dtypes f32->bf16", "ml_dtypes", "f32->bf16",
                                   lambda: np.copyto(obb, x, casting="unsafe"),
                                   output=lambda: x.astype(BF16).astype(np.float32),
                                   footprint=2 * n, ops=n, nbytes=6.0 * n))
            if torch is not None:
                tx, tb = torch.from_numpy(x), torch.empty(n, dtype=torch.bfloat16)
                c.append(Contender("torch f32->bf16", "torch", "f32->bf16", lambda: tb.copy_(tx),
                                   output=lambda: _f32(tb.copy_(tx)), footprint=2 * n, ops=n,
                                   nbytes=6.0 * n))
        if "bf16->f32" in precs:
            c.append(Contender("lowprec bf16->f32", "lowprec", "bf16->f32",
                               lambda: lowprec.from_bfloat16(b, out=o32b, n_threads=nt),
                               output=lambda: lowprec.from_bfloat16(b),
                               footprint=2 * n, ops=n, nbytes=6.0 * n))
            if "ml_dtypes" in peers:
                o2 = np.empty(n, np.float32)
                c.append(Contender("ml_dtypes bf16->f32", "ml_dtypes", "bf16->f32",
                                   lambda: np.copyto(o2, b), output=lambda: b.astype(np.float32),
                                   footprint=2 * n, ops=n, nbytes=6.0 * n))
            if torch is not None:
                tb2 = torch.from_numpy(b.view(np.int16)).view(torch.bfloat16)
                t32 = torch.empty(n)
                c.append(Contender("torch bf16->f32", "torch", "bf16->f32",
                                   lambda: t32.copy_(tb2), output=lambda: _f32(t32.copy_(tb2)),
                                   footprint=2 * n, ops=n, nbytes=6.0 * n))
        return c

    return Workload("bf16_convert", shape, "GB/s", x, make, info=f"n={n}")


# ----------------------------------------------------------------------- quantize_rowwise
def _quantize_rowwise(bench, shape, peers, rng):
    rows, dim = shape
    precs = bench["precisions"]
    x = rng.standard_normal((rows, dim), dtype=np.float32)
    cp = np.empty_like(x)
    torch = peers.available.get("torch")
    bufs = {p: np.empty((rows, lowprec.fused_row_bytes(dim, int(p[0]))), np.uint8) for p in precs}

    def make(nt):
        c = [Contender("numpy fp32 copy", "numpy", "fp32 copy", lambda: np.copyto(cp, x),
                       output=lambda: x.copy(), footprint=x.nbytes, ops=x.size,
                       nbytes=2.0 * x.nbytes, baseline=True)]
        for p in precs:
            bits, buf = int(p[0]), bufs[p]

            def fn(bits=bits, buf=buf):
                return lowprec.quantize_rowwise(x, bits=bits, out=buf, n_threads=nt)

            c.append(Contender(f"lowprec {p}", "lowprec", p, fn,
                               output=lambda bits=bits: lowprec.quantize_rowwise(
                                   x, bits=bits).dequantize(),
                               footprint=buf.nbytes, ops=x.size, nbytes=x.nbytes + buf.nbytes))
        if torch is not None:
            xt = torch.from_numpy(x)
            q = torch.ops.quantized
            for p in precs:
                op = {"8bit": q.embedding_bag_byte_prepack, "4bit": q.embedding_bag_4bit_prepack,
                      "2bit": q.embedding_bag_2bit_prepack}[p]
                bits = int(p[0])

                def tout(op=op, bits=bits):
                    fused = op(xt).numpy()
                    return lowprec.RowwiseQuantizedTable.from_fused(fused, bits, dim).dequantize()

                c.append(Contender(f"torch fbgemm {p}", "torch", p, lambda op=op: op(xt),
                                   output=tout, footprint=bufs[p].nbytes, ops=x.size,
                                   nbytes=x.nbytes + bufs[p].nbytes))
        return c

    return Workload("quantize_rowwise", shape, "GB/s", x, make, info=f"{rows}x{dim} table")


BUILDERS = {
    "linear": _linear,
    "embedding_bag": _embedding_bag,
    "bf16_convert": _bf16_convert,
    "quantize_rowwise": _quantize_rowwise,
}


def build(bench, shape, peers, seed=0):
    """Build the inputs of ``bench`` (a validated benchmark entry) at ``shape``, once."""
    rng = np.random.default_rng(seed)
    return BUILDERS[bench["operation"]](bench, shape, peers, rng)
