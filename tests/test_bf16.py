"""bfloat16 conversions (lowprec.bf16) against independent references.

- "nearest" from float32: ml_dtypes, bit for bit (every float32 class).
- "truncate": numpy uint32 bit arithmetic.
- "stochastic": a numpy uint64 re-implementation of the documented counter-based stream
  (splitmix64 of key + (i//4 + 1) * golden), plus a statistical unbiasedness check.
- float64: exact rational arithmetic (fractions.Fraction), which knows nothing of float32.
"""

import concurrent.futures
import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hard_cases
from lowprec import _dispatch
from lowprec._kernels import _bf16
from lowprec.bf16 import bfloat16, from_bfloat16, round_bfloat16, to_bfloat16

CHUNK = _bf16.CHUNK
# NaN inputs make numpy's own casts (used by the references) warn; the warnings are expected.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
BF16 = np.dtype(ml_dtypes.bfloat16)


# ----------------------------------------------------------------------------- references

def ref_nearest_f32(x):
    return np.asarray(x, np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)


def ref_qnan(u):
    return (((u >> 16) & 0x8000) | 0x7FC0).astype(np.uint16)


def ref_truncate_f32(x):
    u = np.asarray(x, np.float32).view(np.uint32)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, ref_qnan(u), (u >> 16).astype(np.uint16)).astype(np.uint16)


