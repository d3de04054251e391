"""int4 weight-only products: quantization, exact packing and format round trips (Q4_0,
MatMulNBits), accuracy against float64, agnosticism, bad input."""

import pickle

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lowprec.gemm_int4 import PackedInt4Weights, linear_int4, pack_weights_int4

from hard_cases import layouts

EPS32 = 2.0 ** -24


def rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def bound(a, pw):
    """float32 accumulation bound: (K + 4) u * sum_k |a| (|q - 8| + |z - 8|) s  (the GEMV path
    sums a*(q-8) per group and subtracts (z-8)*sum(a); the GEMM path's (q-z)*s is smaller)."""
    k, g = pw.in_features, pw.group_size
    q = pw.unpack().astype(np.float64)
    z = np.repeat(pw.zero_point_matrix().astype(np.float64), g, axis=1)
    s = np.repeat(np.abs(pw.scales.astype(np.float64)), g, axis=1)
    mag = (np.abs(q - 8) + np.abs(z - 8)) * s
    return (k + 4) * EPS32 * 1.01 * (np.abs(a.astype(np.float64)) @ mag.T) + 1e-30


def reference(a, pw, bias=None):
    r = a.astype(np.float64) @ pw.dequantize().astype(np.float64).T
    return r if bias is None else r + bias


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 6, 7, 13, 37])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 33])
@pytest.mark.parametrize("g,k,sym", [(32, 32, True), (64, 192, False), (128, 256, True), (32, 160, False)])
def test_linear_accuracy(isa, m, n, g, k, sym):
    w = rand((n, k), n + k)
    pw = pack_weights_int4(w, group_size=g, symmetric=sym)
    a = rand((m, k), m)
    y = pw.linear(a)
    assert y.shape == (m, n) and y.dtype == np.float32
    assert np.all(np.abs(y - reference(a, pw)) <= bound(a, pw))


def test_quantization_rules():
    w = rand((5, 128), 0)
    for sym in (True, False):
        pw = pack_weights_int4(w, group_size=32, symmetric=sym)
        err = np.abs(pw.dequantize() - w)
        s = np.repeat(np.abs(pw.scales), 32, axis=1)
        # asymmetric: half a step; symmetric (Q4_0): -m/s = +8 clips to 7, a full step
        assert np.all(err <= s * (1.0 if sym else 0.5) * (1 + 1e-5) + 1e-7)
        q = pw.unpack()
        assert q.max() <= 15
    pw = pack_weights_int4(w, group_size=32, symmetric=True)
    # the largest-magnitude value of each group maps to q = 0 exactly (Q4_0's rule)
    g = w.reshape(5, 4, 32)
    idx = np.abs(g).argmax(axis=2)
    assert np.all(np.take_along_axis(pw.unpack().reshape(5, 4, 32), idx[..., None], 2) == 0)
    z = pack_weights_int4(np.zeros((2, 32), np.float32), group_size=32)
    assert np.all(z.dequantize() == 0)


def test_storage_layout_low_nibble_first():
    w = rand((3, 64), 1)
    pw = pack_weights_int4(w, group_size=32)
    q = pw.unpack()
    assert np.array_equal(pw.qweight & 15, q[:, 0::2])
    assert np.array_equal(pw.qweight >> 4, q[:, 1::2])


def test_q4_0_hand_built_block():
    # one block: d = 0.5 (fp16 0x3800), element j = j % 16 in the low nibble of byte j,
    # element j + 16 = 15 - j in the high nibble
    qs = bytes(((15 - j) << 4) | j for j in range(16))
    block = np.float16(0.5).tobytes() + qs
    pw = PackedInt4Weights.from_q4_0(block, (1, 32))
    expect = np.array([(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)],
                      dtype=np.float32)
    assert np.array_equal(pw.dequantize()[0], expect)
    assert pw.to_q4_0() == block


def test_q4_0_roundtrip_real_values():
    w = rand((24, 256), 3)
    pw = pack_weights_int4(w, group_size=32, symmetric=True)
    data = pw.to_q4_0()
    assert len(data) == 24 * 8 * 18
    p2 = PackedInt4Weights.from_q4_0(data, (24, 256))
    assert np.array_equal(p2.unpack(), pw.unpack())
    assert np.array_equal(p2.scales, pw.scales.astype(np.float16).astype(np.float32))
    assert p2.to_q4_0() == data
    # still a good quantization of the real values after the fp16 scale rounding
    assert np.abs(p2.dequantize() - w).max() <= np.abs(p2.scales).max() * 1.01
    with pytest.raises(ValueError):
        pack_weights_int4(w, group_size=64, symmetric=True).to_q4_0()


