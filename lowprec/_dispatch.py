"""Runtime CPU dispatch: pick each kernel family's instruction set once, at import.

The CPU's features decide the best path; ``LOWPREC_ISA=generic`` (read once, when lowprec is
imported) forces the portable C kernels everywhere, ``LOWPREC_ISA=avx2`` asks for AVX2 (and
falls back with a warning where the CPU lacks it), ``LOWPREC_ISA=avx512vnni`` likewise.  Every kernel module registers itself
here with :func:`register_family`; it exposes ``BEST_ISA`` (the best level it implements),
``_set_isa(level)`` and ``_get_isa()``, and the dispatcher never asks for more than ``BEST_ISA``.
"""

import contextlib
import os
import threading
import warnings

from ._kernels import _runtime

#: ISA names by level; the C side uses the same numbers (src/lowprec_common.h).
ISAS = ("generic", "avx2", "avx512vnni")
ENV_VAR = "LOWPREC_ISA"

_families = {}  # family name -> kernel module
_lock = threading.Lock()


def available_isas():
    """ISA paths that this build and this CPU can execute, portable first.

    Examples
    --------
    >>> import lowprec
    >>> lowprec._dispatch.available_isas()[0]
    'generic'
    """
    f = _runtime.cpu_features()
    isas = ["generic"]
    if _runtime.built_with_avx2() and f["avx2"] and f["fma"] and f["f16c"]:
        isas.append("avx2")
        if all(f[k] for k in ("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512vnni")):
            isas.append("avx512vnni")
    return tuple(isas)


def _requested_isa():
    """The ISA named by LOWPREC_ISA, or the best available one."""
    available = available_isas()
    requested = os.environ.get(ENV_VAR, "").strip().lower()
    if requested in ("", "auto", "native"):
        return available[-1]
    if requested not in ISAS:
        warnings.warn(
            f"{ENV_VAR}={requested!r} is not one of {ISAS + ('auto',)}; using {available[-1]!r}",
            RuntimeWarning,
            stacklevel=3,
        )
        return available[-1]
    if requested not in available:
        warnings.warn(
            f"{ENV_VAR}={requested!r} is not supported by this CPU or build; "
            f"using {available[-1]!r}",
            RuntimeWarning,
            stacklevel=3,
        )
        return available[-1]
    return requested


SELECTED_ISA = _requested_isa()


def _level_for(module, isa):
    """The level a family runs for ``isa``: its best path at or below it."""
    return min(ISAS.index(isa), module.BEST_ISA)


def register_family(name, module):
    """Register a kernel module under a family name and set it to the selected ISA."""
    with _lock:
        _families[name] = module
        module._set_isa(_level_for(module, SELECTED_ISA))


def family_isas():
    """``{family: isa}``: the path each registered kernel family runs now."""
    with _lock:
        return {name: ISAS[mod._get_isa()] for name, mod in sorted(_families.items())}


@contextlib.contextmanager
def use_isa(isa):
    """Temporarily run every kernel family on ``isa`` (for tests and benchmarks).

    Not thread-safe with respect to concurrent kernel calls: it switches a process-wide
    setting.  A family that has no kernel for ``isa`` runs its best path below it.

    Examples
    --------
    >>> import lowprec
    >>> with lowprec._dispatch.use_isa("generic"):
    ...     pass
    """
    if isa not in available_isas():
        raise ValueError(f"isa {isa!r} is not available here; available: {available_isas()}")
    with _lock:
        saved = {name: mod._get_isa() for name, mod in _families.items()}
        for mod in _families.values():
            mod._set_isa(_level_for(mod, isa))
    try:
        yield
    finally:
        with _lock:
            for name, level in saved.items():
                _families[name]._set_isa(level)
