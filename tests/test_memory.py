"""kernels/memory.py: the allocator setting the numba backend and the training command apply."""

import os
import subprocess
import sys

import pytest

CODE = "from miniclip.kernels.memory import keep_freed_memory as k; print(k(), k())"


def _run(env_value):
    env = {k: v for k, v in os.environ.items() if k != "MINICLIP_KEEP_FREED_MEMORY"}
    if env_value is not None:
        env["MINICLIP_KEEP_FREED_MEMORY"] = env_value
    return subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True,
                          check=True).stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_applied_once_on_linux_and_turned_off_by_the_variable():
    assert _run(None) == ["True", "True"]
    assert _run("0") == ["False", "False"]
