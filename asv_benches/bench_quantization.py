"""asv benchmarks: affine quantize / dequantize, choose_qparams, sub-byte packing.

Inputs are built in setup(), never at import.  quantize / dequantize are memory-bound: the
``track_*_gbps`` benchmarks report bytes read + written per second (float32 in, 1 byte out).
"""

import time

import numpy as np

import lowprec
from lowprec import _dispatch
from lowprec.packing import pack_bits, unpack_bits
from lowprec.quantization import choose_qparams, dequantize, quantize

print(f"lowprec affine ISA: {_dispatch.family_isas().get('affine')}")

N = 1 << 24  # 16M elements: 64 MB of float32, far beyond the caches
CHANNELS = 256


def _gbps(fn, nbytes, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return nbytes / best / 1e9


class Quantize:
    params = (["per_tensor", "per_channel"], ["uint8", "int8"], [1, 2])
    param_names = ["layout", "dtype", "n_threads"]

    def setup(self, layout, dtype, n_threads):
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((N // CHANNELS, CHANNELS), dtype=np.float32)
        self.dtype = np.dtype(dtype)
        if layout == "per_tensor":
            self.scale, self.zp = choose_qparams(self.x, dtype=self.dtype)
            self.axis = None
        else:
            self.scale, self.zp = choose_qparams(self.x, dtype=self.dtype, axis=1)
            self.axis = 1
        self.out = np.empty(self.x.shape, self.dtype)

    def _run(self):
        quantize(self.x, self.scale, self.zp, dtype=self.dtype, axis=self.axis, out=self.out,
                 n_threads=self.n_threads)

    def time_quantize(self, layout, dtype, n_threads):
        self.n_threads = n_threads
        self._run()

    def peakmem_quantize(self, layout, dtype, n_threads):
        quantize(self.x, self.scale, self.zp, dtype=self.dtype, axis=self.axis,
                 n_threads=n_threads)

    def track_quantize_gbps(self, layout, dtype, n_threads):
        self.n_threads = n_threads
        return _gbps(self._run, self.x.size * 5)

    track_quantize_gbps.unit = "GB/s"


class Dequantize:
    params = (["per_tensor", "per_channel"], ["uint8", "int8"], [1, 2])
    param_names = ["layout", "dtype", "n_threads"]

    def setup(self, layout, dtype, n_threads):
        rng = np.random.default_rng(1)
        self.dtype = np.dtype(dtype)
        info = np.iinfo(self.dtype)
        self.q = rng.integers(info.min, info.max + 1, (N // CHANNELS, CHANNELS)).astype(self.dtype)
        if layout == "per_tensor":
            self.scale, self.zp, self.axis = 0.02, 3, None
        else:
            self.scale = rng.uniform(0.01, 0.1, CHANNELS).astype(np.float32)
            self.zp = rng.integers(0, 100, CHANNELS)
            self.axis = 1
        self.out = np.empty(self.q.shape, np.float32)

    def time_dequantize(self, layout, dtype, n_threads):
        dequantize(self.q, self.scale, self.zp, axis=self.axis, out=self.out, n_threads=n_threads)

    def peakmem_dequantize(self, layout, dtype, n_threads):
        dequantize(self.q, self.scale, self.zp, axis=self.axis, n_threads=n_threads)

    def track_dequantize_gbps(self, layout, dtype, n_threads):
        return _gbps(lambda: self.time_dequantize(layout, dtype, n_threads), self.q.size * 5)

    track_dequantize_gbps.unit = "GB/s"


class ChooseQParams:
    params = (["minmax", "mse"], [None, 1])
    param_names = ["method", "axis"]

    def setup(self, method, axis):
        rng = np.random.default_rng(2)
        n = N if method == "minmax" else 1 << 18  # the mse search runs ~100 quantize passes
        self.x = rng.standard_normal((n // CHANNELS, CHANNELS), dtype=np.float32)

    def time_choose_qparams(self, method, axis):
        choose_qparams(self.x, dtype=np.int8, axis=axis, method=method)

    def peakmem_choose_qparams(self, method, axis):
        choose_qparams(self.x, dtype=np.int8, axis=axis, method=method)


class Packing:
    params = ([4, 2],)
    param_names = ["bits"]

    def setup(self, bits):
        rng = np.random.default_rng(3)
        self.q = rng.integers(0, 1 << bits, (N // 256, 256)).astype(np.uint8)
        self.p = pack_bits(self.q, bits)

    def time_pack(self, bits):
        pack_bits(self.q, bits)

    def time_unpack(self, bits):
        unpack_bits(self.p, bits, 256)

    def peakmem_pack(self, bits):
        pack_bits(self.q, bits)

    def track_pack_gbps(self, bits):
        return _gbps(lambda: pack_bits(self.q, bits), self.q.size + self.p.size)

    track_pack_gbps.unit = "GB/s"
