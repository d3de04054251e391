"""Exact int8 GEMM: lowprec.gemm against int64 / float64 NumPy references, every ISA path."""

import pickle
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lowprec import _dispatch
from lowprec import gemm as G
from lowprec._kernels import _gemm_int8
from hard_cases import GEMM_K, GEMM_M, GEMM_N, layouts, u8s8_saturating

RNG = np.random.default_rng(20261123)


def rand_u8(shape, rng=RNG):
    return rng.integers(0, 256, shape, dtype=np.uint8)


def rand_s8(shape, rng=RNG):
    return rng.integers(-128, 128, shape, dtype=np.int8)


def ref_int(a, w, a_zp=0, w_zp=0):
    """sum_k (a - a_zp) * (w - w_zp) in int64 (w is (N, K))."""
    w_zp = np.broadcast_to(np.asarray(w_zp, dtype=np.int64), (w.shape[0],))
    return (a.astype(np.int64) - a_zp) @ (w.astype(np.int64) - w_zp[:, None]).T


def ref_requant(acc, a_s, w_s, y_s, y_zp, bias, relu, lo, hi):
    """formats.md section 1 in float64: returns (result, pre-rounding value)."""
    ab = np.float64(np.float32(a_s)) * np.asarray(w_s, dtype=np.float32).astype(np.float64)
    v = acc.astype(np.float64)
    if bias is not None:
        v = v + np.asarray(bias, dtype=np.float32).astype(np.float64) / np.broadcast_to(ab, v.shape[-1:])
    v = v * (ab / np.float64(np.float32(y_s)))
    lo = max(lo, y_zp) if relu else lo
    return np.clip(np.rint(v) + y_zp, lo, hi), v


def ties(v):
    return np.abs(v - np.floor(v) - 0.5) == 0


# ---------------------------------------------------------------------------------------------
# exact int32 core


@pytest.mark.parametrize("k", GEMM_K)
def test_int32_exact_sizes(isa, k):
    for m in GEMM_M:
        for n in GEMM_N:
            a, w = rand_u8((m, k)), rand_s8((n, k))
            pw = G.pack_weights(w)
            got = G.qmatmul(a, pw)
            assert got.dtype == np.int32
            np.testing.assert_array_equal(got, ref_int(a, w), err_msg=f"{isa} {m}x{n}x{k}")


@pytest.mark.parametrize("shape", [(163, 163, 163), (37, 1000, 300), (64, 96, 1031), (200, 40, 2)])
def test_int32_exact_larger(isa, shape):
    m, n, k = shape
    a, w = rand_u8((m, k)), rand_s8((n, k))
    np.testing.assert_array_equal(G.qmatmul(a, G.pack_weights(w)), ref_int(a, w))


@pytest.mark.parametrize("k", (1, 2, 3, 4, 31, 64, 163, 1024))
def test_saturating_pairs_exact(isa, k):
    """The inputs that make vpmaddubsw saturate (formats.md 4) must be exact here."""
    a, w = u8s8_saturating(9, 33, k)
    assert 211 * 71 + 171 * 107 > 32767
    pw = G.pack_weights(w)
    np.testing.assert_array_equal(G.qmatmul(a, pw), ref_int(a, w))
    # extremes: 255 x 127 and 255 x -128 everywhere
    for val in (127, -128):
        a = np.full((5, k), 255, np.uint8)
        w = np.full((17, k), val, np.int8)
        np.testing.assert_array_equal(G.qmatmul(a, G.pack_weights(w)), ref_int(a, w))


def test_zero_sizes(isa):
    for m, n, k in [(0, 5, 7), (3, 0, 7), (3, 5, 0), (0, 0, 0)]:
        a, w = rand_u8((m, k)), rand_s8((n, k))
        pw = G.pack_weights(w, scale=0.5)
        got = G.qmatmul(a, pw, a_zero_point=3)
        assert got.shape == (m, n)
        np.testing.assert_array_equal(got, ref_int(a, w, 3))
        y = G.qmatmul(a, pw, a_scale=0.1, out_dtype=np.uint8, out_scale=1.0, out_zero_point=7)
        assert y.shape == (m, n) and np.all(y == 7)


def test_thread_count_agnostic(isa):
    a, w = rand_u8((70, 300)), rand_s8((130, 300))
    pw = G.pack_weights(w, scale=RNG.uniform(0.001, 0.01, 130), bias=RNG.normal(size=130))
    kw = dict(a_scale=0.05, a_zero_point=100, out_dtype=np.uint8, out_scale=0.3, out_zero_point=128)
    results = [G.qmatmul(a, pw, n_threads=t, **kw) for t in (1, 2, 3, 4)]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    i32 = [G.qmatmul(a, pw, a_zero_point=5, n_threads=t) for t in (1, 2, 3)]
    for r in i32:
        np.testing.assert_array_equal(r, ref_int(a, w, 5))


def test_isa_agnostic_and_repack():
    """A weight packed under one ISA works (repacked once) under every other one."""
    a, w = rand_u8((19, 77)), rand_s8((45, 77))
    pw = G.pack_weights(w)
    ref = ref_int(a, w, 9)
    for isa in _dispatch.available_isas():
        with _dispatch.use_isa(isa):
            np.testing.assert_array_equal(G.qmatmul(a, pw, a_zero_point=9), ref)
            np.testing.assert_array_equal(pw.unpack(), w)


def test_layouts(isa):
    a, w = rand_u8((23, 41)), rand_s8((35, 41))
    pw = G.pack_weights(w)
    ref = ref_int(a, w, 17)
    for name, arr in layouts(a).items():
        before = arr.copy()
        np.testing.assert_array_equal(G.qmatmul(arr, pw, a_zero_point=17), ref, err_msg=name)
        np.testing.assert_array_equal(arr, before)
    # batch dimensions and a row-strided view (taken in place)
    big = rand_u8((40, 100))
    view = big[::3, 10:51]
    np.testing.assert_array_equal(G.qmatmul(view, pw), ref_int(view, w))
    a3 = rand_u8((2, 3, 41))
    np.testing.assert_array_equal(G.qmatmul(a3, pw), ref_int(a3.reshape(-1, 41), w).reshape(2, 3, 35))


