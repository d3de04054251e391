"""asv benchmarks for row-wise quantization of embedding tables (lowprec.rowwise).

params: bits x method x threads.  Min-max runs on a 1,000,000 x 128 fp32 table (512 MB, memory
bound, the size of targets.md); the greedy search, ~65 loss evaluations per row, on 100,000 x 128
(compute bound; time scales linearly with the rows).  Inputs are built in setup(), never at
import.  track_gbps reports GB/s of fp32 input, the unit of targets.md.
"""

import time

import numpy as np

from lowprec import _dispatch
from lowprec.rowwise import quantize_rowwise

print(f"lowprec rowwise benchmarks: ISA per family {_dispatch.family_isas()}")

ROWS = {"minmax": 1_000_000, "greedy": 100_000}
DIM = 128


class RowwiseQuantize:
    params = ([8, 4, 2], ["minmax", "greedy"], [1, 2])
    param_names = ["bits", "method", "threads"]
    timeout = 300

    def setup(self, bits, method, threads):
        if method == "greedy" and bits == 8:
            raise NotImplementedError  # asv skips: greedy is for 4/2-bit rows
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((ROWS[method], DIM), dtype=np.float32)
        self.kw = dict(bits=bits, method=method, n_threads=threads)
        quantize_rowwise(self.x[:1000], **self.kw)  # warm up the OpenMP pool

    def time_quantize(self, bits, method, threads):
        quantize_rowwise(self.x, **self.kw)

    def peakmem_quantize(self, bits, method, threads):
        quantize_rowwise(self.x, **self.kw)

    def track_gbps(self, bits, method, threads):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            quantize_rowwise(self.x, **self.kw)
            best = min(best, time.perf_counter() - t0)
        return self.x.nbytes / best / 1e9

    track_gbps.unit = "GB/s"


class RowwiseDequantize:
    """Decoding a table back to float32 (NumPy-side: unpack + exact fmaf)."""

    params = ([8, 4, 2],)
    param_names = ["bits"]

    def setup(self, bits):
        rng = np.random.default_rng(0)
        self.t = quantize_rowwise(rng.standard_normal((100_000, DIM), dtype=np.float32), bits=bits)
        self.rows = rng.integers(0, 100_000, 4096)

    def time_dequantize_all(self, bits):
        # a fresh object each time: .codes is cached per table
        type(self.t).from_fused(self.t.data, bits, DIM).dequantize()

    def time_dequantize_rows(self, bits):
        self.t.dequantize(rows=self.rows)
