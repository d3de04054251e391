/* Portable EmbeddingBag kernels (the reference twins of embedding_avx2.c); see embedding.h.
 *
 * Plain C, one element at a time, in exactly the order and with exactly the roundings of the
 * AVX2 twin: fmaf() where it uses vfmadd (the file is compiled with -std=c11, so GCC's
 * -ffp-contract=off fuses nothing else), IEEE division for mean, round-half-even conversions.
 * Both paths therefore give identical bits, which the tests check.
 */
#if !defined(_WIN32) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* pthreads and clock_gettime under -std=c11 (the team below) */
#endif
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

/* ---- A work-sharing team for the 2+ thread calls (lowprec_eb_team_run) ----------------------
 *
 * Why not an OpenMP parallel region: its end is a barrier that waits for every thread of the
 * team, including one the OS has not scheduled yet.  On a machine shared with other busy
 * processes that is a scheduler slice: 2048 x 32 8-bit rows at 2 threads took 16 ms per call
 * (median; 0.15-0.3 ms pooled), PyTorch's OpenMP loop the same.  Here the calling thread takes
 * chunks from the same counter as the helpers and waits only for the chunks a helper has
 * actually taken: a helper that wakes up late finds no work left and is not waited for.
 * Results do not change: every chunk (a fixed range of bags) is pooled by one thread, whichever.
 *
 * One job at a time (a second concurrent caller gets -1 and takes the OpenMP path).  The claim
 * word packs (epoch << 32 | next << 16 | n_chunks): a helper's compare-and-swap succeeds only
 * for the job it read, and the job's fields stay valid until all its taken chunks are done. */
#if !defined(_WIN32) && (defined(__GNUC__) || defined(__clang__))
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define EB_TEAM_MAX 64
/* Helpers spin this long for the next job before they sleep: back-to-back calls (a training or
 * serving loop, a benchmark) find them awake; an idle process does not burn a core. */
#define EB_TEAM_SPIN_NS 500000

static pthread_mutex_t eb_team_job_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t eb_team_sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t eb_team_wake = PTHREAD_COND_INITIALIZER;
static int eb_team_helpers;           /* started helpers (under eb_team_job_lock) */
static int eb_team_atfork_done;
static _Atomic uint32_t eb_team_epoch;  /* bumped for every job */
static _Atomic uint64_t eb_team_claim;  /* epoch << 32 | next << 16 | n_chunks */
static _Atomic int64_t eb_team_finished; /* chunks of the current job pooled by helpers */
static _Atomic int eb_team_sleepers;
static _Atomic int eb_team_width;       /* helpers 0 .. width - 1 work on the current job */
static void (*eb_team_fn)(void *, int64_t);
static void *eb_team_ctx;

static inline void eb_team_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t eb_team_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Take the next chunk of job `epoch`: its index, or -1 when none is left (or the job is over). */
static int64_t eb_team_take(uint32_t epoch) {
    uint64_t c = atomic_load_explicit(&eb_team_claim, memory_order_acquire);
    for (;;) {
        const uint64_t next = (c >> 16) & 0xffffu, n = c & 0xffffu;
        if ((uint32_t)(c >> 32) != epoch || next >= n) return -1;
        if (atomic_compare_exchange_weak_explicit(&eb_team_claim, &c, c + (1u << 16),
                                                  memory_order_acquire, memory_order_acquire))
            return (int64_t)next;
    }
}

