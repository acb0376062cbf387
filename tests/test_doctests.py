"""The examples in docstrings are part of the documentation: they must be true."""

import doctest
import importlib
import pkgutil

import pytest

import miniclip

MODULES = sorted(m.name for m in pkgutil.walk_packages(miniclip.__path__, "miniclip.")
                 if not m.name.startswith("miniclip.kernels.cuda") and not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
