"""EmbeddingBag (lowprec.embedding): reference, torch parity, agnosticism, bad input."""

import os
import select
import threading

import ml_dtypes
import numpy as np
import pytest

from lowprec import _dispatch
from lowprec.embedding import aligned_table, embedding_bag, embedding_bags
from lowprec.rowwise import RowwiseQuantizedTable, quantize_rowwise
from lowprec._kernels import _embedding

from hard_cases import EMBEDDING_DIMS, embedding_bag_cases

BF16 = np.dtype(ml_dtypes.bfloat16)
FORMATS = ("f32", "f16", "bf16", "q8", "q4", "q2")
MODES = ("sum", "mean", "max")
U = 2.0**-24  # float32 unit roundoff


def make_table(fmt, rows, dim, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, dim)) * scale).astype(np.float32)
    if fmt == "f32":
        return x
    if fmt == "f16":
        return x.astype(np.float16)
    if fmt == "bf16":
        return x.astype(BF16)
    return quantize_rowwise(x, bits=int(fmt[1:]))


def dense(table):
    """The table's values as float64 (quantized rows: fma(q, scale, bias) in float32, exact)."""
    if isinstance(table, RowwiseQuantizedTable):
        return table.dequantize().astype(np.float64)
    return np.asarray(table).astype(np.float64)


def term_magnitudes(table, rows, w):
    """Sum over a bag's entries of the magnitudes of the terms the kernel adds (for the bound)."""
    if isinstance(table, RowwiseQuantizedTable):
        q = table.codes[rows].astype(np.float64)
        s = table.scale[rows].astype(np.float64)[:, None]
        b = table.bias[rows].astype(np.float64)[:, None]
        return (np.abs(q * s * w[:, None]) + np.abs(b * w[:, None])).sum(axis=0)
    return np.abs(dense(table)[rows] * w[:, None]).sum(axis=0)


def reference(table, indices, offsets, mode="sum", weights=None, padding_idx=None,
              mapping=None):
    """float64 reference and an error bound per element.  ``offsets``: B + 1 entries."""
    vals = dense(table)
    dim = vals.shape[1]
    idx = np.asarray(indices).reshape(-1).astype(np.int64)
    w_all = None if weights is None else np.asarray(weights, np.float32).reshape(-1).astype(
        np.float64)
    nb = len(offsets) - 1
    ref = np.zeros((nb, dim))
    bound = np.zeros((nb, dim))
    space = len(mapping) if mapping is not None else vals.shape[0]
    pad = None if padding_idx is None else (padding_idx + space if padding_idx < 0 else
                                            padding_idx)
    for b in range(nb):
        sel = np.arange(offsets[b], offsets[b + 1])
        r = idx[sel]
        keep = np.ones(len(r), bool) if pad is None else r != pad
        if mapping is not None:
            m = np.asarray(mapping)[r]
            keep &= m >= 0
            r = m
        r, sel = r[keep], sel[keep]
        if len(r) == 0:
            continue
        w = np.ones(len(r)) if w_all is None else w_all[sel]
        if mode == "max":
            ref[b] = vals[r].max(axis=0)
            continue
        ref[b] = (vals[r] * w[:, None]).sum(axis=0)
        bound[b] = 3 * (len(r) + 1) * U * term_magnitudes(table, r, w)
        if mode == "mean":
            ref[b] /= len(r)
            bound[b] = bound[b] / len(r) + U * np.abs(ref[b])
    return ref, bound


def full_offsets(offsets, n, include_last_offset):
    o = np.asarray(offsets, np.int64)
    return o if include_last_offset else np.append(o, n)


def check_close(out, ref, bound):
    out = np.asarray(out, np.float64)
    err = np.abs(out - ref)
    assert np.all(err <= bound + 1e-30), float(np.max(err - bound))


# ------------------------------------------------------------------------------------------
# Reference: every format x mode x D over the shared hard cases


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dim", EMBEDDING_DIMS)
def test_hard_cases_vs_reference(fmt, dim):
    rows = 23
    table = make_table(fmt, rows, dim, seed=dim)
    for case in embedding_bag_cases(rows):
        idx, offs, ilo = case["indices"], case["offsets"], case["include_last_offset"]
        fo = full_offsets(offs, len(idx), ilo)
        for mode in MODES:
            out = embedding_bag(table, idx, offs, mode=mode, include_last_offset=ilo)
            assert out.dtype == np.float32 and out.shape == (len(fo) - 1, dim)
            ref, bound = reference(table, idx, fo, mode)
            check_close(out, ref, bound)
            if mode == "max":
                assert np.array_equal(out, ref.astype(np.float32))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("out_dtype", [np.float16, BF16])
def test_low_precision_output_rounds_once(fmt, mode, out_dtype):
    table = make_table(fmt, 50, 37, seed=3, scale=30.0)
    rng = np.random.default_rng(4)
    idx = rng.integers(0, 50, 300)
    offs = np.sort(rng.integers(0, 301, 40))
    offs[0] = 0
    f32 = embedding_bag(table, idx, offs, mode=mode)
    low = embedding_bag(table, idx, offs, mode=mode, out_dtype=out_dtype)
    assert low.dtype == out_dtype
    assert np.array_equal(low.view(np.uint16), f32.astype(out_dtype).view(np.uint16))


