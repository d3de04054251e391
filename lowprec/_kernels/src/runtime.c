#include "runtime.h"

unsigned int lowprec_cpu_features(void) {
    unsigned int f = 0;
#if LOWPREC_BUILD_AVX2
    /* __builtin_cpu_supports also checks that the OS saves the YMM/ZMM state (XGETBV). */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) f |= LOWPREC_CPU_SSE42;
    if (__builtin_cpu_supports("avx")) f |= LOWPREC_CPU_AVX;
    if (__builtin_cpu_supports("avx2")) f |= LOWPREC_CPU_AVX2;
    if (__builtin_cpu_supports("fma")) f |= LOWPREC_CPU_FMA;
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 9)
    if (__builtin_cpu_supports("f16c")) f |= LOWPREC_CPU_F16C;
#else
    /* Older gcc cannot ask for F16C; every AVX2 CPU has it. */
    if (f & LOWPREC_CPU_AVX2) f |= LOWPREC_CPU_F16C;
#endif
    if (__builtin_cpu_supports("avx512f")) f |= LOWPREC_CPU_AVX512F;
    if (__builtin_cpu_supports("avx512bw")) f |= LOWPREC_CPU_AVX512BW;
    if (__builtin_cpu_supports("avx512vnni")) f |= LOWPREC_CPU_AVX512VNNI;
    if (__builtin_cpu_supports("avx512vl")) f |= LOWPREC_CPU_AVX512VL;
    if (__builtin_cpu_supports("avx512dq")) f |= LOWPREC_CPU_AVX512DQ;
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 11)
    if (__builtin_cpu_supports("avx512bf16")) f |= LOWPREC_CPU_AVX512BF16;
#endif
    if (__builtin_cpu_is("amd") && (f & LOWPREC_CPU_AVX512F)) f |= LOWPREC_CPU_PREFETCHT1_L2;
#endif
    return f;
}

int lowprec_built_with_avx2(void) { return LOWPREC_BUILD_AVX2; }

const char *lowprec_compiler_version(void) {
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#elif defined(_MSC_VER)
    return "msvc";
#else
    return "unknown";
#endif
}
