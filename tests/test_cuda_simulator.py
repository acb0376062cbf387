"""Runs the CUDA kernel tests (tests/cudasim) in numba's CUDA simulator, in a subprocess.

The simulator must be switched on (NUMBA_ENABLE_CUDASIM=1) before numba is first imported, which
this process did long ago, hence the subprocess. It passes only if pytest exits cleanly AND every
collected test passed AND at least MIN_TESTS were collected, so an empty or shrunken collection
(a renamed file, an import error turned into a skip) fails here rather than passing quietly.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MIN_TESTS = 171  # the simulator tests that exist today; raise it when adding more


@pytest.mark.cudasim
@pytest.mark.slow
def test_cuda_kernels_in_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")  # NUMBA_CACHE_DIR is inherited as is
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/cudasim", "-p", "no:cacheprovider", "-rfEs"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    output = proc.stdout + proc.stderr
    tail = output[-6000:]
    assert proc.returncode == 0, f"simulator tests failed (exit {proc.returncode}):\n{tail}"
    collected = re.search(r"collected (\d+) items?", output)
    passed = re.search(r"(\d+) passed", output)
    assert collected and passed, f"could not read the test counts:\n{tail}"
    assert int(passed.group(1)) == int(collected.group(1)), f"not every test passed:\n{tail}"
    assert int(collected.group(1)) >= MIN_TESTS, (
        f"only {collected.group(1)} simulator tests collected, expected at least {MIN_TESTS}")