def ref_random16(key, n, start=0):
    """The documented stream: bits 16*(i%4).. of splitmix64(key + (i//4 + 1) * golden)."""
    i = np.arange(start, start + n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(key) + (i // np.uint64(4) + np.uint64(1)) * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return ((z >> (np.uint64(16) * (i % np.uint64(4)))) & np.uint64(0xFFFF)).astype(np.uint32)


def ref_stochastic_f32(x, key, start=0):
    u = np.asarray(x, np.float32).reshape(-1).view(np.uint32)
    r = ref_random16(key, u.size, start)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    with np.errstate(over="ignore"):
        t = ((u + r) >> 16).astype(np.uint16)  # no wrap: only NaNs come near 2^32
    return np.where(nan, ref_qnan(u), t).astype(np.uint16)


def key_of(seed):
    return int(np.random.default_rng(seed).integers(0, 2**64, dtype=np.uint64))


def _round_frac(a, precision, emin, emax, mode):
    """|a| (Fraction > 0) rounded to a binary format with `precision` significand bits, minimum
    normal exponent emin, maximum exponent emax; mode 'nearest' (even) or 'zero'.  Returns the
    rounded Fraction, or None for overflow to inf."""
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    e = max(e, emin)  # subnormals: fixed spacing below the smallest normal
    ulp = Fraction(2) ** (e - precision + 1)
    q = a / ulp
    n = q.numerator // q.denominator
    r = q - n
    if mode == "nearest" and (r > Fraction(1, 2) or (r == Fraction(1, 2) and n % 2 == 1)):
        n += 1
    v = n * ulp
    largest = (2 - Fraction(2) ** (1 - precision)) * Fraction(2) ** emax
    if v > largest:
        return None if mode == "nearest" else largest
    return v


def ref_f64(d, mode):
    """float64 -> bf16 bits, rounded once, exactly ('nearest' or 'zero')."""
    d = float(d)
    if math.isnan(d):
        return 0xFFC0 if math.copysign(1.0, d) < 0 else 0x7FC0
    sign = 0x8000 if math.copysign(1.0, d) < 0 else 0
    if math.isinf(d):
        return sign | 0x7F80
    if d == 0:
        return sign
    v = _round_frac(Fraction(abs(d)), 8, -126, 127, mode)
    if v is None:
        return sign | 0x7F80
    bits = int(np.array(float(v), np.float32).view(np.uint32)) >> 16  # v is a bf16: exact
    return sign | bits


def ref_f64_to_f32_toward_zero(d):
    """float64 -> float32 rounded toward zero, exactly (for the stochastic float64 reference)."""
    d = float(d)
    if math.isnan(d) or math.isinf(d) or d == 0:
        return np.float32(d)
    v = _round_frac(Fraction(abs(d)), 24, -126, 127, "zero")
    return np.float32(math.copysign(float(v), d))


def bits(a):
    return np.asarray(a).view(np.uint16)


# ----------------------------------------------------------------------------- float32 -> bf16

def test_nearest_matches_ml_dtypes_specials_and_sample(isa):
    x = np.concatenate([hard_cases.float32_specials(), hard_cases.all_float32_sample(1 << 18)])
    np.testing.assert_array_equal(bits(to_bfloat16(x)), ref_nearest_f32(x))
    np.testing.assert_array_equal(
        round_bfloat16(x).view(np.uint32), ref_nearest_f32(x).astype(np.uint32) << 16
    )


def test_nearest_nan_is_canonical_quiet_nan(isa):
    x = hard_cases.float32_specials()
    u = x.view(np.uint32)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    for mode in ("nearest", "truncate", "stochastic"):
        b = bits(to_bfloat16(x, rounding=mode, rng=0))
        np.testing.assert_array_equal(b[nan], np.where(u[nan] >> 31, 0xFFC0, 0x7FC0))


def test_overflow_to_inf_and_subnormals_kept(isa):
    x = np.array([3.3895314e38, 3.4e38, -3.4e38, 1e-40, -1e-40, 9.2e-41], dtype=np.float32)
    b = to_bfloat16(x).astype(np.float32)
    assert b[0] == x[0] and b[1] == np.inf and b[2] == -np.inf
    assert b[3] != 0 and b[4] != 0 and b[5] != 0  # subnormals are not flushed


def test_truncate_matches_bit_arithmetic(isa):
    x = np.concatenate([hard_cases.float32_specials(), hard_cases.all_float32_sample(1 << 18)])
    np.testing.assert_array_equal(bits(to_bfloat16(x, rounding="truncate")), ref_truncate_f32(x))
    # A signalling NaN with payload only in the low bits must stay NaN (plain truncation gives inf).
    snan = np.array([0x7F800001, 0xFF800001], np.uint32).view(np.float32)
    assert np.isnan(to_bfloat16(snan, rounding="truncate").astype(np.float32)).all()


@pytest.mark.parametrize("seed", [0, 12345])
def test_stochastic_matches_reference_stream(isa, seed):
    x = np.concatenate([hard_cases.float32_specials(), hard_cases.all_float32_sample(100_003)])
    got = bits(to_bfloat16(x, rounding="stochastic", rng=seed))
    np.testing.assert_array_equal(got, ref_stochastic_f32(x, key_of(seed)))
    got_round = round_bfloat16(x, rounding="stochastic", rng=seed).view(np.uint32)
    np.testing.assert_array_equal(got_round, got.astype(np.uint32) << 16)


@pytest.mark.parametrize("n", sorted(set(hard_cases.SIZES) | {CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 13}))
def test_sizes_and_chunk_boundaries(isa, n):
    x = hard_cases.all_float32_sample(n, seed=n)
    key = key_of(7)
    for nt in (1, 2):
        np.testing.assert_array_equal(bits(to_bfloat16(x, n_threads=nt)), ref_nearest_f32(x))
        np.testing.assert_array_equal(
            bits(to_bfloat16(x, rounding="truncate", n_threads=nt)), ref_truncate_f32(x)
        )
        np.testing.assert_array_equal(
            bits(to_bfloat16(x, rounding="stochastic", rng=7, n_threads=nt)),
            ref_stochastic_f32(x, key),
        )
    b = to_bfloat16(x)
    np.testing.assert_array_equal(
        from_bfloat16(b).view(np.uint32), bits(b).astype(np.uint32) << 16
    )


def test_kernel_any_start_index(isa):
    """The C kernels accept any start index (scalar head before the 4-element groups): converting
    pieces with index0 gives the bits of converting the whole array."""
    x = hard_cases.all_float32_sample(1000, seed=3)
    d = x.astype(np.float64)
    key = 0xDEADBEEF12345678
    for start in (0, 1, 2, 3, 5, 17):
        for nt in (1, 2):
            ref = ref_stochastic_f32(x[start:], key, start)
            dst = np.empty(x.size - start, np.uint16)
            _bf16.from_float(x[start:], dst, _bf16.STOCHASTIC, key, nt, start)
            np.testing.assert_array_equal(dst, ref)
            _bf16.from_float(d[start:], dst, _bf16.STOCHASTIC, key, nt, start)
            np.testing.assert_array_equal(dst, ref)
            r = np.empty(x.size - start, np.float32)
            _bf16.round_f32(x[start:], r, _bf16.STOCHASTIC, key, nt, start)
            np.testing.assert_array_equal(r.view(np.uint32), ref.astype(np.uint32) << 16)


def _offset_view(n, dtype, offset_bytes):
    """A 1-D array of n elements of dtype starting offset_bytes into a 64-byte aligned buffer."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.zeros(n * itemsize + 128, np.uint8)
    base = (-raw.ctypes.data) % 64
    return raw[base + offset_bytes : base + offset_bytes + n * itemsize].view(dtype)


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 40, 1000])
def test_nontemporal_path_same_bits(isa, n):
    """Streaming stores (used for large outputs) with every output alignment: same bits as the
    plain path, including the scalar head that reaches 32-byte alignment and the stochastic
    generator's group-of-4 constraint."""
    x = hard_cases.all_float32_sample(n, seed=n + 1)
    d = x.astype(np.float64)
    b = np.ascontiguousarray(ref_nearest_f32(x))
    key = 12345
    for off in (0, 2, 4, 6, 8, 16, 24):  # offsets in bytes from a 64-byte boundary
        for index0 in (0, 1, 4, 6):
            for mode in (_bf16.NEAREST, _bf16.TRUNCATE, _bf16.STOCHASTIC):
                ref = np.empty(n, np.uint16)
                _bf16.from_float(x, ref, mode, key, 1, index0, 0)
                out = _offset_view(n, np.uint16, off)
                _bf16.from_float(x, out, mode, key, 1, index0, 1)
                np.testing.assert_array_equal(out, ref)
                _bf16.from_float(d, out, mode, key, 1, index0, 1)
                ref64 = np.empty(n, np.uint16)
                _bf16.from_float(d, ref64, mode, key, 1, index0, 0)
                np.testing.assert_array_equal(out, ref64)
                if off % 4 == 0:
                    r = _offset_view(n, np.float32, off)
                    _bf16.round_f32(x, r, mode, key, 1, index0, 1)
                    np.testing.assert_array_equal(r.view(np.uint32), ref.astype(np.uint32) << 16)
        if off % 4 == 0:
            f = _offset_view(n, np.float32, off)
            _bf16.to_float(b, f, 1, 1)
            np.testing.assert_array_equal(f.view(np.uint32), b.astype(np.uint32) << 16)
        if off % 8 == 0:
            f64 = _offset_view(n, np.float64, off)
            _bf16.to_float(b, f64, 1, 1)
            ref64 = np.empty(n, np.float64)
            _bf16.to_float(b, ref64, 1, 0)
            np.testing.assert_array_equal(f64.view(np.uint64), ref64.view(np.uint64))


def test_large_arrays_use_streaming_path(isa):
    """Above NONTEMPORAL_MIN_BYTES of output the kernels stream; results are unchanged."""
    n = _bf16.NONTEMPORAL_MIN_BYTES // 2 + 37
    x = hard_cases.all_float32_sample(n, seed=77)
    np.testing.assert_array_equal(bits(to_bfloat16(x, n_threads=2)), ref_nearest_f32(x))
    s1 = bits(to_bfloat16(x, rounding="stochastic", rng=8, n_threads=1))
    np.testing.assert_array_equal(s1[:100_000], ref_stochastic_f32(x[:100_000], key_of(8)))
    np.testing.assert_array_equal(s1, bits(to_bfloat16(x, rounding="stochastic", rng=8, n_threads=2)))
    b = to_bfloat16(x)
    np.testing.assert_array_equal(from_bfloat16(b, n_threads=2).view(np.uint32), bits(b).astype(np.uint32) << 16)


# ----------------------------------------------------------------------------- stochastic statistics

@pytest.mark.parametrize("value", [1 + 2**-9, 1 + 2**-8 + 2**-12, -3.3 , 1e-39, 7e-3])
def test_stochastic_is_unbiased(isa, value):
    n = 1 << 18
    x = np.full(n, value, dtype=np.float32)
    y = to_bfloat16(x, rounding="stochastic", rng=np.random.default_rng(42)).astype(np.float64)
    lo = to_bfloat16(x[:1], rounding="truncate").astype(np.float64)[0]
    # the bf16 neighbour of lo away from zero: one more in the bit pattern
    lo_bits = int(np.float32(lo).view(np.uint32)) >> 16
    hi = float(np.array([(lo_bits + 1) << 16], np.uint32).view(np.float32)[0])
    ulp = abs(hi - lo)
    assert set(np.unique(np.abs(y))) <= {abs(lo), abs(hi)}
    p = abs(float(np.float32(value)) - lo) / ulp  # exact probability of rounding away
    sigma = ulp * math.sqrt(max(p * (1 - p), 1e-12) / n)
    assert abs(y.mean() - float(np.float32(value))) <= 5 * sigma + 2**-16 * ulp


def test_stochastic_reproducible_and_key_sensitive():
    x = hard_cases.all_float32_sample(10_000, seed=5)
    a = to_bfloat16(x, rounding="stochastic", rng=3)
    b = to_bfloat16(x, rounding="stochastic", rng=np.random.default_rng(3))
    c = to_bfloat16(x, rounding="stochastic", rng=4)
    np.testing.assert_array_equal(bits(a), bits(b))
    assert not np.array_equal(bits(a), bits(c))
    g = np.random.default_rng(9)
    d1 = to_bfloat16(x, rounding="stochastic", rng=g)
    d2 = to_bfloat16(x, rounding="stochastic", rng=g)  # generator advanced: new key
    assert not np.array_equal(bits(d1), bits(d2))
    # rng=None draws fresh entropy
    e1 = to_bfloat16(x, rounding="stochastic")
    e2 = to_bfloat16(x, rounding="stochastic")
    assert not np.array_equal(bits(e1), bits(e2))
    # SeedSequence works like default_rng(seedseq)
    s = to_bfloat16(x, rounding="stochastic", rng=np.random.SeedSequence(3))
    np.testing.assert_array_equal(bits(s), bits(a))


def test_stochastic_rounds_to_neighbours_only():
    x = hard_cases.all_float32_sample(50_000, seed=11)
    x = x[np.isfinite(x) & (np.abs(x) < 3e38)]
    y = bits(to_bfloat16(x, rounding="stochastic", rng=1)).astype(np.int64)
    t = ref_truncate_f32(x).astype(np.int64)
    assert np.all((y == t) | (y == t + 1))
    exact = (x.view(np.uint32) & 0xFFFF) == 0
    assert np.all(y[exact] == t[exact])  # representable values never move


# ----------------------------------------------------------------------------- float64 -> bf16

def test_float64_nearest_single_rounding(isa):
    d = hard_cases.float64_bf16_hard_cases()
    got = bits(to_bfloat16(d))
    ref = np.array([ref_f64(v, "nearest") for v in d], dtype=np.uint16)
    np.testing.assert_array_equal(got, ref)
    # The documented example where ml_dtypes' double rounding differs.
    v = np.array([1 + 2**-8 + 2**-40])
    assert to_bfloat16(v).astype(np.float64)[0] == 1.0078125
    assert v.astype(ml_dtypes.bfloat16).astype(np.float64)[0] == 1.0


def test_float64_random_bits(isa):
    rng = np.random.default_rng(2)
    d = rng.integers(0, 2**64, size=3000, dtype=np.uint64).view(np.float64)
    # plus values in the float32 range, where the interesting rounding happens
    d = np.concatenate([d, rng.standard_normal(3000) * 2.0 ** rng.integers(-140, 130, 3000)])
    np.testing.assert_array_equal(
        bits(to_bfloat16(d)), np.array([ref_f64(v, "nearest") for v in d], np.uint16)
    )
    np.testing.assert_array_equal(
        bits(to_bfloat16(d, rounding="truncate")),
        np.array([ref_f64(v, "zero") for v in d], np.uint16),
    )


def test_float64_truncate_and_stochastic(isa):
    d = hard_cases.float64_bf16_hard_cases()
    np.testing.assert_array_equal(
        bits(to_bfloat16(d, rounding="truncate")),
        np.array([ref_f64(v, "zero") for v in d], np.uint16),
    )
    # stochastic float64 = stochastic float32 of the float64 truncated to float32
    f = np.array([ref_f64_to_f32_toward_zero(v) for v in d], np.float32)
    np.testing.assert_array_equal(
        bits(to_bfloat16(d, rounding="stochastic", rng=5)), ref_stochastic_f32(f, key_of(5))
    )


def test_float64_matches_float32_when_exact(isa):
    x = hard_cases.all_float32_sample(50_000, seed=8)
    for mode in ("nearest", "truncate", "stochastic"):
        np.testing.assert_array_equal(
            bits(to_bfloat16(x.astype(np.float64), rounding=mode, rng=1)),
            bits(to_bfloat16(x, rounding=mode, rng=1)),
        )


# ----------------------------------------------------------------------------- bf16 -> float

def test_from_bfloat16_all_patterns(isa):
    b = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(ml_dtypes.bfloat16)
    f32 = from_bfloat16(b)
    assert f32.dtype == np.float32
    np.testing.assert_array_equal(f32.view(np.uint32), np.arange(1 << 16, dtype=np.uint32) << 16)
    f64 = from_bfloat16(b, dtype=np.float64)
    ref = b.astype(np.float32).astype(np.float64)
    finite = ~np.isnan(ref)
    np.testing.assert_array_equal(f64.view(np.uint64)[finite], ref.view(np.uint64)[finite])
    assert np.all(np.isnan(f64[~finite]))
    np.testing.assert_array_equal(np.signbit(f64), np.signbit(ref))
    # out's dtype decides when dtype is not given
    out = np.empty(b.shape, np.float64)
    assert from_bfloat16(b, out=out) is out


def test_round_trip_exact(isa):
    b = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    b = b[((b & 0x7FFF) <= 0x7F80)].view(ml_dtypes.bfloat16)  # non-NaN patterns
    for mode in ("nearest", "truncate", "stochastic"):
        np.testing.assert_array_equal(bits(to_bfloat16(from_bfloat16(b), rounding=mode)), bits(b))
        np.testing.assert_array_equal(
            bits(to_bfloat16(from_bfloat16(b, dtype=np.float64), rounding=mode)), bits(b)
        )


# ----------------------------------------------------------------------------- shapes and layouts

def test_shapes_0d_empty_nd(isa):
    s = to_bfloat16(np.float32(1.5))
    assert s.shape == () and s.dtype == BF16 and float(s) == 1.5
    assert to_bfloat16(np.zeros((0, 3), np.float32)).shape == (0, 3)
    assert from_bfloat16(np.zeros((2, 0), BF16)).shape == (2, 0)
    assert round_bfloat16(np.zeros(0, np.float32)).shape == (0,)
    x = hard_cases.all_float32_sample(3 * 5 * 7).reshape(3, 5, 7)
    np.testing.assert_array_equal(bits(to_bfloat16(x)), ref_nearest_f32(x))
    assert from_bfloat16(to_bfloat16(x)).shape == (3, 5, 7)
    # array-likes
    assert to_bfloat16([1.0, 2.0]).dtype == BF16  # a list of Python floats is float64


def test_layouts(isa):
    a = hard_cases.all_float32_sample(40 * 33, seed=4).reshape(40, 33)
    ref = ref_nearest_f32(a)
    rev = a[::-1, ::-1]
    np.testing.assert_array_equal(bits(to_bfloat16(rev)), ref[::-1, ::-1])
    for name, arr in hard_cases.layouts(a).items():
        np.testing.assert_array_equal(bits(to_bfloat16(arr)), ref, err_msg=name)
        np.testing.assert_array_equal(
            bits(to_bfloat16(arr, rounding="stochastic", rng=3)),
            bits(to_bfloat16(a, rounding="stochastic", rng=3)),
            err_msg=name,
        )
        np.testing.assert_array_equal(round_bfloat16(arr).view(np.uint32), ref.astype(np.uint32) << 16)
        b = to_bfloat16(a)
        for bname, barr in hard_cases.layouts(b.view(np.uint16)).items():
            got = from_bfloat16(barr.view(ml_dtypes.bfloat16))
            np.testing.assert_array_equal(got.view(np.uint32), ref.astype(np.uint32) << 16, err_msg=bname)


def test_unaligned_input_and_out(isa):
    x = hard_cases.all_float32_sample(1001, seed=9)
    raw = np.zeros(x.nbytes + 1, np.uint8)
    ux = raw[1:].view(np.float32)
    ux[...] = x
    assert not ux.flags.aligned
    rawo = np.zeros(2 * x.size + 1, np.uint8)
    uo = rawo[1:].view(BF16)
    assert to_bfloat16(ux, out=uo) is uo
    np.testing.assert_array_equal(bits(uo), ref_nearest_f32(x))
    np.testing.assert_array_equal(round_bfloat16(ux), round_bfloat16(x))


def test_memmap_readonly(tmp_path, isa):
    x = hard_cases.all_float32_sample(70_000, seed=6)
    path = tmp_path / "x.f32"
    x.tofile(path)
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=x.shape)
    np.testing.assert_array_equal(bits(to_bfloat16(mm, n_threads=2)), ref_nearest_f32(x))
    np.testing.assert_array_equal(bits(to_bfloat16(mm.astype(np.float64))), ref_nearest_f32(x))
    b = to_bfloat16(x)
    bpath = tmp_path / "b.bf16"
    b.view(np.uint16).tofile(bpath)
    bm = np.memmap(bpath, dtype=BF16, mode="r", shape=b.shape)
    np.testing.assert_array_equal(from_bfloat16(bm), b.astype(np.float32))


def test_other_input_dtypes():
    h = np.array([1.5, -0.0, np.inf, 6e-8, 65504], np.float16)
    np.testing.assert_array_equal(bits(to_bfloat16(h)), bits(to_bfloat16(h.astype(np.float32))))
    b = to_bfloat16(np.float32([1, 2, 3]))
    c = to_bfloat16(b)
    np.testing.assert_array_equal(bits(c), bits(b))
    assert not np.shares_memory(b, c)
    big = np.array([1.25, -3.0], dtype=">f4")
    np.testing.assert_array_equal(bits(to_bfloat16(big)), ref_nearest_f32(big.astype(np.float32)))
    np.testing.assert_array_equal(round_bfloat16(big), np.float32([1.25, -3.0]))


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("dt", [np.int32, np.uint16, np.int8, np.bool_, np.complex64, object])
def test_bad_dtype_type_error(dt):
    x = np.zeros(4, dtype=dt)
    with pytest.raises(TypeError):
        to_bfloat16(x)
    with pytest.raises(TypeError):
        round_bfloat16(x)
    with pytest.raises(TypeError):
        from_bfloat16(x)
    with pytest.raises(TypeError):
        round_bfloat16(np.zeros(4))  # float64 is not accepted by round_bfloat16
    with pytest.raises(TypeError):
        from_bfloat16(np.zeros(4, BF16), dtype=np.float16)
    with pytest.raises(TypeError):
        from_bfloat16(np.zeros(4, BF16), dtype="not a dtype")


@pytest.mark.parametrize("rounding", ["Nearest", "rne", "", None, 0])
def test_bad_rounding(rounding):
    with pytest.raises(ValueError):
        to_bfloat16(np.zeros(4, np.float32), rounding=rounding)
    with pytest.raises(ValueError):
        round_bfloat16(np.zeros(4, np.float32), rounding=rounding)


def test_bad_rng():
    x = np.zeros(4, np.float32)
    for bad in ("seed", 1.5, True, object()):
        with pytest.raises(TypeError):
            to_bfloat16(x, rounding="stochastic", rng=bad)
    with pytest.raises(ValueError):
        to_bfloat16(x, rounding="stochastic", rng=-1)


def _bad_outs(shape, dtype, x):
    good = np.empty(shape, dtype)
    wrong_dtype = np.empty(shape, np.int32)
    wrong_shape = np.empty((shape[0] + 1,) + shape[1:], dtype)
    noncontig = np.empty((shape[0], 2 * shape[1]), dtype)[:, ::2]
    readonly = np.empty(shape, dtype)
    readonly.setflags(write=False)
    return good, [
        (TypeError, wrong_dtype),
        (ValueError, wrong_shape),
        (ValueError, noncontig),
        (ValueError, readonly),
        (TypeError, [[0] * shape[1]] * shape[0]),
    ]


def test_bad_out_checked_before_any_write():
    x = hard_cases.all_float32_sample(6 * 8).reshape(6, 8)
    g = np.random.default_rng(0)
    state = g.bit_generator.state
    for fn, kwargs, out_dtype, inp in [
        (to_bfloat16, {"rounding": "stochastic", "rng": g}, BF16, x),
        (round_bfloat16, {"rounding": "stochastic", "rng": g}, np.float32, x),
        (from_bfloat16, {}, np.float32, to_bfloat16(x)),
    ]:
        _, bads = _bad_outs(x.shape, out_dtype, inp)
        for exc, out in bads:
            with pytest.raises(exc):
                fn(inp, out=out, **kwargs)
    assert g.bit_generator.state == state  # nothing drawn when a check fails
    # overlap with the input, including in-place
    with pytest.raises(ValueError):
        round_bfloat16(x, out=x)
    buf = np.zeros(2 * 48, np.uint16)
    b_in = buf[:48].view(BF16).reshape(6, 8)
    f_out = buf.view(np.float32).reshape(6, 8)  # shares memory with b_in
    before = buf.copy()
    with pytest.raises(ValueError):
        from_bfloat16(b_in, out=f_out)
    np.testing.assert_array_equal(buf, before)
    # n_threads is checked before writing too
    out = np.full(x.shape, 7, BF16)
    with pytest.raises(ValueError):
        to_bfloat16(x, out=out, n_threads=0)
    assert np.all(out.astype(np.float32) == 7)


def test_out_is_used_and_returned(isa):
    x = hard_cases.all_float32_sample(5 * 9, seed=2).reshape(5, 9)
    out = np.empty((5, 9), BF16)
    assert to_bfloat16(x, out=out) is out
    np.testing.assert_array_equal(bits(out), ref_nearest_f32(x))
    out32 = np.empty((5, 9), np.float32)
    assert round_bfloat16(x, out=out32) is out32
    assert from_bfloat16(out, out=out32) is out32
    out0 = np.empty((), BF16)
    assert to_bfloat16(np.float64(2.0), out=out0) is out0 and float(out0) == 2.0


def test_kernel_twins_check_lengths():
    with pytest.raises(ValueError):
        _bf16.from_float(np.zeros(4, np.float32), np.zeros(3, np.uint16))
    with pytest.raises(ValueError):
        _bf16.to_float(np.zeros(4, np.uint16), np.zeros(5, np.float32))
    with pytest.raises(ValueError):
        _bf16.from_float(np.zeros(4, np.float32), np.zeros(4, np.uint16), 7)


# ----------------------------------------------------------------------------- must not matter

def test_thread_count_and_isa_agnostic():
    x = hard_cases.all_float32_sample(5 * CHUNK + 1234, seed=21)
    d = x.astype(np.float64) * 1.000000123
    results = {}
    for isa in _dispatch.available_isas():
        with _dispatch.use_isa(isa):
            for nt in (1, 2, 3):
                r = []
                for mode in ("nearest", "truncate", "stochastic"):
                    r.append(bits(to_bfloat16(x, rounding=mode, rng=99, n_threads=nt)))
                    r.append(bits(to_bfloat16(d, rounding=mode, rng=99, n_threads=nt)))
                    r.append(round_bfloat16(x, rounding=mode, rng=99, n_threads=nt).view(np.uint32))
                b = to_bfloat16(x)
                r.append(from_bfloat16(b, n_threads=nt).view(np.uint32))
                r.append(from_bfloat16(b, dtype=np.float64, n_threads=nt).view(np.uint64))
                results[(isa, nt)] = r
    first = next(iter(results.values()))
    for k, r in results.items():
        for a, b in zip(first, r):
            np.testing.assert_array_equal(a, b, err_msg=str(k))


def test_inputs_unmodified():
    x = hard_cases.all_float32_sample(3 * CHUNK + 5, seed=31)
    d = x.astype(np.float64)
    b = to_bfloat16(x)
    copies = [x.copy(), d.copy(), b.copy()]
    for mode in ("nearest", "truncate", "stochastic"):
        to_bfloat16(x, rounding=mode, n_threads=2)
        to_bfloat16(d, rounding=mode, n_threads=2)
        round_bfloat16(x, rounding=mode, n_threads=2)
    from_bfloat16(b, n_threads=2)
    from_bfloat16(b, dtype=np.float64, n_threads=2)
    for orig, now in zip(copies, [x, d, b]):
        np.testing.assert_array_equal(orig.view(np.uint8), now.view(np.uint8))


def test_concurrent_calls_from_python_threads():
    x = hard_cases.all_float32_sample(3 * CHUNK + 77, seed=41)
    ref = bits(to_bfloat16(x, rounding="stochastic", rng=5, n_threads=1)).copy()
    ref_n = ref_nearest_f32(x)

    def work(i):
        if i % 2:
            return bits(to_bfloat16(x, rounding="stochastic", rng=5, n_threads=2)), ref
        return bits(to_bfloat16(x, n_threads=2)), ref_n

    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        for got, want in ex.map(work, range(16)):
            np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------- properties

f32_arrays = st.lists(
    st.floats(width=32, allow_nan=True, allow_infinity=True, allow_subnormal=True),
    min_size=0,
    max_size=70,
).map(lambda v: np.array(v, dtype=np.float32))


@settings(max_examples=150, deadline=None)
@given(f32_arrays)
def test_property_nearest_and_idempotence(x):
    b = to_bfloat16(x)
    np.testing.assert_array_equal(bits(b), ref_nearest_f32(x))
    r = round_bfloat16(x)
    for mode in ("nearest", "truncate", "stochastic"):
        # rounding a bf16 value again changes nothing (NaNs are already canonical)
        np.testing.assert_array_equal(round_bfloat16(r, rounding=mode, rng=1).view(np.uint32), r.view(np.uint32))
    # truncation never increases the magnitude, nearest is at least as close as truncation
    t = round_bfloat16(x, rounding="truncate")
    fin = np.isfinite(x) & np.isfinite(r)
    assert np.all(np.abs(t[fin]) <= np.abs(x[fin]))
    assert np.all(np.abs(r[fin].astype(np.float64) - x[fin]) <= np.abs(t[fin].astype(np.float64) - x[fin]))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=40))
def test_property_float64_correctly_rounded(values):
    d = np.array(values, np.float64)
    np.testing.assert_array_equal(
        bits(to_bfloat16(d)), np.array([ref_f64(v, "nearest") for v in d], np.uint16)
    )
    np.testing.assert_array_equal(
        bits(to_bfloat16(d, rounding="truncate")), np.array([ref_f64(v, "zero") for v in d], np.uint16)
    )


@settings(max_examples=100, deadline=None)
@given(f32_arrays, st.integers(0, 2**64 - 1))
def test_property_stochastic_stream(x, seed):
    key = key_of(seed)
    np.testing.assert_array_equal(
        bits(to_bfloat16(x, rounding="stochastic", rng=seed)), ref_stochastic_f32(x, key)
    )
