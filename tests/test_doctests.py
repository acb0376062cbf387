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
    from miniclip import backend

    module = importlib.import_module(name)
    before = backend.get_backend()  # backend.py's example switches to numpy "for good"
    try:
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    finally:
        backend.use_backend(before)  # the tests after these ones get the backend they had
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
