"""Tests for lowprec.packing: FBGEMM/PyTorch bit order, padding, signedness, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lowprec.packing import pack_bits, unpack_bits
from hard_cases import SIZES


def ref_pack(codes, bits):
    """Bit-by-bit reference: element j -> byte j // (8/bits), offset (j % (8/bits)) * bits."""
    per = 8 // bits
    out = [0] * (-(-len(codes) // per))
    for j, v in enumerate(codes):
        out[j // per] |= (int(v) & ((1 << bits) - 1)) << ((j % per) * bits)
    return np.array(out, np.uint8)


def test_formats_2b_vector():
    codes = np.array([0, 2, 4, 6, 9, 11, 13, 15], np.uint8)
    packed = pack_bits(codes, 4)
    assert packed.tolist() == [0x20, 0x64, 0xB9, 0xFD]
    np.testing.assert_array_equal(unpack_bits(packed, 4, 8), codes)


def test_torch_quint4x2_layout():
    torch = pytest.importorskip("torch")
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    x = np.arange(16, dtype=np.float32)
    qt = torch.quantize_per_tensor(torch.from_numpy(x), 1.0, 0, torch.quint4x2)
    np.testing.assert_array_equal(pack_bits(x.astype(np.uint8), 4), qt.int_repr().numpy())


@pytest.mark.parametrize("bits", [1, 2, 4])
@pytest.mark.parametrize("n", SIZES)
def test_matches_reference(bits, n):
    rng = np.random.default_rng(n * bits)
    codes = rng.integers(0, 1 << bits, n).astype(np.uint8)
    packed = pack_bits(codes, bits)
    np.testing.assert_array_equal(packed, ref_pack(codes, bits))
    np.testing.assert_array_equal(unpack_bits(packed, bits, n), codes)
    s = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), n).astype(np.int8)
    ps = pack_bits(s, bits)
    np.testing.assert_array_equal(ps, ref_pack(s, bits))
    u = unpack_bits(ps, bits, n, signed=True)
    assert u.dtype == np.int8
    np.testing.assert_array_equal(u, s)


def test_padding_is_zero():
    assert pack_bits(np.array([15, 15, 15], np.uint8), 4).tolist() == [0xFF, 0x0F]
    assert pack_bits(np.array([3], np.uint8), 2).tolist() == [3]
    assert pack_bits(np.array([-1], np.int8), 4).tolist() == [0x0F]


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2])
def test_axes_and_layouts(axis):
    rng = np.random.default_rng(abs(axis))
    q = rng.integers(0, 16, (5, 7, 3)).astype(np.uint8)
    p = pack_bits(q, 4, axis=axis)
    moved = np.moveaxis(q, axis, -1).reshape(-1, q.shape[axis])
    expect = np.stack([ref_pack(r, 4) for r in moved]).reshape(
        np.moveaxis(q, axis, -1).shape[:-1] + (-1,))
    np.testing.assert_array_equal(p, np.moveaxis(expect, -1, axis))
    np.testing.assert_array_equal(unpack_bits(p, 4, q.shape[axis], axis=axis), q)
    # non-contiguous and read-only inputs, never modified
    f = np.asfortranarray(q)
    f.setflags(write=False)
    np.testing.assert_array_equal(pack_bits(f, 4, axis=axis), p)
    np.testing.assert_array_equal(pack_bits(q[:, ::1, :][..., :], 4, axis=axis), p)


def test_errors_before_output():
    with pytest.raises(ValueError):
        pack_bits(np.array([16], np.uint8), 4)
    with pytest.raises(ValueError):
        pack_bits(np.array([8], np.int8), 4)
    with pytest.raises(ValueError):
        pack_bits(np.array([-1], np.int16), 4, signed=False)
    with pytest.raises(ValueError):
        pack_bits(np.array([4], np.uint8), 2)
    with pytest.raises(ValueError):
        pack_bits(np.array([1], np.uint8), 3)
    with pytest.raises(TypeError):
        pack_bits(np.array([1.0]), 4)
    with pytest.raises(ValueError):
        pack_bits(np.uint8(1), 4)
    with pytest.raises(np.exceptions.AxisError):
        pack_bits(np.zeros((2, 2), np.uint8), 4, axis=2)
    with pytest.raises(ValueError):
        unpack_bits(np.zeros(3, np.uint8), 4, 8)
    with pytest.raises(TypeError):
        unpack_bits(np.zeros(4, np.int8), 4, 8)
    with pytest.raises(ValueError):
        unpack_bits(np.zeros(4, np.uint8), 4, -1)
    # int8 holding uint4 codes: unsigned on request
    assert pack_bits(np.array([15, 1], np.int8), 4, signed=False).tolist() == [0x1F]


@settings(max_examples=50, deadline=None)
@given(
    bits=st.sampled_from([1, 2, 4]),
    data=st.data(),
    signed=st.booleans(),
)
def test_roundtrip_property(bits, data, signed):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    vals = data.draw(st.lists(st.integers(lo, hi), max_size=70))
    q = np.array(vals, np.int8 if signed else np.uint8)
    p = pack_bits(q, bits)
    assert p.shape == (-(-len(vals) * bits // 8),)
    np.testing.assert_array_equal(unpack_bits(p, bits, len(vals), signed=signed), q)