def test_int8_activations(isa):
    a = rand_s8((21, 67))
    a[0, :] = -128
    a[1, :] = 127
    w = rand_s8((19, 67))
    pw = G.pack_weights(w)
    for zp in (-128, -3, 0, 127):
        np.testing.assert_array_equal(G.qmatmul(a, pw, a_zero_point=zp), ref_int(a, w, zp))


def test_weight_zero_points(isa):
    a, w = rand_u8((13, 50)), rand_s8((37, 50))
    for wzp in (5, -128, RNG.integers(-128, 128, 37)):
        pw = G.pack_weights(w, zero_point=wzp, scale=0.25)
        np.testing.assert_array_equal(G.qmatmul(a, pw, a_zero_point=200), ref_int(a, w, 200, wzp))


# ---------------------------------------------------------------------------------------------
# output pipeline


@pytest.mark.parametrize("out_dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_requantized_matches_float64_reference(isa, out_dtype, per_channel, relu):
    m, n, k = 29, 70, 133
    a, w = rand_u8((m, k)), rand_s8((n, k))
    w_s = RNG.uniform(0.002, 0.02, n).astype(np.float32) if per_channel else np.float32(0.007)
    bias = RNG.normal(scale=2.0, size=n).astype(np.float32)
    pw = G.pack_weights(w, scale=w_s, bias=bias)
    lo, hi = (0, 255) if out_dtype == np.uint8 else (-128, 127)
    y_zp = 90 if out_dtype == np.uint8 else -10
    got = G.qmatmul(a, pw, a_scale=0.03, a_zero_point=131, out_dtype=out_dtype, out_scale=0.15,
                    out_zero_point=y_zp, relu=relu)
    assert got.dtype == out_dtype
    want, v = ref_requant(ref_int(a, w, 131), 0.03, w_s, 0.15, y_zp, bias, relu, lo, hi)
    diff = got.astype(np.int64) != want
    assert not np.any(diff & ~ties(v))
    assert np.any(want == hi) and np.any(want == (max(lo, y_zp) if relu else lo))  # clamps hit


def test_requant_ties_round_half_even():
    # acc = 1 .. 8, mult = 0.5: .5 ties must round to even
    k = 1
    a = np.arange(1, 9, dtype=np.uint8)[:, None]
    pw = G.pack_weights(np.ones((1, k), np.int8), scale=0.5)
    got = G.qmatmul(a, pw, a_scale=1.0, out_dtype=np.uint8, out_scale=1.0)
    np.testing.assert_array_equal(got[:, 0], np.rint(np.arange(1, 9) * 0.5).astype(np.uint8))


def test_float32_output(isa):
    a, w = rand_u8((17, 90)), rand_s8((33, 90))
    w_s = RNG.uniform(0.002, 0.02, 33).astype(np.float32)
    bias = RNG.normal(size=33).astype(np.float32)
    pw = G.pack_weights(w, scale=w_s, bias=bias)
    for relu in (False, True):
        got = G.qmatmul(a, pw, a_scale=0.05, a_zero_point=7, out_dtype=np.float32, relu=relu)
        ref = np.float64(np.float32(0.05)) * w_s.astype(np.float64) * ref_int(a, w, 7) + bias.astype(np.float64)
        ref = ref.astype(np.float32)
        if relu:
            ref = np.maximum(ref, 0)
        np.testing.assert_array_equal(got, ref)
    # an explicit bias overrides the packed one
    got = G.qmatmul(a, pw, a_scale=0.05, out_dtype=np.float32, bias=np.zeros(33))
    ref = (np.float64(np.float32(0.05)) * w_s.astype(np.float64) * ref_int(a, w)).astype(np.float32)
    np.testing.assert_array_equal(got, ref)


# ---------------------------------------------------------------------------------------------
# packing and serialization


def test_pack_float_weights_roundtrip():
    wf = RNG.normal(size=(40, 70)).astype(np.float32)
    wf[3] = 0.0
    for per_channel in (True, False):
        pw = G.pack_weights(wf, per_channel=per_channel)
        s = pw.scale[:, None] if per_channel else pw.scale[0]
        q = pw.unpack()
        assert q.min() >= -127 and q.max() <= 127
        np.testing.assert_allclose(q * s, wf, atol=float(np.max(s)) / 2 + 1e-7)


def test_unpack_serialize_pickle(tmp_path):
    w = rand_s8((37, 29))
    pw = G.pack_weights(w, scale=RNG.uniform(0.01, 0.1, 37), zero_point=3, bias=np.arange(37.0))
    np.testing.assert_array_equal(pw.unpack(), w)
    for pw2 in (G.PackedWeights.from_bytes(pw.to_bytes()), pickle.loads(pickle.dumps(pw))):
        np.testing.assert_array_equal(pw2.unpack(), w)
        np.testing.assert_array_equal(pw2.scale, pw.scale)
        np.testing.assert_array_equal(pw2.zero_point, pw.zero_point)
        np.testing.assert_array_equal(pw2.bias, pw.bias)
        np.testing.assert_array_equal(pw2.colsum, w.sum(axis=1))
    pw.save(tmp_path / "w.lpw8")
    np.testing.assert_array_equal(G.PackedWeights.load(tmp_path / "w.lpw8").unpack(), w)
    # the byte format is ISA independent: the same bytes whichever layout was packed
    blobs = set()
    for isa in _dispatch.available_isas():
        with _dispatch.use_isa(isa):
            blobs.add(G.pack_weights(w, scale=0.5).to_bytes())
    assert len(blobs) == 1
    header = pw.to_bytes()[:24]
    assert header[:4] == b"LPW8" and int.from_bytes(header[4:6], "little") == 2
    r = repr(pw)
    assert "\n" not in r and "out_features=37" in r and "in_features=29" in r
    assert pw._repr_html_().startswith("<code>")


def test_incompatible_version():
    blob = bytearray(G.pack_weights(rand_s8((3, 4))).to_bytes())
    blob[4] = 99
    with pytest.raises(ValueError, match="version"):
        G.PackedWeights.from_bytes(bytes(blob))
    with pytest.raises(ValueError, match="magic"):
        G.PackedWeights.from_bytes(b"XXXX" + bytes(blob[4:]))
    with pytest.raises(ValueError, match="bytes"):
        G.PackedWeights.from_bytes(bytes(blob[:30]).replace(b"\x63", b"\x01", 1))
    stale = G.PackedWeights.__new__(G.PackedWeights)  # e.g. state from another version
    with pytest.raises(ValueError, match="incompatible"):
        G.qmatmul(rand_u8((2, 4)), stale)


# ---------------------------------------------------------------------------------------------
# dynamic linear and matmul_int8


def _dyn_reference(x, pw, bias=None):
    q, a_s, a_zp = G.quantize_activations(x)
    acc = ref_int(q.reshape(-1, x.shape[-1]), pw.unpack(), a_zp)
    y = np.float64(a_s) * pw.scale.astype(np.float64) * acc
    b = pw.bias if bias is None else bias
    if b is not None:
        y = y + np.asarray(b, np.float32).astype(np.float64)
    return y.astype(np.float32).reshape(x.shape[:-1] + (pw.shape[0],)), q, a_s, a_zp


def test_linear_matches_reference(isa):
    x = RNG.normal(size=(2, 13, 70)).astype(np.float32)
    wf = RNG.normal(size=(50, 70)).astype(np.float32)
    pw = G.pack_weights(wf, bias=RNG.normal(size=50))
    got = G.linear(x, pw)
    want, q, a_s, a_zp = _dyn_reference(x, pw)
    np.testing.assert_array_equal(got, want)
    # quantization follows torch's dynamic rule bit for bit: rint(fl32(x * inv + zp))
    inv = np.float64(np.float32(1) / a_s)
    qref = np.clip(np.rint((x.astype(np.float64) * inv + a_zp).astype(np.float32)), 0, 255)
    np.testing.assert_array_equal(q, qref)
    # close to the float product
    err = np.abs(got - (x @ wf.T + pw.bias))
    assert err.max() < 0.05 * np.abs(x @ wf.T).max()
    np.testing.assert_array_equal(G.linear(x, pw, relu=True), np.maximum(want, 0))


def test_linear_constant_and_nonfinite():
    pw = G.pack_weights(RNG.normal(size=(4, 8)).astype(np.float32))
    for c in (0.0, 3.0, -2.0):
        x = np.full((3, 8), c, np.float32)
        np.testing.assert_allclose(G.linear(x, pw), x @ (pw.unpack() * pw.scale[:, None]).T, rtol=1e-2, atol=1e-3)
    x = np.ones((3, 8), np.float32)
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        G.linear(x, pw)


def _qparam_ranges(rng, n):
    """(min, max) pairs over many magnitudes, signs, ties and the edge cases of the scale rule."""
    out = [(0.0, 0.0), (-0.0, 0.0), (1e-45, 1e-45), (-1e-45, 1e-45), (6.1e-5 * 255, 6.1e-5 * 255),
           (-6.1e-5 * 255, 0.0), (-3.4e38, 3.4e38), (0.0, 3.4e38), (-1e-6, 1e-6),
           (-3.3, 0.01), (-1.0, 3.0), (0.5, 2.0), (-7.0, -1.0), (-16.1, 4.9),
           (-0.1609589, 0.42123288), (-0.07236842, 0.125), (-0.0014877319, 0.0019454956)]
    for i in range(n):
        kind = i % 4
        if kind == 0:
            lo, hi = sorted(rng.standard_normal(2) * 10.0 ** rng.uniform(-8, 6))
        elif kind == 1:
            lo, hi = -rng.uniform(0, 1) * 10.0 ** rng.integers(-9, 5), rng.uniform(0, 1) * 10.0 ** rng.integers(-9, 5)
        elif kind == 2:  # zero points near .5 ties
            lo, hi = sorted(rng.integers(-255, 256, 2) / rng.integers(1, 512))
        else:
            lo, hi = -float(rng.integers(0, 256)) * 2.0 ** rng.integers(-20, 10), 255 * 2.0 ** rng.integers(-20, 10)
        out.append((lo, hi))
    return [(np.float32(lo), np.float32(hi)) for lo, hi in out]


def test_choose_qparams_c_twin_matches_quantization_module():
    # the dynamic path's C ChooseQuantizationParams == lowprec.quantization.choose_qparams
    from lowprec.quantization import choose_qparams

    for lo, hi in _qparam_ranges(np.random.default_rng(7), 3000):
        want = choose_qparams(np.array([lo, hi], np.float32), dtype=np.uint8)
        assert _gemm_int8.choose_qparams_u8(lo, hi) == want, (lo, hi)


def test_choose_qparams_matches_torch():
    # pins PyTorch's ChooseQuantizationParams: the zero point comes from the double scale and
    # the error terms are subtracted (FBGEMM's own copy uses the float scale and adds them, and
    # disagrees e.g. at (-0.1609589, 0.42123288): zp 71 instead of torch's 70)
    torch = pytest.importorskip("torch")
    for lo, hi in _qparam_ranges(np.random.default_rng(8), 1500):
        x = torch.tensor([lo, hi], dtype=torch.float32)
        ts, tz = torch._choose_qparams_per_tensor(x, False)
        assert _gemm_int8.choose_qparams_u8(lo, hi) == (float(np.float32(ts)), tz), (lo, hi, ts, tz)
        _, s, z = G.quantize_activations(np.array([lo, hi], np.float32))
        assert (float(s), z) == (float(np.float32(ts)), tz)


def _tie_heavy(rng, shape, scale=0.05, zp=100):
    """float32 values within a few ulps of (t + .5) * scale: the quantizer's rounding shows."""
    t = rng.integers(-zp - 3, 258 - zp, shape).astype(np.float64) + 0.5
    x = (t * scale).astype(np.float32)
    x += (rng.integers(-2, 3, shape) * np.spacing(x)).astype(np.float32)
    return x


@pytest.mark.parametrize("shape", [(1, 1), (3, 37), (5, 100), (64, 2100)])
def test_linear_fused_quantization_matches_quantize(isa, shape):
    # the fused C min/max + qparams + quantize == NumPy min/max + lowprec.quantization
    from lowprec.quantization import choose_qparams, quantize

    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    x = _tie_heavy(rng, shape)
    xs = np.zeros((shape[0], shape[1] + 3), np.float32)[:, :shape[1]]
    xs[...] = x  # strided rows (unit column stride) are read in place
    pw = G.pack_weights(rng.normal(size=(7, shape[1])).astype(np.float32))
    layout = _gemm_int8.layout_for_isa(_gemm_int8._get_isa())
    for nt in (1, 2):
        q = np.empty(shape, np.uint8)
        out = np.empty((shape[0], 7), np.float32)
        s, z = _gemm_int8.linear_f32(xs, pw._buffer(layout), layout, 7, out, q, pw.colsum, None,
                                     pw.scale, None, False, nt)
        assert (s, z) == choose_qparams(x, dtype=np.uint8)
        np.testing.assert_array_equal(q, quantize(x, s, z, dtype=np.uint8))
        # and the NumPy statement of the rule: one float32 rounding of x * inv + zp (x * inv is
        # exact in float64; + zp is too at these magnitudes), then rint
        inv = np.float64(np.float32(1) / np.float32(s))
        ref = np.clip(np.rint((x.astype(np.float64) * inv + z).astype(np.float32)), 0, 255)
        np.testing.assert_array_equal(q, ref)
    q1, s1, z1 = G.quantize_activations(x)
    np.testing.assert_array_equal(q1, q)
    assert (float(s1), z1) == (s, z)


def test_linear_quantization_matches_torch_dynamic():
    # torch.ops.quantized.linear_dynamic quantizes with FBGEMM's legacy rule (x * inv + zp,
    # one rounding, then rint); with an identity weight its output reveals the codes
    torch = pytest.importorskip("torch")
    torch.backends.quantized.engine = "fbgemm"
    rng = np.random.default_rng(11)
    k = 64
    w = (127 * np.eye(k)).astype(np.int8)
    qw = torch._make_per_tensor_quantized_tensor(torch.from_numpy(w), 1.0 / 127, 0)
    packed = torch.ops.quantized.linear_prepack(qw, None)
    for _ in range(20):
        x = _tie_heavy(rng, (16, k), scale=rng.uniform(0.01, 0.1), zp=int(rng.integers(20, 230)))
        q, s, z = G.quantize_activations(x)
        y = torch.ops.quantized.linear_dynamic(torch.from_numpy(x), packed, False).numpy()
        qt = np.rint(y.astype(np.float64) / (np.float64(s) * np.float64(np.float32(1.0 / 127)) * 127)) + z
        np.testing.assert_array_equal(q, qt)


def test_linear_thread_agnostic_parallel_passes(isa):
    # large enough for the parallel min/max and quantize passes (>= 2**17 elements)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 520)).astype(np.float32)
    x[123, 45] = -9.0  # the minimum lies in the second thread's rows
    pw = G.pack_weights(rng.normal(size=(40, 520)).astype(np.float32), bias=rng.normal(size=40))
    y1 = G.linear(x, pw, n_threads=1)
    y2 = G.linear(x, pw, n_threads=2)
    np.testing.assert_array_equal(y1, y2)
    want, _, _, _ = _dyn_reference(x, pw)
    np.testing.assert_array_equal(y1, want)
    x[250, 3] = np.inf
    out = np.full((300, 40), 7.0, np.float32)
    for nt in (1, 2):
        with pytest.raises(ValueError, match="finite"):
            G.linear(x, pw, out=out, n_threads=nt)
        assert np.all(out == 7.0)


def test_linear_weight_zero_points(isa):
    rng = np.random.default_rng(9)
    w = rand_s8((21, 45), rng)
    pw = G.pack_weights(w, scale=rng.uniform(0.01, 0.02, 21).astype(np.float32),
                        zero_point=rng.integers(-5, 6, 21), bias=rng.normal(size=21))
    x = rng.normal(size=(9, 45)).astype(np.float32)
    q, a_s, a_zp = G.quantize_activations(x)
    acc = ref_int(q, w, a_zp, pw.zero_point)
    want = (np.float64(a_s) * pw.scale.astype(np.float64) * acc + pw.bias.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(G.linear(x, pw), want)


@pytest.mark.parametrize("a_dtype", [np.uint8, np.int8])
def test_matmul_int8_broadcasting(isa, a_dtype):
    a = RNG.integers(np.iinfo(a_dtype).min, np.iinfo(a_dtype).max + 1, (3, 1, 5, 19), dtype=a_dtype)
    b = rand_s8((4, 19, 7))
    want = np.matmul(a.astype(np.int64), b.astype(np.int64))
    np.testing.assert_array_equal(G.matmul_int8(a, b), want)
    b2 = rand_s8((19, 7))
    np.testing.assert_array_equal(G.matmul_int8(a, b2), np.matmul(a.astype(np.int64), b2.astype(np.int64)))
    v = a[0, 0, 0]
    np.testing.assert_array_equal(G.matmul_int8(v, b2), v.astype(np.int64) @ b2.astype(np.int64))
    np.testing.assert_array_equal(G.matmul_int8(a[0, 0], b2[:, 0]), a[0, 0].astype(np.int64) @ b2[:, 0])


# ---------------------------------------------------------------------------------------------
# bad input: clear exceptions, nothing written


def test_bad_input_nothing_written():
    a, w = rand_u8((4, 6)), rand_s8((5, 6))
    pw = G.pack_weights(w, scale=0.1)
    sentinel = np.full((4, 5), 77, np.uint8)
    out = sentinel.copy()
    good = dict(a_scale=0.1, out_dtype=np.uint8, out_scale=0.2, out=out)
    bad_cases = [
        (TypeError, dict(a_q=a.astype(np.float32))),
        (ValueError, dict(a_q=rand_u8((4, 7)))),
        (ValueError, dict(a_zero_point=256)),
        (ValueError, dict(a_zero_point=-1)),
        (TypeError, dict(a_zero_point=1.5)),
        (ValueError, dict(a_scale=float("nan"))),
        (ValueError, dict(a_scale=float("inf"))),
        (ValueError, dict(a_scale=-1.0)),
        (ValueError, dict(a_scale=0.0)),
        (ValueError, dict(a_scale=None)),
        (ValueError, dict(out_scale=float("nan"))),
        (ValueError, dict(out_zero_point=300)),
        (ValueError, dict(bias=np.zeros(4))),
        (ValueError, dict(bias=np.array([np.nan] * 5))),
        (TypeError, dict(out_dtype=np.float64)),
    ]
    for exc, override in bad_cases:
        kw = {**good, **override}
        a_q = kw.pop("a_q", a)
        with pytest.raises(exc):
            G.qmatmul(a_q, pw, **kw)
        np.testing.assert_array_equal(out, sentinel)
    for bad_out, exc in [
        (np.zeros((4, 6), np.uint8), ValueError),
        (np.zeros((4, 5), np.int8), TypeError),
        (np.zeros((5, 4), np.uint8).T, ValueError),
        (np.zeros((4, 5), np.uint8), ValueError),  # read-only below
    ]:
        if bad_out.flags.c_contiguous and bad_out.shape == (4, 5) and bad_out.dtype == np.uint8:
            bad_out.setflags(write=False)
        with pytest.raises(exc):
            G.qmatmul(a, pw, a_scale=0.1, out_dtype=np.uint8, out_scale=0.2, out=bad_out)
    # out overlapping the input
    buf = np.zeros((4, 6), np.int32)
    a32 = buf.view(np.uint8)[:, :6]
    with pytest.raises(ValueError, match="overlap"):
        G.qmatmul(a32, pw, out=buf[:, :5].copy() if False else np.ndarray((4, 5), np.int32, buffer=buf.data))
    with pytest.raises(TypeError):
        G.qmatmul(a, w)  # not packed
    with pytest.raises(ValueError):
        G.qmatmul(a, pw, bias=np.zeros(5))  # bias with int32 output
    with pytest.raises(ValueError):
        G.pack_weights(w, scale=np.zeros(5))
    with pytest.raises(ValueError):
        G.pack_weights(w, zero_point=200)
    with pytest.raises(TypeError):
        G.pack_weights(w.astype(np.int16))
    with pytest.raises(ValueError):
        G.pack_weights(np.array([[np.inf]], np.float32))
    with pytest.raises(TypeError):
        G.linear(a, pw)
    with pytest.raises(ValueError):
        G.linear(np.zeros((2, 7), np.float32), pw)
    with pytest.raises(ValueError):
        G.matmul_int8(rand_s8((2, 3)), rand_s8((4, 5)))
    with pytest.raises(TypeError):
        G.matmul_int8(rand_s8((2, 3)), rand_u8((3, 5)))


# ---------------------------------------------------------------------------------------------
# properties, concurrency, torch parity


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(0, 20), n=st.integers(0, 40), k=st.integers(0, 70),
    a_zp=st.integers(0, 255), seed=st.integers(0, 2**32 - 1), extremes=st.booleans(),
)
def test_hypothesis_exact(m, n, k, a_zp, seed, extremes):
    rng = np.random.default_rng(seed)
    if extremes:
        a = rng.choice(np.array([0, 255, 254, 211, 171], np.uint8), (m, k))
        w = rng.choice(np.array([-128, 127, -127, 71, 107], np.int8), (n, k))
    else:
        a, w = rand_u8((m, k), rng), rand_s8((n, k), rng)
    pw = G.pack_weights(w)
    want = ref_int(a, w, a_zp)
    for isa in _dispatch.available_isas():
        with _dispatch.use_isa(isa):
            np.testing.assert_array_equal(G.qmatmul(a, pw, a_zero_point=a_zp), want)
    # ABFT identity (formats.md 6): row sums of C equal A times the column checksum of B
    if m and n:
        acc = G.qmatmul(a, pw)
        np.testing.assert_array_equal(acc.astype(np.int64).sum(1), a.astype(np.int64) @ w.astype(np.int64).sum(0))


def test_concurrent_calls():
    a, w = rand_u8((64, 200)), rand_s8((96, 200))
    pw = G.pack_weights(w, scale=0.01)
    want = ref_int(a, w, 11)
    errors = []

    def worker():
        try:
            for _ in range(20):
                if not np.array_equal(G.qmatmul(a, pw, a_zero_point=11, n_threads=2), want):
                    errors.append("mismatch")
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def _torch_static(torch, a, a_s, a_zp, w, w_s, bias, y_s, y_zp):
    torch.backends.quantized.engine = "fbgemm"
    n = w.shape[0]
    qw = torch._make_per_channel_quantized_tensor(
        torch.from_numpy(w.copy()), torch.from_numpy(w_s.astype(np.float64)),
        torch.zeros(n, dtype=torch.long), 0)
    packed = torch.ops.quantized.linear_prepack(qw, torch.from_numpy(bias))
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(a.copy()), a_s, a_zp)
    return torch.ops.quantized.linear(qx, packed, y_s, y_zp).int_repr().numpy()