def test_output_conversion_specials():
    """fp16/bf16 output of special values equals NumPy's / ml_dtypes' conversion (mode max:
    the value itself; a sum starts from +0, so -0.0 would become +0.0, as in PyTorch)."""
    from hard_cases import float32_specials

    sp = float32_specials()
    x = np.concatenate([sp, np.float32([65504, 65519.99, 65520, 6e-8, 3e-8, 2.9e-8, 1e-5])])
    table = x.reshape(-1, 1)
    idx = np.arange(len(x))[:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        wants = {np.dtype(np.float16): x.astype(np.float16), BF16: x.astype(BF16)}
    for dt in (np.dtype(np.float16), BF16):
        for isa in _dispatch.available_isas():
            with _dispatch.use_isa(isa):
                got = embedding_bag(table, idx, mode="max", out_dtype=dt)[:, 0]
            want = wants[dt]
            nan = np.isnan(want.astype(np.float32))
            assert np.array_equal(np.isnan(got.astype(np.float32)), nan)
            assert np.array_equal(got.view(np.uint16)[~nan], want.view(np.uint16)[~nan])


def test_forms_agree():
    table = make_table("q4", 40, 16)
    rng = np.random.default_rng(0)
    idx2 = rng.integers(0, 40, (12, 5)).astype(np.int32)
    a = embedding_bag(table, idx2)
    b = embedding_bag(table, idx2.reshape(-1), np.arange(0, 60, 5))
    c = embedding_bag(table, idx2.reshape(-1), np.arange(0, 61, 5), include_last_offset=True)
    d = embedding_bag(table, idx2.reshape(-1), lengths=np.full(12, 5, np.int32))
    e = embedding_bag(table, idx2.astype(np.int64).tolist())
    for x in (b, c, d, e):
        assert np.array_equal(a, x)


def test_include_last_offset_ignores_trailing_indices():
    table = make_table("f32", 10, 4)
    out = embedding_bag(table, [1, 2, 3, 4], [0, 2, 3], include_last_offset=True)
    ref = embedding_bag(table, [1, 2, 3], [0, 2])
    assert np.array_equal(out, ref)


@pytest.mark.parametrize("fmt", FORMATS)
def test_weights_padding_mapping(fmt):
    rows = 30
    table = make_table(fmt, rows, 19, seed=5)
    rng = np.random.default_rng(6)
    space = 45
    mapping = rng.integers(-1, rows, space).astype(np.int32)
    idx = rng.integers(0, space, 200)
    idx[::7] = 3  # padding
    offs = np.sort(rng.integers(0, 201, 25))
    offs[0] = 0
    w = rng.standard_normal(200).astype(np.float32)
    fo = full_offsets(offs, 200, False)
    for kw in ({"per_sample_weights": w}, {"padding_idx": 3}, {"padding_idx": 3 - space},
               {"per_sample_weights": w, "padding_idx": 3}):
        for mode in (("sum",) if "per_sample_weights" in kw else MODES):
            out = embedding_bag(table, idx, offs, mode=mode, compressed_indices_mapping=mapping,
                                **kw)
            ref, bound = reference(table, idx, fo, mode, kw.get("per_sample_weights"),
                                   kw.get("padding_idx"), mapping)
            check_close(out, ref, bound)
    # int64 mapping: same result
    a = embedding_bag(table, idx, offs, compressed_indices_mapping=mapping)
    b = embedding_bag(table, idx, offs, compressed_indices_mapping=mapping.astype(np.int64))
    assert np.array_equal(a, b)
    # no mapping, padding only (also counted out of the mean)
    idx2 = idx % rows
    out = embedding_bag(table, idx2, offs, mode="mean", padding_idx=3)
    ref, bound = reference(table, idx2, fo, "mean", padding_idx=3)
    check_close(out, ref, bound)


def test_all_skipped_and_empty_bags_are_zero():
    table = make_table("f32", 5, 3) - 10
    for mode in MODES:
        out = embedding_bag(table, [2, 2, 1], [0, 0, 2], mode=mode, padding_idx=2)
        assert np.array_equal(out[:2], np.zeros((2, 3), np.float32))
        assert np.array_equal(out[2], table[1])
    out = embedding_bag(table, np.zeros(0, np.int64), [0, 0, 0], mode="max")
    assert np.array_equal(out, np.zeros((3, 3), np.float32))
    assert embedding_bag(table, np.zeros(0, np.int32), np.zeros(0, np.int32)).shape == (0, 3)
    assert embedding_bag(table, np.zeros((0, 4), np.int32)).shape == (0, 3)
    assert np.array_equal(embedding_bag(table, np.zeros((2, 0), np.int32)), np.zeros((2, 3)))
    assert embedding_bag(np.zeros((0, 3), np.float32), np.zeros((2, 0), np.int32)).shape == (2, 3)
    assert embedding_bag(np.zeros((4, 0), np.float32), [[1, 2]]).shape == (1, 0)


# ------------------------------------------------------------------------------------------
# Agnosticism: ISA, threads, layouts, concurrency, memmap


def _big_case(fmt, dim=70, rows=500, seed=7):
    table = make_table(fmt, rows, dim, seed=seed)
    rng = np.random.default_rng(seed)
    lens = rng.integers(0, 40, 300)
    lens[5] = 600  # a long bag
    idx = rng.integers(0, rows, lens.sum())
    return table, idx, lens, rng.standard_normal(lens.sum()).astype(np.float32)


@pytest.mark.parametrize("fmt", FORMATS)
def test_isa_paths_identical(fmt, isa):
    table, idx, lens, w = _big_case(fmt)
    for mode in MODES:
        kw = {"per_sample_weights": w} if mode == "sum" else {}
        got = embedding_bag(table, idx, lengths=lens, mode=mode, padding_idx=4, **kw)
        with _dispatch.use_isa("generic"):
            want = embedding_bag(table, idx, lengths=lens, mode=mode, padding_idx=4, **kw)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dim", [1, 7, 15, 16, 17, 30, 33, 62, 64, 100, 128, 255, 256, 257, 300, 520])
def test_fast_path_identical(fmt, dim, isa, row_prefetch):
    """The specialised sum / mean kernels (no weights, mapping or padding: one pass with the
    accumulators in registers for D <= 256, masked tails) give the generic kernel's bits, for
    every output dtype and index type, with empty bags and bags that cross chunk edges."""
    rows = 300
    table = make_table(fmt, rows, dim, seed=dim)
    rng = np.random.default_rng(dim)
    lens = rng.integers(0, 9, 70)
    lens[3] = 0
    lens[-1] = 40
    idx = rng.integers(0, rows, lens.sum())
    idx[:3] = rows - 1  # the last row: masked tails must not read past the table
    for itype in (np.int32, np.int64):
        for mode in ("sum", "mean"):
            for dt in (np.float32, np.float16, BF16):
                got = embedding_bag(table, idx.astype(itype), lengths=lens, mode=mode,
                                    out_dtype=dt, n_threads=2)
                with _dispatch.use_isa("generic"):
                    want = embedding_bag(table, idx.astype(itype), lengths=lens, mode=mode,
                                         out_dtype=dt)
                assert np.array_equal(got.view(np.uint8), want.view(np.uint8)), (itype, mode, dt)


@pytest.mark.parametrize("shift", [0, 4, 16, 32, 48])
@pytest.mark.parametrize("dim", [16, 64, 128, 256])
def test_fp32_rows_at_any_address(shift, dim, row_prefetch):
    """fp32 rows that do not start at a multiple of 64 bytes take two 32-byte loads per vector
    on the two-level prefetch path (src/embedding_avx512.c): the same bits as the generic
    kernel at every alignment, with or without that path."""
    rows = 200
    buf = np.empty(rows * dim * 4 + 128, np.uint8)
    start = (-buf.ctypes.data) % 64 + shift
    table = buf[start:start + rows * dim * 4].view(np.float32).reshape(rows, dim)
    table[...] = make_table("f32", rows, dim, seed=dim + shift)
    assert table.ctypes.data % 64 == shift
    rng = np.random.default_rng(shift)
    idx = rng.integers(0, rows, 700)
    offs = np.sort(rng.integers(0, 700, 40))
    offs[0] = 0
    for mode in ("sum", "mean"):
        got = embedding_bag(table, idx, offs, mode=mode)
        with _dispatch.use_isa("generic"):
            want = embedding_bag(table, idx, offs, mode=mode)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), mode


