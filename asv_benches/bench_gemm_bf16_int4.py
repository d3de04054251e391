"""asv benchmarks: bf16-weight and int4-weight (group 128) products, float32 activations
(and int4 with activations="int8" / "int24").

Inputs are built in setup(), never at import.  ``track_*_gops`` report 2*M*N*K / best time,
``track_*_gbs`` (M = 1 only) the GB/s of packed weight bytes read.
"""

import time

import ml_dtypes
import numpy as np

from lowprec import _dispatch
from lowprec.gemm_bf16 import pack_weights_bf16
from lowprec.gemm_int4 import pack_weights_int4

print(f"lowprec gemm_bf16 / gemm_int4 ISA: {_dispatch.family_isas().get('gemm_bf16')} / "
      f"{_dispatch.family_isas().get('gemm_int4')}")

SHAPES = ["1,1024,1024", "16,1024,1024", "64,512,512", "128,1024,1024", "256,1024,4096",
          "1024,1024,1024", "2048,2048,2048", "37,1000,300", "1,4096,4096", "1,8192,8192"]


def _shape(s):
    return tuple(int(v) for v in s.split(","))


class _Base:
    params = (SHAPES, [1, 2])
    param_names = ["M,N,K", "n_threads"]
    timeout = 300

    def setup(self, shape, n_threads):
        m, n, k = _shape(shape)
        rng = np.random.default_rng(0)
        self.m = m
        self.ops = 2.0 * m * n * k
        self.x = rng.standard_normal((m, k), dtype=np.float32)
        w = rng.standard_normal((n, k), dtype=np.float32)
        self.pb = pack_weights_bf16(w)
        self.xb = self.x.astype(ml_dtypes.bfloat16)
        k4 = -(-k // 128) * 128  # int4 needs K % group == 0: K = 300 runs zero-padded to 384
        w4 = np.zeros((n, k4), np.float32)
        w4[:, :k] = w
        self.x4 = np.zeros((m, k4), np.float32)
        self.x4[:, :k] = self.x
        self.p4 = pack_weights_int4(w4, group_size=128)
        self.out = np.empty((m, n), np.float32)
        self.n_threads = n_threads

    def _best(self, fn, repeat=5):
        fn()
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best


class BF16Linear(_Base):
    def time_linear(self, shape, n_threads):
        self.pb.linear(self.x, out=self.out, n_threads=n_threads)

    def peakmem_linear(self, shape, n_threads):
        self.pb.linear(self.x, out=self.out, n_threads=n_threads)

    def track_gops(self, shape, n_threads):
        return self.ops / self._best(lambda: self.pb.linear(self.x, out=self.out,
                                                            n_threads=n_threads)) / 1e9
    track_gops.unit = "GOP/s"

    def track_weight_gbs(self, shape, n_threads):
        if self.m != 1:
            return float("nan")
        t = self._best(lambda: self.pb.linear(self.x, out=self.out, n_threads=n_threads))
        return self.pb.nbytes / t / 1e9
    track_weight_gbs.unit = "GB/s"


class BF16xBF16Linear(_Base):
    """bfloat16 activations: the vdpbf16ps kernel where the CPU has AVX512_BF16."""

    def time_linear(self, shape, n_threads):
        self.pb.linear(self.xb, out=self.out, n_threads=n_threads)

    def track_gops(self, shape, n_threads):
        return self.ops / self._best(lambda: self.pb.linear(self.xb, out=self.out,
                                                            n_threads=n_threads)) / 1e9

    track_gops.unit = "GOP/s"


class Int4Linear(_Base):
    def time_linear(self, shape, n_threads):
        self.p4.linear(self.x4, out=self.out, n_threads=n_threads)

    def peakmem_linear(self, shape, n_threads):
        self.p4.linear(self.x4, out=self.out, n_threads=n_threads)

    def track_gops(self, shape, n_threads):
        return self.ops / self._best(lambda: self.p4.linear(self.x4, out=self.out,
                                                            n_threads=n_threads)) / 1e9
    track_gops.unit = "GOP/s"

    def track_weight_gbs(self, shape, n_threads):
        if self.m != 1:
            return float("nan")
        t = self._best(lambda: self.p4.linear(self.x4, out=self.out, n_threads=n_threads))
        return self.p4.nbytes / t / 1e9
    track_weight_gbs.unit = "GB/s"


class Int4Int8ActLinear(_Base):
    """activations="int8": activations quantized per row and group of 128, vpdpbusd kernel."""

    def time_linear(self, shape, n_threads):
        self.p4.linear(self.x4, out=self.out, n_threads=n_threads, activations="int8")

    def track_gops(self, shape, n_threads):
        return self.ops / self._best(lambda: self.p4.linear(
            self.x4, out=self.out, n_threads=n_threads, activations="int8")) / 1e9
    track_gops.unit = "GOP/s"

    def track_weight_gbs(self, shape, n_threads):
        if self.m != 1:
            return float("nan")
        t = self._best(lambda: self.p4.linear(self.x4, out=self.out, n_threads=n_threads,
                                              activations="int8"))
        return self.p4.nbytes / t / 1e9
    track_weight_gbs.unit = "GB/s"


class Int4Int24ActLinear(_Base):
    """activations="int24": activations as 24-bit fixed point per row and group of 128 (three
    int8 digit rows through the vpdpbusd kernel)."""

    def time_linear(self, shape, n_threads):
        self.p4.linear(self.x4, out=self.out, n_threads=n_threads, activations="int24")

    def track_gops(self, shape, n_threads):
        return self.ops / self._best(lambda: self.p4.linear(
            self.x4, out=self.out, n_threads=n_threads, activations="int24")) / 1e9
    track_gops.unit = "GOP/s"

    def track_weight_gbs(self, shape, n_threads):
        if self.m != 1:
            return float("nan")
        t = self._best(lambda: self.p4.linear(self.x4, out=self.out, n_threads=n_threads,
                                              activations="int24"))
        return self.p4.nbytes / t / 1e9
    track_weight_gbs.unit = "GB/s"
