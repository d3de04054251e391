"""The output-buffer cache (lowprec/buffers.py): reused memory never changes a result."""

import threading

import ml_dtypes
import numpy as np
import pytest

import lowprec
from lowprec.buffers import empty_output

BIG = 1 << 20  # elements: 4 MiB of float32, above the cache's 1 MiB floor


@pytest.fixture
def cache():
    old = lowprec.set_buffer_cache(64 << 20)
    yield
    lowprec.set_buffer_cache(old)


def _handler(a):
    """The name of the NumPy memory handler that allocated ``a`` (NumPy 2 and 1.22+)."""
    core = getattr(np, "_core", None) or np.core
    return core.multiarray.get_handler_name(a)


def test_large_outputs_come_from_the_cache_and_are_reused(cache):
    x = np.random.default_rng(0).standard_normal(BIG).astype(np.float32)
    first = lowprec.to_bfloat16(x)
    assert _handler(first) == "lowprec_buffer_cache"
    np.testing.assert_array_equal(first.view(np.uint16), x.astype(ml_dtypes.bfloat16).view(np.uint16))
    del first
    before = lowprec.buffer_cache_info()
    assert before["cached_bytes"] >= 2 * BIG
    # The reused block holds the old values: every element must be overwritten.
    y = -x[::-1].copy()
    again = lowprec.to_bfloat16(y)
    after = lowprec.buffer_cache_info()
    assert after["hits"] == before["hits"] + 1
    np.testing.assert_array_equal(again.view(np.uint16), y.astype(ml_dtypes.bfloat16).view(np.uint16))


def test_small_outputs_bypass_the_cache(cache):
    before = lowprec.buffer_cache_info()
    out = lowprec.to_bfloat16(np.ones(1000, np.float32))
    assert _handler(out) != "lowprec_buffer_cache"
    after = lowprec.buffer_cache_info()
    assert (after["hits"], after["misses"]) == (before["hits"], before["misses"])


def test_disabling_releases_and_arrays_outlive_it(cache):
    keep = empty_output((BIG,), np.float32)
    keep[:] = 3.0
    tmp = empty_output((BIG,), np.float32)
    del tmp
    assert lowprec.buffer_cache_info()["cached_bytes"] > 0
    assert lowprec.set_buffer_cache(0) == 64 << 20
    info = lowprec.buffer_cache_info()
    assert info["cached_bytes"] == 0 and info["cached_blocks"] == 0
    assert keep.sum() == 3.0 * BIG
    del keep  # freed to the C library now: the cache is off
    assert lowprec.buffer_cache_info()["cached_bytes"] == 0


def test_only_blocks_within_a_quarter_of_the_request_are_reused(cache):
    a = empty_output((BIG,), np.float32)
    del a
    before = lowprec.buffer_cache_info()["hits"]
    b = empty_output((BIG // 2,), np.float32)  # the 4 MiB block is too large for 2 MiB
    assert lowprec.buffer_cache_info()["hits"] == before
    c = empty_output((BIG - 1000,), np.float32)  # within 25%: reused
    assert lowprec.buffer_cache_info()["hits"] == before + 1
    del b, c


def test_limit_bounds_what_is_kept(cache):
    lowprec.set_buffer_cache(6 << 20)
    arrays = [empty_output((BIG,), np.float32) for _ in range(3)]  # 3 x 4 MiB
    del arrays
    assert lowprec.buffer_cache_info()["cached_bytes"] <= 6 << 20


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (1.5, TypeError), (True, TypeError),
                                      ("1", TypeError)])
def test_bad_limits(bad, exc):
    with pytest.raises(exc, match="max_bytes"):
        lowprec.set_buffer_cache(bad)


def test_concurrent_python_threads(cache):
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal(BIG // 2 + 4096 * k).astype(np.float32) for k in range(4)]
    expected = [x.astype(ml_dtypes.bfloat16).view(np.uint16) for x in inputs]
    errors = []

    def work(k):
        try:
            for _ in range(20):
                r = lowprec.to_bfloat16(inputs[k], n_threads=1)
                if not np.array_equal(r.view(np.uint16), expected[k]):
                    errors.append(k)
                del r
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
