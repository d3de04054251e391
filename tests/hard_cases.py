"""The shared generator of hard cases (design.md, "Tests"): sizes around register blocks,
odd sizes, integer extremes, every float32 class, awkward memory layouts."""

import numpy as np

#: Lengths that stress tails: 0, 1, one below / at / above common vector and block widths, odd.
SIZES = (0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 163, 1000)

INT8_EXTREMES = np.array([-128, -127, -1, 0, 1, 126, 127], dtype=np.int8)
UINT8_EXTREMES = np.array([0, 1, 127, 128, 254, 255], dtype=np.uint8)


def float32_specials():
    """Every float32 input class: ±0, ±inf, NaNs with payloads, subnormals, extremes, ties."""
    bits = np.array(
        [
            0x00000000, 0x80000000,  # +0, -0
            0x7F800000, 0xFF800000,  # +inf, -inf
            0x7FC00000, 0xFFC00000,  # quiet NaNs
            0x7F800001, 0xFF800001,  # signalling NaNs (payload only in the low bits)
            0x7FBFFFFF, 0x7FC12345, 0xFFFFFFFF,  # NaN payloads
            0x00000001, 0x80000001,  # smallest subnormals
            0x007FFFFF, 0x00008000, 0x00018000,  # subnormals incl. bf16 ties
            0x00800000, 0x80800000,  # smallest normals
            0x7F7FFFFF, 0xFF7FFFFF,  # largest finite (overflow bf16 to inf)
            0x7F7F7FFF, 0x7F7F8000, 0x7F7F8001,  # just below / at / above the bf16 overflow tie
            0x3F808000, 0x3F818000,  # ties to even, down and up
            0x3F807FFF, 0x3F808001,  # just below / above a tie
            0x3F800000, 0xBF800000, 0x40490FDB,  # 1, -1, pi
        ],
        dtype=np.uint32,
    )
    return bits.view(np.float32)


