"""Sub-byte packing of quantized codes: 4, 2 or 1 bits per element, FBGEMM / PyTorch order.

Element ``j`` of a packed axis sits in byte ``j // (8 // bits)`` at bit offset
``(j % (8 // bits)) * bits``: for 4 bits, element ``2k`` is the LOW nibble of byte ``k`` and
element ``2k + 1`` the high nibble (PyTorch ``quint4x2``, ``embedding_bag_4bit_prepack``,
ONNX Runtime MatMulNBits, formats.md 2b).  When the axis length is not a multiple of
``8 // bits`` the last byte is padded with zero bits, and :func:`unpack_bits` needs the original
length ``n``.  Signed codes are stored as two's-complement bit fields (int4 -1 is ``0xF``) and
sign-extended on unpacking with ``signed=True``.

Pure NumPy: one shift-and-or per element slot on uint8 arrays, memory-bound like a C loop would
be (a C kernel would save the temporaries, not the passes that matter).
"""

import numpy as np

from . import _validation
from ._validation import check_int, normalize_axis

__all__ = ["pack_bits", "unpack_bits"]

_BITS = (1, 2, 4)


def pack_bits(q, bits, *, axis=-1, signed=None):
    """Pack integer codes ``bits`` wide into bytes along ``axis``.

    Parameters
    ----------
    q : array_like of integers (at least 1-D)
        Codes.  Unsigned codes must lie in ``[0, 2**bits - 1]``, signed ones in
        ``[-2**(bits-1), 2**(bits-1) - 1]`` (stored as two's complement); anything else raises
        ``ValueError`` before any output is written.
    bits : {4, 2, 1}
    axis : int
        The axis to pack; its length ``n`` becomes ``ceil(n * bits / 8)`` (the last byte padded
        with zero bits).
    signed : bool, optional
        Range to check.  Default: from ``q``'s dtype (signed integer dtypes are signed).

    Returns
    -------
    ndarray of uint8

    Examples
    --------
    >>> import numpy as np
    >>> from lowprec.packing import pack_bits
    >>> [hex(b) for b in pack_bits(np.array([0, 2, 4, 6, 9, 11, 13, 15], np.uint8), 4)]
    ['0x20', '0x64', '0xb9', '0xfd']
    >>> pack_bits(np.array([-1, 7, -8], np.int8), 4).tolist()   # odd length: zero padding
    [127, 8]
    >>> pack_bits(np.array([1, 2, 3, 0, 1], np.uint8), 2).tolist()
    [57, 1]
    """
    bits = check_int(bits, "bits", choices=_BITS)
    q = _validation.as_array(q, "q")
    if q.dtype.kind not in "iu" and q.dtype != np.bool_:
        raise TypeError(f"q has dtype {q.dtype}; expected an integer dtype")
    if q.ndim == 0:
        raise ValueError("q must be at least 1-D")
    ax = normalize_axis(axis, q.ndim)
    if signed is None:
        signed = q.dtype.kind == "i"
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if q.size:
        qmin, qmax = int(q.min()), int(q.max())
        if qmin < lo or qmax > hi:
            bad = qmin if qmin < lo else qmax
            kind = "signed" if signed else "unsigned"
            raise ValueError(f"value {bad} does not fit in {bits} {kind} bits [{lo}, {hi}]")
    per = 8 // bits
    n = q.shape[ax]
    nbytes = -(-n // per)
    # Two's complement bit fields: the low `bits` bits of the value (int64 & mask is exact).
    v = np.moveaxis(q, ax, -1).astype(np.uint8 if not signed else np.int16) & ((1 << bits) - 1)
    v = v.astype(np.uint8)
    if nbytes * per != n:
        pad = np.zeros(v.shape[:-1] + (nbytes * per - n,), dtype=np.uint8)
        v = np.concatenate([v, pad], axis=-1)
    v = v.reshape(v.shape[:-1] + (nbytes, per))
    out = v[..., 0].copy()
    for k in range(1, per):
        out |= v[..., k] << np.uint8(k * bits)
    return np.ascontiguousarray(np.moveaxis(out, -1, ax))


def unpack_bits(packed, bits, n, *, axis=-1, signed=False):
    """Unpack codes packed by :func:`pack_bits` (or by FBGEMM / PyTorch) along ``axis``.

    Parameters
    ----------
    packed : array_like of uint8
        ``packed.shape[axis]`` must equal ``ceil(n * bits / 8)``.
    bits : {4, 2, 1}
    n : int
        Number of codes along ``axis`` (the padding bits of the last byte are ignored).
    axis : int
    signed : bool
        ``False``: uint8 codes in ``[0, 2**bits - 1]``.  ``True``: int8 codes, each bit field
        sign-extended from two's complement.

    Examples
    --------
    >>> import numpy as np
    >>> from lowprec.packing import unpack_bits
    >>> unpack_bits(np.array([0x20, 0x64, 0xB9, 0xFD], np.uint8), 4, 8).tolist()
    [0, 2, 4, 6, 9, 11, 13, 15]
    >>> unpack_bits(np.array([127, 8], np.uint8), 4, 3, signed=True).tolist()
    [-1, 7, -8]
    """
    bits = check_int(bits, "bits", choices=_BITS)
    p = _validation.as_array(packed, "packed", (np.uint8,))
    if p.ndim == 0:
        raise ValueError("packed must be at least 1-D")
    ax = normalize_axis(axis, p.ndim)
    n = check_int(n, "n", minimum=0)
    per = 8 // bits
    nbytes = -(-n // per)
    if p.shape[ax] != nbytes:
        raise ValueError(
            f"packed has {p.shape[ax]} bytes along axis {ax}; {n} codes of {bits} bits "
            f"need {nbytes}"
        )
    v = np.moveaxis(p, ax, -1)
    shifts = (np.arange(per, dtype=np.uint8) * bits).astype(np.uint8)
    codes = (v[..., :, None] >> shifts) & np.uint8((1 << bits) - 1)
    codes = codes.reshape(v.shape[:-1] + (nbytes * per,))[..., :n]
    if signed:
        half = np.int8(1 << (bits - 1))
        codes = (codes.astype(np.int8) ^ half) - half  # sign-extend the bit field
    return np.ascontiguousarray(np.moveaxis(codes, -1, ax))
