"""EmbeddingBag soft-error check: row checksums against NumPy, clean runs never flag, injected
flips are caught, bad arguments raise before anything runs."""

import pickle

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lowprec
from lowprec.embedding import embedding_bag
from lowprec.embedding_checks import row_checksums
from lowprec.embedding_faults import evaluate_embedding
from lowprec.rowwise import RowwiseQuantizedTable, fused_row_bytes, quantize_rowwise

from hard_cases import EMBEDDING_DIMS, embedding_bag_cases

BF16 = np.dtype(ml_dtypes.bfloat16)


def _round_up_f32(x):
    """float32 >= x (float64), the smallest such."""
    f = x.astype(np.float32)
    low = f.astype(np.float64) < x
    f[low] = np.nextafter(f[low], np.float32(np.inf))
    return f


def _codes(table):
    """Integer codes (R, D) of a quantized table, unpacked here with NumPy."""
    data = table.data
    if table.bits == 8:
        return data[:, : table.dim].astype(np.int64)
    per = 8 // table.bits
    nbytes = -(-table.dim // per)
    shifts = np.arange(per) * table.bits
    q = (data[:, :nbytes, None] >> shifts) & ((1 << table.bits) - 1)
    return q.reshape(len(table), -1)[:, : table.dim].astype(np.int64)


def _reference_checksums(table):
    """(sum, abs_sum) per row of a quantized table from the definition, in NumPy float64."""
    q = _codes(table).sum(axis=1).astype(np.float64)
    s = table.scale.astype(np.float64)
    b = table.bias.astype(np.float64)
    total = s * q + table.dim * b
    bound = np.abs(s) * q + table.dim * np.abs(b)
    return total, bound


def _reference_nibbles(table):
    """Each row's signed byte sum mod 15, two rows per byte (row 2i low), in NumPy."""
    rows = np.ascontiguousarray(table).view(np.int8).reshape(len(table), -1)
    c = rows.astype(np.int64).sum(axis=1) % 15  # Python-style mod: 0..14
    c = np.concatenate([c, [0] * (len(c) % 2)]).astype(np.uint8)
    return c[0::2] | (c[1::2] << 4)


@pytest.mark.parametrize("kind", ["f32", "f16", "bf16"])
@pytest.mark.parametrize("rows", [1, 2, 57])
@pytest.mark.parametrize("dim", [1, 3, 7, 16, 65, 163])
def test_float_row_checksums_match_numpy(kind, rows, dim):
    rng = np.random.default_rng(dim)
    x = rng.uniform(-3, 5, (rows, dim)).astype(np.float32)
    x[0, 0] = np.nan
    table = x.astype({"f32": np.float32, "f16": np.float16, "bf16": BF16}[kind])
    cs = row_checksums(table)
    assert cs.dtype == np.uint8 and cs.shape == ((rows + 1) // 2,)
    np.testing.assert_array_equal(cs, _reference_nibbles(table))
    out = np.empty_like(cs)
    assert row_checksums(table, out=out, n_threads=2) is out
    np.testing.assert_array_equal(out, cs)
    # Any row stride: a column slice of a wider table.
    wide = np.concatenate([table, table[:, :1]], axis=1)[:, :dim]
    np.testing.assert_array_equal(row_checksums(wide), cs)


@pytest.mark.parametrize("kind", [8, 4, 2])
@pytest.mark.parametrize("dim", [1, 3, 7, 16, 65, 163])
def test_row_checksums_match_numpy(kind, dim):
    rng = np.random.default_rng(dim)
    x = rng.uniform(-3, 5, (57, dim)).astype(np.float32)
    table = quantize_rowwise(x, bits=kind, row_checksums=True)
    cs = row_checksums(table)
    total, bound = _reference_checksums(table)
    # The sum is rounded to nearest from a double that is within a few double ulps of exact.
    np.testing.assert_allclose(cs[:, 0], total, rtol=2 ** -23, atol=0)
    assert np.all(cs[:, 1].astype(np.float64) >= bound * (1 - 2 ** -50))
    np.testing.assert_array_equal(cs[:, 1], _round_up_f32(bound))
    # Taken during quantization (fused in the chunk loop): the same values.
    np.testing.assert_array_equal(table.row_checksums, cs)
    assert not table.row_checksums.flags.writeable


def test_nbit_padding_bits_are_ignored():
    t = quantize_rowwise(np.random.default_rng(1).uniform(-1, 1, (9, 7)).astype(np.float32),
                         bits=4, row_checksums=True)
    data = t.data.copy()
    data[:, 3] |= 0xF0  # the unused high nibble of the last code byte (D = 7)
    u = RowwiseQuantizedTable.from_fused(data, bits=4, dim=7, row_checksums=True)
    np.testing.assert_array_equal(u.row_checksums, t.row_checksums)


def _lookup(rng, rows, bags, size):
    return rng.integers(0, rows, (bags, size)).astype(np.int64)


TABLE_KINDS = ["f32", "f16", "bf16", 8, 4, 2]


def _make_table(kind, x):
    if kind in ("f32", "f16", "bf16"):
        t = x.astype({"f32": np.float32, "f16": np.float16, "bf16": BF16}[kind])
        return t, row_checksums(t)
    return quantize_rowwise(x, bits=kind, row_checksums=True), None


@pytest.mark.parametrize("kind", TABLE_KINDS)
@pytest.mark.parametrize("out_dtype", [np.float32, np.float16, BF16])
def test_clean_runs_never_flag(isa, kind, out_dtype, row_prefetch):
    rng = np.random.default_rng(3)
    for dim in (1, 8, 17, 64, 129):
        x = (rng.standard_normal((300, dim)) * rng.uniform(0.01, 30, (300, 1))).astype(
            np.float32)
        t, cs = _make_table(kind, x)
        idx = _lookup(rng, 300, 50, 33)
        w = rng.standard_normal(idx.shape).astype(np.float32) * 10
        for extra in ({}, {"mode": "mean"}, {"per_sample_weights": w},
                      {"padding_idx": int(idx[0, 0])}):
            out, flags = embedding_bag(t, idx, check="report", checksums=cs,
                                       out_dtype=out_dtype, **extra)
            assert flags.shape == (50,) and flags.dtype == bool
            assert not flags.any(), (dim, extra)
            np.testing.assert_array_equal(
                out, embedding_bag(t, idx, checksums=cs, out_dtype=out_dtype, **extra))


@pytest.mark.parametrize("kind", TABLE_KINDS)
def test_clean_hard_bag_layouts_never_flag(kind):
    rng = np.random.default_rng(4)
    for dim in EMBEDDING_DIMS:
        x = rng.uniform(-2, 2, (20, dim)).astype(np.float32)
        t, cs = _make_table(kind, x)
        for case in embedding_bag_cases(20):
            for mode in ("sum", "mean"):
                out, flags = embedding_bag(t, case["indices"], case["offsets"], mode=mode,
                                           include_last_offset=case["include_last_offset"],
                                           check="report", checksums=cs)
                assert not flags.any()


def test_clean_with_pruning_mapping():
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (40, 24)).astype(np.float32)
    t = quantize_rowwise(x, bits=4, row_checksums=True)
    mapping = rng.integers(-1, 40, 100).astype(np.int32)
    idx = rng.integers(0, 100, (30, 9)).astype(np.int64)
    out, flags = embedding_bag(t, idx, compressed_indices_mapping=mapping, check="report")
    assert not flags.any()


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(TABLE_KINDS),
    rows=st.integers(1, 50),
    dim=st.integers(1, 70),
    bags=st.integers(0, 12),
    size=st.integers(0, 40),
    scale=st.sampled_from([1e-30, 1e-3, 1.0, 1e3, 1e30]),
    offset=st.sampled_from([0.0, 1.0, -1e4]),
    mode=st.sampled_from(["sum", "mean"]),
    weights=st.booleans(),
    seed=st.integers(0, 2 ** 16),
)
def test_hypothesis_clean_never_flags(kind, rows, dim, bags, size, scale, offset, mode, weights,
                                      seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, dim)) * scale + offset * scale).astype(np.float32)
    if kind in (4, 2, "f16") and np.abs(x).max() > 6e4:
        x = np.clip(x, -6e4, 6e4)  # the fp16 scale / bias / values must be finite
    t, cs = _make_table(kind, x)
    idx = rng.integers(0, rows, (bags, size)).astype(np.int64)
    extra = {"mode": mode}
    if weights and mode == "sum":
        extra["per_sample_weights"] = rng.uniform(-2, 2, idx.shape).astype(np.float32)
    out, flags = embedding_bag(t, idx, check="report", checksums=cs, **extra)
    # Float tables' check is exact on the bytes: clean means never flagged, overflow or not.
    if cs is not None or np.all(np.isfinite(out)):
        assert not flags.any()


