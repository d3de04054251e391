"""Soft-error checks of the exact int8 GEMM (issue 7): lowprec.gemm check= and lowprec.faults."""

import pickle
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lowprec import _dispatch, faults
from lowprec import gemm as G
from lowprec._errors import SoftErrorDetected
from lowprec._kernels import _gemm_int8

RNG = np.random.default_rng(7)


def rand_u8(shape, rng=RNG):
    return rng.integers(0, 256, shape, dtype=np.uint8)


def rand_s8(shape, rng=RNG):
    return rng.integers(-128, 128, shape, dtype=np.int8)


OUT_KW = {
    "int32": dict(out_dtype=np.int32),
    "float32": dict(out_dtype=np.float32, a_scale=0.02),
    "uint8": dict(out_dtype=np.uint8, a_scale=0.02, out_scale=3.0, out_zero_point=100),
    "int8": dict(out_dtype=np.int8, a_scale=0.02, out_scale=3.0, out_zero_point=-5, relu=True),
}


def _pw(n, k, rng=RNG, zp=True):
    w = rand_s8((n, k), rng)
    return G.pack_weights(w, scale=rng.uniform(0.01, 0.1, n).astype(np.float32),
                          zero_point=rng.integers(-4, 5, n).astype(np.int32) if zp else 0)


def test_wsum_is_the_column_checksum():
    w = rand_s8((37, 29))
    pw = G.pack_weights(w)
    r = pw.chk_r.view(np.uint32).astype(object)
    want = [int(sum(r[j] * int(w[j, k]) for j in range(37))) % 2**32 for k in range(29)]
    assert pw.wsum.view(np.uint32).tolist() == want
    assert pw.wsum.dtype == np.int32 and not pw.wsum.flags.writeable
    assert np.all(pw.chk_r & 1)
    # no nonzero column has a checksum divisible by 2^25 (activation flips always visible)
    assert not np.any((pw.wsum.view(np.uint32) & (2**25 - 1)) == 0)


def test_zero_column_sum_still_caught():
    # column 0 sums to zero: a plain (r = 1) row checksum would miss flips of a[:, 0]
    w = rand_s8((8, 5))
    w[:, 0] = [1, -1, 2, -2, 3, -3, 4, -4]
    pw = G.pack_weights(w)
    a = rand_u8((3, 5))
    clean = G.qmatmul(a, pw)
    for bit in range(8):
        y, f = faults.run_with_fault(a, pw, "activations", (1, 0, bit))
        assert np.any(y != clean) and f.tolist() == [False, True, False]


@pytest.mark.parametrize("kind", list(OUT_KW))
def test_clean_runs_never_flag(isa, kind):
    for m, n, k in [(1, 1, 1), (1, 33, 5), (7, 64, 64), (9, 70, 163), (13, 17, 300), (0, 5, 4),
                    (3, 0, 4), (3, 5, 0)]:
        pw = _pw(n, k)
        a = rand_u8((m, k))
        y0 = G.qmatmul(a, pw, a_zero_point=17, **OUT_KW[kind])
        y, f = G.qmatmul(a, pw, a_zero_point=17, check="report", **OUT_KW[kind])
        np.testing.assert_array_equal(y, y0)
        assert f.shape == (m,) and f.dtype == bool and not f.any(), (m, n, k)
        assert G.qmatmul(a, pw, a_zero_point=17, check="raise", **OUT_KW[kind]).shape == y0.shape


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 20), n=st.integers(1, 80), k=st.integers(1, 200),
       a_zp=st.integers(0, 255), seed=st.integers(0, 2**31), extremes=st.booleans(),
       kind=st.sampled_from(list(OUT_KW)))
def test_hypothesis_clean_never_flags(m, n, k, a_zp, seed, extremes, kind):
    rng = np.random.default_rng(seed)
    if extremes:  # 0/255 x -128/127: the largest products, sums that wrap in the checksum
        a = rng.choice(np.array([0, 255], np.uint8), (m, k))
        w = rng.choice(np.array([-128, 127], np.int8), (n, k))
    else:
        a, w = rand_u8((m, k), rng), rand_s8((n, k), rng)
    pw = G.pack_weights(w, scale=0.05, zero_point=int(rng.integers(-128, 128)))
    for isa in _dispatch.available_isas():
        with _dispatch.use_isa(isa):
            _, f = G.qmatmul(a, pw, a_zero_point=a_zp, check="report", **OUT_KW[kind])
            assert not f.any(), isa


