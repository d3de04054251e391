# The one place that touches OpenMP's runtime API.  It compiles with and without OpenMP
# (scikit-learn's _openmp_helpers idea): without it, every query answers "one thread" and
# Cython's prange runs serially.

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define LOWPREC_OPENMP_ENABLED 1
    static int lowprec_omp_max_threads(void) { return omp_get_max_threads(); }
    static int lowprec_omp_thread_num(void) { return omp_get_thread_num(); }
    #else
    #define LOWPREC_OPENMP_ENABLED 0
    static int lowprec_omp_max_threads(void) { return 1; }
    static int lowprec_omp_thread_num(void) { return 0; }
    #endif
    /* libgomp is not fork-safe: in a child forked after the parent ran a parallel region, the
     * next region of 2+ threads waits forever for pool threads that fork did not copy.  So a
     * forked child runs every region of this module on one thread (as PyTorch does): each
     * module calls lowprec_fork_guard() once at import and asks lowprec_region_threads(n) for
     * every region's size.  Results do not depend on the thread count. */
    #if defined(_OPENMP) && !defined(_WIN32)
    #include <pthread.h>
    static volatile int lowprec_in_forked_child = 0;
    static void lowprec_mark_forked_child(void) { lowprec_in_forked_child = 1; }
    static int lowprec_fork_guard(void) {
        return pthread_atfork(NULL, NULL, lowprec_mark_forked_child);
    }
    static int lowprec_region_threads(int n) { return lowprec_in_forked_child ? 1 : n; }
    #else
    static int lowprec_fork_guard(void) { return 0; }
    static int lowprec_region_threads(int n) { return n; }
    #endif
    """
    bint LOWPREC_OPENMP_ENABLED
    int lowprec_omp_max_threads() noexcept nogil
    int lowprec_omp_thread_num() noexcept nogil
    int lowprec_fork_guard() noexcept nogil
    int lowprec_region_threads(int n) noexcept nogil
