"""Optional peers: numpy always; torch, onnxruntime, ml_dtypes when importable.

A peer that is requested but not installed is skipped with a one-line note.

Examples
--------
>>> p = load_peers(["numpy"])
>>> sorted(p.available), p.notes
(['numpy'], [])
>>> with p.threads(1):
...     pass
"""

import contextlib
import importlib


class Peers:
    """The importable peers (name -> module) and a note per skipped one."""

    def __init__(self, available, notes):
        self.available = available
        self.notes = notes

    def __contains__(self, name):
        return name in self.available

    def __getitem__(self, name):
        return self.available[name]

    def versions(self):
        return {name: getattr(mod, "__version__", "?") for name, mod in self.available.items()}

    @contextlib.contextmanager
    def threads(self, n):
        """Limit numpy's BLAS (threadpoolctl) and torch to ``n`` threads inside the block.

        lowprec gets ``n_threads=`` on every call and ONNX Runtime ``intra_op_num_threads``
        when its session is built, so neither needs a global setting.
        """
        torch = self.available.get("torch")
        old = torch.get_num_threads() if torch is not None else None
        if torch is not None:
            torch.set_num_threads(n)
        try:
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:
                limiter = contextlib.nullcontext()
            else:
                limiter = threadpool_limits(limits=n, user_api="blas")
            with limiter:
                yield
        finally:
            if torch is not None:
                torch.set_num_threads(old)


def _import(name):
    if name == "onnxruntime":
        ort = importlib.import_module("onnxruntime")
        importlib.import_module("onnx")  # the graphs are built with onnx.helper
        ort.set_default_logger_severity(3)
        return ort
    mod = importlib.import_module(name)
    if name == "torch":
        mod.backends.quantized.engine = "fbgemm" if "fbgemm" in \
            mod.backends.quantized.supported_engines else mod.backends.quantized.engine
    return mod


def load_peers(requested):
    """Import the requested peers; return a :class:`Peers` with a note for each one missing.

    Examples
    --------
    >>> load_peers(["numpy", "ml_dtypes"]).versions()["numpy"] != "?"
    True
    """
    available, notes = {}, []
    for name in requested:
        try:
            available[name] = _import(name)
        except Exception as e:  # ImportError, or a broken install
            notes.append(f"peer {name} skipped: not importable ({type(e).__name__}: {e})"
                         .splitlines()[0])
    if "numpy" in available:
        try:
            import threadpoolctl  # noqa: F401
        except ImportError:
            notes.append("threadpoolctl not installed: numpy's BLAS threads are not limited")
    return Peers(available, notes)
