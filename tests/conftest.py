"""Shared test setup.

Numba compiles a kernel on its first call; ``cache=True`` writes the result to NUMBA_CACHE_DIR so
the rest of the run (and notebook kernels, which inherit the environment) reuse it. One cache
directory per checkout keeps a run from compiling each kernel more than once per dtype.
"""

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
# the numba backend's measured matmul routes (kernels/numba/routing.py): inside the clone too
os.environ.setdefault("MINICLIP_CACHE_DIR", str(ROOT / ".miniclip_cache"))
# ... but the tests (and the lessons and subprocesses they start) use the hand-written kernel for
# every product unless a test asks for "auto" or "blas": their numbers then do not depend on which
# route this machine measured faster.
os.environ.setdefault("MINICLIP_MATMUL", "kernel")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A toy dataset small enough to train on for a few steps in a second (shared by the
    training, precision and distributed tests)."""
    from miniclip.datasets import generate_dataset

    path = tmp_path_factory.mktemp("toy_data")
    generate_dataset(path, n_train=96, n_val=24, n_test=48, n_heldout=16, workers=1,
                     progress=False)
    return path


def pytest_terminal_summary(terminalreporter):
    """Print the worst gradient-check error per layer seen in this run."""
    from .gradcheck_helpers import MAX_ERRORS

    if MAX_ERRORS:
        terminalreporter.section("largest relative gradient error per layer (float64)")
        for name, err in sorted(MAX_ERRORS.items()):
            terminalreporter.write_line(f"{name:<28}{err:.2e}")
