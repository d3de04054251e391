"""Tests of lowprec.rowwise: row-wise quantized embedding tables (formats.md section 2).

Independent references: a NumPy float32 implementation of formats.md 2a/2b written here (fp16
rounding by numpy.float16), PyTorch's prepack/unpack operators (skipped without torch), and the
test vectors of formats.md.
"""

import pickle
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hard_cases import SIZES, all_float32_sample, layouts, rowwise_edge_rows
from lowprec import _dispatch
from lowprec._kernels import _rowwise
from lowprec.rowwise import RowwiseQuantizedTable, fused_row_bytes, quantize_rowwise

F32 = np.float32
FLT_MAX = np.finfo(F32).max
DIMS = (1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 127, 128, 129, 163)


# ---------------------------------------------------------------------------------------------
# NumPy reference (float32 arithmetic throughout)


def ref_minmax(x):
    """Row min/max chosen in FBGEMM's AVX2 order (8 lanes of minps/maxps, then std::min/max).

    The order only matters for the sign of a zero extremum, which 8-bit rows store in the bias.
    """
    r, d = x.shape
    body = d // 8 * 8
    mn = np.full((r, 8), FLT_MAX, F32)
    mx = np.full((r, 8), -FLT_MAX, F32)
    for j in range(0, body, 8):
        v = x[:, j : j + 8]
        mn = np.where(mn < v, mn, v)
        mx = np.where(mx > v, mx, v)
    lo = np.full(r, FLT_MAX, F32)
    hi = np.full(r, -FLT_MAX, F32)
    for lane in range(8):
        lo = np.where(mn[:, lane] < lo, mn[:, lane], lo)
        hi = np.where(hi < mx[:, lane], mx[:, lane], hi)
    for j in range(body, d):
        v = x[:, j]
        lo = np.where(v < lo, v, lo)
        hi = np.where(hi < v, v, hi)
    return lo, hi


def _round_clip(v, qmax):
    with np.errstate(invalid="ignore"):
        q = np.rint(v)
        q = np.where(np.isnan(q), 0, q)
        return np.clip(q, 0, qmax).astype(np.uint8)


def ref_quantize8(x):
    x = np.asarray(x, F32)
    lo, hi = ref_minmax(x)
    with np.errstate(over="ignore", invalid="ignore"):
        rng = hi - lo
        scale = rng / F32(255)
        inv = F32(255) / (rng + F32(1e-8))
        codes = _round_clip((x - lo[:, None]) * inv[:, None], 255)
    return np.concatenate(
        [codes, scale[:, None].view(np.uint8), lo[:, None].view(np.uint8)], axis=1
    ).reshape(x.shape[0], -1)


def ref_params(lo, hi, bits):
    """formats.md 2b parameters of the ranges [lo, hi] (arrays)."""
    qmax = F32((1 << bits) - 1)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        min16 = lo.astype(np.float16)
        min_h = min16.astype(F32)
        rng = hi - min_h
        scale = np.where(rng == 0, F32(1), rng / qmax).astype(F32)
        scale = scale.astype(np.float16).astype(F32)
        scale = np.where(scale == 0, F32(1), scale)
        inv = F32(1) / scale
        fix = np.isinf(inv)
        scale = np.where(fix, F32(1), scale)
        inv = np.where(fix, F32(1), inv)
    return min_h, min16, scale, inv