def test_flags_do_not_depend_on_threads_or_isa():
    rng = np.random.default_rng(6)
    x = rng.uniform(-1, 1, (2000, 64)).astype(np.float32)
    t = quantize_rowwise(x, bits=8, row_checksums=True)
    idx = _lookup(rng, 2000, 3000, 20)
    buf = t.data.base
    buf[idx[7, 3], 5] ^= 0x80  # a corrupted code: bags using that row must fail, on any path
    results = []
    for name in lowprec._dispatch.available_isas():
        with lowprec._dispatch.use_isa(name):
            for nt in (1, 2):
                results.append(embedding_bag(t, idx, check="report", n_threads=nt)[1])
    users = (idx == idx[7, 3]).any(axis=1)
    for f in results:
        np.testing.assert_array_equal(f, users)


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_flips_in_codes_scales_biases_are_caught(isa, bits, row_prefetch):
    """Every flip of a code's top bit, and of the top exponent bits of a scale or bias, moves
    the output far beyond the tolerance: each is flagged, on exactly the bags using the row."""
    rng = np.random.default_rng(bits)
    dim = 32
    x = rng.uniform(-1, 1, (200, dim)).astype(np.float32)
    buf = np.empty((200, fused_row_bytes(dim, bits)), np.uint8)
    t = quantize_rowwise(x, bits=bits, out=buf, row_checksums=True)
    idx = _lookup(rng, 200, 100, 16)
    code_bytes = dim * bits // 8
    fsize = 4 if bits == 8 else 2
    flips = [(b, 7) for b in range(0, code_bytes, 3)]  # top bit of a code (or of the byte)
    flips += [(code_bytes + fsize - 1, 6), (code_bytes + 2 * fsize - 1, 6)]  # exponent bits
    for row in np.unique(idx)[:15]:
        users = (idx == row).any(axis=1)
        for byte, bit in flips:
            buf[row, byte] ^= np.uint8(1 << bit)
            try:
                _, flags = embedding_bag(t, idx, check="report")
            finally:
                buf[row, byte] ^= np.uint8(1 << bit)
            np.testing.assert_array_equal(flags, users, err_msg=f"row {row} byte {byte}")