def all_float32_sample(n=1 << 20, seed=0):
    """``n`` float32 values with uniformly random bit patterns (every class appears)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 1 << 32, size=n, dtype=np.uint64).astype(np.uint32).view(np.float32)


def layouts(a):
    """The same values as ``a`` (2-D) in several memory layouts: C, Fortran, strided, read-only."""
    a = np.ascontiguousarray(a)
    fortran = np.asfortranarray(a)
    padded = np.zeros((a.shape[0], 2 * a.shape[1] + 1), dtype=a.dtype)
    padded[:, ::2][:, : a.shape[1]] = a
    strided = padded[:, ::2][:, : a.shape[1]]
    readonly = a.copy()
    readonly.setflags(write=False)
    return {"C": a, "F": fortran, "strided": strided, "readonly": readonly}


def float64_bf16_hard_cases():
    """float64 values where rounding to bfloat16 through float32 (double rounding) goes wrong or
    nearly so: bf16 ties and near-ties offset by amounts below float32 precision, in the normal,
    subnormal and overflow ranges, plus every float64 class (±0, ±inf, NaNs, float64 subnormals,
    values beyond the float32 range)."""
    vals = [
        1 + 2**-8 + 2**-40,  # ml_dtypes gives 1.0; correctly rounded 1.0078125
        1 + 2**-8 - 2**-40, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 3 * 2**-8 - 2**-45,
        1 + 2**-8 + 2**-24 - 2**-52, 1 + 2**-8 - 2**-25, 1 + 2**-8 - 2**-24,
        0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan,
        5e-324, -5e-324, 2.2250738585072014e-308,  # float64 subnormal / smallest normal
        2.0**-149, 2.0**-150, 2.0**-150 + 2.0**-200, 2.0**-133, 2.0**-134, 2.0**-134 + 2.0**-180,
        3 * 2.0**-134, 3 * 2.0**-134 - 2.0**-190, 2.0**-126, 2.0**-126 - 2.0**-140,
        1e-50, -1e-50, 1e300, -1e300, 1.7976931348623157e308,
        3.4028234663852886e38,  # FLT_MAX
        (2 - 2**-7) * 2.0**127,  # largest bf16
        (2 - 2**-8) * 2.0**127,  # the overflow tie: rounds to inf
        (2 - 2**-8) * 2.0**127 - 2.0**90,  # just below it: largest bf16
        (2 - 2**-8) * 2.0**127 + 2.0**90,
        2.0**128, 2.0**128 - 2.0**70,
    ]
    rng = np.random.default_rng(1)
    # bf16 midpoints, with offsets below float32 precision, across the exponent range.
    e = rng.integers(-133, 128, size=400)
    m = rng.integers(128, 256, size=400)
    mid = (m + 0.5) * 2.0 ** (e - 7).astype(np.float64)
    off = rng.choice([-1.0, 1.0], size=400) * mid * 2.0 ** -rng.integers(25, 52, size=400).astype(float)
    out = np.concatenate([np.array(vals, dtype=np.float64), mid, mid + off, -(mid - off)])
    return out


#: int8 GEMM sizes: the register blocks are 8x32 (generic / avx512vnni) and 6x16 (avx2); K is
#: consumed in quads (vnni) and pairs (avx2), so K mod 4 and K mod 2 tails matter.
GEMM_M = (1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 17)
GEMM_N = (1, 2, 15, 16, 17, 31, 32, 33, 65)
GEMM_K = (1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 163)


def u8s8_saturating(m, n, k):
    """Activations and weights (n x k) whose adjacent pairs overflow int16 (vpmaddubsw saturates):
    255 / 211 / 171 activations against +-127 / -128 / 71 / 107 weights."""
    a = np.resize(np.array([255, 211, 171, 255, 255], dtype=np.uint8), (m, k))
    w = np.resize(np.array([127, 127, -128, -128, 71, 107, 127, -128], dtype=np.int8), (n, k))
    return np.ascontiguousarray(a), np.ascontiguousarray(w)


def rowwise_edge_rows(dim):
    """Rows that stress row-wise quantization (one row of ``dim`` float32 values each).

    Constant rows (one whose fp16 rounding lies above the value), all -0.0 / mixed-sign zeros
    (the sign of a zero minimum is stored in 8-bit biases), a range that overflows float32, rows
    beyond the fp16 range (scale or bias overflow to inf), a subnormal range, and a range whose
    greedy search step is below one ulp of the values.
    """
    j = np.arange(dim)
    return np.array(
        [
            np.full(dim, 3.3),
            np.full(dim, 0.1),
            np.full(dim, -0.0),
            np.zeros(dim),
            np.where(j % 2 == 0, -0.0, 0.0),
            np.where(j % 3 == 0, 0.0, -0.0),
            np.linspace(-1e38, 1e38, dim),
            np.linspace(1e4, 7e4, dim),
            np.linspace(-7e4, -1e4, dim),
            np.linspace(0, 1e-40, dim),
            np.linspace(1e7, 1e7 + 1, dim),
        ],
        dtype=np.float32,
    ).reshape(-1, dim)


#: EmbeddingBag row widths: around the 8-float vector and the 64-float column block of the AVX2
#: kernel, odd widths for 4/2-bit packing (a code byte shared with the next element), 163.
EMBEDDING_DIMS = (1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 127, 128, 129, 163)


def embedding_bag_cases(rows):
    """Bag layouts that stress EmbeddingBag (table of ``rows`` rows): empty bags first, last and
    in the middle, one bag, all bags empty, duplicate and last-row indices, one long bag, in
    int32 and int64 and with and without ``include_last_offset``.  Each case is a dict with
    ``indices``, ``offsets`` and ``include_last_offset`` (PyTorch convention)."""
    rng = np.random.default_rng(rows)
    last = rows - 1
    layouts = [
        ([last, 0, last, last], [0]),  # one bag, duplicates, last row
        ([], [0, 0, 0]),  # all bags empty
        ([3 % rows, 3 % rows, last], [0, 0, 2, 2]),  # empty first / middle / last
        ([last] * 5, [0, 1, 2, 3, 4]),  # every bag the last row
        (list(rng.integers(0, rows, 70)), [0, 3, 3, 60, 61]),  # a long bag
        (list(rng.integers(0, rows, 40)), list(range(0, 40, 2))),
    ]
    cases = []
    for idx, offs in layouts:
        for dt in (np.int32, np.int64):
            i = np.asarray(idx, dtype=dt)
            o = np.asarray(offs, dtype=dt)
            cases.append({"indices": i, "offsets": o, "include_last_offset": False})
            cases.append({"indices": i, "offsets": np.append(o, len(i)).astype(dt),
                          "include_last_offset": True})
    return cases