@pytest.mark.parametrize("fmt", ["f32", "f16", "bf16"])
@pytest.mark.parametrize("shape", [(300, 64), (7, 3), (0, 5), (4, 0)])
def test_aligned_table_is_an_aligned_copy(fmt, shape):
    """aligned_table: same shape, dtype and bits, a new C-contiguous array on a 64-byte line;
    lookups on it match the float64 reference like any table."""
    src = make_table(fmt, *shape, seed=3)
    # Start it where numpy's large arrays start (16 bytes past a line) and make it strided.
    buf = np.empty(2 * src.nbytes + 128, np.uint8)
    start = (-buf.ctypes.data) % 64 + 16
    wide = buf[start:start + 2 * src.nbytes].view(src.dtype).reshape(shape[0], 2 * shape[1])
    wide[:, ::2] = src
    table = wide[:, ::2]
    got = aligned_table(table)
    assert got.size == 0 or got.ctypes.data % 64 == 0  # (an empty array has no address)
    assert got.shape == shape and got.dtype == src.dtype
    assert got.flags.c_contiguous and got.flags.writeable
    assert not np.shares_memory(got, buf)
    assert np.array_equal(got.view(np.uint8), np.ascontiguousarray(src).view(np.uint8))
    if shape[0]:
        rng = np.random.default_rng(4)
        idx = rng.integers(0, shape[0], 90)
        offs = np.arange(0, 90, 9)
        ref, bound = reference(src, idx, full_offsets(offs, 90, False))
        check_close(embedding_bag(got, idx, offs), ref, bound)