def test_torch_static_parity():
    torch = pytest.importorskip("torch")
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        pytest.skip("torch without fbgemm")
    m, n, k = 33, 70, 150
    a = RNG.integers(0, 128, (m, k), dtype=np.uint8)  # 7-bit: torch does not saturate
    w = RNG.integers(-127, 128, (n, k), dtype=np.int8)
    w_s = RNG.uniform(0.002, 0.02, n).astype(np.float32)
    bias = RNG.normal(size=n).astype(np.float32)
    a_s, a_zp, y_s, y_zp = 0.05, 20, 0.3, 100
    theirs = _torch_static(torch, a, a_s, a_zp, w, w_s, bias, y_s, y_zp)
    pw = G.pack_weights(w, scale=w_s, bias=bias)
    ours = G.qmatmul(a, pw, a_scale=a_s, a_zero_point=a_zp, out_dtype=np.uint8, out_scale=y_s,
                     out_zero_point=y_zp)
    _, v = ref_requant(ref_int(a, w, a_zp), a_s, w_s, y_s, y_zp, bias, False, 0, 255)
    diff = ours.astype(int) - theirs.astype(int)
    # torch rounds in float32: it may differ by one step only next to a .5 tie
    near_tie = np.abs(v - np.floor(v) - 0.5) < 1e-4 * np.maximum(1, np.abs(v))
    assert np.all(np.abs(diff) <= 1) and not np.any((diff != 0) & ~near_tie)
    assert np.mean(diff == 0) > 0.99


