"""A tour of every public function of lowprec, with checks against NumPy / ml_dtypes.

Run it with ``lowprec-demo`` or ``python -m lowprec.demo``.  Each step prints what it did and
an error or agreement figure; a failed check raises.

Examples
--------
>>> from lowprec import demo
>>> demo.main(size=1000, quiet=True)
"""

import argparse
import time

import ml_dtypes
import numpy as np

import lowprec


def _step(title, quiet, t0, detail):
    if not quiet:
        print(f"  {title:<58} {detail}  ({(time.perf_counter() - t0) * 1e3:.1f} ms)")


def tour_bfloat16(rng, size, quiet):
    x = rng.standard_normal(size, dtype=np.float32)
    t0 = time.perf_counter()
    b = lowprec.to_bfloat16(x)
    assert b.dtype == lowprec.bfloat16
    assert np.array_equal(b.view(np.uint16), x.astype(ml_dtypes.bfloat16).view(np.uint16))
    _step("to_bfloat16(x): nearest-even, same bits as ml_dtypes", quiet, t0, "identical")

    t0 = time.perf_counter()
    s = lowprec.to_bfloat16(x, rounding="stochastic", rng=0)
    bias = float(np.mean(lowprec.from_bfloat16(s).astype(np.float64) - x))
    _step("to_bfloat16(x, rounding='stochastic', rng=0)", quiet, t0, f"mean error {bias:+.2e}")

    t0 = time.perf_counter()
    t = lowprec.to_bfloat16(x, rounding="truncate")
    _step("to_bfloat16(x, rounding='truncate')", quiet, t0, f"{np.mean(t != b):.0%} differ from nearest")

    t0 = time.perf_counter()
    y = lowprec.from_bfloat16(b)
    assert np.array_equal(y, b.astype(np.float32))
    _step("from_bfloat16(b): exact widening to float32", quiet, t0, "identical")

    t0 = time.perf_counter()
    r = lowprec.round_bfloat16(x)
    err = float(np.max(np.abs(r - x) / np.maximum(np.abs(x), 1e-30)))
    assert err <= 2.0**-8
    _step("round_bfloat16(x): float32 rounded to bf16 values", quiet, t0, f"max rel. error {err:.2e}")


def tour_quantization(rng, size, quiet):
    x = rng.standard_normal(size, dtype=np.float32)
    t0 = time.perf_counter()
    scale, zp = lowprec.choose_qparams(x, dtype=np.uint8)
    _step("choose_qparams(x, dtype=uint8)", quiet, t0, f"scale {scale:.4g}, zero point {zp}")

    t0 = time.perf_counter()
    q = lowprec.quantize(x, scale, zp, dtype=np.uint8)
    xr = lowprec.dequantize(q, scale, zp)
    err = float(np.max(np.abs(xr - x)))
    assert err <= scale / 2 * 1.0001
    _step("quantize / dequantize round trip", quiet, t0, f"max error {err:.3g} <= scale/2")

    w = rng.standard_normal((64, 48), dtype=np.float32)
    t0 = time.perf_counter()
    scales, zps = lowprec.choose_qparams(w, dtype=np.int8, symmetric=True, axis=0)
    qw = lowprec.quantize(w, scales, zps, dtype=np.int8, axis=0)
    _step("per-channel symmetric int8 (axis=0)", quiet, t0, f"{len(scales)} scales, codes {qw.min()}..{qw.max()}")

    t0 = time.perf_counter()
    s4, z4 = lowprec.choose_qparams(x, dtype="uint4", method="mse")
    q4 = lowprec.quantize(x, s4, z4, dtype="uint4")
    packed = lowprec.pack_bits(q4, 4)
    assert np.array_equal(lowprec.unpack_bits(packed, 4, q4.shape[-1]), q4)
    _step("uint4 with the MSE range, pack_bits / unpack_bits", quiet, t0, f"{q4.nbytes} -> {packed.nbytes} bytes")


