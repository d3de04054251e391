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
    """
    bint LOWPREC_OPENMP_ENABLED
    int lowprec_omp_max_threads() noexcept nogil
    int lowprec_omp_thread_num() noexcept nogil