def test_torch_dynamic_error_report():
    """lowprec's full 8-bit dynamic linear is at least as accurate as torch's 7-bit one."""
    torch = pytest.importorskip("torch")
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        pytest.skip("torch without fbgemm")
    torch.backends.quantized.engine = "fbgemm"
    x = RNG.normal(size=(64, 256)).astype(np.float32)
    wf = RNG.normal(size=(128, 256)).astype(np.float32)
    pw = G.pack_weights(wf)
    qw = torch._make_per_channel_quantized_tensor(
        torch.from_numpy(pw.unpack()), torch.from_numpy(pw.scale.astype(np.float64)),
        torch.zeros(128, dtype=torch.long), 0)
    theirs = torch.ops.quantized.linear_dynamic(torch.from_numpy(x), torch.ops.quantized.linear_prepack(qw, None)).numpy()
    ours = G.linear(x, pw)
    exact = x.astype(np.float64) @ wf.T.astype(np.float64)
    e_ours = np.abs(ours - exact).mean()
    e_theirs = np.abs(theirs - exact).mean()
    assert e_ours < e_theirs * 1.05


def test_cached_constants_follow_parameters():
    # qmatmul caches the constant arguments (corrections, multipliers) with the weight: each
    # (a_scale, out_scale, zero point, out kind, ISA) must still get its own
    rng = np.random.default_rng(21)
    a, w = rand_u8((9, 40), rng), rand_s8((35, 40), rng)
    w_s = rng.uniform(0.002, 0.02, 35).astype(np.float32)
    bias = rng.normal(size=35).astype(np.float32)
    pw = G.pack_weights(w, scale=w_s, bias=bias)
    saved = _gemm_int8._get_isa()
    try:
        for level in range(saved + 1):
            _gemm_int8._set_isa(level)
            for a_zp, a_s, y_s in [(0, 0.03, 0.2), (131, 0.03, 0.2), (131, 0.05, 0.2),
                                   (131, 0.05, 0.3), (0, 0.03, 0.2)]:
                got = G.qmatmul(a, pw, a_scale=a_s, a_zero_point=a_zp, out_dtype=np.uint8,
                                out_scale=y_s, out_zero_point=3)
                want, v = ref_requant(ref_int(a, w, a_zp), a_s, w_s, y_s, 3, bias, False, 0, 255)
                assert not np.any((got != want) & ~ties(v))
                np.testing.assert_array_equal(G.qmatmul(a, pw, a_zero_point=a_zp), ref_int(a, w, a_zp))
    finally:
        _gemm_int8._set_isa(saved)


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (True, TypeError), (1.5, TypeError)])
def test_bad_n_threads_small_problems(bad, exc):
    pw = G.pack_weights(rand_s8((3, 5)))
    with pytest.raises(exc):
        G.qmatmul(rand_u8((2, 5)), pw, n_threads=bad)
    with pytest.raises(exc):
        G.linear(np.ones((2, 5), np.float32), pw, n_threads=bad)


