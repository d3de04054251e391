import pytest

from lowprec import _dispatch


@pytest.fixture(params=_dispatch.available_isas())
def isa(request):
    """Run the test once on every ISA path this machine can execute."""
    with _dispatch.use_isa(request.param):
        yield request.param


@pytest.fixture(params=["l1", "l2"])
def row_prefetch(request):
    """Run the test with the EmbeddingBag rows prefetched into L1 only and in two levels (L2
    far ahead, L1 near: the default on AMD Zen 4+): the bits must not depend on it."""
    from lowprec._kernels import _embedding

    previous = _embedding._set_prefetch_l2(request.param == "l2")
    previous_min = _embedding._set_two_level_min_table_bytes(0)  # small test tables too
    yield request.param
    _embedding._set_two_level_min_table_bytes(previous_min)
    _embedding._set_prefetch_l2(previous)
