"""asv benchmarks for EmbeddingBag (lowprec.embedding).

params: table format x index distribution x threads.  2048 bags of 32 indices (the shape of
targets.md) over a 200,000 x 64 table (51 MB in fp32, larger than the 32 MiB L3, so lookups
still miss; the 1,000,000-row tables of targets.md live in benchmarks/compare_embedding.py,
which also measures PyTorch).  Inputs are built in setup(), never at import.  track_mbags
reports millions of bags per second, track_mrows rows gathered per second (compare with the
random-gather rate in targets.md).
"""

import time

import ml_dtypes
import numpy as np

from lowprec import _dispatch
from lowprec.embedding import embedding_bag
from lowprec.rowwise import quantize_rowwise

print(f"lowprec embedding benchmarks: ISA per family {_dispatch.family_isas()}")

ROWS, DIM, BAGS, BAG_SIZE = 200_000, 64, 2048, 32


def _table(fmt, rng):
    x = rng.standard_normal((ROWS, DIM), dtype=np.float32)
    if fmt == "fp32":
        return x
    if fmt == "fp16":
        return x.astype(np.float16)
    if fmt == "bf16":
        return x.astype(ml_dtypes.bfloat16)
    return quantize_rowwise(x, bits=int(fmt[0]))


class EmbeddingBagSum:
    params = (["fp32", "fp16", "bf16", "8bit", "4bit", "2bit"], ["uniform", "zipf"], [1, 2])
    param_names = ["format", "dist", "threads"]
    timeout = 120

    def setup(self, fmt, dist, threads):
        rng = np.random.default_rng(0)
        self.table = _table(fmt, rng)
        n = BAGS * BAG_SIZE
        if dist == "uniform":
            self.idx = rng.integers(0, ROWS, n)
        else:
            self.idx = rng.permutation(ROWS)[(rng.zipf(1.05, n) - 1) % ROWS]
        self.offsets = np.arange(0, n, BAG_SIZE)
        self.out = np.empty((BAGS, DIM), np.float32)
        self.kw = dict(n_threads=threads)
        self._call()  # start the OpenMP threads and touch the pages

    def _call(self):
        embedding_bag(self.table, self.idx, self.offsets, out=self.out, **self.kw)

    def time_embedding_bag(self, fmt, dist, threads):
        self._call()

    def peakmem_embedding_bag(self, fmt, dist, threads):
        self._call()

    def _best(self):
        best = float("inf")
        for _ in range(20):
            t0 = time.perf_counter()
            self._call()
            best = min(best, time.perf_counter() - t0)
        return best

    def track_mbags(self, fmt, dist, threads):
        return BAGS / self._best() / 1e6

    track_mbags.unit = "Mbags/s"

    def track_mrows(self, fmt, dist, threads):
        return BAGS * BAG_SIZE / self._best() / 1e6

    track_mrows.unit = "Mrows/s"


class EmbeddingBagModes:
    """mean / max pooling and per-sample weights on the 8-bit table (1 thread)."""

    params = (["sum", "weighted", "mean", "max"],)
    param_names = ["mode"]

    def setup(self, mode):
        rng = np.random.default_rng(0)
        self.table = _table("8bit", rng)
        n = BAGS * BAG_SIZE
        self.idx = rng.integers(0, ROWS, n).astype(np.int32)
        self.offsets = np.arange(0, n, BAG_SIZE, dtype=np.int32)
        self.kw = {"mode": "sum" if mode == "weighted" else mode, "n_threads": 1}
        if mode == "weighted":
            self.kw["per_sample_weights"] = rng.standard_normal(n).astype(np.float32)

    def time_embedding_bag(self, mode):
        embedding_bag(self.table, self.idx, self.offsets, **self.kw)