# ---------------------------------------------------------------------------------------------
# the fast paths (qmatmul / linear calls that repeat validated arguments skip the Python checks)


def _fast_entries(pw):
    return [key for key in pw._cache if key[0] in ("fast", "linear")]


def test_fast_path_same_results(isa):
    rng = np.random.default_rng(31)
    m, n, k = 11, 70, 45
    a, w = rand_u8((m, k), rng), rand_s8((n, k), rng)
    w_s = rng.uniform(0.002, 0.02, n).astype(np.float32)
    bias = rng.normal(size=n).astype(np.float32)
    for zp in (0, rng.integers(-128, 128, n)):  # symmetric, and per-channel zero points
        pw = G.pack_weights(w, scale=w_s, zero_point=zp, bias=bias)
        kw = dict(a_scale=0.03, a_zero_point=7, out_dtype=np.uint8, out_scale=0.2,
                  out_zero_point=5)
        acc = ref_int(a, w, 7, zp)
        want, v = ref_requant(acc, 0.03, w_s, 0.2, 5, bias, False, 0, 255)
        first = G.qmatmul(a, pw, **kw)
        assert _fast_entries(pw)
        for _ in range(2):  # fast path, with and without out=, on row views
            np.testing.assert_array_equal(G.qmatmul(a, pw, **kw), first)
            out = np.empty((m, n), np.uint8)
            assert G.qmatmul(a, pw, out=out, **kw) is out
            np.testing.assert_array_equal(out, first)
            np.testing.assert_array_equal(G.qmatmul(a[::2], pw, **kw), first[::2])
        assert not np.any((first != want) & ~ties(v))
        for _ in range(2):
            np.testing.assert_array_equal(G.qmatmul(a, pw, a_zero_point=7), acc)
            y, flags = G.qmatmul(a, pw, a_zero_point=7, check="report")
            np.testing.assert_array_equal(y, acc)
            assert flags.dtype == bool and flags.shape == (m,) and not flags.any()
            np.testing.assert_array_equal(G.qmatmul(a, pw, a_zero_point=7, check="raise"), acc)
        x = rng.normal(size=(m, k)).astype(np.float32)
        y0 = G.linear(x, pw)
        for _ in range(2):
            np.testing.assert_array_equal(G.linear(x, pw), y0)
            np.testing.assert_array_equal(G.linear(x, pw, check="raise"), y0)
        q, x_s, x_zp = G.quantize_activations(x)
        want_y = np.float64(x_s) * w_s.astype(np.float64) * ref_int(q, w, x_zp, zp)
        np.testing.assert_array_equal(y0, (want_y + bias.astype(np.float64)).astype(np.float32))