def test_matmulnbits_roundtrip():
    w = rand((10, 192), 4)
    for sym in (True, False):
        for g in (32, 64):
            pw = pack_weights_int4(w, group_size=g, symmetric=sym)
            B, sc, zp = pw.to_matmulnbits()
            assert B.shape == (10, 192 // g, g // 2) and sc.shape == (10, 192 // g)
            assert (zp is None) == sym
            p2 = PackedInt4Weights.from_matmulnbits(B, sc, zp, K=192)
            assert np.array_equal(p2.dequantize(), pw.dequantize())
            assert np.array_equal(p2.unpack(), pw.unpack())
    # ONNX semantics by hand: first value in the low nibble, default zero point 8
    B = np.array([[[0x21] * 8]], dtype=np.uint8)  # values 1, 2, 1, 2, ...
    p = PackedInt4Weights.from_matmulnbits(B, np.array([[2.0]], np.float32), K=16)
    assert np.array_equal(p.dequantize()[0, :2], [-14.0, -12.0])


def test_serialization(tmp_path):
    w = rand((17, 128), 5)
    pw = pack_weights_int4(w, group_size=64, bias=np.arange(17, dtype=np.float32))
    for p2 in (pickle.loads(pickle.dumps(pw)), PackedInt4Weights.from_bytes(pw.to_bytes())):
        assert np.array_equal(p2.unpack(), pw.unpack())
        assert np.array_equal(p2.dequantize(), pw.dequantize())
        assert np.array_equal(p2.bias, pw.bias)
    pw.save(tmp_path / "w4.bin")
    assert PackedInt4Weights.load(tmp_path / "w4.bin").to_bytes() == pw.to_bytes()
    assert "\n" not in repr(pw) and "group_size=64" in repr(pw)
    with pytest.raises(ValueError):
        PackedInt4Weights.from_bytes(pw.to_bytes()[:-2])


def test_bias_and_agnosticism():
    from lowprec import _dispatch

    w = rand((50, 256), 6)
    bias = rand((50,), 7)
    pw = pack_weights_int4(w, group_size=128, bias=bias)
    for m in (1, 4, 40, 300):
        a = rand((m, 256), 8)
        for isa in _dispatch.available_isas():
            with _dispatch.use_isa(isa):
                y1 = pw.linear(a, n_threads=1)
                assert np.array_equal(y1, pw.linear(a, n_threads=2))
                ref = reference(a, pw, bias)
                assert np.all(np.abs(y1 - ref) <= bound(a, pw) + np.abs(bias) * 2 * EPS32)


def test_layouts_bf16_activations(isa):
    pw = pack_weights_int4(rand((9, 64), 9), group_size=32)
    a = rand((7, 64), 10)
    ref = pw.linear(a)
    for name, v in layouts(a).items():
        assert np.allclose(pw.linear(v), ref, rtol=0, atol=1e-5), name
    ab = a.astype(ml_dtypes.bfloat16)
    assert np.allclose(pw.linear(ab), pw.linear(ab.astype(np.float32)), atol=0)
    assert pw.linear(rand((2, 3, 64), 1)).shape == (2, 3, 9)


def test_bad_input():
    w = rand((4, 64), 0)
    with pytest.raises(ValueError):
        pack_weights_int4(w, group_size=128)  # does not divide K
    with pytest.raises(ValueError):
        pack_weights_int4(w, group_size=12)
    with pytest.raises(TypeError):
        pack_weights_int4(w.astype(np.int32))
    w2 = w.copy()
    w2[0, 0] = np.nan
    with pytest.raises(ValueError):
        pack_weights_int4(w2, group_size=32)
    pw = pack_weights_int4(w, group_size=32)
    with pytest.raises(ValueError):
        pw.linear(rand((2, 63), 0))
    with pytest.raises(TypeError):
        pw.linear(rand((2, 64), 0).astype(np.float64))
    with pytest.raises(TypeError):
        linear_int4(rand((2, 64), 0), object())
    x = rand((2, 64), 0)
    out = np.full((2, 4), 3.0, np.float32)
    out.setflags(write=False)
    with pytest.raises(ValueError):
        pw.linear(x, out=out)
    assert np.all(out == 3.0)
    with pytest.raises(TypeError):
        pw.linear(x, out=np.empty((2, 4), np.float64))
    with pytest.raises(ValueError):
        pw.linear(x, out=np.empty((2, 5), np.float32))
    with pytest.raises(ValueError):
        pw.linear(x, bias=np.ones(3))
    big = np.zeros((2, 64), np.float32)
    with pytest.raises(ValueError):
        pw.linear(big, out=big[:, :4].reshape(2, 4) if False else big.reshape(-1)[:8].reshape(2, 4))


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 8), n=st.integers(1, 35), ng=st.integers(1, 3),
       g=st.sampled_from([32, 64]), sym=st.booleans(), seed=st.integers(0, 99))
