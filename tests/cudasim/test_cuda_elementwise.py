"""LayerNorm, QuickGELU, GELU and column-sum kernels against the NumPy reference."""

import numpy as np
import pytest
from numba import cuda

from miniclip.kernels.cuda import elementwise as ew
from miniclip.kernels.cuda.common import SIMULATOR_TILES, Tiles
from miniclip.nn.activations import (
    gelu_backward,
    gelu_forward,
    quick_gelu_backward,
    quick_gelu_forward,
)
from miniclip.nn.layernorm import layernorm_backward, layernorm_forward

from .helpers import DTYPES, assert_close, randn

REFERENCE = {"quick_gelu": (quick_gelu_forward, quick_gelu_backward),
             "gelu": (gelu_forward, gelu_backward)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("R,C", [(1, 1), (3, 5), (2, 8), (4, 19)])  # 8 threads per row
def test_layernorm(rng, dtype, R, C):
    x = randn(rng, (R, C), dtype) * 3 + 1
    w, b, dout = randn(rng, C, dtype), randn(rng, C, dtype), randn(rng, (R, C), dtype)
    expected, cache = layernorm_forward(x, w, b)
    x_dev, w_dev = cuda.to_device(x), cuda.to_device(w)
    out, mean, rstd = ew.layernorm_forward(x_dev, w_dev, cuda.to_device(b), 1e-5,
                                           SIMULATOR_TILES)
    assert_close(out.copy_to_host(), expected, "out")
    assert_close(mean.copy_to_host(), x.mean(-1), "mean")
    assert_close(rstd.copy_to_host(), cache[1][:, 0], "rstd")
    grads = ew.layernorm_backward(cuda.to_device(dout), x_dev, w_dev, mean, rstd, SIMULATOR_TILES)
    for name, got, want in zip(("dx", "dw", "db"), grads, layernorm_backward(dout, cache), strict=True):
        assert_close(got.copy_to_host(), want, name)


@pytest.mark.parametrize("R", [1, 63, 64, 130])  # around the 64 rows of one chunk
def test_column_sum(rng, R):
    a = randn(rng, (R, 5), np.float64)
    assert_close(ew.column_sum(cuda.to_device(a), SIMULATOR_TILES).copy_to_host(), a.sum(0), "sum")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["quick_gelu", "gelu"])
def test_activation(rng, name, dtype):
    x = np.concatenate([rng.standard_normal(21) * 3, [0.0, -40.0, 40.0]]).astype(dtype)  # tails
    dout = randn(rng, x.shape, dtype)
    forward, backward = REFERENCE[name]
    expected, cache = forward(x)
    x_dev = cuda.to_device(x)
    out = ew.activation_forward(name, x_dev, SIMULATOR_TILES).copy_to_host()
    assert_close(out, expected, "out")
    dx = ew.activation_backward(name, cuda.to_device(dout), x_dev, SIMULATOR_TILES)
    assert_close(dx.copy_to_host(), backward(dout, cache), "dx")


def test_grid_stride_covers_more_elements_than_threads(rng):
    """One block of 2 threads for 11 elements: the grid-stride loop does the rest."""
    x = randn(rng, 11, np.float64)
    forward, _ = ew.activation_kernels(np.dtype(np.float64), "quick_gelu")
    out = cuda.device_array(11)
    forward[1, 2](cuda.to_device(x), out)
    assert_close(out.copy_to_host(), quick_gelu_forward(x)[0], "out")


def test_layernorm_with_more_threads_than_columns(rng):
    x, w, b = randn(rng, (2, 3), np.float64), np.ones(3), np.zeros(3)
    out, _, _ = ew.layernorm_forward(cuda.to_device(x), cuda.to_device(w), cuda.to_device(b),
                                     1e-5, Tiles(threads=16))
    assert_close(out.copy_to_host(), layernorm_forward(x, w, b)[0], "out")


def test_unknown_activation():
    with pytest.raises(ValueError, match="activation must be"):
        ew.activation_kernels(np.dtype(np.float32), "relu")