def test_checksum_wraps_mod_2_32():
    # sum_j acc and sum_k a * wsum both overflow int32 by far; the identity holds mod 2^32
    k, n = 4096, 512
    pw = G.pack_weights(np.full((n, k), -128, np.int8))
    a = np.full((3, k), 255, np.uint8)
    y, f = G.qmatmul(a, pw, check="report")
    assert not f.any() and y[0, 0] == 255 * -128 * k


def test_every_accumulator_flip_is_caught(isa):
    m, n, k = 5, 40, 23  # one full and one partial panel on every layout
    pw = _pw(n, k)
    a = rand_u8((m, k))
    clean = G.qmatmul(a, pw, a_zero_point=3)
    for i in range(m):
        for j in range(n):
            for bit in range(32):
                y, f = faults.run_with_fault(a, pw, "accumulators", (i, j, bit), a_zero_point=3)
                assert y[i, j] != clean[i, j]
                assert f.tolist() == [r == i for r in range(m)], (i, j, bit)


@pytest.mark.parametrize("kind", list(OUT_KW))
def test_output_flips_are_caught(isa, kind):
    m, n, k = 4, 37, 50
    pw = _pw(n, k)
    a = rand_u8((m, k))
    nbits = 8 * np.dtype(OUT_KW[kind]["out_dtype"]).itemsize
    for _ in range(300):
        i, j, bit = int(RNG.integers(m)), int(RNG.integers(n)), int(RNG.integers(nbits))
        y, f = faults.run_with_fault(a, pw, "outputs", (i, j, bit), a_zero_point=9,
                                     **OUT_KW[kind])
        assert f.tolist() == [r == i for r in range(m)]


def test_weight_and_activation_flips_that_change_the_result_are_caught(isa):
    m, n, k = 6, 45, 70
    pw = _pw(n, k)
    a = rand_u8((m, k))
    a[2] = 0  # a zero row: flips in the weight cannot change it
    clean = G.qmatmul(a, pw, a_zero_point=5)
    nbuf = pw._buffer(_gemm_int8.layout_for_isa(_gemm_int8._get_isa())).shape[0]
    n_eff = 0
    for _ in range(400):
        y, f = faults.run_with_fault(a, pw, "weights",
                                     (int(RNG.integers(nbuf)), int(RNG.integers(8))),
                                     a_zero_point=5)
        changed = np.any(y != clean, axis=1)
        n_eff += changed.any()
        np.testing.assert_array_equal(f, changed)
        assert not f[2]
    assert n_eff > 100
    np.testing.assert_array_equal(G.qmatmul(a, pw, a_zero_point=5), clean)  # restored
    a_copy = a.copy()
    for _ in range(400):
        where = (int(RNG.integers(m)), int(RNG.integers(k)), int(RNG.integers(8)))
        y, f = faults.run_with_fault(a, pw, "activations", where, a_zero_point=5)
        changed = np.any(y != clean, axis=1)
        np.testing.assert_array_equal(f, changed)
    np.testing.assert_array_equal(a, a_copy)  # run_with_fault never touches the caller's a


def test_flags_identical_on_every_isa_and_thread_count():
    m, n, k = 70, 300, 257
    pw = _pw(n, k)
    a = rand_u8((m, k))
    got = []
    for isa in _dispatch.available_isas():
        with _dispatch.use_isa(isa):
            for nt in (1, 2, 3):
                for where in [(0, 0, 0), (33, 299, 31), (69, 150, 7)]:
                    for target in ("accumulators", "outputs"):
                        y, f = faults.run_with_fault(a, pw, target, where, n_threads=nt,
                                                     **OUT_KW["uint8"])
                        got.append((isa, nt, target, where, f.copy(), y.copy()))
    by_case = {}
    for isa, nt, target, where, f, y in got:
        ref = by_case.setdefault((target, where), (f, y))
        np.testing.assert_array_equal(f, ref[0], err_msg=f"{isa} {nt}")
        np.testing.assert_array_equal(y, ref[1], err_msg=f"{isa} {nt}")
        assert f.sum() == 1 and f[where[0]]


@pytest.mark.parametrize("kind", list(OUT_KW))
def test_checks_per_tile_on_several_row_and_column_tiles(kind):
    # several row tiles (mc <= 192) and column tiles (nc <= 256) with a partial panel: each
    # thread checks the tiles it computed, the row totals are combined after the region; the
    # flags must name exactly the faulty row whatever the thread count
    m, n, k = 401, 600, 67
    pw = _pw(n, k)
    a = rand_u8((m, k))
    kw = dict(OUT_KW[kind], a_zero_point=7)
    clean = G.qmatmul(a, pw, **kw)
    for nt in (1, 2, 3):
        y, f = G.qmatmul(a, pw, check="report", n_threads=nt, **kw)
        assert not f.any()
        np.testing.assert_array_equal(y, clean)
        for target, where in [("accumulators", (0, 599, 31)), ("accumulators", (200, 256, 0)),
                              ("outputs", (400, 255, 3)), ("outputs", (192, 598, 0)),
                              ("activations", (383, 66, 7)), ("activations", (191, 0, 0))]:
            y, f = faults.run_with_fault(a, pw, target, where, n_threads=nt, **kw)
            assert f.tolist() == [r == where[0] for r in range(m)], (nt, target, where)


