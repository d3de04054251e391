"""show_config(): what lowprec was built with and which kernels it runs."""

import platform
import sys

import numpy as np

from . import _dispatch, _threads
from ._kernels import _runtime
from .buffers import buffer_cache_info


def config_dict():
    """The facts :func:`show_config` prints, as a dict (for benchmark reports).

    Examples
    --------
    >>> import lowprec
    >>> sorted(lowprec.config_dict())[:3]
    ['available_isas', 'buffer_cache_limit', 'compiler']
    """
    from . import __version__

    features = _runtime.cpu_features()
    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpu_features": [name for name, present in features.items() if present],
        "available_isas": list(_dispatch.available_isas()),
        "selected_isa": _dispatch.SELECTED_ISA,
        "kernel_isas": _dispatch.family_isas(),
        "compiler": _runtime.compiler_version(),
        "openmp": _runtime.openmp_enabled(),
        "num_threads": _threads.get_num_threads(),
        "omp_max_threads": _runtime.omp_max_threads(),
        "buffer_cache_limit": buffer_cache_info()["limit"],
    }


def show_config():
    """Print lowprec's version, the ISA chosen per kernel family, CPU features, compiler, OpenMP.

    Examples
    --------
    >>> import lowprec
    >>> lowprec.show_config()  # doctest: +ELLIPSIS
    lowprec ...
    """
    c = config_dict()
    lines = [
        f"lowprec {c['version']} (Python {c['python']}, NumPy {c['numpy']}, {c['machine']})",
        f"  CPU features: {' '.join(c['cpu_features']) or '(none detected)'}",
        f"  ISA paths available: {', '.join(c['available_isas'])}; "
        f"selected: {c['selected_isa']} (set {_dispatch.ENV_VAR}=generic to force the portable path)",
        "  kernels:",
    ]
    lines += [f"    {family:<12} {isa}" for family, isa in c["kernel_isas"].items()]
    lines += [
        f"  compiler: {c['compiler']}",
        f"  OpenMP: {'yes' if c['openmp'] else 'no (serial build)'}; "
        f"threads: {c['num_threads']} (OpenMP max {c['omp_max_threads']})",
        f"  output buffer cache: {c['buffer_cache_limit'] >> 20} MiB "
        "(lowprec.set_buffer_cache, LOWPREC_BUFFER_CACHE_MB)",
    ]
    print("\n".join(lines))