def test_aligned_table_byte_order_and_errors():
    """Non-native byte order comes back native with the same values; anything but a 2-D
    float32 / float16 / bfloat16 ndarray is refused, naming what was given."""
    big = np.arange(12, dtype=">f4").reshape(3, 4)
    got = aligned_table(big)
    assert got.dtype == np.float32 and got.dtype.isnative
    assert np.array_equal(got, np.arange(12, dtype=np.float32).reshape(3, 4))
    with pytest.raises(TypeError, match="list"):
        aligned_table([[1.0, 2.0]])
    with pytest.raises(TypeError, match="int32"):
        aligned_table(np.ones((2, 2), np.int32))
    with pytest.raises(TypeError, match="RowwiseQuantizedTable"):
        aligned_table(quantize_rowwise(np.ones((2, 8), np.float32), bits=8))
    with pytest.raises(ValueError, match="2-D"):
        aligned_table(np.ones(4, np.float32))


def test_fast_check_finds_bad_index(isa):
    """The vectorised index check reports the first bad index, int32 and int64."""
    table = np.ones((50, 16), np.float32)
    for itype in (np.int32, np.int64):
        for pos, val in ((0, 50), (37, -1), (99, 1 << 30), (64, 50)):
            idx = np.zeros(100, itype)
            idx[pos] = val
            idx[min(pos + 1, 99)] = val if pos < 99 else idx[99]
            out = np.full((4, 16), 7, np.float32)
            with pytest.raises(IndexError, match=rf"indices\[{pos}\] = {val}"):
                embedding_bag(table, idx, [0, 10, 50, 90], out=out)
            assert (out == 7).all()


@pytest.mark.parametrize("fmt", ["f32", "q8", "q4"])
def test_thread_count_does_not_matter(fmt, row_prefetch):
    table, idx, lens, w = _big_case(fmt)
    res = [embedding_bag(table, idx, lengths=lens, per_sample_weights=w, n_threads=n)
           for n in (1, 2, 3)]
    for r in res[1:]:
        assert np.array_equal(r.view(np.uint32), res[0].view(np.uint32))


def test_two_level_prefetch_setting(monkeypatch):
    """LOWPREC_EB_PREFETCH forces the row prefetch; "auto" (or unset) asks the CPU (two levels
    where prefetcht1 fills L2 only: AMD Zen 4+), anything else warns and falls back to it."""
    from lowprec import embedding
    from lowprec._kernels import _runtime

    features = _runtime.cpu_features()
    cpu = features["prefetcht1_l2"]
    assert features["avx512f"] or not cpu  # never without AVX-512
    for value, want in (("l1", False), ("L2", True), (" l2 ", True), ("", cpu), ("auto", cpu)):
        monkeypatch.setenv(embedding.PREFETCH_ENV_VAR, value)
        assert embedding._two_level_prefetch() is want, value
    monkeypatch.setenv(embedding.PREFETCH_ENV_VAR, "t0")
    with pytest.warns(RuntimeWarning, match="LOWPREC_EB_PREFETCH"):
        assert embedding._two_level_prefetch() is cpu


@pytest.fixture(params=[False, True], ids=["openmp", "team"])
def thread_pool(request):
    # 2+ thread calls: the OpenMP region (default) or the opt-in work-sharing team
    # (LOWPREC_EB_TEAM=1, src/embedding.c); both must give the same bits.
    from lowprec._kernels import _embedding as kernels

    previous = kernels._set_team(request.param)
    yield request.param
    kernels._set_team(previous)


@pytest.mark.parametrize("fmt", ["f16", "q8"])
def test_team_thread_counts_in_any_order(fmt, thread_pool):
    # The work-sharing team (src/embedding.c) keeps its helpers between calls, OpenMP its pool:
    # a call after one with more threads must use only its own count, with the same bits.
    table, idx, lens, _ = _big_case(fmt, rows=3000)
    idx = np.tile(idx, 4)
    offs = np.arange(0, idx.size, 7)
    want = embedding_bag(table, idx, offs, n_threads=1)
    for n in (4, 2, 3, 1, 5, 2, 2):
        got = embedding_bag(table, idx, offs, n_threads=n)
        assert np.array_equal(got.view(np.uint8), want.view(np.uint8)), n


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_team_after_fork(thread_pool):
    # A forked child has no helper threads (only the forking thread is copied): its 2-thread
    # calls must still finish, with the same result.
    table, idx, lens, _ = _big_case("q8", rows=3000)
    idx = np.tile(idx, 4)
    offs = np.arange(0, idx.size, 7)
    want = embedding_bag(table, idx, offs, n_threads=2)  # the parent's helpers exist now
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (child)
        ok = 0
        try:
            got = embedding_bag(table, idx, offs, n_threads=2)
            ok = int(np.array_equal(got, want))
        finally:
            os.write(w, bytes([ok]))
            os._exit(0)
    os.close(w)
    ready, _, _ = select.select([r], [], [], 60)
    assert ready, "the forked child hung"
    assert os.read(r, 1) == b"\x01"
    os.close(r)
    os.waitpid(pid, 0)


