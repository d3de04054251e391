"""bfloat16 products: accuracy against float64, exact packing, ISA / thread agnosticism,
layouts, bad input."""

import pickle

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lowprec import to_bfloat16
from lowprec.gemm_bf16 import PackedBF16Weights, linear_bf16, matmul_bf16, pack_weights_bf16

from hard_cases import layouts

BF16 = np.dtype(ml_dtypes.bfloat16)
EPS32 = 2.0 ** -24  # unit roundoff of float32


def bound(a, w, k):
    """|err| <= (K + 2) * u32 * sum_k |a||w| (+ tiny absolute slack): float32 accumulation of K
    exact products (|gamma_K| <= K u / (1 - K u)), plus the final bias addition."""
    s = np.abs(a.astype(np.float64)) @ np.abs(w.astype(np.float64)).T
    return (k + 2) * EPS32 * 1.01 * s + 1e-30


def rand(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32).astype(dtype)


SHAPES = [(1, 1, 1), (1, 17, 33), (2, 16, 2), (3, 40, 7), (4, 33, 64), (5, 15, 9), (6, 16, 16),
          (7, 33, 65), (13, 31, 163), (37, 100, 300), (64, 64, 1), (12, 17, 0), (0, 5, 3)]


@pytest.mark.parametrize("m,n,k", SHAPES)
@pytest.mark.parametrize("adtype", [np.float32, BF16])
def test_linear_accuracy(isa, m, n, k, adtype):
    w = rand((n, k), 1, BF16)
    a = rand((m, k), 2, adtype)
    bias = rand((n,), 3)
    pw = pack_weights_bf16(w, bias=bias)
    y = pw.linear(a)
    assert y.dtype == np.float32 and y.shape == (m, n)
    ref = a.astype(np.float64) @ w.astype(np.float64).T + bias
    assert np.all(np.abs(y - ref) <= bound(a, w, k) + np.abs(bias) * EPS32 * 2)


def test_never_bf16_accumulation():
    # 1 + 256 * 2**-9: a bf16 accumulator would stall at 1; float32 gets it exactly
    k = 257
    a = np.ones((1, k), dtype=BF16)
    w = np.full((1, k), 2.0 ** -9, dtype=BF16)
    w[0, 0] = 1.0
    assert matmul_bf16(a, w.T)[0, 0] == np.float32(1 + 256 * 2.0 ** -9)
    assert pack_weights_bf16(w).linear(a)[0, 0] == np.float32(1 + 256 * 2.0 ** -9)


def test_pack_rounding_and_unpack_exact():
    x = np.random.default_rng(0).standard_normal((37, 163)).astype(np.float32)
    pw = pack_weights_bf16(x)
    assert np.array_equal(pw.unpack().view(np.uint16), x.astype(BF16).view(np.uint16))
    wb = x.astype(BF16)
    pw = pack_weights_bf16(wb[:, ::2])  # strided bf16 input
    assert np.array_equal(pw.unpack().view(np.uint16), wb[:, ::2].view(np.uint16))


def test_roundtrip_bytes_pickle(tmp_path):
    w = rand((19, 45), 4, BF16)
    pw = pack_weights_bf16(w, bias=np.arange(19, dtype=np.float32))
    for p2 in (pickle.loads(pickle.dumps(pw)), PackedBF16Weights.from_bytes(pw.to_bytes())):
        assert np.array_equal(p2.unpack().view(np.uint16), w.view(np.uint16))
        assert np.array_equal(p2.bias, pw.bias)
    pw.save(tmp_path / "w.bin")
    assert np.array_equal(PackedBF16Weights.load(tmp_path / "w.bin").unpack().view(np.uint16),
                          w.view(np.uint16))
    r = repr(pw)
    assert "\n" not in r and "out_features=19" in r and "bfloat16" in r
    with pytest.raises(ValueError):
        PackedBF16Weights.from_bytes(b"XXXX" + pw.to_bytes()[4:])
    with pytest.raises(ValueError):
        PackedBF16Weights.from_bytes(pw.to_bytes()[:-1])