def test_fast_path_rejects_like_the_general_path():
    # the same bad arguments as test_bad_input_nothing_written, after valid calls cached the
    # arguments of the fast paths: every one must still raise and leave out untouched
    a, w = rand_u8((4, 6)), rand_s8((5, 6))
    pw = G.pack_weights(w, scale=0.1)
    good = dict(a_scale=0.1, out_dtype=np.uint8, out_scale=0.2)
    for _ in range(2):
        G.qmatmul(a, pw, **good)
        G.qmatmul(a, pw, a_zero_point=1)
        G.linear(np.ones((4, 6), np.float32), pw)
    assert len(_fast_entries(pw)) == 3
    sentinel = np.full((4, 5), 77, np.uint8)
    out = sentinel.copy()
    for exc, kw in [
        (TypeError, dict(a_zero_point=True)),
        (ValueError, dict(n_threads=0)),
        (TypeError, dict(n_threads=True)),
        (TypeError, dict(n_threads=1.5)),
        (ValueError, dict(check="bogus")),
        (ValueError, dict(bias=np.zeros(4))),
    ]:
        with pytest.raises(exc):
            G.qmatmul(a, pw, out=out, **{**good, **kw})
        np.testing.assert_array_equal(out, sentinel)
    with pytest.raises(ValueError):
        G.qmatmul(rand_u8((4, 7)), pw, out=out, **good)
    read_only = np.zeros((4, 5), np.uint8)
    read_only.setflags(write=False)
    for bad_out, exc in [
        (np.zeros((4, 6), np.uint8), ValueError),
        (np.zeros((4, 5), np.int8), TypeError),
        (np.zeros((5, 4), np.uint8).T, ValueError),
        (read_only, ValueError),
        (np.zeros((4, 5), np.int32), TypeError),
    ]:
        with pytest.raises(exc):
            G.qmatmul(a, pw, out=bad_out, **good)
    with pytest.raises(TypeError):  # int32 output into a byte-swapped int32 array
        G.qmatmul(a, pw, a_zero_point=1, out=np.zeros((4, 5), np.dtype(">i4")))
    buf = np.zeros((4, 6), np.int32)
    with pytest.raises(ValueError, match="overlap"):
        G.qmatmul(buf.view(np.uint8)[:, :6], pw, a_zero_point=1,
                  out=np.ndarray((4, 5), np.int32, buffer=buf.data))
    x = np.ones((4, 6), np.float32)
    yout = np.full((4, 5), 7.0, np.float32)
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        G.linear(x, pw, out=yout)
    np.testing.assert_array_equal(yout, 7.0)
    with pytest.raises(ValueError, match="overlap"):
        xb = np.zeros((4, 6), np.float32)
        G.linear(xb, pw, out=np.ndarray((4, 5), np.float32, buffer=xb.data))
    with pytest.raises(TypeError):
        G.linear(np.ones((4, 6), np.float32), pw, out=np.zeros((4, 5), np.float64))
    for bad, exc in [(0, ValueError), (True, TypeError), (1.5, TypeError)]:
        with pytest.raises(exc):
            G.linear(np.ones((4, 6), np.float32), pw, n_threads=bad)
    # other spellings of valid arguments still work (through the general path)
    want = G.qmatmul(a, pw, **good)
    np.testing.assert_array_equal(G.qmatmul(a, pw, **{**good, "out_dtype": "uint8"}), want)
    np.testing.assert_array_equal(G.qmatmul(a, pw, **{**good, "a_scale": np.float64(0.1)}), want)
    np.testing.assert_array_equal(G.qmatmul(a[None], pw, **good), want[None])
    np.testing.assert_array_equal(
        G.qmatmul((a.astype(np.int16) - 128).astype(np.int8), pw, **{**good, "a_zero_point": -128}),
        want)


