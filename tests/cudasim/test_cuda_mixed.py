"""The cuda backend on bfloat16 / float16 arrays (kernels/mixed.py): the kernels compute in
float32 on widened copies, and the results match the numpy backend's mixed precision: the
float32 results agree to ~1e-5 of the scale, then both are rounded to 16 bits, where they may
land one 16-bit step (u16 |y|, relative) apart."""

import numpy as np
import pytest

from miniclip import backend
from miniclip.kernels.dtypes import bfloat16, float16, unit_roundoff

HALF = [bfloat16, float16]


def half(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def assert_within_one_step(got, want, dtype, name):
    assert got.dtype == want.dtype, f"{name}: {got.dtype} != {want.dtype}"
    got, want = got.astype(np.float64), want.astype(np.float64)
    scale = max(1.0, float(np.abs(want).max()))
    u = unit_roundoff(dtype) if want.dtype != np.float32 else 0.0
    assert (np.abs(got - want) <= 2 * u * np.abs(want) + 1e-5 * scale).all(), name


def run(name, op, args, dout_seed=1):
    with backend.use_backend(name):
        out, cache = getattr(backend.ops, f"{op}_forward")(*args)
        dout = np.random.default_rng(dout_seed).standard_normal(out.shape).astype(out.dtype)
        grads = getattr(backend.ops, f"{op}_backward")(dout, cache)
    return out, grads if isinstance(grads, tuple) else (grads,)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("op", ["linear", "layernorm", "quick_gelu", "attention"])
def test_cuda_mixed_ops_match_the_numpy_backend(rng, dtype, op):
    if op == "linear":
        args = (half(rng, (7, 11), dtype), half(rng, (5, 11), dtype, 0.3), half(rng, (5,), dtype))
    elif op == "layernorm":
        args = (half(rng, (3, 4, 12), dtype), half(rng, (12,), dtype), half(rng, (12,), dtype),
                1e-5)
    elif op == "quick_gelu":
        args = (half(rng, (3, 10), dtype, 3.0),)
    else:
        args = tuple(half(rng, (1, 2, 5, 4), dtype) for _ in range(3)) + (True,)
    out_ref, grads_ref = run("numpy", op, args)
    out, grads = run("cuda", op, args)
    assert out.dtype == dtype
    assert_within_one_step(out, out_ref, dtype, "out")
    for i, (g, g_ref) in enumerate(zip(grads, grads_ref, strict=True)):
        if g_ref is not None:
            assert_within_one_step(g, g_ref, dtype, f"grad {i}")