@pytest.mark.parametrize("m,n,k", [(5, 17, 1025), (50, 47, 2049), (400, 20, 1300)])
def test_k_blocked(isa, m, n, k):
    """K > 1024 (float32 x) runs the K-blocked GEMM path: later k blocks continue from the
    partial sums stored in out, the bias comes after the last one.  Same bound; the same bits
    for any thread count and for any row tiling (rows computed alone)."""
    w = rand((n, k), 11, BF16)
    a = rand((m, k), 12)
    bias = rand((n,), 13)
    pw = pack_weights_bf16(w, bias=bias)
    y = pw.linear(a, n_threads=1)
    ref = a.astype(np.float64) @ w.astype(np.float64).T + bias
    assert np.all(np.abs(y - ref) <= bound(a, w, k) + np.abs(bias) * EPS32 * 2)
    for nt in (2, 3):
        assert np.array_equal(pw.linear(a, n_threads=nt), y)
    assert np.array_equal(pw.linear(a[m - 5:]), y[m - 5:])
    yb = pw.linear(a.astype(BF16))  # bf16 x: never blocked (vdpbf16ps) or widened to float32
    ab = a.astype(BF16)
    assert np.all(np.abs(yb - (ab.astype(np.float64) @ w.astype(np.float64).T + bias))
                  <= bound(ab, w, k) + np.abs(bias) * EPS32 * 2)


def test_isa_and_thread_agnostic():
    from lowprec import _dispatch

    w = rand((70, 130), 5, BF16)
    pw = pack_weights_bf16(w)
    for m in (1, 3, 50):
        a = rand((m, 130), 6 + m)
        ref = None
        for isa in _dispatch.available_isas():
            with _dispatch.use_isa(isa):
                y1 = pw.linear(a, n_threads=1)
                y2 = pw.linear(a, n_threads=2)
                assert np.array_equal(y1, y2)  # bit-identical across thread counts
                big = rand((300, 130), 9)
                assert np.array_equal(pw.linear(big, n_threads=1), pw.linear(big, n_threads=2))
            ref = y1 if ref is None else ref
            exact = a.astype(np.float64) @ w.astype(np.float64).T
            assert np.all(np.abs(y1 - exact) <= bound(a, w, 130))


def test_layouts_and_batch(isa):
    w = rand((21, 40), 7, BF16)
    pw = pack_weights_bf16(w)
    a = rand((9, 40), 8)
    ref = pw.linear(a)
    for name, v in layouts(a).items():
        before = v.copy()
        assert np.allclose(pw.linear(v), ref, rtol=0, atol=1e-5), name
        assert np.array_equal(v, before)
    a3 = rand((2, 3, 40), 9)
    assert np.allclose(pw.linear(a3), pw.linear(a3.reshape(6, 40)).reshape(2, 3, 21), atol=1e-5)


def test_matmul_broadcasting(isa):
    a = rand((2, 1, 5, 12), 10, BF16)
    b = rand((3, 12, 7), 11, BF16)
    y = matmul_bf16(a, b)
    ref = np.matmul(a.astype(np.float64), b.astype(np.float64))
    assert y.shape == (2, 3, 5, 7)
    assert np.allclose(y, ref, rtol=1e-5, atol=1e-5)
    assert matmul_bf16(a[0, 0, 0], b[0][:, 0]).shape == ()
    bf = rand((12, 7), 12)
    assert np.array_equal(matmul_bf16(a, bf), matmul_bf16(a, bf.astype(BF16)))


@pytest.mark.parametrize("rounding", ["nearest", "truncate", "stochastic"])
def test_bf16_output(rounding):
    w = rand((33, 50), 13, BF16)
    a = rand((5, 50), 14)
    pw = pack_weights_bf16(w)
    y32 = pw.linear(a)
    y = pw.linear(a, out_dtype=BF16, rounding=rounding, rng=1)
    assert y.dtype == BF16
    assert np.array_equal(y.view(np.uint16),
                          to_bfloat16(y32, rounding=rounding, rng=1).view(np.uint16))
    out = np.empty((5, 33), dtype=BF16)
    assert pw.linear(a, out=out, out_dtype=BF16) is out


