/* Shared definitions for lowprec's C kernels: ISA identifiers and the function attribute that
 * compiles one function for AVX2 without a global -mavx2 (so the package imports on any x86-64).
 *
 * Convention: every kernel family has a portable C implementation (FAMILY.c) and, where it pays,
 * ISA-specific twins (FAMILY_avx2.c) with the same signature.  Everything in an ISA file is
 * `static` except the entry points, and those are only called after the CPU was checked. */
#ifndef LOWPREC_COMMON_H
#define LOWPREC_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* ISA levels, in increasing order; the Python dispatcher (lowprec/_dispatch.py) uses the same numbers. */
#define LOWPREC_ISA_GENERIC 0
#define LOWPREC_ISA_AVX2 1
#define LOWPREC_ISA_AVX512VNNI 2

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
/* The compiler can emit AVX2 code for single functions: build the AVX2 kernels. */
#define LOWPREC_BUILD_AVX2 1
/* AVX2 + FMA + F16C: every x86 CPU with AVX2 since Haswell / Zen 1 has all three. */
#define LOWPREC_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
/* AVX-512 F/BW/VL + VNNI (Ice Lake, Zen 4): exact u8 x s8 dot products into int32 (vpdpbusd). */
#define LOWPREC_TARGET_AVX512VNNI \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#else
#define LOWPREC_BUILD_AVX2 0
#define LOWPREC_TARGET_AVX2
#define LOWPREC_TARGET_AVX512VNNI
#endif

#if defined(__GNUC__) || defined(__clang__)
#define LOWPREC_RESTRICT __restrict__
#define LOWPREC_LIKELY(x) __builtin_expect(!!(x), 1)
#define LOWPREC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define LOWPREC_RESTRICT
#define LOWPREC_LIKELY(x) (x)
#define LOWPREC_UNLIKELY(x) (x)
#endif

#endif /* LOWPREC_COMMON_H */