def _fast_entry(pw):
    return [v for key, v in pw._cache.items() if key[0] == "fast"][-1]


@pytest.mark.parametrize("out_dtype", [np.uint8, np.int8])
def test_float32_requantization_equals_float64(isa, out_dtype):
    # repeated qmatmul calls requantize full 32-column blocks in float32 on AVX-512 where
    # lowprec_gemm_requant_f32_setup proves it exact, and fall back to float64 next to ties:
    # the first call (float64 everywhere) and the later ones must agree bit for bit, including
    # exact ties (mult = 0.5), near ties (mult = 0.1), saturation and extreme accumulators
    rng = np.random.default_rng(77)
    lo_hi = (0, 255) if out_dtype == np.uint8 else (-128, 127)
    cases = [  # (a_s, w_s, y_s, y_zp, bias scale, relu, k, extremes)
        (0.5, 1.0, 1.0, 3, 0.0, False, 40, False),     # exact ties everywhere
        (0.1, 1.0, 1.0, 0, 0.0, False, 40, False),     # near ties
        (0.02, None, 0.5, 7, 1.0, False, 300, False),  # per-channel, bias
        (0.02, None, 0.5, 7, 1.0, True, 300, False),   # ReLU
        (0.02, None, 0.05, -5, 100.0, False, 1031, True),  # saturation, extreme products
        (1e-3, None, 1e-6, 0, 0.0, False, 64, True),   # huge multipliers
        (1e30, 1e30, 1e-30, 0, 0.0, False, 8, False),  # beyond the float32 form: float64 only
        (1e-20, 1e-20, 1e20, 0, 0.0, False, 8, False),  # tiny multipliers
    ]
    for a_s, w_s, y_s, y_zp, bscale, relu, k, extremes in cases:
        m, n = 13, 96
        a, w = rand_u8((m, k), rng), rand_s8((n, k), rng)
        if extremes:
            a[::2] = 255
            w[::3] = -128
            w[1::3] = 127
        if w_s is None:
            w_s = rng.uniform(0.001, 0.01, n).astype(np.float32)
        bias = (rng.normal(size=n) * bscale).astype(np.float32) if bscale else None
        y_zp = min(max(y_zp, lo_hi[0]), lo_hi[1])
        pw = G.pack_weights(w, scale=w_s, bias=bias)
        kw = dict(a_scale=a_s, a_zero_point=int(rng.integers(0, 256)), out_dtype=out_dtype,
                  out_scale=y_s, out_zero_point=y_zp, relu=relu)
        first = G.qmatmul(a, pw, **kw)  # float64 pipeline
        for _ in range(2):
            np.testing.assert_array_equal(G.qmatmul(a, pw, **kw), first, err_msg=str(kw))
        assert _fast_entry(pw).f32_requant == (1e-20 < a_s < 1e20), kw  # not extreme
        acc = ref_int(a, w, kw["a_zero_point"])
        want, v = ref_requant(acc, a_s, w_s, y_s, y_zp, bias, relu, *lo_hi)
        assert not np.any((first != want) & ~ties(v)), kw