def test_partition_balances_indices():
    lens = np.ones(1000, np.int64)
    lens[0] = 100000
    offs = np.concatenate([[0], np.cumsum(lens)])
    bounds = _embedding.partition(offs, 4)
    assert bounds[0] == 0 and bounds[-1] == 1000 and np.all(np.diff(bounds) >= 0)
    assert bounds[1] == 1  # the long bag alone in the first chunk
    offs = np.arange(0, 8001, 8, dtype=np.int64)
    assert np.array_equal(_embedding.partition(offs, 4), [0, 250, 500, 750, 1000])


def test_layouts_and_inputs_untouched():
    table = make_table("f32", 50, 12)
    idx = np.random.default_rng(0).integers(0, 50, 64)
    offs = np.arange(0, 64, 4)
    want = embedding_bag(table, idx, offs)
    wide = np.zeros((50, 30), np.float32)
    wide[:, 3:15] = table
    strided = wide[:, 3:15]  # rows contiguous, row stride 30
    fortran = np.asfortranarray(table)
    big_endian = table.astype(">f4")
    ro = table.copy()
    ro.setflags(write=False)
    for t in (strided, fortran, big_endian, ro):
        assert np.array_equal(embedding_bag(t, idx, offs), want)
    idx_s = np.repeat(idx, 2)[::2]
    assert np.array_equal(embedding_bag(table, idx_s, offs.astype(np.int32)), want)
    before = (table.copy(), idx.copy(), offs.copy())
    embedding_bag(table, idx, offs, out=np.empty((16, 12), np.float32))
    assert all(np.array_equal(a, b) for a, b in zip(before, (table, idx, offs)))


def test_memmap_table(tmp_path):
    t = make_table("q8", 300, 20)
    path = tmp_path / "table.bin"
    t.data.tofile(path)
    mm = np.memmap(path, dtype=np.uint8, mode="r", shape=t.data.shape)
    tm = RowwiseQuantizedTable.from_fused(mm, bits=8, dim=20)
    f = make_table("f16", 300, 20)
    fpath = tmp_path / "f.bin"
    f.tofile(fpath)
    fm = np.memmap(fpath, dtype=np.float16, mode="r", shape=f.shape)
    idx = np.random.default_rng(1).integers(0, 300, 500)
    offs = np.arange(0, 500, 5)
    assert np.array_equal(embedding_bag(tm, idx, offs), embedding_bag(t, idx, offs))
    assert np.array_equal(embedding_bag(fm, idx, offs, n_threads=2), embedding_bag(f, idx, offs))


def test_concurrent_calls():
    table, idx, lens, w = _big_case("q4")
    want = embedding_bag(table, idx, lengths=lens, per_sample_weights=w, n_threads=1)
    errors = []

    def work():
        try:
            for _ in range(20):
                got = embedding_bag(table, idx, lengths=lens, per_sample_weights=w, n_threads=2)
                if not np.array_equal(got, want):
                    errors.append("mismatch")
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


def test_embedding_bags_matches_separate_calls():
    tabs = [make_table("q8", 40, 8), make_table("f16", 30, 5), make_table("q2", 20, 12)]
    rng = np.random.default_rng(2)
    idxs = [rng.integers(0, len(t) if not hasattr(t, "data") else t.data.shape[0], 30)
            for t in tabs]
    offs = [np.arange(0, 30, 3)] * 3
    sep = [embedding_bag(t, i, o, mode="mean", padding_idx=1) for t, i, o in zip(tabs, idxs, offs)]
    lst = embedding_bags(tabs, idxs, offs, mode="mean", padding_idx=1)
    cat = embedding_bags(tabs, idxs, offs, mode="mean", padding_idx=1, concat=True, n_threads=2)
    for a, b in zip(sep, lst):
        assert np.array_equal(a, b)
    assert np.array_equal(cat, np.concatenate(sep, axis=1))
    # a bad index in the last table: nothing written anywhere
    out = np.full((10, 25), 7.0, np.float32)
    idxs[2] = idxs[2].copy()
    idxs[2][4] = 99
    with pytest.raises(IndexError, match=r"table 2: indices\[4\] = 99"):
        embedding_bags(tabs, idxs, offs, concat=True, out=out)
    assert np.all(out == 7.0)


# ------------------------------------------------------------------------------------------
# Bad input: raises before `out` is touched


