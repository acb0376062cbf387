"""The docstring examples of the CUDA modules (tests/test_doctests.py leaves them out, since they
need a GPU or the simulator): they must be true."""

import doctest
import importlib

import pytest

MODULES = ["miniclip.kernels.cuda.matmul", "miniclip.kernels.cuda.attention",
           "miniclip.kernels.cuda.elementwise", "miniclip.kernels.cuda.ops",
           "miniclip.kernels.cuda.device.array"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name),
                             optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"no docstring examples found in {name}"
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
