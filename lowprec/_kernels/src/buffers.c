/* A bounded cache of large freed output buffers (see buffers.h). */
#define _DEFAULT_SOURCE /* madvise and MADV_HUGEPAGE under -std=c11 */
#include "buffers.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

typedef struct {
    void *ptr;
    size_t size;
    uint64_t age; /* insertion order: the oldest is evicted first */
} cached_block;

static cached_block slots[LOWPREC_BUF_SLOTS];
static size_t n_slots, cached_bytes, byte_limit;
static uint64_t clock_, hits, misses;
static atomic_flag lock_ = ATOMIC_FLAG_INIT;

static void lock(void) {
    while (atomic_flag_test_and_set_explicit(&lock_, memory_order_acquire)) {
    }
}
static void unlock(void) { atomic_flag_clear_explicit(&lock_, memory_order_release); }

/* Remove slot k (the caller holds the lock); returns its pointer. */
static void *take(size_t k) {
    void *p = slots[k].ptr;
    cached_bytes -= slots[k].size;
    slots[k] = slots[--n_slots];
    return p;
}

/* A new block from the C library, asking Linux for transparent huge pages as NumPy's own
 * allocator does for 4 MiB and more: with the usual "defrag=madvise" setting only advised
 * ranges get them at fault time, and 4 KiB pages fault ~4x slower per byte. */
static void *fresh_block(size_t size) {
    void *p = malloc(size);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (p != NULL && size >= ((size_t)4 << 20)) {
        const uintptr_t page = 4096, start = ((uintptr_t)p + page - 1) & ~(page - 1);
        const uintptr_t end = ((uintptr_t)p + size) & ~(page - 1);
        if (end > start) madvise((void *)start, end - start, MADV_HUGEPAGE);
    }
#endif
    return p;
}

void *lowprec_buf_malloc(void *ctx, size_t size) {
    (void)ctx;
    if (size >= LOWPREC_BUF_MIN) {
        void *p = NULL;
        lock();
        size_t best = n_slots;
        for (size_t k = 0; k < n_slots; k++) {
            const size_t s = slots[k].size;
            if (s >= size && s - size <= size / 4 && (best == n_slots || s < slots[best].size))
                best = k;
        }
        if (best < n_slots) {
            p = take(best);
            hits++;
        } else {
            misses++;
        }
        unlock();
        if (p) return p;
    }
    return fresh_block(size);
}

void *lowprec_buf_calloc(void *ctx, size_t nelem, size_t elsize) {
    (void)ctx;
    return calloc(nelem, elsize);
}

void *lowprec_buf_realloc(void *ctx, void *ptr, size_t new_size) {
    (void)ctx;
    return realloc(ptr, new_size);
}

void lowprec_buf_free(void *ctx, void *ptr, size_t size) {
    (void)ctx;
    void *evicted[LOWPREC_BUF_SLOTS];
    size_t n_evicted = 0;
    if (ptr == NULL) return;
    if (size >= LOWPREC_BUF_MIN) {
        lock();
        if (size <= byte_limit) {
            /* Make room: the oldest blocks go (freed after the lock is released). */
            while (n_slots > 0 && (n_slots == LOWPREC_BUF_SLOTS || cached_bytes + size > byte_limit)) {
                size_t oldest = 0;
                for (size_t k = 1; k < n_slots; k++)
                    if (slots[k].age < slots[oldest].age) oldest = k;
                evicted[n_evicted++] = take(oldest);
            }
            slots[n_slots++] = (cached_block){ptr, size, clock_++};
            cached_bytes += size;
            ptr = NULL;
        }
        unlock();
    }
    for (size_t k = 0; k < n_evicted; k++) free(evicted[k]);
    free(ptr); /* not kept (NULL when it was) */
}

void lowprec_buf_set_limit(size_t limit) {
    void *evicted[LOWPREC_BUF_SLOTS];
    size_t n_evicted = 0;
    lock();
    byte_limit = limit;
    while (n_slots > 0 && cached_bytes > byte_limit) {
        size_t oldest = 0;
        for (size_t k = 1; k < n_slots; k++)
            if (slots[k].age < slots[oldest].age) oldest = k;
        evicted[n_evicted++] = take(oldest);
    }
    unlock();
    for (size_t k = 0; k < n_evicted; k++) free(evicted[k]);
}

void lowprec_buf_stats(size_t *limit, size_t *cached, size_t *blocks, uint64_t *h, uint64_t *m) {
    lock();
    *limit = byte_limit;
    *cached = cached_bytes;
    *blocks = n_slots;
    *h = hits;
    *m = misses;
    unlock();
}
