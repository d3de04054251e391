/* CPU feature detection and build facts, for the dispatcher and show_config(). */
#ifndef LOWPREC_RUNTIME_H
#define LOWPREC_RUNTIME_H

#include "lowprec_common.h"

/* Bits of lowprec_cpu_features(). */
#define LOWPREC_CPU_SSE42 (1u << 0)
#define LOWPREC_CPU_AVX (1u << 1)
#define LOWPREC_CPU_AVX2 (1u << 2)
#define LOWPREC_CPU_FMA (1u << 3)
#define LOWPREC_CPU_F16C (1u << 4)
#define LOWPREC_CPU_AVX512F (1u << 5)
#define LOWPREC_CPU_AVX512BW (1u << 6)
#define LOWPREC_CPU_AVX512VNNI (1u << 7)
#define LOWPREC_CPU_AVX512VL (1u << 8)
#define LOWPREC_CPU_AVX512DQ (1u << 9)
#define LOWPREC_CPU_AVX512BF16 (1u << 10)
/* prefetcht1 fills L2 only (and, judging by the speed-ups, does not tie up L1 miss buffers): AMD
 * Zen 4 and later (the first AMD cores with AVX-512; on earlier ones every hint fills L1).
 * The EmbeddingBag kernel then prefetches rows in two levels (embedding_avx512.c). */
#define LOWPREC_CPU_PREFETCHT1_L2 (1u << 11)

unsigned int lowprec_cpu_features(void);
/* 1 when this build contains AVX2 kernels (x86 with gcc/clang). */
int lowprec_built_with_avx2(void);
const char *lowprec_compiler_version(void);

#endif
