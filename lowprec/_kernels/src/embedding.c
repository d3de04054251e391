/* Portable EmbeddingBag kernels (the reference twins of embedding_avx2.c); see embedding.h.
 *
 * Plain C, one element at a time, in exactly the order and with exactly the roundings of the
 * AVX2 twin: fmaf() where it uses vfmadd (the file is compiled with -std=c11, so GCC's
 * -ffp-contract=off fuses nothing else), IEEE division for mean, round-half-even conversions.
 * Both paths therefore give identical bits, which the tests check.
 */
#include <math.h>
#include <string.h>

#include "embedding.h"
#include "half.h"

/* Columns pooled per pass over a bag's entries (a stack buffer of floats). */
#define EB_BLOCK 256

/* float32 -> bfloat16, round to nearest even; NaN -> quiet NaN of the same sign (ml_dtypes). */
static inline uint16_t f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16 & 0x8000u) | 0x7fc0u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

static inline int64_t eb_code_bytes(int fmt, int64_t dim) {
    switch (fmt) {
    case LOWPREC_EB_Q8: return dim;
    case LOWPREC_EB_Q4: return (dim + 1) / 2;
    case LOWPREC_EB_Q2: return (dim + 3) / 4;
    default: return 0;
    }
}

static inline int64_t eb_index(const lowprec_eb_args *a, int64_t i) {
    return a->idx64 ? ((const int64_t *)a->indices)[i] : (int64_t)((const int32_t *)a->indices)[i];
}

/* Element j of a row, as float (quantized rows: the code). */
static inline float eb_load(int fmt, const uint8_t *row, int64_t j) {
    switch (fmt) {
    case LOWPREC_EB_F32: {
        float v;
        memcpy(&v, row + 4 * j, 4);
        return v;
    }
    case LOWPREC_EB_F16: {
        uint16_t h;
        memcpy(&h, row + 2 * j, 2);
        return lowprec_f16_to_f32(h);
    }
    case LOWPREC_EB_BF16: {
        uint16_t h;
        memcpy(&h, row + 2 * j, 2);
        return lowprec_bf16_to_f32(h);
    }
    case LOWPREC_EB_Q8: return (float)row[j];
    case LOWPREC_EB_Q4: return (float)((row[j >> 1] >> ((j & 1) * 4)) & 15);
    default: return (float)((row[j >> 2] >> ((j & 3) * 2)) & 3);
    }
}

static inline void eb_scale_bias(int fmt, const uint8_t *row, int64_t dim, float *scale,
                                 float *bias) {
    const uint8_t *p = row + eb_code_bytes(fmt, dim);
    if (fmt == LOWPREC_EB_Q8) {
        memcpy(scale, p, 4);
        memcpy(bias, p + 4, 4);
    } else {
        uint16_t s, b;
        memcpy(&s, p, 2);
        memcpy(&b, p + 2, 2);
        *scale = lowprec_f16_to_f32(s);
        *bias = lowprec_f16_to_f32(b);
    }
}

static void eb_store(const lowprec_eb_args *a, int64_t bag, int64_t j0, const float *acc,
                     int64_t n) {
    uint8_t *o = a->out + bag * a->out_stride;
    if (a->out_fmt == LOWPREC_EB_OUT_F32) {
        memcpy(o + 4 * j0, acc, (size_t)n * 4);
    } else if (a->out_fmt == LOWPREC_EB_OUT_F16) {
        for (int64_t j = 0; j < n; j++) {
            uint16_t h = lowprec_f32_to_f16(acc[j]);
            memcpy(o + 2 * (j0 + j), &h, 2);
        }
    } else {
        for (int64_t j = 0; j < n; j++) {
            uint16_t h = f32_to_bf16(acc[j]);
            memcpy(o + 2 * (j0 + j), &h, 2);
        }
    }
}