def _bad_calls():
    t = make_table("q4", 10, 8)
    idx = np.array([1, 2, 3, 4], np.int64)
    offs = np.array([0, 2], np.int64)
    m = np.array([0, 1, -1, 2, 3, 4, 5, 6, 7, 9, 8, 1], np.int32)
    return [
        (IndexError, r"indices\[2\] = 10 is out of range", (t, [1, 2, 10, 4], offs), {}),
        (IndexError, r"indices\[0\] = -1", (t, np.array([-1, 2], np.int32), [0, 1]), {}),
        (IndexError, r"indices\[1, 0\] = 11", (t, [[1, 2], [11, 0]]), {}),
        (IndexError, r"compressed_indices_mapping\[12\]|12 is out of range",
         (t, [12, 0], [0, 1]), {"compressed_indices_mapping": m}),
        (IndexError, r"compressed_indices_mapping\[3\] = 99",
         (t, [3, 0], [0, 1]), {"compressed_indices_mapping": np.array([0, 1, 2, 99], np.int32)}),
        (IndexError, r"compressed_indices_mapping\[1\] = -2",
         (t, [3, 0], [0, 1]), {"compressed_indices_mapping": np.array([0, -2, 2, 1], np.int64)}),
        (ValueError, "decrease", (t, idx, [0, 3, 2]), {}),
        (ValueError, "start at 0", (t, idx, [1, 2]), {}),
        (ValueError, "exceeds", (t, idx, [0, 5]), {}),
        (ValueError, "exceeds", (t, idx, [0, 2, 5]), {"include_last_offset": True}),
        (ValueError, "lengths sum", (t, idx), {"lengths": [1, 2]}),
        (ValueError, "negative", (t, idx), {"lengths": [5, -1]}),
        (ValueError, "offsets or lengths", (t, idx, offs), {"lengths": [2, 2]}),
        (ValueError, "per_sample_weights has shape", (t, idx, offs),
         {"per_sample_weights": np.ones(3, np.float32)}),
        (ValueError, "only supported for mode='sum'", (t, idx, offs),
         {"per_sample_weights": np.ones(4, np.float32), "mode": "mean"}),
        (ValueError, "padding_idx", (t, idx, offs), {"padding_idx": 10}),
        (ValueError, "padding_idx", (t, idx, offs), {"padding_idx": -11}),
        (ValueError, "mode", (t, idx, offs), {"mode": "min"}),
        (ValueError, "2-D", (t, idx), {}),
        (TypeError, "int32 or int64", (t, idx.astype(np.float64), offs), {}),
        (TypeError, "int32 or int64", (t, idx, offs.astype(np.uint8)), {}),
        (TypeError, "table has dtype", (np.zeros((10, 8)), idx, offs), {}),
        (TypeError, "table must be", ([[1.0]], idx, offs), {}),
        (TypeError, "out_dtype", (t, idx, offs), {"out_dtype": np.float64}),
        (TypeError, "per_sample_weights has dtype", (t, idx, offs),
         {"per_sample_weights": np.ones(4, np.int32)}),
        (TypeError, "compressed_indices_mapping has dtype", (t, idx, offs),
         {"compressed_indices_mapping": np.ones(4, np.float32)}),
    ]


@pytest.mark.parametrize("case", range(len(_bad_calls())))
def test_bad_input_raises_before_writing(case):
    exc, match, args, kw = _bad_calls()[case]
    out = np.full((2, 8), 5.0, np.float32)
    with pytest.raises(exc, match=match):
        embedding_bag(*args, out=out, **kw)
    assert np.all(out == 5.0)