def test_bad_input():
    pw = pack_weights_bf16(rand((4, 6), 0))
    a = rand((3, 6), 1)
    with pytest.raises(ValueError):
        pw.linear(rand((3, 5), 1))
    with pytest.raises(TypeError):
        pw.linear(a.astype(np.float64))
    with pytest.raises(TypeError):
        pw.linear(a.astype(np.int8))
    with pytest.raises(TypeError):
        pack_weights_bf16(np.ones((2, 2), dtype=np.int32))
    with pytest.raises(ValueError):
        pack_weights_bf16(np.ones(3, dtype=np.float32))
    with pytest.raises(ValueError):
        pw.linear(a, bias=np.ones(3, dtype=np.float32))
    with pytest.raises(TypeError):
        linear_bf16(a, object())
    with pytest.raises(TypeError):
        pw.linear(a, out_dtype=np.float16)
    with pytest.raises(ValueError):
        pw.linear(a, out_dtype=BF16, rounding="up")
    good = np.full((3, 4), 7.0, dtype=np.float32)
    for bad, exc in [(np.empty((3, 5), np.float32), ValueError), (np.empty((3, 4), np.float64), TypeError),
                     (np.empty((4, 3), np.float32).T, ValueError)]:
        with pytest.raises(exc):
            pw.linear(a, out=bad)
    ro = good.copy()
    ro.setflags(write=False)
    with pytest.raises(ValueError):
        pw.linear(a, out=ro)
    assert np.all(ro == 7.0)
    buf = np.zeros((3, 6), dtype=np.float32)
    with pytest.raises(ValueError):
        pw.linear(buf, out=buf[:, :4].copy().reshape(3, 4) if False else buf.reshape(-1)[:12].reshape(3, 4))
    with pytest.raises(ValueError):
        matmul_bf16(rand((2, 3), 0, BF16), rand((4, 2), 0, BF16))
    with pytest.raises(ValueError):
        matmul_bf16(rand((2, 2, 3), 0, BF16), rand((3, 3, 2), 0, BF16))


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 9), n=st.integers(1, 40), k=st.integers(0, 70), seed=st.integers(0, 99))
def test_hypothesis_accuracy(m, n, k, seed):
    w = rand((n, k), seed, BF16)
    a = rand((m, k), seed + 1)
    y = pack_weights_bf16(w).linear(a)
    ref = a.astype(np.float64) @ w.astype(np.float64).T
    assert np.all(np.abs(y - ref) <= bound(a, w, k))


# ---- bfloat16 activations on AVX512_BF16 (vdpbf16ps kernel, gemm_bf16_avx512.c) -------------

def test_bf16dot_selection():
    from lowprec import _dispatch
    from lowprec._kernels import _gemm_bf16, _runtime

    has = bool(_runtime.cpu_features().get("avx512bf16", False))
    for isa in _dispatch.available_isas():
        with _dispatch.use_isa(isa):
            assert _gemm_bf16.bf16dot() == (isa == "avx512vnni" and has)


@pytest.mark.parametrize("m", [1, 2, 5, 12, 13, 25, 40])
@pytest.mark.parametrize("n,k", [(1, 1), (16, 2), (17, 3), (33, 63), (47, 64), (64, 129), (100, 300)])
def test_bf16_activations_tails(isa, m, n, k):
    w = rand((n, k), n + k, BF16)
    a = rand((m, k), m, BF16)
    bias = rand((n,), 3)
    y = pack_weights_bf16(w, bias=bias).linear(a)
    ref = a.astype(np.float64) @ w.astype(np.float64).T + bias
    assert np.all(np.abs(y - ref) <= bound(a, w, k) + np.abs(bias) * EPS32 * 2)
    # small integers: every partial sum is exact on every path
    wi = np.random.default_rng(k).integers(-8, 9, (n, k)).astype(BF16)
    ai = np.random.default_rng(m).integers(-8, 9, (m, k)).astype(BF16)
    assert np.array_equal(pack_weights_bf16(wi).linear(ai),
                          (ai.astype(np.float64) @ wi.astype(np.float64).T).astype(np.float32))


def test_bf16_activations_threads_and_layouts(isa):
    w = rand((90, 258), 20, BF16)
    pw = pack_weights_bf16(w)
    for m in (1, 3, 300):
        a = rand((m, 258), 21 + m, BF16)
        y1 = pw.linear(a, n_threads=1)
        assert np.array_equal(y1, pw.linear(a, n_threads=2))  # bit-identical across threads
        assert np.all(np.abs(y1 - a.astype(np.float64) @ w.astype(np.float64).T)
                      <= bound(a, w, 258))
    a = rand((9, 258), 30, BF16)
    ref = pw.linear(a)
    for name, v in layouts(a).items():
        assert np.array_equal(pw.linear(v), ref), name


def test_bf16_activations_denormals_flushed(isa):
    """vdpbf16ps treats denormal inputs as zero (DAZ) and flushes denormal results (FTZ): with
    AVX512_BF16, a bf16 activation of magnitude < 2^-126 contributes nothing (the float32-FMA
    paths keep it).  docs/bf16_int4_gemm.md states the extra absolute error."""
    from lowprec._kernels import _gemm_bf16

    a = np.array([[2.0 ** -130, 1.0]], dtype=BF16)
    w = np.array([[2.0 ** 100, 2.0 ** -20]], dtype=BF16)
    y = pack_weights_bf16(w).linear(a)[0, 0]
    exact = np.float32(2.0 ** -30 + 2.0 ** -20)
    assert y == (np.float32(2.0 ** -20) if _gemm_bf16.bf16dot() else exact)
    # float32 activations never take the vdpbf16ps path
    assert pack_weights_bf16(w).linear(a.astype(np.float32))[0, 0] == exact
