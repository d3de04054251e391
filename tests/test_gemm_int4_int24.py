"""int4 weights with activations="int24": activations as 24-bit fixed point per row and group
(three int8 digit rows through the int8-activation kernels), checked against float64 references
of the same quantized activations (exact integer dot products in int64 here) and of the inputs."""

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lowprec.gemm_int4 import PackedInt4Weights, pack_weights_int4

from test_gemm_int4 import EPS32, bound, rand, reference

I24_MAX = 8355711  # 127 (1 + 2^8 + 2^16)


def quantize_i24(a, g):
    """The documented rule in NumPy: sa = max|a| / 8355711 (float32 division), M = clip(rint(a /
    sa)) (float32 division, half to even), M = 0 where sa == 0; digits M = d0 + 2^8 d1 + 2^16 d2
    (d0, d1 the low bytes as int8)."""
    m, k = a.shape
    ag = a.astype(np.float32).reshape(m, k // g, g)
    sa = (np.abs(ag).max(axis=2) / np.float32(I24_MAX)).astype(np.float32)
    safe = np.where(sa > 0, sa, np.float32(1))[..., None]
    M = np.where(sa[..., None] > 0, np.clip(np.rint(ag / safe), -I24_MAX, I24_MAX), 0)
    M = M.astype(np.int64)
    d0 = ((M & 255) ^ 128) - 128
    m1 = (M - d0) >> 8
    d1 = ((m1 & 255) ^ 128) - 128
    d2 = (m1 - d1) >> 8
    assert np.all(np.abs(d2) <= 127) and np.all(d0 + 256 * d1 + 65536 * d2 == M)
    return M, (d0, d1, d2), sa


def reference_i24(a, pw, bias=None):
    """(float64 result of the quantized activations, per-group magnitudes sum_r |sa_r s t_r| of
    the three digit rows' terms)."""
    g = pw.group_size
    M, digits, sa = quantize_i24(a, g)
    q = pw.unpack().astype(np.int64).reshape(pw.out_features, -1, g)
    z = pw.zero_point_matrix().astype(np.int64)
    s = pw.scales.astype(np.float64)[None]
    sa64 = sa.astype(np.float64)[:, None, :]
    r = np.zeros((a.shape[0], pw.out_features))
    mag = np.zeros_like(r)
    for i, d in enumerate(digits):
        t = np.einsum("mgk,ngk->mng", d, q) - z[None] * d.sum(axis=2)[:, None, :]
        terms = t.astype(np.float64) * sa64 * 256.0 ** i * s
        r += terms.sum(axis=2)
        mag += np.abs(terms).sum(axis=2)
    return (r if bias is None else r + bias), mag


def bound_i24(pw, mag):
    """per digit row (ng + 2) u sum_g |sa s t| (as int8), plus the two adds of the rows"""
    ng = pw.in_features // pw.group_size
    return (ng + 4) * EPS32 * 1.01 * mag + 1e-30


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 9, 17])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 33, 50])
@pytest.mark.parametrize("g,k,sym", [(32, 32, True), (64, 192, False), (128, 256, True),
                                     (8, 40, False), (32, 160, False)])
def test_int24_accuracy(isa, m, n, g, k, sym):
    w = rand((n, k), n + k)
    pw = pack_weights_int4(w, group_size=g, symmetric=sym)
    a = rand((m, k), m) * 3
    y = pw.linear(a, activations="int24")
    assert y.shape == (m, n) and y.dtype == np.float32
    ref, mag = reference_i24(a, pw)
    assert np.all(np.abs(y - ref) <= bound_i24(pw, mag))
    # on these inputs as accurate as the float32 path's documented bound
    assert np.all(np.abs(y - reference(a, pw)) <= bound(a, pw))


def test_int24_activation_error():
    # the documented cost of the fixed point: |y - x @ dequantize().T| <= sum_k |a - M sa| |w|
    # + the float32 bound, with |a - M sa| <= sa = max|a| / 8355711 (~2^-23 max|a|) per group:
    # half a step for the rounding to an integer, up to half a step more for the float32 division
    w = rand((40, 512), 12)
    pw = pack_weights_int4(w, group_size=128)
    a = rand((3, 512), 13) * np.float32(1e3)
    a[0, :128] *= np.float32(1e-20)  # a tiny group and wide ranges within groups
    a[1, 5] = np.float32(3e7)
    M, _, sa = quantize_i24(a, 128)
    err_a = np.abs(a.astype(np.float64).reshape(3, 4, 128) - M * sa.astype(np.float64)[..., None])
    assert np.all(err_a <= sa.astype(np.float64)[..., None] * (1 + 1e-6))
    y = pw.linear(a, activations="int24")
    wd = pw.dequantize().astype(np.float64)
    full = a.astype(np.float64) @ wd.T
    ref, mag = reference_i24(a, pw)
    assert np.all(np.abs(y - full) <= err_a.reshape(3, 512) @ np.abs(wd).T * (1 + 1e-6)
                  + bound_i24(pw, mag))