def test_bad_out():
    t = make_table("f32", 10, 8)
    with pytest.raises(ValueError, match="shape"):
        embedding_bag(t, [1, 2], [0], out=np.empty((2, 8), np.float32))
    with pytest.raises(TypeError):
        embedding_bag(t, [1, 2], [0], out=np.empty((1, 8), np.float16), out_dtype=np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        embedding_bag(t, [1, 2], [0], out=t[:1])
    o = embedding_bag(t, [1, 2], [0], out=np.empty((1, 8), np.float16))
    assert o.dtype == np.float16



@pytest.mark.parametrize("case", range(len(_bad_calls())))
def test_bad_input_raises_without_out(case):
    """The same errors when no ``out`` is given (the one-call path for plain arguments)."""
    exc, match, args, kw = _bad_calls()[case]
    with pytest.raises(exc, match=match):
        embedding_bag(*args, **kw)


def test_common_call_is_one_step(monkeypatch):
    """1-D indices + offsets without weights, mapping, padding or ``out`` skip the Python
    validation (_prepare) entirely, and give the bits of the validating path (forced here by
    ``out=``), for every table format, index / offset type, mode, output dtype and thread
    count; include_last_offset too."""
    import lowprec.embedding as eb

    rng = np.random.default_rng(5)
    cases = []
    for fmt in FORMATS:
        for dim in (16, 40, 64, 128):
            table = make_table(fmt, 50, dim, seed=dim)
            lens = rng.integers(0, 12, 40)
            lens[7] = 0
            idx = rng.integers(0, 50, lens.sum())
            idx[:2] = 49
            offs = np.concatenate([[0], np.cumsum(lens)])
            cases.append((table, idx, offs))
    want = []
    for table, idx, offs in cases:
        for it in (np.int32, np.int64):
            for ot in (np.int32, np.int64):
                for last in (False, True):
                    o = (offs if last else offs[:-1]).astype(ot)
                    for mode in MODES:
                        for dt in (np.float32, np.float16, BF16):
                            for nt in (1, 2):
                                args = (table, idx.astype(it), o)
                                kw = dict(mode=mode, include_last_offset=last, out_dtype=dt,
                                          n_threads=nt)
                                ref = np.empty((len(offs) - 1, table.shape[1]), dt)
                                embedding_bag(*args, out=ref, **kw)
                                want.append((args, kw, ref))

    def no_prepare(*a, **k):
        raise AssertionError("the common call went through _prepare")

    monkeypatch.setattr(eb, "_prepare", no_prepare)
    for args, kw, ref in want:
        got = embedding_bag(*args, **kw)
        assert got.dtype == ref.dtype and got.shape == ref.shape
        assert np.array_equal(got.view(np.uint8), ref.view(np.uint8)), kw


def test_common_call_unusual_layouts():
    """Arguments the one-call path does not take (strided indices, lists, strided table rows,
    a negative row stride, a byte-swapped table) give the validating path's result, and invalid
    offsets / indices of every integer type raise its errors with the exact message."""
    table = make_table("f32", 30, 24, seed=3)
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 30, 64)
    offs = np.arange(0, 64, 8)
    want = embedding_bag(table, idx, offs, out=np.empty((8, 24), np.float32))
    for t, i, o in ((table, idx.repeat(2)[::2], offs), (table, list(idx), list(offs)),
                    (np.asfortranarray(table), idx, offs), (table[::-1], 29 - idx, offs),
                    (table.astype(">f4"), idx, offs)):
        assert np.array_equal(embedding_bag(t, i, o), want)
    for i, o in ((idx.astype(">i8"), offs), (idx, offs.astype(">i4"))):
        with pytest.raises(TypeError, match="expected int32 or int64"):
            embedding_bag(table, i, o)
    for it in (np.int32, np.int64):
        for ot in (np.int32, np.int64):
            bad = idx.astype(it)
            bad[37] = 30
            with pytest.raises(IndexError, match=r"indices\[37\] = 30 is out of range"):
                embedding_bag(table, bad, offs.astype(ot))
            bad[37] = -1
            with pytest.raises(IndexError, match=r"indices\[37\] = -1 is out of range"):
                embedding_bag(table, bad, offs.astype(ot))
            o = offs.astype(ot)
            with pytest.raises(ValueError, match="must not decrease"):
                embedding_bag(table, idx.astype(it), o[[0, 2, 1, 3]])
            with pytest.raises(ValueError, match="start at 0"):
                embedding_bag(table, idx.astype(it), o[1:])
            with pytest.raises(ValueError, match="exceeds"):
                embedding_bag(table, idx.astype(it), np.append(o, 65).astype(ot))
            with pytest.raises(ValueError, match="exceeds"):
                embedding_bag(table, idx.astype(it), np.append(o, 65).astype(ot),
                              include_last_offset=True)
    with pytest.raises(ValueError, match="at least one entry"):
        embedding_bag(table, idx, offs[:0], include_last_offset=True)
    with pytest.raises(ValueError, match="n_threads"):
        embedding_bag(table, idx, offs, n_threads=0)
    # No bags, no indices, an empty table: the validating path's results.
    assert embedding_bag(table, idx, offs[:0]).shape == (0, 24)
    assert np.all(embedding_bag(table, idx[:0], np.zeros(3, np.int64)) == 0)
    with pytest.raises(IndexError):
        embedding_bag(table[:0], idx, offs)

def test_index_beyond_table_never_read():
    """Huge and negative int64 indices are rejected (never turned into an address)."""
    t = make_table("f32", 10, 8)
    for v in (2**31, 2**63 - 1, -(2**63), 10):
        with pytest.raises(IndexError):
            embedding_bag(t, np.array([0, v], np.int64), [0])


# ------------------------------------------------------------------------------------------
# Property tests


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(fmt=st.sampled_from(FORMATS), mode=st.sampled_from(MODES), dim=st.integers(1, 70),
       rows=st.integers(1, 30), lens=st.lists(st.integers(0, 9), max_size=12),
       weighted=st.booleans(), seed=st.integers(0, 2**16), pad=st.booleans())
def test_property_vs_reference(fmt, mode, dim, rows, lens, weighted, seed, pad):
    table = make_table(fmt, rows, dim, seed=seed)
    rng = np.random.default_rng(seed)
    n = int(sum(lens))
    idx = rng.integers(0, rows, n).astype(rng.choice([np.int32, np.int64]))
    w = rng.standard_normal(n).astype(np.float32) if weighted and mode == "sum" else None
    padding_idx = int(rng.integers(0, rows)) if pad else None
    out = embedding_bag(table, idx, lengths=np.asarray(lens, np.int64), mode=mode,
                        per_sample_weights=w, padding_idx=padding_idx)
    offs = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    ref, bound = reference(table, idx, offs, mode, w, padding_idx)
    check_close(out, ref, bound)


# ------------------------------------------------------------------------------------------
# PyTorch parity (bit for bit where the semantics coincide)


def _torch():
    return pytest.importorskip("torch")


def _torch_quant_op(torch, bits):
    q = torch.ops.quantized
    return {8: q.embedding_bag_byte_rowwise_offsets, 4: q.embedding_bag_4bit_rowwise_offsets,
            2: q.embedding_bag_2bit_rowwise_offsets}[bits]