def ref_encode_nbit(x, bits, min_h, min16, scale, inv):
    r, d = x.shape
    qmax = (1 << bits) - 1
    per = 8 // bits
    with np.errstate(over="ignore", invalid="ignore"):
        codes = _round_clip((x - min_h[:, None]) * inv[:, None], qmax)
    nb = -(-d // per)
    padded = np.zeros((r, nb * per), np.uint8)
    padded[:, :d] = codes
    packed = np.zeros((r, nb), np.uint8)
    for k in range(per):
        packed |= padded[:, k::per] << np.uint8(k * bits)
    return np.concatenate(
        [packed, scale.astype(np.float16)[:, None].view(np.uint8), min16[:, None].view(np.uint8)],
        axis=1,
    )


def ref_quantize_nbit(x, bits):
    x = np.asarray(x, F32)
    lo, hi = ref_minmax(x)
    return ref_encode_nbit(x, bits, *ref_params(lo, hi, bits))


def ref_quantize(x, bits):
    return ref_quantize8(x) if bits == 8 else ref_quantize_nbit(x, bits)


def ref_greedy(x, bits, n_bins=200, ratio=0.16):
    """A straightforward NumPy version of formats.md 2d (lock-step over rows, float64 loss)."""
    x = np.asarray(x, F32)
    xmin, xmax = ref_minmax(x)

    def loss(lo, hi):
        min_h, _, scale, inv = ref_params(lo, hi, bits)
        qmax = (1 << bits) - 1
        with np.errstate(over="ignore", invalid="ignore"):
            q = _round_clip((x - min_h[:, None]) * inv[:, None], qmax).astype(np.float64)
        xh = q * scale[:, None].astype(np.float64) + min_h[:, None]
        return ((x - xh.astype(F32)).astype(np.float64) ** 2).sum(1)

    min_bins = int(n_bins * (1.0 - float(F32(ratio))))
    step = ((xmax - xmin) / F32(n_bins)).astype(F32)
    thr = (F32(min_bins) * step).astype(F32)
    best = loss(xmin, xmax)
    best_lo, best_hi = xmin.copy(), xmax.copy()
    cur_lo, cur_hi, cur = xmin.copy(), xmax.copy(), best.copy()
    for _ in range(n_bins):
        active = (cur_lo + thr) < cur_hi
        if not active.any():
            break
        l1 = loss((cur_lo + step).astype(F32), cur_hi)
        l2 = loss(cur_lo, (cur_hi - step).astype(F32))
        rec = active & (cur < l1) & (cur < l2) & (cur < best)
        best = np.where(rec, cur, best)
        best_lo = np.where(rec, cur_lo, best_lo)
        best_hi = np.where(rec, cur_hi, best_hi)
        left = l1 < l2
        cur_lo = np.where(active & left, cur_lo + step, cur_lo).astype(F32)
        cur_hi = np.where(active & ~left, cur_hi - step, cur_hi).astype(F32)
        cur = np.where(active, np.where(left, l1, l2), cur)
    return ref_encode_nbit(x, bits, *ref_params(best_lo, best_hi, bits))


def sq_err(table, x):
    return ((table.dequantize().astype(np.float64) - np.asarray(x, np.float64)) ** 2).sum(1)


def hard_table(rows, dim, seed=0):
    """Random rows with per-row magnitudes from 1e-30 to 1e30 plus special rows."""
    rng = np.random.default_rng(seed)
    mags = 10.0 ** rng.integers(-30, 31, size=(rows, 1))
    x = (rng.standard_normal((rows, dim)) * mags).astype(F32)
    specials = list(rowwise_edge_rows(dim)) + [
        -np.abs(x[min(4, rows - 1)]),  # negative only
        np.abs(x[min(5, rows - 1)]) + 1.0,
    ]
    for i, s in enumerate(specials[:rows]):
        x[i] = s
    if rows > 20 and dim > 1:
        x[15, 0] = -0.0
        x[16, -1] = -0.0
        x[17, :] = 5.0
        x[17, dim // 2] = 0.0
    return x


# ---------------------------------------------------------------------------------------------
# Formats and test vectors


def test_test_vectors(isa):
    t = quantize_rowwise(np.array([[10, 20]], F32), bits=8)
    assert t.data.tolist() == [[0, 255, 161, 160, 32, 61, 0, 0, 32, 65]]
    t4 = quantize_rowwise(np.arange(8, dtype=F32)[None], bits=4)
    assert t4.codes.tolist() == [[0, 2, 4, 6, 9, 11, 13, 15]]
    assert t4.data.tolist() == [[0x20, 0x64, 0xB9, 0xFD, 0x77, 0x37, 0x00, 0x00]]


def test_fused_row_bytes():
    assert fused_row_bytes(128, 8) == 136
    assert fused_row_bytes(128, 4) == 68
    assert fused_row_bytes(128, 2) == 36
    assert fused_row_bytes(7, 4) == 8
    assert fused_row_bytes(7, 2) == 6


def test_f32_to_f16_matches_numpy(isa):
    x = np.concatenate([all_float32_sample(1 << 18, seed=3), np.float32([65504, 65519.996, 65520,
                        2.0 ** -25, 2.0 ** -25 * 1.0000001, 2.0 ** -24 * 1.5, 2.0 ** -14 * 0.99])])
    x = x.astype(F32)
    got = np.empty(x.size, np.uint16)
    _rowwise.f32_to_f16(x, got)
    with np.errstate(over="ignore"):
        want = x.astype(np.float16).view(np.uint16)
    finite = ~np.isnan(x)
    np.testing.assert_array_equal(got[finite], want[finite])
    assert np.isnan(got[~finite].view(np.float16)).all()


@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("dim", DIMS)
def test_matches_numpy_reference(isa, bits, dim):
    x = hard_table(40, dim, seed=dim)
    got = quantize_rowwise(x, bits=bits)
    np.testing.assert_array_equal(got.data, ref_quantize(x, bits))
    assert got.shape == (40, dim) and got.dim == dim and got.bits == bits
    assert got.data.shape == (40, fused_row_bytes(dim, bits))


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_zero_rows(bits):
    t = quantize_rowwise(np.zeros((0, 5), F32), bits=bits)
    assert len(t) == 0 and t.shape == (0, 5)
    assert t.dequantize().shape == (0, 5)
    assert t.scale.shape == (0,)


# ---------------------------------------------------------------------------------------------
# PyTorch parity


def _torch_prepack(torch, bits):
    q = torch.ops.quantized
    return {8: q.embedding_bag_byte_prepack, 4: q.embedding_bag_4bit_prepack,
            2: q.embedding_bag_2bit_prepack}[bits]


@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("dim", [16, 64, 128, 136])
def test_torch_prepack_parity(isa, bits, dim):
    torch = pytest.importorskip("torch")
    x = hard_table(5000, dim, seed=bits * 1000 + dim)
    ref = _torch_prepack(torch, bits)(torch.from_numpy(x)).numpy()
    got = quantize_rowwise(x, bits=bits, n_threads=2)
    np.testing.assert_array_equal(got.data, ref)


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_torch_odd_dims_8bit_and_multiples(isa, bits):
    torch = pytest.importorskip("torch")
    per = 1 if bits == 8 else 8 // bits
    for dim in [d for d in DIMS if d % per == 0]:
        x = hard_table(64, dim, seed=dim)
        ref = _torch_prepack(torch, bits)(torch.from_numpy(x)).numpy()
        np.testing.assert_array_equal(quantize_rowwise(x, bits=bits).data, ref)


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_dequantize_matches_torch_unpack(bits):
    torch = pytest.importorskip("torch")
    x = hard_table(2000, 64, seed=7)[20:]  # finite, non-overflowing rows
    t = quantize_rowwise(x, bits=bits)
    q = torch.ops.quantized
    unpack = {8: q.embedding_bag_byte_unpack, 4: q.embedding_bag_4bit_unpack,
              2: q.embedding_bag_2bit_unpack}[bits]
    want = unpack(torch.from_numpy(np.array(t.data))).numpy()
    np.testing.assert_array_equal(t.dequantize().view(np.uint32), want.view(np.uint32))


def test_from_fused_accepts_torch_data():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).standard_normal((100, 32)).astype(F32)
    packed = torch.ops.quantized.embedding_bag_4bit_prepack(torch.from_numpy(x))
    t = RowwiseQuantizedTable.from_fused(packed, bits=4, dim=32)
    np.testing.assert_array_equal(t.data, quantize_rowwise(x, bits=4).data)


# ---------------------------------------------------------------------------------------------
# Greedy search


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize("dim", [1, 3, 8, 17, 64, 128, 129])
def test_greedy_never_worse_than_minmax(isa, bits, dim):
    x = np.random.default_rng(dim).standard_normal((300, dim)).astype(F32)
    x[:20] = hard_table(20, dim, seed=1)[:20]
    # rows whose bias or scale overflow fp16 have a NaN/inf error either way
    x = x[np.isfinite(x).all(1) & (np.abs(x).max(1) < 3e4)]
    g = quantize_rowwise(x, bits=bits, method="greedy")
    m = quantize_rowwise(x, bits=bits)
    eg, em = sq_err(g, x), sq_err(m, x)
    bad = ~(eg <= em * (1 + 1e-5) + 1e-30)
    assert not bad.any(), (x[bad], g.data[bad], m.data[bad], eg[bad], em[bad])
    assert eg.sum() <= em.sum()


@pytest.mark.parametrize("bits", [4, 2])
def test_greedy_close_to_numpy_search(bits):
    rng = np.random.default_rng(bits)
    x = rng.standard_normal((400, 64)).astype(F32) * rng.uniform(0.01, 10, (400, 1)).astype(F32)
    got = quantize_rowwise(x, bits=bits, method="greedy")
    want = ref_greedy(x, bits)
    same = (got.data == want).all(1).mean()
    assert same >= 0.97, same
    ew = sq_err(RowwiseQuantizedTable(want, bits, 64), x).sum()
    assert abs(sq_err(got, x).sum() - ew) <= 1e-3 * ew


@pytest.mark.parametrize("dim", [5, 37, 128])
def test_greedy_isa_and_thread_agnostic(dim):
    x = np.random.default_rng(5).standard_normal((3000, dim)).astype(F32)
    x[:300] = hard_table(300, dim, seed=dim)
    outs = []
    for isa in _dispatch.available_isas():
        with _dispatch.use_isa(isa):
            for nt in (1, 2):
                outs.append(quantize_rowwise(x, bits=4, method="greedy", n_threads=nt).data)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_greedy_loss_kernels_agree():
    x = np.random.default_rng(9).standard_normal(77).astype(F32)
    vals = []
    for isa in _dispatch.available_isas():
        with _dispatch.use_isa(isa):
            vals.append([_rowwise.nbit_loss(x, 4, lo, hi) for lo, hi in [(-1.0, 1.0), (-2.5, 0.3), (x.min(), x.max())]])
    assert all(v == vals[0] for v in vals)
    # and it is the deployed squared error
    m = quantize_rowwise(x[None], bits=4)
    assert vals[0][2] == pytest.approx(sq_err(m, x[None])[0], rel=1e-5)


def test_greedy_torch_error_comparison():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(11).standard_normal((500, 64)).astype(F32)
    ref = torch.ops.quantized.embedding_bag_4bit_prepack(torch.from_numpy(x), optimized_qparams=True)
    rt = RowwiseQuantizedTable.from_fused(ref, bits=4, dim=64)
    g = quantize_rowwise(x, bits=4, method="greedy")
    assert sq_err(g, x).sum() <= sq_err(rt, x).sum() * (1 + 1e-6)
    assert (g.data == rt.data).all(1).mean() >= 0.95


def test_greedy_saturates_clipped_codes():
    x = np.concatenate([np.linspace(-1, 1, 63, dtype=F32), np.float32([40.0])])[None]
    g = quantize_rowwise(x, bits=4, method="greedy")
    assert g.codes.max() == 15


# ---------------------------------------------------------------------------------------------
# Must-not-matter: threads, ISA, layouts, dtypes, memory maps


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_thread_and_isa_agnostic(bits):
    x = hard_table(3000, 45, seed=2)
    outs = []
    for isa in _dispatch.available_isas():
        with _dispatch.use_isa(isa):
            for nt in (1, 2, 3):
                outs.append(quantize_rowwise(x, bits=bits, n_threads=nt).data)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


@pytest.mark.parametrize("bits", [8, 4])
def test_layouts(bits):
    x = hard_table(50, 19, seed=4)
    want = ref_quantize(x, bits)
    for name, a in layouts(x).items():
        before = a.copy()
        np.testing.assert_array_equal(quantize_rowwise(a, bits=bits).data, want, err_msg=name)
        np.testing.assert_array_equal(a, before)


def test_other_float_dtypes():
    import ml_dtypes

    x = np.random.default_rng(0).standard_normal((30, 24))
    for dt in (np.float16, np.float64, ml_dtypes.bfloat16):
        a = x.astype(dt)
        np.testing.assert_array_equal(
            quantize_rowwise(a, bits=4).data, quantize_rowwise(a.astype(F32), bits=4).data
        )
    lst = x.tolist()  # array-likes
    np.testing.assert_array_equal(quantize_rowwise(lst).data, quantize_rowwise(x.astype(F32)).data)


def test_memmap_table_in_blocks(tmp_path, monkeypatch):
    import lowprec.rowwise as rw

    x = hard_table(1000, 33, seed=8)
    path = tmp_path / "t.f32"
    x.tofile(path)
    mm = np.memmap(path, dtype=F32, mode="r", shape=x.shape)
    monkeypatch.setattr(rw, "_BLOCK_BYTES", 33 * 4 * 37)  # force many blocks
    for bits in (8, 2):
        np.testing.assert_array_equal(quantize_rowwise(mm, bits=bits).data, ref_quantize(x, bits))
    # float64 on disk: converted block by block
    path64 = tmp_path / "t.f64"
    x.astype(np.float64).tofile(path64)
    mm64 = np.memmap(path64, dtype=np.float64, mode="r", shape=x.shape)
    np.testing.assert_array_equal(quantize_rowwise(mm64, bits=4).data, ref_quantize(x, 4))
    g = quantize_rowwise(mm[::2], bits=4, method="greedy")
    np.testing.assert_array_equal(g.data, quantize_rowwise(x[::2], bits=4, method="greedy").data)


def test_concurrent_calls():
    x = np.random.default_rng(3).standard_normal((4000, 40)).astype(F32)
    want = {b: quantize_rowwise(x, bits=b).data for b in (8, 4)}
    wantg = quantize_rowwise(x, bits=2, method="greedy").data
    errors = []

    def work(i):
        try:
            for _ in range(3):
                for b in (8, 4):
                    assert np.array_equal(quantize_rowwise(x, bits=b, n_threads=1 + i % 2).data, want[b])
                assert np.array_equal(quantize_rowwise(x, bits=2, method="greedy").data, wantg)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


# ---------------------------------------------------------------------------------------------
# The table object


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_table_object(bits):
    x = np.random.default_rng(bits).standard_normal((100, 13)).astype(F32)
    t = quantize_rowwise(x, bits=bits)
    assert len(t) == 100 and t.nbytes == t.data.nbytes == 100 * fused_row_bytes(13, bits)
    assert not t.data.flags.writeable
    assert t.scale.dtype == F32 and t.bias.dtype == F32 and t.scale.shape == (100,)
    np.testing.assert_array_equal(t.bias, x.min(1) if bits == 8 else x.min(1).astype(np.float16).astype(F32))
    assert t.codes.shape == (100, 13) and t.codes.max() <= (1 << bits) - 1
    deq = t.dequantize()
    assert deq.dtype == F32 and deq.shape == x.shape
    if bits == 8:
        np.testing.assert_allclose(deq, t.codes.astype(F32) * t.scale[:, None] + t.bias[:, None], rtol=0, atol=1e-6)
        assert np.shares_memory(t.scale, t.data)
    rows = np.array([5, 0, 99, 5])
    np.testing.assert_array_equal(t.dequantize(rows=rows), deq[rows])
    np.testing.assert_array_equal(t.dequantize(rows=rows.astype(np.int32)), deq[rows])
    with pytest.raises(IndexError, match=r"rows\[1\] = 100"):
        t.dequantize(rows=[3, 100])
    with pytest.raises(IndexError):
        t.dequantize(rows=[-1])
    r = repr(t)
    assert "\n" not in r and "(100, 13)" in r and f"bits={bits}" in r and "smaller than fp32" in r
    assert "<table" in t._repr_html_()
    u = pickle.loads(pickle.dumps(t))
    assert isinstance(u, RowwiseQuantizedTable) and u.bits == bits and u.dim == 13
    np.testing.assert_array_equal(u.data, t.data)
    assert not u.data.flags.writeable
    np.testing.assert_array_equal(u.dequantize(), deq)
    v = RowwiseQuantizedTable.from_fused(t.data, bits, 13)
    np.testing.assert_array_equal(v.dequantize(), deq)
    w = RowwiseQuantizedTable.from_fused(np.array(t.data), bits, 13, copy=True)
    np.testing.assert_array_equal(w.codes, t.codes)


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize("dim", [1, 3, 5, 7, 9])
def test_odd_dims_pad_with_zero_bits(bits, dim):
    x = np.random.default_rng(dim).standard_normal((20, dim)).astype(F32) + 3
    t = quantize_rowwise(x, bits=bits)
    per = 8 // bits
    if dim % per:
        last = t.data[:, -(4 + 1)]
        used = (dim % per) * bits
        assert np.all(last >> used == 0)
    np.testing.assert_array_equal(t.data, ref_quantize_nbit(x, bits))


# ---------------------------------------------------------------------------------------------
# Bad input


def test_errors():
    x = np.ones((4, 8), F32)
    with pytest.raises(TypeError):
        quantize_rowwise(x.astype(np.int32))
    with pytest.raises(TypeError):
        quantize_rowwise(x.astype(np.complex64))
    with pytest.raises(ValueError, match="2-D"):
        quantize_rowwise(np.ones(8, F32))
    with pytest.raises(ValueError, match="2-D"):
        quantize_rowwise(np.ones((2, 2, 2), F32))
    with pytest.raises(ValueError, match="column"):
        quantize_rowwise(np.ones((3, 0), F32))
    for bad in (1, 3, 16):
        with pytest.raises(ValueError, match="bits"):
            quantize_rowwise(x, bits=bad)
    for bad in (8.0, True, "8", None):
        with pytest.raises(TypeError, match="bits"):
            quantize_rowwise(x, bits=bad)
    with pytest.raises(ValueError, match="method"):
        quantize_rowwise(x, method="kmeans")
    with pytest.raises(ValueError, match="greedy"):
        quantize_rowwise(x, bits=8, method="greedy")
    for bad in (0, -5):
        with pytest.raises(ValueError, match="n_bins"):
            quantize_rowwise(x, bits=4, method="greedy", n_bins=bad)
    for bad in (2.5, None):
        with pytest.raises(TypeError, match="n_bins"):
            quantize_rowwise(x, bits=4, method="greedy", n_bins=bad)
    for bad in (-0.1, 1.0, float("nan"), "x"):
        with pytest.raises(ValueError, match="ratio"):
            quantize_rowwise(x, bits=4, method="greedy", ratio=bad)
    with pytest.raises(ValueError):
        quantize_rowwise(x, n_threads=0)


@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rows_raise(isa, bits, bad):
    x = np.ones((600, 9), F32)
    x[:, 0] = 0
    x[377, 4] = bad
    x[512, 8] = bad
    before = x.copy()
    with pytest.raises(ValueError, match="row 377 "):
        quantize_rowwise(x, bits=bits, n_threads=2)
    if bits != 8:
        with pytest.raises(ValueError, match="row 377 "):
            quantize_rowwise(x, bits=bits, method="greedy")
    np.testing.assert_array_equal(x, before)


def test_from_fused_errors():
    good = np.zeros((3, fused_row_bytes(10, 4)), np.uint8)
    RowwiseQuantizedTable.from_fused(good, 4, 10)
    with pytest.raises(ValueError, match="bytes"):
        RowwiseQuantizedTable.from_fused(good, 4, 12)
    with pytest.raises(ValueError, match="bytes"):
        RowwiseQuantizedTable.from_fused(good, 8, 10)
    with pytest.raises(TypeError):
        RowwiseQuantizedTable.from_fused(good.astype(np.int8), 4, 10)
    with pytest.raises(ValueError, match="2-D"):
        RowwiseQuantizedTable.from_fused(good.reshape(-1), 4, 10)
    with pytest.raises(ValueError, match="bits"):
        RowwiseQuantizedTable.from_fused(good, 3, 10)
    with pytest.raises(ValueError, match="dim"):
        RowwiseQuantizedTable.from_fused(good, 4, 0)


# ---------------------------------------------------------------------------------------------
# Properties


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        F32,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40),
        elements=st.floats(-1e3, 1e3, width=32),
    )
)
def test_property_minmax8_error_bound(x):
    t = quantize_rowwise(x, bits=8)
    err = np.abs(t.dequantize().astype(np.float64) - x)
    scale = t.scale.astype(np.float64)[:, None]
    rng = scale * 255
    eps = float(np.finfo(F32).eps)
    # the 1e-8 in 255 / (range + 1e-8) shrinks the codes by a relative 1e-8 / range
    # (+1e-42: a subnormal range below 255 * 2^-149 gives scale 0)
    tol = scale / 2 + rng * 1e-8 / (rng + 1e-8) + 4 * eps * (np.abs(x) + rng + np.abs(t.bias)[:, None]) + 1e-42
    assert np.all(err <= tol)


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(
        F32,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40),
        elements=st.floats(-1e4, 1e4, width=32),
    ),
    st.sampled_from([4, 2]),
)
def test_property_nbit_matches_reference_and_greedy_not_worse(x, bits):
    m = quantize_rowwise(x, bits=bits)
    np.testing.assert_array_equal(m.data, ref_quantize_nbit(x, bits))
    g = quantize_rowwise(x, bits=bits, method="greedy")
    assert np.all(sq_err(g, x) <= sq_err(m, x) * (1 + 1e-5) + 1e-12)


