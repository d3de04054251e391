"""Build and CPU facts: which features the CPU has, whether OpenMP is compiled in, the compiler."""

from ._openmp_helpers cimport LOWPREC_OPENMP_ENABLED, lowprec_omp_max_threads

cdef extern from "runtime.h":
    unsigned int LOWPREC_CPU_SSE42, LOWPREC_CPU_AVX, LOWPREC_CPU_AVX2, LOWPREC_CPU_FMA
    unsigned int LOWPREC_CPU_F16C, LOWPREC_CPU_AVX512F, LOWPREC_CPU_AVX512BW, LOWPREC_CPU_AVX512VNNI
    unsigned int LOWPREC_CPU_AVX512VL, LOWPREC_CPU_AVX512DQ, LOWPREC_CPU_AVX512BF16
    unsigned int LOWPREC_CPU_PREFETCHT1_L2
    unsigned int lowprec_cpu_features() noexcept nogil
    int lowprec_built_with_avx2() noexcept nogil
    const char *lowprec_compiler_version() noexcept nogil


def cpu_features():
    """Return ``{feature: bool}`` for the CPU features the kernels care about."""
    cdef unsigned int f = lowprec_cpu_features()
    return {
        "sse4.2": bool(f & LOWPREC_CPU_SSE42),
        "avx": bool(f & LOWPREC_CPU_AVX),
        "avx2": bool(f & LOWPREC_CPU_AVX2),
        "fma": bool(f & LOWPREC_CPU_FMA),
        "f16c": bool(f & LOWPREC_CPU_F16C),
        "avx512f": bool(f & LOWPREC_CPU_AVX512F),
        "avx512bw": bool(f & LOWPREC_CPU_AVX512BW),
        "avx512vl": bool(f & LOWPREC_CPU_AVX512VL),
        "avx512dq": bool(f & LOWPREC_CPU_AVX512DQ),
        "avx512vnni": bool(f & LOWPREC_CPU_AVX512VNNI),
        "avx512bf16": bool(f & LOWPREC_CPU_AVX512BF16),
        # not an ISA extension: prefetcht1 fills L2 only (AMD Zen 4 and later, runtime.h)
        "prefetcht1_l2": bool(f & LOWPREC_CPU_PREFETCHT1_L2),
    }


def built_with_avx2():
    """True when this build contains the AVX2 kernels (x86-64 with gcc or clang)."""
    return bool(lowprec_built_with_avx2())


def compiler_version():
    return lowprec_compiler_version().decode()


def openmp_enabled():
    """True when the extensions were compiled with OpenMP."""
    return bool(LOWPREC_OPENMP_ENABLED)


def omp_max_threads():
    """OpenMP's current thread budget, read now (honours OMP_NUM_THREADS and threadpoolctl)."""
    return lowprec_omp_max_threads()
