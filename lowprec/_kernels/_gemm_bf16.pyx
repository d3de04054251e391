# bfloat16-weight products (float32 accumulation): the thin Cython layer between
# lowprec/gemm_bf16.py and src/gemm_bf16*.c (driver: src/gemm_f32acc.h).
#
# Arguments are validated in gemm_bf16.py; the checks here only keep a direct caller from
# reading or writing out of bounds.  Parallelism: the output is cut into tiles (plan) and OpenMP
# threads compute whole tiles over the full K (dynamic schedule, one tile at a time; float32 x
# with K > 1024 walks K in blocks inside the tile, src/gemm_f32acc.h).  The kernel used for a row
# and its k order depend on M and K only, so every output element is computed by the same code
# in the same order whatever the thread count.

from libc.stdint cimport int64_t, uint16_t, uint32_t

from ._f32acc cimport lp_f32acc_args, prepare, run_tiles
from ._openmp_helpers cimport lowprec_fork_guard

from . import _runtime

lowprec_fork_guard()  # forked children run parallel regions on one thread


cdef extern from "gemm_bf16.h":
    int64_t lowprec_bf16_packed_words(int64_t n, int64_t k) noexcept nogil
    void lowprec_bf16_pack(const uint16_t *w, int64_t s_n, int64_t s_k, int64_t n, int64_t k,
                           uint32_t *dst) noexcept nogil
    void lowprec_bf16_unpack(const uint32_t *src, int64_t n, int64_t k, uint16_t *w) noexcept nogil
    void lowprec_bf16_plan(lp_f32acc_args *p, int n_threads) noexcept nogil
    void lowprec_bf16_plan_bf16dot(lp_f32acc_args *p, int n_threads) noexcept nogil
    int lowprec_bf16_tile(const lp_f32acc_args *p, int64_t t) noexcept nogil
    int lowprec_bf16_tile_bf16dot(const lp_f32acc_args *p, int64_t t) noexcept nogil

#: Kernels per ISA level.  float32 activations run the AVX2 kernels on AVX-512 machines too (on
#: Zen 4 a zmm FMA has the throughput of two ymm FMAs, so the 6x16 ymm kernel reaches the same
#: FMA peak).  bfloat16 activations at level 2 run the vdpbf16ps kernel when the CPU also has
#: AVX512_BF16 (the avx512vnni level does not imply it): see bf16dot().
KERNELS = {
    0: "lowprec_sgemm_generic_6x16 + bf16 panel decode / generic GEMV",
    1: "lowprec_sgemm_avx2_6x16 + bf16 shift/mask decode, avx2 GEMV m<=4",
    2: "as avx2 for float32 x; bf16 x: vdpbf16ps 12x32 if AVX512_BF16, else as avx2",
}
NR = 16
MR = 6

cdef int _isa = 0
cdef bint _bf16dot = False


#: The best ISA level this module implements; lowprec._dispatch never sets a higher one.
BEST_ISA = 2


def _set_isa(int level):
    """Run the kernels of ISA ``level`` (0 generic, 1 AVX2, 2 AVX-512); set by lowprec._dispatch."""
    global _isa, _bf16dot
    _isa = level
    _bf16dot = _isa >= 2 and bool(_runtime.cpu_features().get("avx512bf16", False))



def bf16dot():
    """True when bfloat16 activations run the vdpbf16ps kernel (level 2 and AVX512_BF16)."""
    return _bf16dot


def _get_isa():
    return _isa


def packed_words(int64_t n, int64_t k):
    return lowprec_bf16_packed_words(n, k)


def pack(const uint16_t[:, :] w, uint32_t[::1] dst):
    """Pack the bf16 bits ``w`` (n x k, any strides) into ``dst`` (packed_words uint32)."""
    cdef int64_t n = w.shape[0], k = w.shape[1]
    if dst.shape[0] != lowprec_bf16_packed_words(n, k):
        raise ValueError("dst has the wrong size")
    if dst.shape[0] == 0:
        return
    with nogil:
        lowprec_bf16_pack(&w[0, 0], w.strides[0] // 2, w.strides[1] // 2, n, k, &dst[0])


def unpack(const uint32_t[::1] src, int64_t n, int64_t k, uint16_t[:, ::1] w):
    if src.shape[0] != lowprec_bf16_packed_words(n, k) or w.shape[0] != n or w.shape[1] != k:
        raise ValueError("wrong sizes")
    if n == 0 or k == 0:
        return
    with nogil:
        lowprec_bf16_unpack(&src[0], n, k, &w[0, 0])


def gemm(const float[:, :] a, const uint32_t[::1] bp, int64_t n, float[:, ::1] out,
         const float[::1] bias, int n_threads=1, int isa=-1):
    """out = a @ w.T (+ bias) for the packed bf16 weight ``bp`` (n x k), float32 accumulation."""
    cdef lp_f32acc_args p
    cdef int64_t m = a.shape[0], k = a.shape[1]
    cdef int err = 0, nt = max(1, n_threads)
    if isa < 0:
        isa = _isa
    if bp.shape[0] != lowprec_bf16_packed_words(n, k):
        raise ValueError("packed weight has the wrong size")
    if not prepare(&p, &a[0, 0] if (m > 0 and k > 0) else NULL, a.strides[0], a.strides[1], 4, m,
                   k, &bp[0] if bp.shape[0] > 0 else NULL, n, out, bias, isa):
        return
    with nogil:
        err = run_tiles(&p, lowprec_bf16_plan, lowprec_bf16_tile, nt)
    if err:
        raise MemoryError("bf16 GEMM: could not allocate a panel buffer")


def gemm_bf16act(const uint16_t[:, :] a, const uint32_t[::1] bp, int64_t n, float[:, ::1] out,
                 const float[::1] bias, int n_threads=1):
    """out = a @ w.T (+ bias) for bf16 activations ``a`` (bits, unit column stride) with
    vdpbf16ps; only when bf16dot() is true."""
    cdef lp_f32acc_args p
    cdef int64_t m = a.shape[0], k = a.shape[1]
    cdef int err = 0, nt = max(1, n_threads)
    if not _bf16dot:
        raise RuntimeError("the vdpbf16ps kernel is not enabled on this CPU / ISA level")
    if bp.shape[0] != lowprec_bf16_packed_words(n, k):
        raise ValueError("packed weight has the wrong size")
    if not prepare(&p, &a[0, 0] if (m > 0 and k > 0) else NULL, a.strides[0], a.strides[1], 2, m,
                   k, &bp[0] if bp.shape[0] > 0 else NULL, n, out, bias, 2):
        return
    with nogil:
        err = run_tiles(&p, lowprec_bf16_plan_bf16dot, lowprec_bf16_tile_bf16dot, nt)
    if err:
        raise MemoryError("bf16 GEMM: could not allocate a panel buffer")