def test_sizes_from_hard_cases():
    for d in SIZES:
        if d == 0:
            continue
        x = hard_table(3, d, seed=d)
        for bits in (8, 4, 2):
            np.testing.assert_array_equal(quantize_rowwise(x, bits=bits).data, ref_quantize(x, bits))


# ---------------------------------------------------------------------------------------------
# out=


@pytest.mark.parametrize("bits", [8, 4])
def test_out_buffer(tmp_path, bits):
    x = hard_table(200, 24, seed=12)
    want = ref_quantize(x, bits)
    out = np.full(want.shape, 7, np.uint8)
    t = quantize_rowwise(x, bits=bits, out=out)
    np.testing.assert_array_equal(out, want)
    assert np.shares_memory(t.data, out) and out.flags.writeable
    mm = np.memmap(tmp_path / "fused.u8", dtype=np.uint8, mode="w+", shape=want.shape)
    quantize_rowwise(x, bits=bits, out=mm)
    mm.flush()
    back = np.fromfile(tmp_path / "fused.u8", dtype=np.uint8).reshape(want.shape)
    np.testing.assert_array_equal(back, want)


def test_out_errors_leave_out_untouched():
    x = np.ones((10, 8), F32)
    rb = fused_row_bytes(8, 4)
    cases = [
        (np.zeros((10, rb + 1), np.uint8), ValueError),
        (np.zeros((11, rb), np.uint8), ValueError),
        (np.zeros((10, rb), np.int8), TypeError),
        (np.zeros((10, 2 * rb), np.uint8)[:, ::2], ValueError),
        ([[0] * rb] * 10, TypeError),
    ]
    ro = np.zeros((10, rb), np.uint8)
    ro.flags.writeable = False
    cases.append((ro, ValueError))
    for out, exc in cases:
        before = np.array(out, copy=True)
        with pytest.raises(exc):
            quantize_rowwise(x, bits=4, out=out)
        np.testing.assert_array_equal(np.asarray(out), before)
    # overlapping the input
    buf = np.zeros(10 * 8 * 4 + 10 * rb, np.uint8)
    xin = buf[: 10 * 8 * 4].view(F32).reshape(10, 8)
    with pytest.raises(ValueError, match="overlap"):
        quantize_rowwise(xin, bits=4, out=buf.view(np.uint8)[: 10 * rb].reshape(10, rb))
