/* A bounded cache of large freed output buffers, behind a NumPy memory handler.
 *
 * Why: a fresh multi-megabyte NumPy array is mmap()ed by the C library and every one of its
 * pages is zeroed by the kernel on first touch.  For a streaming kernel that writes its output
 * once (a float32 -> bfloat16 conversion of 16M elements writes 32 MB in ~2.5 ms) that first
 * touch costs more than the kernel itself (~4 ms for 32 MB here).  lowprec allocates its large
 * outputs with this handler (_buffers.pyx): when such an array dies, its block is kept (up to a
 * byte limit) and the next output of about the same size reuses it, pages already mapped.
 *
 * Policy: blocks of at least LOWPREC_BUF_MIN bytes only; a request takes the smallest cached
 * block of size in [n, n + n / 4] (else malloc); a freed block is kept while the cache holds
 * at most `limit` bytes and LOWPREC_BUF_SLOTS blocks, evicting the oldest.  calloc and realloc
 * go straight to the C library (a reused block is not zero).  The lock is a spin lock on an
 * atomic flag: the critical sections are a few dozen instructions.
 */
#ifndef LOWPREC_BUFFERS_H
#define LOWPREC_BUFFERS_H

#include <stddef.h>
#include <stdint.h>

#define LOWPREC_BUF_MIN ((size_t)1 << 20)
#define LOWPREC_BUF_SLOTS 16

void *lowprec_buf_malloc(void *ctx, size_t size);
void *lowprec_buf_calloc(void *ctx, size_t nelem, size_t elsize);
void *lowprec_buf_realloc(void *ctx, void *ptr, size_t new_size);
void lowprec_buf_free(void *ctx, void *ptr, size_t size);

/* Byte limit of the cache (0 disables it and releases what it holds). */
void lowprec_buf_set_limit(size_t limit);
/* limit, cached bytes, cached blocks, hits, misses. */
void lowprec_buf_stats(size_t *limit, size_t *cached, size_t *blocks, uint64_t *hits,
                       uint64_t *misses);

#endif /* LOWPREC_BUFFERS_H */