static void *eb_team_helper(void *arg) {
    const int id = (int)(intptr_t)arg; /* helpers past the job's thread count sit it out */
    uint32_t seen = atomic_load(&eb_team_epoch);
    for (;;) {
        uint32_t e = atomic_load(&eb_team_epoch);
        if (e == seen) {
            const int64_t t0 = eb_team_now_ns();
            for (int k = 1; (e = atomic_load(&eb_team_epoch)) == seen; k++) {
                eb_team_pause();
                if (k % 256 == 0 && eb_team_now_ns() - t0 > EB_TEAM_SPIN_NS) break;
            }
        }
        if (e == seen) {
            /* Sleep.  sleepers is raised before the epoch is re-read and the caller bumps the
             * epoch before it reads sleepers (both sequentially consistent): one of the two
             * sees the other, so a wake-up is never lost. */
            pthread_mutex_lock(&eb_team_sleep_lock);
            atomic_fetch_add(&eb_team_sleepers, 1);
            while ((e = atomic_load(&eb_team_epoch)) == seen)
                pthread_cond_wait(&eb_team_wake, &eb_team_sleep_lock);
            atomic_fetch_sub(&eb_team_sleepers, 1);
            pthread_mutex_unlock(&eb_team_sleep_lock);
        }
        seen = e;
        if (id >= atomic_load(&eb_team_width)) continue;
        for (int64_t c; (c = eb_team_take(e)) >= 0;) {
            eb_team_fn(eb_team_ctx, c);
            atomic_fetch_add_explicit(&eb_team_finished, 1, memory_order_release);
        }
    }
    return NULL;
}

/* In a forked child the helpers do not exist and the locks may be held: start afresh. */
static void eb_team_atfork_child(void) {
    pthread_mutex_init(&eb_team_job_lock, NULL);
    pthread_mutex_init(&eb_team_sleep_lock, NULL);
    pthread_cond_init(&eb_team_wake, NULL);
    eb_team_helpers = 0;
    atomic_store(&eb_team_sleepers, 0);
}

int lowprec_eb_team_run(int n_threads, int64_t n_chunks, void (*fn)(void *, int64_t), void *ctx) {
    if (n_chunks > 0xffff || pthread_mutex_trylock(&eb_team_job_lock) != 0) return -1;
    if (!eb_team_atfork_done) {
        pthread_atfork(NULL, NULL, eb_team_atfork_child);
        eb_team_atfork_done = 1;
    }
    const int want = (n_threads < EB_TEAM_MAX ? n_threads : EB_TEAM_MAX) - 1;
    while (eb_team_helpers < want) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int err =
            pthread_create(&t, &attr, eb_team_helper, (void *)(intptr_t)eb_team_helpers);
        pthread_attr_destroy(&attr);
        if (err != 0) break; /* fewer helpers: the caller pools more chunks itself */
        eb_team_helpers++;
    }
    /* An earlier call may have started more helpers than this one may use. */
    atomic_store_explicit(&eb_team_width, want < eb_team_helpers ? want : eb_team_helpers,
                          memory_order_relaxed);
    eb_team_fn = fn;
    eb_team_ctx = ctx;
    atomic_store_explicit(&eb_team_finished, 0, memory_order_relaxed);
    const uint32_t e = atomic_load(&eb_team_epoch) + 1;
    atomic_store_explicit(&eb_team_claim, (uint64_t)e << 32 | (uint64_t)n_chunks,
                          memory_order_release);
    atomic_store(&eb_team_epoch, e);
    if (atomic_load(&eb_team_sleepers) > 0) {
        pthread_mutex_lock(&eb_team_sleep_lock);
        pthread_cond_broadcast(&eb_team_wake);
        pthread_mutex_unlock(&eb_team_sleep_lock);
    }
    int64_t mine = 0;
    for (int64_t c; (c = eb_team_take(e)) >= 0; mine++) fn(ctx, c);
    /* The other chunks were taken by helpers: spin until they are done (as libgomp's barrier
     * does first).  A sched_yield every 1024 spins measured the same under load (0.70-1.11 ms
     * against 0.72-1.18 ms per 2-thread 8-bit call, 3 runs) and may hand this core to another
     * process for a whole slice. */
    while (atomic_load_explicit(&eb_team_finished, memory_order_acquire) < n_chunks - mine)
        eb_team_pause();
    pthread_mutex_unlock(&eb_team_job_lock);
    return 0;
}
#else
int lowprec_eb_team_run(int n_threads, int64_t n_chunks, void (*fn)(void *, int64_t), void *ctx) {
    (void)n_threads, (void)n_chunks, (void)fn, (void)ctx;
    return -1; /* no POSIX threads: the caller takes its OpenMP path */
}
#endif
