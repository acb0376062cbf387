"""The tiled matmul kernel against NumPy, for the three products of the linear layer."""

import numpy as np
import pytest
from numba import cuda

from miniclip.kernels.cuda.common import SIMULATOR_TILES, Tiles
from miniclip.kernels.cuda.matmul import matmul

from .helpers import DTYPES, assert_close, randn

# (M, K, N) with the simulator's tiles (block 8, depth 4): a single element, sizes below one tile,
# not a multiple of the tile in any direction, exact multiples, K longer than several tiles.
SHAPES = [(1, 1, 1), (3, 5, 2), (9, 13, 11), (16, 8, 8), (5, 17, 1), (1, 6, 19)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,K,N", SHAPES)
def test_linear_products(rng, dtype, M, K, N):
    x, w, b = randn(rng, (M, K), dtype), randn(rng, (N, K), dtype), randn(rng, N, dtype)
    dy = randn(rng, (M, N), dtype)
    x_dev, w_dev, dy_dev = cuda.to_device(x), cuda.to_device(w), cuda.to_device(dy)
    y = matmul(x_dev, w_dev, cuda.to_device(b), transpose_b=True, tiles=SIMULATOR_TILES)
    assert_close(y.copy_to_host(), x @ w.T + b, "y = x W^T + b")
    dx = matmul(dy_dev, w_dev, tiles=SIMULATOR_TILES)
    assert_close(dx.copy_to_host(), dy @ w, "dx = dy W")
    dw = matmul(dy_dev, x_dev, transpose_a=True, tiles=SIMULATOR_TILES)
    assert_close(dw.copy_to_host(), dy.T @ x, "dW = dy^T x")


@pytest.mark.parametrize("tiles", [Tiles(matmul_block=3, matmul_depth=2, matmul_micro=1),
                                   Tiles(matmul_block=6, matmul_depth=5, matmul_micro=3)],
                         ids=["3x2x1", "6x5x3"])
def test_other_tile_sizes(rng, tiles):
    """Tile sizes are parameters: odd ones, depth unrelated to block, and both transposes."""
    a, b = randn(rng, (7, 10), np.float64), randn(rng, (10, 8), np.float64)
    out = matmul(cuda.to_device(a.T.copy()), cuda.to_device(b.T.copy()),
                 transpose_a=True, transpose_b=True, tiles=tiles)
    assert_close(out.copy_to_host(), a @ b, "A^T^T B^T^T")


def test_writes_only_inside_the_output(rng):
    """A bigger `out` buffer: nothing outside the (M, N) corner written (bounds guards)."""
    a, b = randn(rng, (5, 3), np.float64), randn(rng, (3, 6), np.float64)
    padded = cuda.to_device(np.full((16, 16), 7.0))
    matmul(cuda.to_device(a), cuda.to_device(b), out=padded[:5, :6], tiles=SIMULATOR_TILES)
    host = padded.copy_to_host()
    assert_close(host[:5, :6], a @ b, "inside")
    host[:5, :6] = 7.0
    assert np.all(host == 7.0), "the kernel wrote outside C"


def test_rejects_bad_arguments():
    a, b = cuda.to_device(np.zeros((2, 3))), cuda.to_device(np.zeros((4, 5)))
    with pytest.raises(ValueError, match="inner dimensions"):
        matmul(a, b)
    with pytest.raises(TypeError, match="one dtype"):
        matmul(a, cuda.to_device(np.zeros((3, 2), np.float32)))
    with pytest.raises(ValueError, match="bias must have shape"):
        matmul(a, cuda.to_device(np.zeros((3, 5))), cuda.to_device(np.zeros(3)))  # needs (5,)


def test_too_many_rows_for_the_grid_is_a_clear_error():
    a = cuda.device_array((65_536 * 2 + 1, 1), np.float32)  # never launched: checked first
    with pytest.raises(ValueError, match="65,535"):
        matmul(a, cuda.device_array((1, 1), np.float32), tiles=Tiles(matmul_block=2,
                                                                      matmul_micro=1))
