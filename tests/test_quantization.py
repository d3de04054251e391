"""Tests for lowprec.quantization: NumPy reference, torch parity, hard cases, layouts, errors."""

import threading
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lowprec.quantization as lq
from lowprec.quantization import choose_qparams, dequantize, quantize
from hard_cases import SIZES, float32_specials, layouts

QTYPES = {  # name -> (dtype argument, storage, qmin, qmax)
    "uint8": (np.uint8, np.uint8, 0, 255),
    "int8": (np.int8, np.int8, -128, 127),
    "uint4": ("uint4", np.uint8, 0, 15),
    "int4": ("int4", np.int8, -8, 7),
}


# ---------------------------------------------------------------------------------------------
# Independent NumPy reference (float32 NumPy arithmetic, Python-int clamping)


def ref_quantize(x, scale, zp, name, axis=None):
    """Mirror of the documented conventions, written without the kernels' tricks."""
    _, storage, qmin, qmax = QTYPES[name]
    x = np.asarray(x, np.float32)
    scale = np.asarray(scale, np.float32)
    zp = np.asarray(zp, np.int64)
    if axis is not None:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    inv = (np.float32(1) / scale).astype(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        if name in ("uint4", "int4"):
            p = (x * inv).astype(np.float32)
            t = np.rint(p.astype(np.float64)) + zp
            nan_value = 0
        elif axis is None:
            # fused multiply-add: the exact product is representable in float64, and rounding
            # the float64 sum to float32 is a single rounding except at float32 midpoints,
            # which these small operands cannot produce for the values tested (|t| < 2^24).
            t = np.rint((x.astype(np.float64) * inv.astype(np.float64) + zp).astype(np.float32))
            nan_value = qmax
        else:
            t = np.rint(((x * inv).astype(np.float32) + zp.astype(np.float32)).astype(np.float32))
            nan_value = 0
        t = np.where(np.isnan(t), np.nan, t)
        out = np.clip(np.nan_to_num(t, nan=0, posinf=qmax, neginf=qmin), qmin, qmax)
    out = np.where(np.isnan(np.broadcast_to(t, out.shape)), nan_value, out)
    return out.astype(storage)


def ref_dequantize(q, scale, zp, axis=None):
    q = np.asarray(q)
    scale = np.asarray(scale, np.float32)
    zp = np.asarray(zp, np.int64)
    if axis is not None:
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((q.astype(np.int64) - zp).astype(np.float32) * scale).astype(np.float32)


def tie_data(n, scale, rng, spread=300):
    """Random values with a third of them exact ties (k + 0.5) * scale."""
    x = (rng.standard_normal(n) * scale * spread / 5).astype(np.float32)
    k = rng.integers(-spread, spread, n)
    x[::3] = ((k[::3] + 0.5) * np.float32(scale)).astype(np.float32)
    return x


def bits_equal(a, b):
    return np.array_equal(np.asarray(a).view(np.int32), np.asarray(b).view(np.int32))


# ---------------------------------------------------------------------------------------------
# Reference and ISA paths


@pytest.mark.parametrize("name", list(QTYPES))
@pytest.mark.parametrize("n", SIZES + (65536 + 33,))
def test_quantize_matches_reference_all_sizes(isa, name, n):
    rng = np.random.default_rng(n)
    dt, _, qmin, qmax = QTYPES[name]
    for zp in (qmin, 0 if qmin < 0 else 1, (qmin + qmax) // 2, (qmin + qmax) // 2 + 1, qmax):
        x = tie_data(n, 0.37, rng, spread=(qmax - qmin) // 2 + 4)
        q = quantize(x, 0.37, zp, dtype=dt)
        np.testing.assert_array_equal(q, ref_quantize(x, 0.37, zp, name))
        d = dequantize(q, 0.37, zp)
        assert bits_equal(d, ref_dequantize(q, 0.37, zp))


@pytest.mark.parametrize("name", list(QTYPES))
def test_specials(isa, name):
    dt, _, qmin, qmax = QTYPES[name]
    sp = np.concatenate([float32_specials(), np.float32([3e9, -3e9, 1e30, -1e30])])
    for n_pad in (0, 5, 40):  # specials in the vector body and in the tail
        x = np.concatenate([np.zeros(n_pad, np.float32), sp])
        for zp in (qmin, 0 if qmin < 0 else 3, qmax):
            q = quantize(x, 0.5, zp, dtype=dt)
            np.testing.assert_array_equal(q, ref_quantize(x, 0.5, zp, name))
            qa = quantize(x.reshape(1, -1), [0.5], [zp], dtype=dt, axis=0)
            np.testing.assert_array_equal(qa[0], ref_quantize(x, 0.5, zp, name, axis=None)
                                          if name in ("uint4", "int4")
                                          else ref_quantize(x[None], [0.5], [zp], name, 0)[0])


def test_nan_conventions():
    x = np.full(40, np.nan, np.float32)
    assert (quantize(x, 1.0, 10, dtype=np.uint8) == 255).all()  # per tensor: qmax
    assert (quantize(x, 1.0, -10, dtype=np.int8) == 127).all()
    assert (quantize(x[None], [1.0], [10], dtype=np.uint8, axis=0) == 0).all()  # per axis: 0
    assert (quantize(x, 1.0, 3, dtype="uint4") == 0).all()
    assert (quantize(x, 1.0, 3, dtype="int4") == 0).all()


def test_negative_zero_and_constant():
    x = np.array([-0.0, 0.0] * 20, np.float32)
    assert (quantize(x, 0.1, 7, dtype=np.uint8) == 7).all()
    d = dequantize(quantize(x, 0.1, 7, dtype=np.uint8), 0.1, 7)
    assert bits_equal(d, np.zeros(40, np.float32))  # +0.0, as torch


@pytest.mark.parametrize("name", list(QTYPES))
@pytest.mark.parametrize(
    "shape,axis",
    [((5, 37), 0), ((5, 37), 1), ((5, 37), -1), ((3, 4, 17), 0), ((3, 4, 17), 1),
     ((3, 4, 17), 2), ((3, 4, 17), -1), ((2, 70, 33), 1), ((1, 9), 0), ((0, 3), 1)],
)
def test_per_axis_reference(isa, name, shape, axis):
    rng = np.random.default_rng(len(shape) * 100 + axis)
    dt, _, qmin, qmax = QTYPES[name]
    C = shape[axis]
    scale = rng.uniform(0.01, 1, C).astype(np.float32)
    zp = rng.integers(qmin, qmax + 1, C)
    bshape = [1] * len(shape)
    bshape[axis] = C
    x = (rng.standard_normal(shape) * scale.reshape(bshape) * (qmax - qmin) / 4).astype(np.float32)
    k = rng.integers(-(qmax - qmin), qmax - qmin, shape)
    ties = ((k + 0.5) * scale.reshape(bshape)).astype(np.float32)
    x = np.where(rng.random(shape) < 0.4, ties, x).astype(np.float32)
    if x.size:
        x.flat[::11] = np.nan
    q = quantize(x, scale, zp, dtype=dt, axis=axis)
    np.testing.assert_array_equal(q, ref_quantize(x, scale, zp, name, axis=axis % len(shape)))
    d = dequantize(q, scale, zp, axis=axis)
    assert bits_equal(d, ref_dequantize(q, scale, zp, axis=axis % len(shape)))


def test_isa_paths_agree_large():
    from lowprec import _dispatch

    rng = np.random.default_rng(5)
    x = tie_data(200_003, 0.05, rng)
    x[::997] = np.nan
    results = []
    for isa in _dispatch.available_isas()[:2]:
        with _dispatch.use_isa(isa):
            results.append((quantize(x, 0.05, 3, dtype=np.int8),
                            quantize(x.reshape(-1, 1), [0.05], [3], dtype=np.int8, axis=1),
                            dequantize(quantize(x, 0.05, 3, dtype=np.uint8), 0.05, 3)))
    for r in results[1:]:
        for a, b in zip(results[0], r):
            if a.dtype == np.float32:
                assert bits_equal(a, b)
            else:
                np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------
# torch parity


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    warnings.filterwarnings("ignore", message=".*deprecated.*", category=UserWarning)
    return torch


@pytest.mark.parametrize("n", [1, 7, 8, 31, 32, 33, 1000, 65536 + 77, 300_001])
def test_torch_per_tensor(torch, isa, n):
    rng = np.random.default_rng(n)
    for tdt, npdt, qmin, qmax in ((torch.quint8, np.uint8, 0, 255), (torch.qint8, np.int8, -128, 127)):
        for zp in (qmin, qmin + 1, 0 if qmin else 128, 1 if qmin else 127, qmax):
            s = float(np.float32(rng.uniform(1e-3, 1)))
            x = tie_data(n, s, rng)
            x[:: max(1, n // 7)] = rng.choice(float32_specials(), size=len(x[:: max(1, n // 7)]))
            qt = torch.quantize_per_tensor(torch.from_numpy(x), s, zp, tdt)
            q = quantize(x, s, zp, dtype=npdt)
            np.testing.assert_array_equal(q, qt.int_repr().numpy())
            assert bits_equal(dequantize(q, s, zp), qt.dequantize().numpy())


@pytest.mark.parametrize("shape,axis", [((5, 37), 0), ((5, 37), 1), ((3, 4, 17), 1),
                                        ((3, 4, 17), 2), ((64, 64), 0), ((7, 10000), 0),
                                        ((10000, 9), 1)])
def test_torch_per_channel(torch, isa, shape, axis):
    rng = np.random.default_rng(sum(shape) + axis)
    for tdt, npdt, qmin, qmax in ((torch.quint8, np.uint8, 0, 255), (torch.qint8, np.int8, -128, 127)):
        C = shape[axis]
        s = rng.uniform(1e-3, 1, C).astype(np.float32)
        zp = rng.integers(qmin, qmax + 1, C)
        bshape = [1] * len(shape)
        bshape[axis] = C
        x = (rng.standard_normal(shape) * s.reshape(bshape) * 60).astype(np.float32)
        k = rng.integers(-300, 300, shape)
        x = np.where(rng.random(shape) < 0.3, ((k + 0.5) * s.reshape(bshape)).astype(np.float32), x)
        x = x.astype(np.float32)
        x.flat[::13] = np.nan
        x.flat[1::17] = np.inf
        x.flat[2::19] = -np.inf
        qt = torch.quantize_per_channel(torch.from_numpy(x), torch.from_numpy(s.astype(np.float64)),
                                        torch.from_numpy(zp), axis, tdt)
        q = quantize(x, s, zp, dtype=npdt, axis=axis)
        np.testing.assert_array_equal(q, qt.int_repr().numpy())
        assert bits_equal(dequantize(q, s, zp, axis=axis), qt.dequantize().numpy())


@pytest.mark.parametrize("n", [2, 8, 64, 1000, 65536 + 2])
def test_torch_quint4x2(torch, isa, n):
    rng = np.random.default_rng(n)
    for zp in (0, 1, 8, 15):
        s = float(np.float32(rng.uniform(1e-3, 1)))
        x = tie_data(n, s, rng, spread=20)
        x[0] = np.nan  # (torch's ±inf / huge values are inconsistent for quint4x2: not compared)
        qt = torch.quantize_per_tensor(torch.from_numpy(x), s, zp, torch.quint4x2)
        b = qt.int_repr().numpy()
        t = np.empty(n, np.uint8)
        t[0::2], t[1::2] = b & 15, b >> 4
        q = quantize(x, s, zp, dtype="uint4")
        np.testing.assert_array_equal(q, t)
        assert bits_equal(dequantize(q, s, zp), qt.dequantize().numpy())


def test_torch_choose_qparams(torch):
    rng = np.random.default_rng(0)
    for t in range(400):
        r = rng.uniform(0.001, 1) * 10.0 ** rng.integers(-9, 3)
        k = int(rng.integers(-5, 260))
        x = np.array([-(k + 0.5) * r, (255 - k - 0.5) * r], np.float32)
        if t % 5 == 0:
            x = (rng.standard_normal(20) * r + rng.uniform(-1, 1) * r * 10).astype(np.float32)
        for rr in (False, True):
            s, z = torch._choose_qparams_per_tensor(torch.from_numpy(x), rr)
            ms, mz = choose_qparams(x, reduce_range=rr)
            assert mz == z and ms == float(np.float32(s)), (x, rr)
    for c in ([0, 0], [1e-30, 2e-30], [-1e-6, 1e-6], [5, 5], [-3, -3], [0, 1e-6], [-1e-6, 0]):
        x = np.array(c, np.float32)
        s, z = torch._choose_qparams_per_tensor(torch.from_numpy(x), False)
        assert choose_qparams(x) == (float(np.float32(s)), z)


def test_torch_observers_symmetric(torch):
    from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

    rng = np.random.default_rng(1)
    for t in range(60):
        x = (rng.standard_normal((6, 10)) * 10.0 ** rng.uniform(-9, 3)).astype(np.float32)
        if t % 4 == 0:
            x = np.abs(x)
        for npdt, tdt in ((np.int8, torch.qint8), (np.uint8, torch.quint8)):
            o = MinMaxObserver(dtype=tdt, qscheme=torch.per_tensor_symmetric)
            o(torch.from_numpy(x))
            s, z = o.calculate_qparams()
            assert choose_qparams(x, dtype=npdt, symmetric=True) == (s.item(), z.item())
            for axis in (0, 1):
                o = PerChannelMinMaxObserver(ch_axis=axis, dtype=tdt,
                                             qscheme=torch.per_channel_symmetric)
                o(torch.from_numpy(x))
                s, z = o.calculate_qparams()
                ms, mz = choose_qparams(x, dtype=npdt, symmetric=True, axis=axis)
                np.testing.assert_array_equal(ms, s.numpy().astype(np.float32))
                np.testing.assert_array_equal(mz, z.numpy())


# ---------------------------------------------------------------------------------------------
# choose_qparams


def test_choose_qparams_properties():
    x = np.array([-1.0, 2.0], np.float32)
    for name, (dt, _, qmin, qmax) in QTYPES.items():
        s, z = choose_qparams(x, dtype=dt)
        assert isinstance(s, float) and isinstance(z, int) and qmin <= z <= qmax
        assert s == float(np.float32(s))
        s, z = choose_qparams(x, dtype=dt, reduce_range=True)
        lo, hi = int(qmin / 2), int(qmax / 2)
        assert lo <= z <= hi
        s, z = choose_qparams(x, dtype=dt, symmetric=True)
        assert z == (0 if qmin < 0 else (qmax + 1) // 2)
        q = quantize(np.float32([0.0]), s, z, dtype=dt)
        assert dequantize(q, s, z)[0] == 0  # 0 is exact
    s, z = choose_qparams(np.zeros(5, np.float32))
    assert (s, z) == (float(np.float32(0.1)), 0)
    s, z = choose_qparams(np.ones((3, 4), np.float32), axis=-1)
    assert s.dtype == np.float32 and z.dtype == np.int32 and s.shape == (4,)


@pytest.mark.parametrize("name", list(QTYPES))
@pytest.mark.parametrize("symmetric", [False, True])
def test_mse_never_worse(name, symmetric):
    rng = np.random.default_rng(3)
    dt = QTYPES[name][0]
    x = rng.standard_normal((4, 2000)).astype(np.float32)  # tails: clipping them pays
    for axis in (None, 0):
        s0, z0 = choose_qparams(x, dtype=dt, symmetric=symmetric, axis=axis)
        s1, z1 = choose_qparams(x, dtype=dt, symmetric=symmetric, axis=axis, method="mse")

        def err(s, z):
            d = dequantize(quantize(x, s, z, dtype=dt, axis=axis), s, z, axis=axis)
            e = (d.astype(np.float64) - x) ** 2
            return e.sum(axis=1) if axis == 0 else e.sum()

        assert np.all(err(s1, z1) <= err(s0, z0))
        if name in ("uint4", "int4"):  # coarse grids: clipping the tails pays
            assert np.any(err(s1, z1) < err(s0, z0))


def test_choose_qparams_errors():
    with pytest.raises(ValueError):
        choose_qparams(np.array([1.0, np.nan], np.float32))
    with pytest.raises(ValueError):
        choose_qparams(np.array([1.0, np.inf], np.float32))
    with pytest.raises(ValueError):
        choose_qparams(np.array([], np.float32))
    with pytest.raises(ValueError):
        choose_qparams(np.zeros((0, 3), np.float32), axis=1)
    with pytest.raises(np.exceptions.AxisError):
        choose_qparams(np.zeros((2, 3), np.float32), axis=2)
    with pytest.raises(TypeError):
        choose_qparams(np.zeros(3, np.int32))
    with pytest.raises(TypeError):
        choose_qparams(np.zeros(3, np.float32), dtype=np.int16)
    with pytest.raises(ValueError):
        choose_qparams(np.zeros(3, np.float32), method="kl")


# ---------------------------------------------------------------------------------------------
# Layouts, inputs never modified, out=, threads, concurrency


def test_layouts_and_memmap(tmp_path):
    rng = np.random.default_rng(9)
    a = tie_data(23 * 41, 0.2, rng).reshape(23, 41)
    expect = quantize(a, 0.2, 5, dtype=np.uint8)
    expect_ax = quantize(a, np.full(41, 0.2), np.full(41, 5), dtype=np.uint8, axis=1)
    for name, arr in layouts(a).items():
        before = arr.copy()
        np.testing.assert_array_equal(quantize(arr, 0.2, 5, dtype=np.uint8), expect, err_msg=name)
        np.testing.assert_array_equal(
            quantize(arr, np.full(41, 0.2), np.full(41, 5), dtype=np.uint8, axis=1), expect_ax)
        np.testing.assert_array_equal(arr, before)
        q = layouts(expect)[name]
        assert bits_equal(dequantize(q, 0.2, 5), dequantize(expect, 0.2, 5))
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=a.shape)
    mm[:] = a
    mm.flush()
    ro = np.load(tmp_path / "x.npy", mmap_mode="r")
    np.testing.assert_array_equal(quantize(ro, 0.2, 5, dtype=np.uint8), expect)
    # float64 / float16 inputs are rounded to float32 first
    np.testing.assert_array_equal(quantize(a.astype(np.float64), 0.2, 5, dtype=np.uint8), expect)
    # array-likes and 0-d
    assert quantize([1.0, 2.0], 0.5, 0, dtype=np.uint8).tolist() == [2, 4]
    assert quantize(np.float32(1.0), 0.5, 0, dtype=np.uint8).shape == ()


def test_ml_dtypes_int4():
    ml = pytest.importorskip("ml_dtypes")
    x = np.array([-9.0, -1.0, 3.0, 20.0], np.float32)
    q = quantize(x, 1.0, 0, dtype=ml.int4)
    assert q.dtype == ml.int4 and q.astype(int).tolist() == [-8, -1, 3, 7]
    assert dequantize(q, 1.0, 0).tolist() == [-8.0, -1.0, 3.0, 7.0]
    qu = quantize(x, 1.0, 8, dtype=ml.uint4)
    assert qu.dtype == ml.uint4 and qu.astype(int).tolist() == [0, 7, 11, 15]


def test_out():
    x = np.linspace(-3, 3, 100, dtype=np.float32).reshape(10, 10)
    out = np.empty((10, 10), np.int8)
    r = quantize(x, 0.1, 0, dtype=np.int8, out=out)
    assert r is out
    np.testing.assert_array_equal(out, quantize(x, 0.1, 0, dtype=np.int8))
    y = np.empty((10, 10), np.float32)
    assert dequantize(out, 0.1, 0, out=y) is y
    sentinel = np.full((10, 10), 77, np.int8)
    bad_outs = [
        (np.empty((10, 10), np.uint8), TypeError),
        (np.empty((10, 11), np.int8), ValueError),
        (np.empty((10, 20), np.int8)[:, ::2], ValueError),
        ([0] * 100, TypeError),
    ]
    ro = sentinel.copy()
    ro.setflags(write=False)
    bad_outs.append((ro, ValueError))
    for o, exc in bad_outs:
        with pytest.raises(exc):
            quantize(x, 0.1, 0, dtype=np.int8, out=o)
    # overlapping out (out aliases the input's memory)
    xs = np.zeros(40, np.float32)
    with pytest.raises(ValueError):
        quantize(xs, 1.0, 0, dtype=np.int8, out=xs.view(np.int8)[:40])
    qs = np.zeros(400, np.uint8)
    with pytest.raises(ValueError):
        dequantize(qs[:40], 1.0, 0, out=qs[:160].view(np.float32))
    # a failing call does not write
    s = sentinel.copy()
    with pytest.raises(ValueError):
        quantize(x, -1.0, 0, dtype=np.int8, out=s)
    np.testing.assert_array_equal(s, sentinel)


def test_bad_parameters():
    x = np.ones((3, 4), np.float32)
    for scale in (0.0, -1.0, np.nan, np.inf, 1e-45, 1e-39):
        with pytest.raises(ValueError):
            quantize(x, scale, 0, dtype=np.uint8)
        with pytest.raises(ValueError):
            dequantize(np.zeros(3, np.uint8), scale, 0)
    for zp, dt in ((256, np.uint8), (-1, np.uint8), (128, np.int8), (16, "uint4"), (-9, "int4")):
        with pytest.raises(ValueError):
            quantize(x, 1.0, zp, dtype=dt)
    with pytest.raises(ValueError):
        dequantize(np.zeros(3, np.int8), 1.0, 128)
    with pytest.raises(TypeError):
        quantize(x, 1.0, 0.5, dtype=np.uint8)
    with pytest.raises(TypeError):
        quantize(x.astype(np.int32), 1.0, 0, dtype=np.uint8)
    with pytest.raises(TypeError):
        quantize(x, 1.0, 0, dtype=np.int16)
    with pytest.raises(TypeError):
        dequantize(np.zeros(3, np.int16), 1.0, 0)
    with pytest.raises(ValueError):
        quantize(x, [1.0, 1.0], 0, dtype=np.uint8)  # array without axis
    with pytest.raises(ValueError):
        quantize(x, [1.0] * 3, [0] * 4, dtype=np.uint8, axis=1)
    with pytest.raises(ValueError):
        quantize(x, 1.0, 0, dtype=np.uint8, axis=1)  # scalar with axis
    with pytest.raises(ValueError):
        quantize(x, [1.0, 0.0, 1.0, 1.0], [0] * 4, dtype=np.uint8, axis=1)
    with pytest.raises(np.exceptions.AxisError):
        quantize(x, [1.0] * 4, [0] * 4, dtype=np.uint8, axis=2)
    with pytest.raises(np.exceptions.AxisError):
        dequantize(np.zeros((3, 4), np.uint8), [1.0] * 4, [0] * 4, axis=-3)


def test_thread_count_agnostic():
    rng = np.random.default_rng(2)
    x = tie_data(3 * 65536 + 123, 0.01, rng)
    x2 = x[: 3 * 65536].reshape(-1, 48)
    s2 = rng.uniform(0.005, 0.02, 48).astype(np.float32)
    ref = quantize(x, 0.01, 7, dtype=np.uint8, n_threads=1)
    ref2 = quantize(x2, s2, np.arange(48), dtype=np.int8, axis=1, n_threads=1)
    refd = dequantize(ref, 0.01, 7, n_threads=1)
    for nt in (2, 3, 8):
        np.testing.assert_array_equal(quantize(x, 0.01, 7, dtype=np.uint8, n_threads=nt), ref)
        np.testing.assert_array_equal(
            quantize(x2, s2, np.arange(48), dtype=np.int8, axis=1, n_threads=nt), ref2)
        assert bits_equal(dequantize(ref, 0.01, 7, n_threads=nt), refd)


def test_concurrent_calls():
    rng = np.random.default_rng(4)
    x = tie_data(300_000, 0.02, rng)
    x.setflags(write=False)
    expect = quantize(x, 0.02, 3, dtype=np.int8)
    errors = []

    def work():
        try:
            for _ in range(5):
                if not np.array_equal(quantize(x, 0.02, 3, dtype=np.int8, n_threads=2), expect):
                    errors.append("mismatch")
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# ---------------------------------------------------------------------------------------------
# Properties


@settings(max_examples=60, deadline=None)
@given(
    vals=st.lists(st.floats(-1e4, 1e4, width=32), min_size=1, max_size=200),
    name=st.sampled_from(list(QTYPES)),
    symmetric=st.booleans(),
)
def test_roundtrip_within_half_scale(vals, name, symmetric):
    x = np.array(vals, np.float32)
    dt, _, qmin, qmax = QTYPES[name]
    s, z = choose_qparams(x, dtype=dt, symmetric=symmetric)
    d = dequantize(quantize(x, s, z, dtype=dt), s, z)
    lo, hi = (qmin - z) * np.float64(s), (qmax - z) * np.float64(s)
    inside = (x >= lo) & (x <= hi)
    err = np.abs(d.astype(np.float64) - x)
    # half a step, plus the float32 rounding of the product and of x * inv
    tol = np.float64(s) / 2 * (1 + 1e-5) + np.abs(x) * 2e-7
    assert np.all(err[inside] <= tol[inside])
    np.testing.assert_array_equal(quantize(x, s, z, dtype=dt), ref_quantize(x, s, z, name))


@settings(max_examples=40, deadline=None)
@given(
    q=st.lists(st.integers(0, 255), min_size=1, max_size=100),
    scale=st.floats(float(np.float32(1e-6)), 1e3, width=32),
    zp=st.integers(0, 255),
)
def test_dequantize_property(q, scale, zp):
    q = np.array(q, np.uint8)
    assert bits_equal(dequantize(q, scale, zp), ref_dequantize(q, scale, zp))