def test_hypothesis(m, n, ng, g, sym, seed):
    k = ng * g
    pw = pack_weights_int4(rand((n, k), seed), group_size=g, symmetric=sym)
    a = rand((m, k), seed + 1)
    assert np.all(np.abs(pw.linear(a) - reference(a, pw)) <= bound(a, pw))


# ---- activations="int8": activations quantized per row and group, integer dot products -------

def quantize_activations(a, g):
    """The documented rule, independently in NumPy: per row and group of g k, sa = max|a| / 127
    (float32 division), aq = clip(rint(a / sa), -127, 127) (float32 division, half to even),
    aq = 0 where sa == 0."""
    m, k = a.shape
    ag = a.astype(np.float32).reshape(m, k // g, g)
    sa = (np.abs(ag).max(axis=2) / np.float32(127)).astype(np.float32)
    safe = np.where(sa > 0, sa, np.float32(1))[..., None]
    aq = np.where(sa[..., None] > 0, np.clip(np.rint(ag / safe), -127, 127), 0)
    return aq.astype(np.int64), sa


def reference_i8(a, pw, bias=None):
    """(float64 result of the same quantized inputs, per-group magnitudes |sa s t|): the group
    dot products t = sum aq (q - z) are exact int64 here."""
    g = pw.group_size
    aq, sa = quantize_activations(a, g)
    q = pw.unpack().astype(np.int64).reshape(pw.out_features, -1, g)
    z = pw.zero_point_matrix().astype(np.int64)
    t = np.einsum("mgk,ngk->mng", aq, q) - z[None] * aq.sum(axis=2)[:, None, :]
    terms = t.astype(np.float64) * sa.astype(np.float64)[:, None, :] * pw.scales.astype(np.float64)[None]
    r = terms.sum(axis=2)
    return (r if bias is None else r + bias), np.abs(terms).sum(axis=2), t


def bound_i8(pw, mag):
    """float32 rescale and accumulation: (ng + 2) u sum_g |sa s t| (t exact; t * sa and the fma
    per group rounded once each, ng accumulations)."""
    ng = pw.in_features // pw.group_size
    return (ng + 2) * EPS32 * 1.01 * mag + 1e-30


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 8, 9, 17, 37])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 33, 50])
@pytest.mark.parametrize("g,k,sym", [(32, 32, True), (64, 192, False), (128, 256, True),
                                     (8, 40, False), (32, 160, False)])
def test_int8_activations_accuracy(isa, m, n, g, k, sym):
    w = rand((n, k), n + k)
    pw = pack_weights_int4(w, group_size=g, symmetric=sym)
    a = rand((m, k), m) * 3
    y = pw.linear(a, activations="int8")
    assert y.shape == (m, n) and y.dtype == np.float32
    ref, mag, _ = reference_i8(a, pw)
    assert np.all(np.abs(y - ref) <= bound_i8(pw, mag))


