import pytest

from lowprec import _dispatch


@pytest.fixture(params=_dispatch.available_isas())
def isa(request):
    """Run the test once on every ISA path this machine can execute."""
    with _dispatch.use_isa(request.param):
        yield request.param
