"""Tolerances and random inputs shared by the simulator tests."""

import numpy as np

DTYPES = (np.float32, np.float64)


def assert_close(actual, expected, name=""):
    """Relative to the largest entry of ``expected``: the kernels sum in a different order
    than NumPy's BLAS, so float32 agrees to ~1e-6 of the scale and float64 to ~1e-15."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != {expected.dtype}"
    tol = 1e-5 if expected.dtype == np.float32 else 1e-12
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    err = float(np.max(np.abs(actual.astype(np.float64) - expected), initial=0.0))
    assert err <= tol * scale, f"{name}: max error {err:.2e} > {tol:.0e} * {scale:.2g}"


def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# For the tests of whole models: matmul tiles large enough that most products of the tiny
# configs are one or two tiles. The simulator starts a Python thread per CUDA thread and waits at
# every barrier, so fewer blocks is what makes a training step take seconds, not tens of seconds.
# The kernels' own tests use tiny tiles (SIMULATOR_TILES), so that ragged tile edges are covered.
MODEL_TILES = dict(matmul_block=32, matmul_depth=32, matmul_micro=8)


def use_model_tiles():
    """Set MODEL_TILES for the cuda backend; returns the settings to restore."""
    from miniclip.kernels.cuda import ops as cuda_backend

    return cuda_backend.configure(**MODEL_TILES)
