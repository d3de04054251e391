"""Every example in lowprec's docstrings runs and prints what it says."""

import doctest
import importlib
import inspect
import pkgutil

import pytest

import lowprec

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(lowprec.__path__, "lowprec.")
    if not m.name.startswith("lowprec._kernels")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert result.failed == 0


@pytest.mark.parametrize("name", [n for n in lowprec.__all__ if callable(getattr(lowprec, n))])
def test_every_public_function_has_an_example(name):
    obj = getattr(lowprec, name)
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        pytest.skip("a dtype, not a function")
    assert ">>>" in (inspect.getdoc(obj) or ""), f"lowprec.{name} has no example"