def test_float_table_value_flips_and_output_flips_are_caught():
    rng = np.random.default_rng(9)
    x = rng.uniform(-1, 1, (100, 16)).astype(np.float32)
    cs = row_checksums(x)
    idx = _lookup(rng, 100, 40, 8)
    row = int(idx[3, 2])
    x.view(np.uint32)[row, 5] ^= np.uint32(1 << 29)  # an exponent bit: the value moves a lot
    _, flags = embedding_bag(x, idx, check="report", checksums=cs)
    np.testing.assert_array_equal(flags, (idx == row).any(axis=1))
    x.view(np.uint32)[row, 5] ^= np.uint32(1 << 29)
    # The output seam: evaluate_embedding flips stored outputs between pooling and check.
    r = evaluate_embedding(x, bits=None, n_bags=40, bag_size=8, n_flips=200, n_clean=50,
                           targets=("outputs",), overhead=False)
    out = r["targets"]["outputs"]
    assert out["significant"] > 50
    assert out["detected"] == out["significant"]
    assert r["false_positives"] == 0


def test_nonfinite_rows_flag_the_bags_that_use_them():
    """Quantized tables: a bag whose checksum sum is not finite cannot be verified."""
    x = np.ones((4, 3), np.float32)
    t = quantize_rowwise(x, bits=8, row_checksums=True)
    t.data.base[2, 3:7] = np.frombuffer(np.float32(np.inf).tobytes(), np.uint8)  # a scale
    _, flags = embedding_bag(t, [[0, 1], [2, 3], [3, 3]], check="report")
    assert flags.tolist() == [False, True, False]


@pytest.mark.parametrize("dtype", [np.float32, np.float16, BF16])
def test_float_tables_verify_nonfinite_values_exactly(isa, dtype):
    """Float tables' check is on the bytes: rows holding inf or NaN verify like any other, and
    a flip in them is still caught."""
    x = np.ones((4, 3), np.float32)
    x[2, 1] = np.inf
    x[1, 0] = np.nan
    t = x.astype(dtype)
    cs = row_checksums(t)
    idx = [[0, 1], [2, 3], [3, 3]]
    out, flags = embedding_bag(t, idx, check="report", checksums=cs)
    assert not flags.any()
    np.testing.assert_array_equal(out, embedding_bag(t, idx))
    t.view(np.uint8)[2, 0] ^= 1
    assert embedding_bag(t, idx, check="report", checksums=cs)[1].tolist() == [False, True, False]