void lowprec_embedding_bags_generic(const lowprec_eb_args *a, int64_t bag_begin,
                                    int64_t bag_end) {
    const int fmt = a->fmt, mode = a->mode;
    const int quantized = fmt >= LOWPREC_EB_Q8;
    const int64_t dim = a->dim;
    float acc[EB_BLOCK];
    for (int64_t bag = bag_begin; bag < bag_end; bag++) {
        const int64_t i0 = a->offsets[bag], i1 = a->offsets[bag + 1];
        for (int64_t j0 = 0; j0 < dim; j0 += EB_BLOCK) {
            const int64_t n = dim - j0 < EB_BLOCK ? dim - j0 : EB_BLOCK;
            int64_t count = 0;
            for (int64_t j = 0; j < n; j++) acc[j] = 0.0f;
            for (int64_t i = i0; i < i1; i++) {
                int64_t r = eb_index(a, i);
                if (r == a->padding_idx) continue;
                if (a->mapping) {
                    r = a->mapping[r];
                    if (r < 0) continue;
                }
                const uint8_t *row = a->table + r * a->row_stride;
                float scale = 1.0f, bias = 0.0f;
                if (quantized) eb_scale_bias(fmt, row, dim, &scale, &bias);
                if (mode == LOWPREC_EB_MAX) {
                    for (int64_t j = 0; j < n; j++) {
                        float v = eb_load(fmt, row, j0 + j);
                        if (quantized) v = fmaf(v, scale, bias);
                        acc[j] = (count == 0 || v > acc[j]) ? v : acc[j];
                    }
                } else {
                    const float w = a->weights ? a->weights[i] : 1.0f;
                    if (quantized) {
                        const float s = scale * w, b = bias * w;
                        for (int64_t j = 0; j < n; j++)
                            acc[j] = fmaf(s, eb_load(fmt, row, j0 + j), acc[j] + b);
                    } else {
                        for (int64_t j = 0; j < n; j++)
                            acc[j] = fmaf(w, eb_load(fmt, row, j0 + j), acc[j]);
                    }
                }
                count++;
            }
            if (count == 0) {
                for (int64_t j = 0; j < n; j++) acc[j] = 0.0f;
            } else if (mode == LOWPREC_EB_MEAN) {
                const float c = (float)count;
                for (int64_t j = 0; j < n; j++) acc[j] = acc[j] / c;
            }
            eb_store(a, bag, j0, acc, n);
        }
    }
}

int64_t lowprec_embedding_check_generic(const lowprec_eb_args *a) {
    const uint64_t space = (uint64_t)(a->mapping ? a->n_mapping : a->n_rows);
    const int64_t n = a->n_indices;
    /* Vectorisable pass over blocks; the exact position is searched only in a bad block. */
    for (int64_t b0 = 0; b0 < n; b0 += 1024) {
        const int64_t b1 = n - b0 < 1024 ? n : b0 + 1024;
        int bad = 0;
        if (a->idx64) {
            const int64_t *p = (const int64_t *)a->indices;
            for (int64_t i = b0; i < b1; i++) bad |= (uint64_t)p[i] >= space;
        } else {
            const int32_t *p = (const int32_t *)a->indices;
            for (int64_t i = b0; i < b1; i++) bad |= (uint64_t)(int64_t)p[i] >= space;
        }
        if (bad) {
            for (int64_t i = b0; i < b1; i++)
                if ((uint64_t)eb_index(a, i) >= space) return i;
        }
        if (a->mapping) {
            for (int64_t i = b0; i < b1; i++) {
                const int64_t r = eb_index(a, i);
                if (r == a->padding_idx) continue;
                const int64_t m = a->mapping[r];
                if (m < -1 || m >= a->n_rows) return i;
            }
        }
    }
    return -1;
}

void lowprec_embedding_partition(const int64_t *offsets, int64_t n_bags, int64_t n_chunks,
                                 int64_t *bounds) {
    /* Work of bags [0, b) = offsets[b] + b: one unit per index plus one per bag (an empty bag
     * still writes a row).  Strictly increasing in b, so a binary search finds each cut. */
    const int64_t total = offsets[n_bags] + n_bags;
    bounds[0] = 0;
    for (int64_t c = 1; c < n_chunks; c++) {
        const int64_t target = (int64_t)((double)total * (double)c / (double)n_chunks);
        int64_t lo = bounds[c - 1], hi = n_bags; /* first b with work(b) >= target */
        while (lo < hi) {
            const int64_t mid = lo + (hi - lo) / 2;
            if (offsets[mid] + mid < target) lo = mid + 1;
            else hi = mid;
        }
        bounds[c] = lo;
    }
    bounds[n_chunks] = n_bags;
}