def tour_rowwise(rng, size, quiet):
    rows = max(1, size // 64)
    table = rng.standard_normal((rows, 64), dtype=np.float32)
    for bits, method in ((8, "minmax"), (4, "minmax"), (4, "greedy"), (2, "greedy")):
        t0 = time.perf_counter()
        t = lowprec.quantize_rowwise(table, bits=bits, method=method)
        err = float(np.sqrt(np.mean((t.dequantize() - table) ** 2)))
        _step(f"quantize_rowwise(table, bits={bits}, method={method!r})", quiet, t0, f"RMS error {err:.3g}")
    if not quiet:
        print(f"    {t!r}")
    again = lowprec.RowwiseQuantizedTable.from_fused(t.data, bits=t.bits, dim=t.dim)
    assert np.array_equal(again.dequantize(rows=[0]), t.dequantize(rows=[0]))


def tour_embedding(rng, size, quiet):
    rows, dim, bags, per_bag = max(64, size // 64), 64, 256, 20
    table = rng.standard_normal((rows, dim), dtype=np.float32)
    indices = rng.integers(0, rows, size=bags * per_bag)
    offsets = np.arange(0, bags * per_bag, per_bag)
    ref = np.add.reduceat(table[indices].astype(np.float64), offsets, axis=0)
    t0 = time.perf_counter()
    y = lowprec.embedding_bag(table, indices, offsets)
    err = float(np.max(np.abs(y - ref)))
    assert err < 1e-4
    _step("embedding_bag(table fp32, indices, offsets): sum pooling", quiet, t0, f"max error {err:.1e}")
    for bits in (8, 4):
        qt = lowprec.quantize_rowwise(table, bits=bits)
        t0 = time.perf_counter()
        yq = lowprec.embedding_bag(qt, indices, offsets, mode="mean")
        rel = float(np.linalg.norm(yq - ref / per_bag) / np.linalg.norm(ref / per_bag))
        _step(f"embedding_bag({bits}-bit rows, mode='mean')", quiet, t0, f"rel. error vs fp32 {rel:.1e}")
    t0 = time.perf_counter()
    both = lowprec.embedding_bags([table, qt], [indices, indices], [offsets, offsets], concat=True)
    _step("embedding_bags([fp32, 4-bit], ..., concat=True)", quiet, t0, f"output {both.shape}")
    try:
        lowprec.embedding_bag(table, [0, rows], [0])
    except IndexError as exc:
        _step("an out-of-range index raises IndexError", quiet, time.perf_counter(), str(exc)[:40])


def tour_int8_gemm(rng, size, quiet):
    m, k, n = 32, 256, 128
    w = rng.standard_normal((n, k), dtype=np.float32)
    x = rng.standard_normal((m, k), dtype=np.float32)
    bias = rng.standard_normal(n, dtype=np.float32)
    t0 = time.perf_counter()
    pw = lowprec.pack_weights(w, bias=bias)
    _step("pack_weights(w, bias=bias): per-channel int8", quiet, t0, repr(pw)[:60])

    t0 = time.perf_counter()
    y = lowprec.linear(x, pw)
    ref = x @ w.T + bias
    rel = float(np.linalg.norm(y - ref) / np.linalg.norm(ref))
    assert rel < 0.05
    _step("linear(x, pw): dynamic uint8 x int8, exact int32 accumulation", quiet, t0, f"rel. error vs fp32 {rel:.2e}")

    a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    t0 = time.perf_counter()
    acc = lowprec.qmatmul(a, pw, a_scale=0.05, a_zero_point=0, out_dtype=np.int32)
    exact = a.astype(np.int64) @ pw.unpack().astype(np.int64).T
    assert np.array_equal(acc, exact.astype(np.int32))
    _step("qmatmul(a_u8, pw, out_dtype=int32) at full 8-bit range", quiet, t0, "== int64 reference")

    t0 = time.perf_counter()
    yq = lowprec.qmatmul(a, pw, a_scale=0.05, a_zero_point=0, out_dtype=np.uint8,
                         out_scale=0.5, out_zero_point=10, relu=True)
    _step("qmatmul(..., out_dtype=uint8, relu=True): fused requantization", quiet, t0, f"codes {yq.min()}..{yq.max()}")

    b = rng.integers(-128, 128, size=(3, k, n), dtype=np.int8)
    a8 = rng.integers(-128, 128, size=(3, m, k), dtype=np.int8)
    t0 = time.perf_counter()
    c = lowprec.matmul_int8(a8, b)
    assert np.array_equal(c, np.matmul(a8.astype(np.int64), b.astype(np.int64)).astype(np.int32))
    _step("matmul_int8(a, b): batched int8 x int8 -> int32", quiet, t0, "== int64 reference")


def main(size=1 << 20, quiet=False):
    """Run the tour on ``size`` random values per step."""
    rng = np.random.default_rng(2026)
    if not quiet:
        lowprec.show_config()
    for name, tour in (
        ("bfloat16", tour_bfloat16),
        ("quantization", tour_quantization),
        ("row-wise quantized tables", tour_rowwise),
        ("EmbeddingBag", tour_embedding),
        ("int8 GEMM", tour_int8_gemm),
    ):
        if not quiet:
            print(f"\n{name}")
        tour(rng, size, quiet)
    if not quiet:
        print("\nall checks passed")


def cli(argv=None):
    """Command line: ``lowprec-demo [--size N]`` (or ``python -m lowprec.demo``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1 << 20, help="values per step")
    main(parser.parse_args(argv).size)


if __name__ == "__main__":
    cli()