def test_float32_requantization_setup_bounds():
    # the clamp bounds keep every output: q(c) == lo for c <= cl and == hi for c >= ch
    n = 64
    rng = np.random.default_rng(5)
    mult = rng.uniform(1e-5, 3.0, n)
    bias = rng.normal(size=n) * 1e3
    for zp, lo, hi in [(0, 0, 255), (100, 100, 255), (-3, -128, 127)]:
        cl, ch, ok = _gemm_int8._requant_f32_bounds(mult, bias, zp, lo, hi)
        assert ok

        def q(c):
            y = (c.astype(np.float64) + bias) * mult
            return np.clip(np.rint(np.clip(y, lo - zp - 1, hi - zp + 1)) + zp, lo, hi)

        np.testing.assert_array_equal(q(cl.astype(np.int64)), lo)
        np.testing.assert_array_equal(q(ch.astype(np.int64)), hi)
        # and they are close to the steps (not just INT32_MIN / MAX)
        step = np.ceil(4.0 / mult).astype(np.int64)
        assert np.all(q(cl.astype(np.int64) + step) > lo) and np.all(q(ch.astype(np.int64) - step) < hi)


@pytest.mark.parametrize("out_dtype", [np.uint8, np.int8])
def test_fused_requantization_all_block_shapes(isa, out_dtype):
    # on AVX-512 the cached (second and later) calls run the float32 pipeline of each 8 x 32
    # block inside the next block's micro-kernel call, across panels, with M tails of 1..7
    # rows, N tails left to the per-block path, asymmetric weights and ReLU: the bytes must be
    # those of the first call (float64 everywhere), at any thread count, and the reference's
    rng = np.random.default_rng(31)
    lo_hi = (0, 255) if out_dtype == np.uint8 else (-128, 127)
    for m, n, k in [(8, 32, 4), (9, 64, 37), (15, 96, 300), (37, 1000, 65), (70, 136, 257),
                    (203, 288, 1031), (130, 520, 3)]:
        for w_zp, relu, a_s in [(0, False, 0.02), (3, True, 0.02), (0, False, 0.5)]:
            a, w = rand_u8((m, k), rng), rand_s8((n, k), rng)
            a[::5] = 255
            w[::7] = -128
            w[1::7] = 127
            w_s = rng.uniform(0.001, 0.01, n).astype(np.float32) if a_s < 0.5 else np.float32(1)
            # a_s = 0.5, w_s = y_s = 1, no bias: exact ties, every row pair redone in float64
            bias = rng.normal(size=n).astype(np.float32) if a_s < 0.5 else None
            pw = G.pack_weights(w, scale=w_s, bias=bias, zero_point=w_zp)
            y_zp = int(rng.integers(lo_hi[0], lo_hi[1] + 1))
            kw = dict(a_scale=a_s, a_zero_point=int(rng.integers(0, 256)), out_dtype=out_dtype,
                      out_scale=1.0 if a_s == 0.5 else 0.3, out_zero_point=y_zp, relu=relu)
            first = G.qmatmul(a, pw, **kw)
            for nt in (1, 2, 3):
                np.testing.assert_array_equal(G.qmatmul(a, pw, n_threads=nt, **kw), first,
                                              err_msg=f"{(m, n, k)} {kw} {nt}")
            assert _fast_entry(pw).f32_requant
            acc = ref_int(a, w, kw["a_zero_point"], w_zp)
            want, v = ref_requant(acc, a_s, w_s, kw["out_scale"], y_zp, bias, relu, *lo_hi)
            assert not np.any((first != want) & ~ties(v)), (m, n, k, kw)


def test_float32_requantization_clamp_bounds_not_ties():
    # saturated lanes are clamped to cl / ch: there y must be far from a rounding tie (about
    # an integer when mult is small), or every saturated lane fails the float32 form's tie
    # test and its row pair takes the float64 code (79% of pairs at 256 x 1024 x 4096)
    rng = np.random.default_rng(8)
    n = 64
    mult = rng.uniform(1e-5, 1e-2, n)
    bias = rng.normal(size=n) * 1e3
    for zp, lo, hi in [(128, 0, 255), (100, 100, 255), (-3, -128, 127)]:
        cl, ch, ok = _gemm_int8._requant_f32_bounds(mult, bias, zp, lo, hi)
        assert ok
        for c in (cl, ch):
            y = (c.astype(np.float64) + bias) * mult
            assert np.all(np.abs(y - np.rint(y)) < 0.25)