def _flip_users(idx, row):
    """Bags that use `row` a number of times that is not a multiple of 15 (those catch it)."""
    return ((idx == row).sum(axis=1) % 15) != 0


@pytest.mark.parametrize("dtype", [np.float32, np.float16, BF16])
@pytest.mark.parametrize("dim", [5, 16, 64, 300])
def test_every_single_bit_flip_of_a_float_row_is_caught(isa, dtype, dim, row_prefetch):
    """Each bit of a row (every byte, every bit position): exactly the bags reading the row
    are flagged, on the fused AVX-512 path (sum, mean), the generic path (per-sample weights)
    and every output format."""
    rng = np.random.default_rng(dim)
    t = rng.standard_normal((50, dim)).astype(dtype)
    cs = row_checksums(t)
    idx = rng.integers(0, 50, (40, 9))
    idx[3, :3] = idx[3, 3]  # a row used 4 times in one bag
    row = int(idx[3, 3])
    users = _flip_users(idx, row)
    raw = t.view(np.uint8)
    nbytes = raw.shape[1]
    w = rng.uniform(-1, 1, idx.shape).astype(np.float32)
    kinds = [{}, {"mode": "mean", "out_dtype": np.float16}, {"per_sample_weights": w},
             {"out_dtype": BF16}]
    for k, byte in enumerate(range(0, nbytes, max(1, nbytes // 23))):
        for bit in range(8):
            raw[row, byte] ^= np.uint8(1 << bit)
            try:
                _, flags = embedding_bag(t, idx, check="report", checksums=cs,
                                         **kinds[(k + bit) % len(kinds)])
            finally:
                raw[row, byte] ^= np.uint8(1 << bit)
            np.testing.assert_array_equal(flags, users, err_msg=f"byte {byte} bit {bit}")


def test_float_check_blind_spot_is_fifteen_copies(isa):
    """The documented limit: a flip in a row used 15 times in one bag moves its byte sum by a
    multiple of 15 (bag_check.h).  14 or 16 copies are caught."""
    t = np.random.default_rng(0).uniform(-1, 1, (8, 16)).astype(np.float32)
    cs = row_checksums(t)
    t.view(np.uint8)[5, 7] ^= 0x40
    idx = [5] * 14 + [5] * 15 + [5] * 16 + [1] * 15
    flags = embedding_bag(t, idx, [0, 14, 29, 45], check="report", checksums=cs)[1]
    assert flags.tolist() == [True, False, True, False]


def test_float_check_long_bags_and_corrupted_checksums(isa):
    """A bag longer than the kernel's 65536-entry blocks of byte sums; a flipped bit of the
    stored checksums fails exactly the bags that read that row."""
    rng = np.random.default_rng(1)
    t = rng.uniform(-1, 1, (1000, 32)).astype(np.float16)
    cs = row_checksums(t)
    idx = rng.integers(0, 1000, 150_000)
    offsets = np.array([0, 10, 140_000])
    out, flags = embedding_bag(t, idx, offsets, check="report", checksums=cs)
    assert not flags.any()
    np.testing.assert_array_equal(out, embedding_bag(t, idx, offsets))
    row = int(idx[140_000 + 7])  # used by the last bag at least
    t.view(np.uint8)[row, 3] ^= 0x10
    _, flags = embedding_bag(t, idx, offsets, check="report", checksums=cs)
    t.view(np.uint8)[row, 3] ^= 0x10
    bags = np.split(idx, offsets[1:])
    np.testing.assert_array_equal(flags, [(b == row).sum() % 15 != 0 for b in bags])
    bad = cs.copy()
    bad[row // 2] ^= np.uint8(1 << (4 * (row % 2)))
    _, flags = embedding_bag(t, idx, offsets, check="report", checksums=bad)
    np.testing.assert_array_equal(flags, [(b == row).sum() % 15 != 0 for b in bags])


def test_raise_names_the_bags():
    x = np.random.default_rng(0).uniform(-1, 1, (10, 4)).astype(np.float32)
    cs = row_checksums(x)
    idx = np.array([[0, 1], [2, 3], [4, 2]])
    out = embedding_bag(x, idx, check="raise", checksums=cs)
    np.testing.assert_array_equal(out, embedding_bag(x, idx))
    cs_bad = cs.copy()
    cs_bad[1] ^= np.uint8(1)  # row 2's stored checksum (or, equally, row 2) corrupted
    with pytest.raises(lowprec.SoftErrorDetected, match=r"EmbeddingBag.*2 bag\(s\): 1, 2") as e:
        embedding_bag(x, idx, check="raise", checksums=cs_bad)
    assert e.value.rows.tolist() == [1, 2]
    assert e.value.flags.tolist() == [False, True, True]
    np.testing.assert_array_equal(e.value.result, out)


def test_bad_arguments():
    x = np.ones((5, 3), np.float32)
    idx = [[0, 1]]
    with pytest.raises(ValueError, match="check must be one of"):
        embedding_bag(x, idx, check="yes", checksums=row_checksums(x))
    with pytest.raises(ValueError, match="checksums=lowprec.embedding_checks.row_checksums"):
        embedding_bag(x, idx, check="report")
    with pytest.raises(ValueError, match="mode='max' has no checksum"):
        embedding_bag(x, idx, mode="max", check="report", checksums=row_checksums(x))
    with pytest.raises(ValueError, match=r"expected \(3,\)"):
        embedding_bag(x, idx, check="report", checksums=np.zeros(2, np.uint8))
    with pytest.raises(TypeError, match="checksums has dtype float32; a float table's are uint8"):
        embedding_bag(x, idx, check="report", checksums=np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError, match="out must be a contiguous uint8 array"):
        row_checksums(x, out=np.zeros(3, np.int8))
    tq = quantize_rowwise(x, row_checksums=True)
    with pytest.raises(ValueError, match=r"expected \(5, 2\)"):
        embedding_bag(tq, idx, check="report", checksums=np.zeros((4, 2), np.float32))
    with pytest.raises(TypeError, match="checksums has dtype float64"):
        embedding_bag(tq, idx, check="report", checksums=np.zeros((5, 2)))
    t = quantize_rowwise(x)  # checksums are opt-in
    assert t.row_checksums is None
    with pytest.raises(ValueError, match="row_checksums=True"):
        embedding_bag(t, idx, check="raise")
    out = np.full((1, 3), 7, np.float32)
    with pytest.raises(IndexError):
        embedding_bag(x, [[0, 9]], check="report", checksums=row_checksums(x), out=out)
    assert np.all(out == 7)
    with pytest.raises(ValueError, match="row_checksums must be a float32 array"):
        RowwiseQuantizedTable(t.data, 8, 3, row_checksums=np.zeros((5, 3), np.float32))


def test_checksums_survive_pickle_and_from_fused():
    x = np.random.default_rng(2).uniform(-1, 1, (30, 10)).astype(np.float32)
    t = quantize_rowwise(x, bits=2, row_checksums=True)
    u = pickle.loads(pickle.dumps(t))
    np.testing.assert_array_equal(u.row_checksums, t.row_checksums)
    assert not u.row_checksums.flags.writeable
    v = RowwiseQuantizedTable.from_fused(t.data, bits=2, dim=10, row_checksums=True)
    np.testing.assert_array_equal(v.row_checksums, t.row_checksums)
    assert RowwiseQuantizedTable.from_fused(t.data, 2, 10, row_checksums=False).row_checksums \
        is None


def test_evaluate_embedding_small():
    x = np.random.default_rng(0).uniform(-1, 1, (300, 16)).astype(np.float32)
    r = evaluate_embedding(x, bits=4, n_bags=64, bag_size=8, n_flips=150, n_clean=60,
                           overhead=False)
    assert r["false_positives"] == 0
    for name, t in r["targets"].items():
        assert t["flips"] == 150
        assert t["significant"] > 0, name
        assert t["detected"] >= 0.99 * t["significant"], (name, t)
    assert "| codes |" in r.table()
    assert "codes:" in r.bits_table()


@pytest.mark.parametrize("dtype", [np.float32, np.float16, BF16])
def test_output_flips_between_pooling_and_check_are_caught(isa, dtype):
    """The private _inject hook flips a bit of a bag's stored output after the bag was pooled
    and before it is checked: every flip of a sign or exponent bit moves the bag's sum far
    beyond the tolerance and flags exactly that bag."""
    rng = np.random.default_rng(9)
    x = rng.uniform(-1, 1, (100, 5)).astype(dtype)
    cs = row_checksums(x)
    idx = _lookup(rng, 100, 40, 8)
    clean = embedding_bag(x, idx)
    for b, d in ((0, 0), (17, 4), (39, 2)):
        for bit in range(23, 32):
            y, flags = embedding_bag(x, idx, check="report", checksums=cs, n_threads=2,
                                     _inject=(b, 4 * d + bit // 8, bit % 8))
            expected = np.zeros(40, bool)
            expected[b] = True
            assert y[b, d] != clean[b, d]
            np.testing.assert_array_equal(flags, expected, err_msg=f"{b} {d} {bit}")


def test_flags_do_not_depend_on_chunking():
    """Bags are pooled and checked a few dozen at a time: a long lookup (many chunks, uneven
    bag lengths) gives the same flags and output on 1 and 2 threads."""
    rng = np.random.default_rng(12)
    x = rng.uniform(-1, 1, (500, 24)).astype(np.float32)
    t = quantize_rowwise(x, bits=4, row_checksums=True)
    lengths = rng.integers(0, 60, 1000)
    idx = rng.integers(0, 500, lengths.sum()).astype(np.int32)
    cs = t.row_checksums.copy()
    cs[7, 0] += 0.5  # a corrupted stored checksum: the bags using row 7 fail
    users = np.array([7 in idx[o:o + n] for o, n in zip(np.cumsum(lengths) - lengths, lengths)])
    outs = [embedding_bag(t, idx, lengths=lengths, check="report", checksums=cs, n_threads=nt)
            for nt in (1, 2)]
    for y, flags in outs:
        np.testing.assert_array_equal(flags, users)
        np.testing.assert_array_equal(y, outs[0][0])


@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("dim", [1, 3, 64, 67])
def test_checked_store_keeps_pytorch_rows_and_puts_each_pair_after_its_row(bits, dim):
    """row_checksums=True: one buffer, each row (byte for byte the plain table's) followed by
    its checksum pair at a 4-byte aligned offset; lookups give the plain table's bits."""
    rng = np.random.default_rng(dim)
    x = rng.uniform(-2, 2, (300, dim)).astype(np.float32)
    plain = quantize_rowwise(x, bits=bits)
    for t in (quantize_rowwise(x, bits=bits, row_checksums=True),
              RowwiseQuantizedTable.from_fused(plain.data, bits, dim, row_checksums=True)):
        rb = fused_row_bytes(dim, bits)
        off = -(-rb // 4) * 4
        assert t.data.strides == (off + 8, 1)
        assert t.row_checksums.strides == (off + 8, 4) and t.row_checksums.flags.aligned
        assert not t.data.flags.writeable and not t.row_checksums.flags.writeable
        assert not np.shares_memory(t.data, plain.data)
        np.testing.assert_array_equal(t.data, plain.data)
        store = t.data.base
        assert store.shape == (300, off + 8)
        np.testing.assert_array_equal(store[:, rb:off], 0)  # the padding is zero
        pairs = store[:, off:].copy().view(np.float32)
        np.testing.assert_array_equal(pairs, t.row_checksums)
        total, bound = _reference_checksums(plain)
        np.testing.assert_array_equal(pairs[:, 0], total.astype(np.float32))
        assert np.all(pairs[:, 1].astype(np.float64) >= bound)
        idx = rng.integers(0, 300, (50, 9))
        out, flags = embedding_bag(t, idx, check="report")
        np.testing.assert_array_equal(out, embedding_bag(plain, idx))
        assert not flags.any()
        u = pickle.loads(pickle.dumps(t))
        assert u.data.strides == t.data.strides
        np.testing.assert_array_equal(u.data, t.data)
        np.testing.assert_array_equal(u.row_checksums, t.row_checksums)
        assert not u.data.flags.writeable and not u.row_checksums.flags.writeable
        assert not embedding_bag(u, idx, check="report")[1].any()


def test_checksums_in_a_strided_array_are_read_in_place():
    """Checksums handed over as a strided (R, 2) view (pairs contiguous) are used as they are;
    the separate-array and stored-after-row layouts give the same verdicts."""
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (500, 24)).astype(np.float32)
    t = quantize_rowwise(x, bits=8)
    cs = row_checksums(t)
    wide = np.zeros((500, 5), np.float32)
    wide[:, 1:3] = cs
    view = wide[:, 1:3]
    idx = rng.integers(0, 500, (64, 7))
    x_bad = x.copy()
    x_bad[idx[5, 2], 3] += 100.0
    t_bad = quantize_rowwise(x_bad, bits=8)
    for c in (cs, view):
        assert not embedding_bag(t, idx, check="report", checksums=c)[1].any()
        flags = embedding_bag(t_bad, idx, check="report", checksums=c)[1]
        np.testing.assert_array_equal(flags, (idx == idx[5, 2]).any(axis=1))
