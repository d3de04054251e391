"""asv benchmarks for lowprec's bfloat16 conversions (lowprec.bf16).

params: operation x threads, at 16M elements (a memory-bound size, beyond the L3 cache) and at
64K elements (one chunk, in cache: call overhead and kernel speed).  Inputs are built in
setup(), never at import.  track_gbps reports (input + output bytes) / time.
"""

import time

import ml_dtypes
import numpy as np

from lowprec import _dispatch
from lowprec.bf16 import from_bfloat16, round_bfloat16, to_bfloat16

print(f"lowprec bf16 benchmarks: ISA per family {_dispatch.family_isas()}")

OPS = (
    "f32->bf16 nearest",
    "f32->bf16 truncate",
    "f32->bf16 stochastic",
    "f64->bf16 nearest",
    "bf16->f32",
    "bf16->f64",
    "round f32 nearest",
)
BYTES_PER_ELEMENT = {
    "f32->bf16 nearest": 6,
    "f32->bf16 truncate": 6,
    "f32->bf16 stochastic": 6,
    "f64->bf16 nearest": 10,
    "bf16->f32": 6,
    "bf16->f64": 10,
    "round f32 nearest": 8,
}


def _make_call(op, n, n_threads):
    """A no-argument callable running `op` on n elements into a preallocated output."""
    rng = np.random.default_rng(0)
    x32 = rng.standard_normal(n, dtype=np.float32)
    if op.startswith("f32->bf16"):
        mode = op.split()[-1]
        out = np.empty(n, ml_dtypes.bfloat16)
        return lambda: to_bfloat16(x32, rounding=mode, rng=0, out=out, n_threads=n_threads)
    if op == "f64->bf16 nearest":
        x64 = x32.astype(np.float64)
        out = np.empty(n, ml_dtypes.bfloat16)
        return lambda: to_bfloat16(x64, out=out, n_threads=n_threads)
    if op.startswith("bf16->"):
        b = x32.astype(ml_dtypes.bfloat16)
        out = np.empty(n, np.float32 if op.endswith("f32") else np.float64)
        return lambda: from_bfloat16(b, out=out, n_threads=n_threads)
    if op == "round f32 nearest":
        out = np.empty(n, np.float32)
        return lambda: round_bfloat16(x32, out=out, n_threads=n_threads)
    raise ValueError(op)


class BF16Convert:
    """Preallocated-output conversions, 16M elements (memory bound)."""

    params = (list(OPS), [1, 2])
    param_names = ["op", "threads"]
    n = 1 << 24
    timeout = 120

    def setup(self, op, threads):
        self.call = _make_call(op, self.n, threads)
        self.call()  # first touch of the output, page faults out of the timing

    def time_convert(self, op, threads):
        self.call()

    def track_gbps(self, op, threads):
        reps = []
        for _ in range(5):
            t0 = time.perf_counter()
            self.call()
            reps.append(time.perf_counter() - t0)
        return BYTES_PER_ELEMENT[op] * self.n / min(reps) / 1e9

    track_gbps.unit = "GB/s"


class BF16ConvertSmall(BF16Convert):
    """One chunk (64K elements), in cache: per-call overhead and kernel speed."""

    n = 1 << 16


class BF16Allocating:
    """Allocating calls (what `x.astype(bfloat16)` users would write); peak memory too."""

    params = (["f32->bf16", "bf16->f32"], [1, 2])
    param_names = ["op", "threads"]
    n = 1 << 24
    timeout = 120

    def setup(self, op, threads):
        rng = np.random.default_rng(0)
        self.x32 = rng.standard_normal(self.n, dtype=np.float32)
        self.b = self.x32.astype(ml_dtypes.bfloat16)

    def time_alloc(self, op, threads):
        if op == "f32->bf16":
            to_bfloat16(self.x32, n_threads=threads)
        else:
            from_bfloat16(self.b, n_threads=threads)

    def peakmem_alloc(self, op, threads):
        self.time_alloc(op, threads)
