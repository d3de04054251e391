/* Portable IEEE binary16 <-> binary32 conversions, header-only (static inline).
 *
 *   lowprec_f32_to_f16: round to nearest, ties to even (the F16C / vcvtps2ph default), exact
 *                       for fp16 subnormals, overflow to +-inf (|x| >= 65520), inf stays inf,
 *                       NaN stays NaN (quietened, top payload bits kept, like vcvtps2ph).
 *   lowprec_f16_to_f32: exact (every fp16 value, subnormals included, is a float32).
 *   lowprec_bf16_to_f32: exact (a bfloat16 is the top half of a float32).
 *
 * Shared by the row-wise quantizers (rowwise.c), the
 * EmbeddingBag kernels (embedding.c) and the soft-error checksums (row_checksum.h, bag_check.c);
 * the AVX2 twins use F16C and the tests check both against NumPy's float16. */
#ifndef LOWPREC_HALF_H
#define LOWPREC_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint16_t lowprec_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) {
        /* inf stays inf; NaN stays NaN, quietened and truncated like vcvtps2ph. */
        if (ax == 0x7f800000u) return (uint16_t)(sign | 0x7c00u);
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    }
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (ax >= 0x38800000u) {                                   /* normal fp16 (>= 2^-14) */
        /* Rebias the exponent (127 -> 15) and round the 13 dropped bits half to even. */
        ax += 0xc8000fffu + ((ax >> 13) & 1u);
        return (uint16_t)(sign | (ax >> 13));
    }
    if (ax <= 0x33000000u) return (uint16_t)sign; /* <= 2^-25 (the tie rounds to even 0) */
    /* Subnormal fp16: count units of 2^-24, rounding half to even. */
    uint32_t e = ax >> 23;
    uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e; /* 14..24 */
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

static inline float lowprec_f16_to_f32(uint16_t h) {
    uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    uint32_t bits;
    if (e == 0x1fu) {
        bits = sign | 0x7f800000u | (m << 13);
    } else if (e != 0) {
        bits = sign | ((e + 112u) << 23) | (m << 13);
    } else if (m == 0) {
        bits = sign;
    } else {
        /* Subnormal: m * 2^-24 is exact in float. */
        float v = (float)m * 5.9604644775390625e-8f;
        memcpy(&bits, &v, 4);
        bits |= sign;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* bfloat16 -> float32: exact (the top half of a float32). */
static inline float lowprec_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

#endif /* LOWPREC_HALF_H */