def test_int8_activations_exact_integers(isa):
    # sa = 127 / 127 = 1 in every group and power-of-two scales: the result is the exact
    # integer dot product sum (aq (q - z)) * s, checked for equality
    rng = np.random.default_rng(11)
    n, k, g = 37, 512, 128
    q = rng.integers(0, 16, (n, k)).astype(np.uint8)
    zp = rng.integers(0, 16, (n, k // g)).astype(np.uint8)
    s = np.float32(2.0) ** rng.integers(-3, 2, (n, k // g)).astype(np.float32)
    pw = PackedInt4Weights((q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8), s, zp, g, k)
    for m in (1, 3, 6, 20):
        a = rng.integers(-127, 128, (m, k)).astype(np.float32)
        a[:, ::g] = 127  # every group's max |a| is 127
        exact = ((a.astype(np.int64)[:, None, :] * (q.astype(np.int64) - np.repeat(zp, g, 1))[None])
                 .reshape(m, n, k // g, g).sum(axis=3) * s[None].astype(np.float64)).sum(axis=2)
        assert np.array_equal(pw.linear(a, activations="int8"), exact.astype(np.float32))


def test_int8_activations_vs_float(isa):
    # the documented cost of quantizing the activations: |y_int8 - x @ dequantize().T| <=
    # sum_g (sa_g / 2) sum_k |w_k| (rounding to the nearest step) + the float32 bound
    w = rand((40, 512), 12)
    pw = pack_weights_int4(w, group_size=128)
    a = rand((6, 512), 13)
    y = pw.linear(a, activations="int8")
    _, sa = quantize_activations(a, 128)
    wabs = np.abs(pw.dequantize().astype(np.float64)).reshape(40, 4, 128).sum(axis=2)
    step = 0.5 * sa.astype(np.float64) @ wabs.T
    ref, mag, _ = reference_i8(a, pw)
    full = a.astype(np.float64) @ pw.dequantize().astype(np.float64).T
    assert np.all(np.abs(y - full) <= step * (1 + 1e-6) + bound_i8(pw, mag))
    # and it is a real approximation: the error is far below the output scale
    assert np.abs(y - full).max() < 0.05 * np.abs(full).max()


def test_int8_activations_agnosticism_bias_bf16():
    from lowprec import _dispatch

    w = rand((70, 256), 14)
    bias = rand((70,), 15)
    pw = pack_weights_int4(w, group_size=64, bias=bias)
    for m in (1, 4, 9, 300):
        a = rand((m, 256), 16)
        ref, mag, _ = reference_i8(a, pw, bias)
        for isa in _dispatch.available_isas():
            with _dispatch.use_isa(isa):
                y1 = pw.linear(a, n_threads=1, activations="int8")
                assert np.array_equal(y1, pw.linear(a, n_threads=2, activations="int8"))
                assert np.all(np.abs(y1 - ref) <= bound_i8(pw, mag) + np.abs(bias) * 2 * EPS32)
    ab = rand((5, 256), 17).astype(ml_dtypes.bfloat16)
    assert np.array_equal(pw.linear(ab, activations="int8"),
                          pw.linear(ab.astype(np.float32), activations="int8"))
    # strided / batched activations
    a3 = rand((2, 3, 512), 18)[..., ::2]
    assert np.array_equal(pw.linear(a3, activations="int8"),
                          pw.linear(np.ascontiguousarray(a3), activations="int8"))


def test_int8_activations_special_values(isa):
    pw = pack_weights_int4(rand((20, 64), 19), group_size=32)
    a = rand((4, 64), 20)
    a[1] = 0.0                 # all-zero row: sa = 0, exact zero output
    a[2, 40] = np.inf          # non-finite activation: that row is NaN
    a[3, 5] = np.nan
    y = pw.linear(a, activations="int8")
    assert np.all(y[1] == 0)
    assert np.all(np.isnan(y[2])) and np.all(np.isnan(y[3]))
    ref, mag, _ = reference_i8(a[:1], pw)
    assert np.all(np.abs(y[0] - ref[0]) <= bound_i8(pw, mag[0]))


def test_int8_activations_bad_input():
    pw = pack_weights_int4(rand((4, 64), 0), group_size=32)
    x = rand((2, 64), 1)
    for bad in ("int4", "fp32", 8, None):
        with pytest.raises(ValueError, match="activations"):
            pw.linear(x, activations=bad)
    big = pack_weights_int4(rand((2, 8192), 2), group_size=8192)
    with pytest.raises(ValueError, match="group_size"):
        big.linear(rand((1, 8192), 3), activations="int8")
    with pytest.raises(TypeError):
        pw.linear(x.astype(np.float64), activations="int8")
    with pytest.raises(ValueError):
        pw.linear(rand((2, 63), 0), activations="int8")


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 12), n=st.integers(1, 40), ng=st.integers(1, 3),
       g=st.sampled_from([8, 32, 64]), sym=st.booleans(), seed=st.integers(0, 99))
def test_int8_activations_hypothesis(m, n, ng, g, sym, seed):
    k = ng * g
    pw = pack_weights_int4(rand((n, k), seed), group_size=g, symmetric=sym)
    a = rand((m, k), seed + 1)
    ref, mag, _ = reference_i8(a, pw)
    assert np.all(np.abs(pw.linear(a, activations="int8") - ref) <= bound_i8(pw, mag))
