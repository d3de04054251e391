"""The foundation: dispatch, threads, show_config, argument checks."""

import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import lowprec
from lowprec import _dispatch, _threads, _validation


def run_python(code, **env):
    """Run ``code`` in a fresh interpreter (dispatch is decided once, at import).

    It runs outside the checkout, so that it imports the installed package, not the sources.
    """
    full_env = dict(os.environ, **env)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        check=True,
        cwd=tempfile.gettempdir(),
    )
    return result.stdout, result.stderr


def test_show_config_lists_version_isas_compiler_and_threads(capsys):
    lowprec.show_config()
    text = capsys.readouterr().out
    assert lowprec.__version__ in text
    assert "selected:" in text and _dispatch.SELECTED_ISA in text
    assert "compiler:" in text
    assert "OpenMP:" in text
    for family, isa in _dispatch.family_isas().items():
        assert family in text and isa in text


def test_available_isas_start_with_generic_and_are_known():
    isas = _dispatch.available_isas()
    assert isas[0] == "generic"
    assert set(isas) <= set(_dispatch.ISAS)


def test_env_var_forces_the_portable_path_for_every_family():
    out, _ = run_python(
        "import lowprec, lowprec._dispatch as d; "
        "print(d.SELECTED_ISA, len(d.family_isas()), sorted(set(d.family_isas().values())))",
        LOWPREC_ISA="generic",
    )
    selected, n_families, isas = out.strip().split(maxsplit=2)
    assert selected == "generic" and int(n_families) >= 1
    assert isas == "['generic']"


def test_unknown_or_unsupported_isa_warns_and_falls_back():
    _, err = run_python("import lowprec", LOWPREC_ISA="sparc64")
    assert "LOWPREC_ISA" in err and "RuntimeWarning" in err


def test_use_isa_switches_and_restores():
    before = _dispatch.family_isas()
    with _dispatch.use_isa("generic"):
        assert set(_dispatch.family_isas().values()) <= {"generic"}
    assert _dispatch.family_isas() == before
    with pytest.raises(ValueError, match="not available"):
        with _dispatch.use_isa("quantum"):
            pass


def test_set_num_threads_round_trip_and_validation():
    try:
        lowprec.set_num_threads(1)
        assert lowprec.get_num_threads() == 1
        assert _threads.resolve_n_threads(None) == 1
        assert _threads.resolve_n_threads(2) == 2  # the keyword wins
    finally:
        lowprec.set_num_threads(None)
    with pytest.raises(ValueError, match="n must be >= 1"):
        lowprec.set_num_threads(0)
    with pytest.raises(TypeError, match="n_threads must be an integer"):
        _threads.resolve_n_threads(1.5)


def test_small_work_stays_serial():
    assert _threads.resolve_n_threads(2, work_items=10, min_items_per_thread=100) == 1
    assert _threads.resolve_n_threads(2, work_items=1000, min_items_per_thread=100) == 2


def test_omp_num_threads_is_honoured():
    out, _ = run_python("import lowprec; print(lowprec.get_num_threads())", OMP_NUM_THREADS="1")
    assert out.strip() == "1"


def test_threadpoolctl_limits_are_honoured():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from lowprec._kernels import _runtime

    if not _runtime.openmp_enabled():
        pytest.skip("serial build")
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert lowprec.get_num_threads() == 1


def test_check_out_rejects_every_bad_out_before_use():
    x = np.zeros((2, 3), np.float32)
    shape, dt = (2, 3), np.float32
    assert _validation.check_out(None, shape, dt).shape == shape
    with pytest.raises(TypeError, match="out must be a numpy.ndarray"):
        _validation.check_out([0.0] * 6, shape, dt)
    with pytest.raises(TypeError, match="dtype"):
        _validation.check_out(np.zeros(shape, np.float64), shape, dt)
    with pytest.raises(ValueError, match="shape"):
        _validation.check_out(np.zeros((3, 2), dt), shape, dt)
    with pytest.raises(ValueError, match="C-contiguous"):
        _validation.check_out(np.zeros((3, 2), dt).T, shape, dt)
    ro = np.zeros(shape, dt)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        _validation.check_out(ro, shape, dt)
    with pytest.raises(ValueError, match="overlaps"):
        _validation.check_out(x, shape, dt, inputs=(x,))


def test_as_array_names_the_argument_and_accepted_dtypes():
    assert _validation.as_array([1, 2], "x").dtype.kind == "i"
    with pytest.raises(TypeError, match="table has dtype int64; expected one of: float32"):
        _validation.as_array(np.zeros(3, np.int64), "table", (np.float32,))


_FORK_SCRIPT = r"""
import os, signal, sys
import numpy as np
import lowprec as lp

rng = np.random.default_rng(0)
x = rng.standard_normal((512, 512), dtype=np.float32)
w8 = rng.integers(-128, 128, (512, 512), dtype=np.int8)
a8 = rng.integers(0, 256, (256, 512), dtype=np.uint8)
pw8, pw4, pwb = lp.pack_weights(w8, scale=0.01), lp.pack_weights_int4(x), lp.pack_weights_bf16(x)
table = lp.quantize_rowwise(rng.standard_normal((20000, 64), dtype=np.float32), bits=8)
idx = rng.integers(0, 20000, 65536)
big = rng.standard_normal(1 << 21, dtype=np.float32)
calls = [
    lambda: lp.qmatmul(a8, pw8, n_threads=2),
    lambda: lp.linear_int4(x[:64], pw4, n_threads=2),
    lambda: lp.linear_bf16(x[:256], pwb, n_threads=2),
    lambda: lp.embedding_bag(table, idx, np.arange(0, 65536, 32), n_threads=2),
    lambda: lp.quantize_rowwise(x, bits=4, n_threads=2).data,
    lambda: lp.to_bfloat16(big, n_threads=2).view(np.uint16),
    lambda: lp.quantize(big, 0.01, 3, dtype=np.uint8, n_threads=2),
]
want = [f() for f in calls]  # the parent's OpenMP pool exists now
pid = os.fork()
if pid == 0:
    signal.alarm(60)  # a hang ends the child with SIGALRM
    same = all(np.array_equal(np.asarray(f()), np.asarray(v)) for f, v in zip(calls, want))
    os._exit(0 if same else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_runs_parallel_kernels_without_hanging():
    # libgomp is not fork-safe: a child forked after the parent ran a 2-thread region used to
    # hang in its next one.  Every parallel module runs a forked child's regions on one thread
    # (_openmp_helpers.pxd): same results, no hang.
    r = subprocess.run([sys.executable, "-c", _FORK_SCRIPT], capture_output=True, text=True,
                       timeout=300, cwd=tempfile.gettempdir())  # the installed package
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