def test_int24_exact_integers(isa):
    # integer activations with max |a| = 8355711 in every group and power-of-two scales: M = a,
    # sa = 1, and the result is the exact sum (a (q - z)) * s when it fits float32
    rng = np.random.default_rng(11)
    n, k, g = 37, 256, 128
    q = rng.integers(0, 16, (n, k)).astype(np.uint8)
    zp = rng.integers(0, 16, (n, k // g)).astype(np.uint8)
    s = np.float32(2.0) ** rng.integers(-3, 2, (n, k // g)).astype(np.float32)
    pw = PackedInt4Weights((q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8), s, zp, g, k)
    for m in (1, 3, 6):
        a = rng.integers(-I24_MAX, I24_MAX + 1, (m, k)).astype(np.float32)
        a[:, ::g] = I24_MAX
        M, _, sa = quantize_i24(a, g)
        assert np.all(sa == 1) and np.array_equal(M.reshape(m, k), a.astype(np.int64))
        ref, mag = reference_i24(a, pw)
        y = pw.linear(a, activations="int24")
        assert np.all(np.abs(y - ref) <= bound_i24(pw, mag))


def test_int24_agnosticism_bias_bf16():
    from lowprec import _dispatch

    w = rand((70, 256), 14)
    bias = rand((70,), 15)
    pw = pack_weights_int4(w, group_size=64, bias=bias)
    for m in (1, 4, 9, 40):
        a = rand((m, 256), 16)
        ref, mag = reference_i24(a, pw, bias)
        ys = []
        for isa in _dispatch.available_isas():
            with _dispatch.use_isa(isa):
                y1 = pw.linear(a, n_threads=1, activations="int24")
                assert np.array_equal(y1, pw.linear(a, n_threads=2, activations="int24"))
                assert np.all(np.abs(y1 - ref) <= bound_i24(pw, mag) + np.abs(bias) * 4 * EPS32)
                ys.append(y1)
        # same quantized digits on every ISA (the rescale may differ by an fma)
        for y in ys[1:]:
            assert np.all(np.abs(y - ys[0]) <= 2 * bound_i24(pw, mag) + np.abs(bias) * 8 * EPS32)
    ab = rand((5, 256), 17).astype(ml_dtypes.bfloat16)
    assert np.array_equal(pw.linear(ab, activations="int24"),
                          pw.linear(ab.astype(np.float32), activations="int24"))
    a3 = rand((2, 3, 512), 18)[..., ::2]
    assert np.array_equal(pw.linear(a3, activations="int24"),
                          pw.linear(np.ascontiguousarray(a3), activations="int24"))


def test_int24_special_values(isa):
    pw = pack_weights_int4(rand((20, 64), 19), group_size=32)
    a = rand((4, 64), 20)
    a[1] = 0.0                 # all-zero row: exact zero output
    a[2, 40] = np.inf          # non-finite activation: that row is NaN
    a[3, 5] = np.nan
    y = pw.linear(a, activations="int24")
    assert np.all(y[1] == 0)
    assert np.all(np.isnan(y[2])) and np.all(np.isnan(y[3]))
    ref, mag = reference_i24(a[:1], pw)
    assert np.all(np.abs(y[0] - ref[0]) <= bound_i24(pw, mag[0]))


def test_int24_bad_input():
    big = pack_weights_int4(rand((2, 8192), 2), group_size=8192)
    with pytest.raises(ValueError, match="group_size"):
        big.linear(rand((1, 8192), 3), activations="int24")


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 12), n=st.integers(1, 40), ng=st.integers(1, 3),
       g=st.sampled_from([8, 32, 64]), sym=st.booleans(), seed=st.integers(0, 99))
def test_int24_hypothesis(m, n, ng, g, sym, seed):
    k = ng * g
    pw = pack_weights_int4(rand((n, k), seed), group_size=g, symmetric=sym)
    a = rand((m, k), seed + 1)
    ref, mag = reference_i24(a, pw)
    assert np.all(np.abs(pw.linear(a, activations="int24") - ref) <= bound_i24(pw, mag))
