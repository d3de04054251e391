"""Thread-count policy shared by every parallel kernel.

Precedence, highest first: the ``n_threads=`` keyword of a call; :func:`set_num_threads`;
OpenMP's own budget read at call time (``OMP_NUM_THREADS``,
``threadpoolctl.threadpool_limits(user_api="openmp")``).  Kernels partition work so that every
output element is computed by one thread in a fixed order: results never depend on the count.

libgomp (GCC's OpenMP runtime) is not fork-safe, so a child forked after the parent ran a
parallel kernel runs every parallel region on one thread (``_kernels/_openmp_helpers.pxd``)
instead of hanging.  Use the "spawn" or "forkserver" start method of multiprocessing for
children that should run in parallel.
"""

from ._kernels import _runtime
from ._validation import check_int

_process_num_threads = None  # set by set_num_threads; None = follow OpenMP


def set_num_threads(n):
    """Set the process-wide thread count for lowprec's kernels (``None`` restores OpenMP's).

    Examples
    --------
    >>> import lowprec
    >>> lowprec.set_num_threads(1)
    >>> lowprec.get_num_threads()
    1
    >>> lowprec.set_num_threads(None)
    """
    global _process_num_threads
    _process_num_threads = None if n is None else check_int(n, "n", minimum=1)


def get_num_threads():
    """Threads a lowprec kernel uses when called without ``n_threads=``.

    Examples
    --------
    >>> import lowprec
    >>> lowprec.get_num_threads() >= 1
    True
    """
    if _process_num_threads is not None:
        return _process_num_threads
    return max(1, _runtime.omp_max_threads())


def resolve_n_threads(n_threads, work_items=None, min_items_per_thread=1):
    """Thread count for one call: the keyword, else the process setting, capped by the work.

    ``work_items`` / ``min_items_per_thread`` keep small problems serial: starting a parallel
    region costs microseconds, more than a small kernel takes.
    """
    n = get_num_threads() if n_threads is None else check_int(n_threads, "n_threads", minimum=1)
    if work_items is not None:
        n = max(1, min(n, work_items // max(1, min_items_per_thread)))
    return n
