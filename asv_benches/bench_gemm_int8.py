"""asv benchmarks: exact int8 GEMM (static qmatmul uint8 -> uint8, dynamic linear float32).

Inputs are built in setup(), never at import.  ``track_*_gops`` report 2*M*N*K / best time.
"""

import time

import numpy as np

from lowprec import _dispatch
from lowprec import gemm as G

print(f"lowprec gemm_int8 ISA: {_dispatch.family_isas().get('gemm_int8')}")

SHAPES = ["1,1024,1024", "16,1024,1024", "64,512,512", "128,1024,1024", "256,1024,4096",
          "1024,1024,1024", "2048,2048,2048", "37,1000,300", "1,4096,4096"]


def _shape(s):
    return tuple(int(v) for v in s.split(","))


class _Base:
    params = (SHAPES, [1, 2])
    param_names = ["M,N,K", "n_threads"]
    timeout = 120

    def setup(self, shape, n_threads):
        m, n, k = _shape(shape)
        rng = np.random.default_rng(0)
        self.ops = 2.0 * m * n * k
        self.a = rng.integers(0, 256, (m, k), dtype=np.uint8)
        self.x = rng.standard_normal((m, k), dtype=np.float32)
        w = rng.integers(-127, 128, (n, k), dtype=np.int8)
        self.pw = G.pack_weights(w, scale=rng.uniform(0.001, 0.01, n), bias=rng.normal(size=n))
        self.out8 = np.empty((m, n), np.uint8)
        self.outf = np.empty((m, n), np.float32)
        self.n_threads = n_threads

    def _gops(self, fn, repeat=5):
        fn()
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return self.ops / best / 1e9


class QMatmulStatic(_Base):
    def _call(self):
        G.qmatmul(self.a, self.pw, a_scale=0.02, a_zero_point=128, out_dtype=np.uint8,
                  out_scale=0.5, out_zero_point=128, out=self.out8, n_threads=self.n_threads)

    def time_qmatmul(self, shape, n_threads):
        self._call()

    def peakmem_qmatmul(self, shape, n_threads):
        self._call()

    def track_qmatmul_gops(self, shape, n_threads):
        return self._gops(self._call)

    track_qmatmul_gops.unit = "GOP/s"


class LinearDynamic(_Base):
    def _call(self):
        G.linear(self.x, self.pw, out=self.outf, n_threads=self.n_threads)

    def time_linear(self, shape, n_threads):
        self._call()

    def peakmem_linear(self, shape, n_threads):
        self._call()

    def track_linear_gops(self, shape, n_threads):
        return self._gops(self._call)

    track_linear_gops.unit = "GOP/s"


class PackWeights:
    params = (["1024,1024", "4096,4096"],)
    param_names = ["N,K"]

    def setup(self, shape):
        n, k = _shape(shape)
        self.w = np.random.default_rng(0).standard_normal((n, k), dtype=np.float32)

    def time_pack_float(self, shape):
        G.pack_weights(self.w)


class CallOverhead:
    """Per-call overhead of a tiny product (1 x 32 x 4) with repeated, cached arguments: the
    C-level fast paths of qmatmul / linear (docs/int8_gemm.md, "Call overhead")."""

    params = ["qmatmul_u8", "qmatmul_i32", "qmatmul_report", "linear"]
    param_names = ["call"]

    def setup(self, call):
        rng = np.random.default_rng(0)
        a = rng.integers(0, 256, (1, 4), dtype=np.uint8)
        x = rng.standard_normal((1, 4), dtype=np.float32)
        pw = G.pack_weights(rng.integers(-127, 128, (32, 4), dtype=np.int8), scale=0.01)
        out8, out32, outf = (np.empty((1, 32), t) for t in (np.uint8, np.int32, np.float32))
        kw8 = dict(a_scale=0.02, a_zero_point=3, out_dtype=np.uint8, out_scale=0.5, n_threads=1)
        self.fn = {
            "qmatmul_u8": lambda: G.qmatmul(a, pw, out=out8, **kw8),
            "qmatmul_i32": lambda: G.qmatmul(a, pw, a_zero_point=3, out=out32, n_threads=1),
            "qmatmul_report": lambda: G.qmatmul(a, pw, out=out8, check="report", **kw8),
            "linear": lambda: G.linear(x, pw, out=outf, n_threads=1),
        }[call]
        self.fn()  # fills the fast-path entry

    def time_call(self, call):
        self.fn()