@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("dim", [8, 16, 64, 72, 136])
def test_torch_quantized_parity(bits, dim, isa):
    torch = _torch()
    rng = np.random.default_rng(dim + bits)
    t = quantize_rowwise((rng.standard_normal((300, dim)) * 3).astype(np.float32), bits=bits)
    tw = torch.from_numpy(t.data.copy())
    op = _torch_quant_op(torch, bits)
    n = 2000
    idx = rng.integers(0, 300, n)
    offs = np.sort(rng.integers(0, n + 1, 150))
    offs[0] = 0
    w = rng.standard_normal(n).astype(np.float32)
    for idt in (np.int32, np.int64):
        ti, to = torch.from_numpy(idx.astype(idt)), torch.from_numpy(offs.astype(idt))
        for weights in (None, w):
            tws = None if weights is None else torch.from_numpy(weights)
            want = op(tw, ti, to, False, 0, False, tws, None, False).numpy()
            got = embedding_bag(t, idx.astype(idt), offs.astype(idt), per_sample_weights=weights)
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    # include_last_offset and pruning
    offs_l = np.append(offs, n)
    mapping = rng.integers(-1, 300, 500).astype(np.int32)
    idx_p = rng.integers(0, 500, n)
    want = op(tw, torch.from_numpy(idx_p), torch.from_numpy(offs_l), False, 0, True, None,
              torch.from_numpy(mapping), True).numpy()
    got = embedding_bag(t, idx_p, offs_l, include_last_offset=True,
                        compressed_indices_mapping=mapping)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def _torch_table(torch, x):
    if x.dtype == BF16:
        return torch.from_numpy(x.view(np.uint16).copy()).view(torch.bfloat16)
    return torch.from_numpy(x.copy())


def _from_torch(torch, y, dtype):
    if y.dtype == torch.bfloat16:
        return y.view(torch.int16).numpy().view(BF16)
    return y.numpy()


@pytest.mark.parametrize("dim", [1, 7, 16, 64, 129])
def test_torch_float_parity(dim, isa):
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(dim)
    x = (rng.standard_normal((200, dim)) * 4).astype(np.float32)
    n = 1500
    idx = rng.integers(0, 200, n)
    offs = np.sort(rng.integers(0, n + 1, 100))
    offs[0] = 0
    w = rng.standard_normal(n).astype(np.float32)
    ti, to = torch.from_numpy(idx), torch.from_numpy(offs)
    for dt in (np.float32, np.float16, BF16):
        xt = x.astype(dt)
        tx = _torch_table(torch, xt)
        wq = w.astype(dt)
        for mode in MODES:
            for pad in (None, 5):
                for weighted in ((False, True) if mode == "sum" else (False,)):
                    tws = _torch_table(torch, wq) if weighted else None
                    want = _from_torch(torch, F.embedding_bag(ti, tx, to, mode=mode,
                                                              per_sample_weights=tws,
                                                              padding_idx=pad), dt)
                    got = embedding_bag(xt, idx, offs, mode=mode, padding_idx=pad,
                                        per_sample_weights=wq if weighted else None,
                                        out_dtype=dt)
                    g, wnt = got.view(np.uint16 if dt != np.float32 else np.uint32), \
                        want.view(np.uint16 if dt != np.float32 else np.uint32)
                    diff = g != wnt
                    if dt == np.float32 and weighted and pad is not None:
                        # With padding_idx, PyTorch leaves the FBGEMM path and rounds w*x before
                        # adding it (two roundings); lowprec fuses them, as FBGEMM does.
                        emu = np.zeros_like(got)
                        fo = np.append(offs, n)
                        for bag in range(len(offs)):
                            for i in range(fo[bag], fo[bag + 1]):
                                if idx[i] != pad:
                                    emu[bag] = emu[bag] + xt[idx[i]] * wq[i]
                        assert np.array_equal(emu, want)
                        ref, bound = reference(xt, idx, fo, "sum", wq, pad)
                        check_close(got, ref, bound)
                    elif dt == np.float32 or mode == "max" or (dt == np.float16 and mode == "sum") \
                            or (dt == BF16 and mode == "sum" and pad is not None):
                        assert not diff.any(), (dt, mode, pad, weighted)
                    elif dt == BF16 and mode == "sum":
                        # Without padding_idx PyTorch's (FBGEMM) path rounds the float32 sum to
                        # bf16 with ties away from zero, lowprec to even: they differ exactly at
                        # the ties, by one unit in the last place.
                        f32 = embedding_bag(xt, idx, offs, padding_idx=pad,
                                            per_sample_weights=wq if weighted else None)
                        tie = (f32.view(np.uint32) & 0xFFFF) == 0x8000
                        assert np.array_equal(diff, tie & diff)
                        away = (f32.view(np.uint32) + 0x8000) >> 16
                        assert np.array_equal(wnt[diff], away[diff].astype(np.uint16))
                    else:
                        # mean in fp16/bf16: torch rounds the sum, then the quotient (two
                        # roundings); lowprec rounds the float32 quotient once.  <= 1 ulp apart.
                        gf = got.astype(np.float64)
                        wf = want.astype(np.float64)
                        ulp = np.abs(wf) * (2.0**-10 if dt == np.float16 else 2.0**-7)
                        assert np.all(np.abs(gf - wf) <= ulp + 1e-7)