def test_raise_names_rows_and_report_shapes():
    pw = _pw(16, 8)
    a = rand_u8((2, 3, 8))
    y, f = G.qmatmul(a, pw, check="report")
    assert y.shape == (2, 3, 16) and f.shape == (2, 3) and not f.any()
    with pytest.raises(SoftErrorDetected, match="row") as ei:
        G.qmatmul(a, pw, check="raise", _inject=(_gemm_int8.INJ_ACC, 4, 3, 12))
    e = ei.value
    assert isinstance(e, RuntimeError)
    assert e.rows.tolist() == [4] and e.flags.shape == (2, 3) and e.flags[1, 1]
    assert e.result.shape == (2, 3, 16)
    with pytest.raises(ValueError, match="check"):
        G.qmatmul(a, pw, check="yes")
    with pytest.raises(ValueError, match="check"):
        G.linear(np.ones((1, 8), np.float32), pw, check="sometimes")


def test_int8_activations_and_linear(isa):
    pw = _pw(33, 40)
    a8 = rand_s8((5, 40))
    y0 = G.qmatmul(a8, pw, a_zero_point=-3)
    y, f = G.qmatmul(a8, pw, a_zero_point=-3, check="report")
    np.testing.assert_array_equal(y, y0) and not f.any()
    assert not f.any()
    x = RNG.standard_normal((2, 4, 40)).astype(np.float32)
    y0 = G.linear(x, pw)
    y, f = G.linear(x, pw, check="report")
    np.testing.assert_array_equal(y, y0)
    assert f.shape == (2, 4) and not f.any()
    np.testing.assert_array_equal(G.linear(x, pw, check="raise"), y0)


def test_serialization_keeps_checksums_and_v1_loads(tmp_path):
    w = rand_s8((21, 19))
    pw = G.pack_weights(w, scale=0.1, zero_point=2, bias=np.arange(21.0))
    blob = pw.to_bytes()
    assert struct.unpack_from("<H", blob, 4)[0] == 2
    assert blob[-4 * 19:] == pw.wsum.astype("<i4").tobytes()
    assert blob[-4 * (19 + 21):-4 * 19] == pw.chk_r.astype("<i4").tobytes()
    for pw2 in (G.PackedWeights.from_bytes(blob), pickle.loads(pickle.dumps(pw))):
        np.testing.assert_array_equal(pw2.wsum, pw.wsum)
        np.testing.assert_array_equal(pw2.unpack(), w)
    # a version-1 blob (no checksum) still loads, the checksum is recomputed
    v1 = bytearray(blob[: -4 * (19 + 21)])
    v1[4:6] = struct.pack("<H", 1)
    pw1 = G.PackedWeights.from_bytes(bytes(v1))
    np.testing.assert_array_equal(pw1.wsum, pw.wsum)
    _, f = G.qmatmul(rand_u8((3, 19)), pw1, check="report")
    assert not f.any()
    # a corrupted weight byte at rest is caught when loading
    bad = bytearray(blob)
    bad[24 + 5] ^= 0x10
    with pytest.raises(ValueError, match="checksum"):
        G.PackedWeights.from_bytes(bytes(bad))
    bad = bytearray(blob)
    bad[-1] ^= 0x01
    with pytest.raises(ValueError, match="checksum"):
        G.PackedWeights.from_bytes(bytes(bad))


def test_check_off_unchanged_and_inputs_untouched():
    pw = _pw(20, 30)
    a = rand_u8((4, 30))
    a.setflags(write=False)
    y0 = G.qmatmul(a, pw, **OUT_KW["uint8"])
    y, f = G.qmatmul(a, pw, check="report", **OUT_KW["uint8"])
    np.testing.assert_array_equal(y, y0)
    out = np.empty_like(y0)
    r, f = G.qmatmul(a, pw, check="report", out=out, **OUT_KW["uint8"])
    assert r is out


def test_evaluate_gemm_small():
    r = faults.evaluate_gemm((3, 40, 30), n_flips=200, n_clean=200, overhead=False)
    assert r["false_positives"] == 0
    for t, tr in r["targets"].items():
        assert tr["detection_rate"] == 1.0, t
        assert tr["effective"] > 0
    assert "| accumulators |" in r.table()
