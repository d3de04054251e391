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
