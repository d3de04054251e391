"""Exceptions of lowprec's soft-error checks (docs/soft_errors.md)."""

import numpy as np


class SoftErrorDetected(RuntimeError):
    """A checksum of a kernel with ``check="raise"`` failed: the result is not trustworthy.

    Attributes
    ----------
    rows : ndarray of int64
        Flat indices of the failed rows (rows of the ``(M, N)`` view of the output, i.e. of
        ``out.reshape(-1, N)``; for EmbeddingBag the failed bags).
    flags : ndarray of bool
        Per-row flags, shaped like the output without its last axis (True = failed check).
    result : ndarray
        The (suspect) output that was computed.

    Examples
    --------
    >>> import numpy as np
    >>> e = SoftErrorDetected(np.array([False, True]), None)
    >>> e.rows.tolist(), isinstance(e, RuntimeError)
    ([1], True)
    """

    def __init__(self, flags, result, what="int8 GEMM", unit="row"):
        self.flags = np.asarray(flags, dtype=bool)
        self.rows = np.flatnonzero(self.flags)
        self.result = result
        shown = ", ".join(str(int(r)) for r in self.rows[:10])
        more = f" (+{self.rows.size - 10} more)" if self.rows.size > 10 else ""
        super().__init__(
            f"{what}: soft-error check failed for {self.rows.size} {unit}(s): {shown}{more}"
        )
