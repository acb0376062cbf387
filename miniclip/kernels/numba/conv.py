"""im2col and col2im, the data movement of a convolution, as Numba kernels.

The reference (miniclip/nn/conv2d.py) copies one kernel offset at a time with NumPy slices: for a
3-channel image each slice moves runs of 3 floats, and the 3 x 3 stride-2 convolutions of the
toy models' stem spent more time there than in their matrix products. These kernels walk every
output pixel once and copy its window in (ky, kx, c) order, one image per step of a parallel loop
(images never share memory, so col2im's sums need no locks). Same layout, same numbers
(tests/test_conv.py checks both against the reference): the convolution's matrix products stay
with the backend's linear op.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def im2col_kernel(x, k, stride, padding, cols):
    """x (N, H, W, C) -> cols (N, Ho, Wo, k, k, C), 0 outside the image."""
    N, H, W, C = x.shape
    Ho, Wo = cols.shape[1], cols.shape[2]
    zero = x.dtype.type(0)
    for n in prange(N):
        for oy in range(Ho):
            for ox in range(Wo):
                for ky in range(k):
                    y = oy * stride + ky - padding
                    for kx in range(k):
                        xx = ox * stride + kx - padding
                        if 0 <= y < H and 0 <= xx < W:
                            for c in range(C):
                                cols[n, oy, ox, ky, kx, c] = x[n, y, xx, c]
                        else:
                            for c in range(C):
                                cols[n, oy, ox, ky, kx, c] = zero


@njit(parallel=True, cache=True)
def col2im_kernel(dcols, k, stride, padding, dx):
    """dcols (N, Ho, Wo, k, k, C) -> dx (N, H, W, C): each pixel sums its windows' entries."""
    N, H, W, C = dx.shape
    Ho, Wo = dcols.shape[1], dcols.shape[2]
    for n in prange(N):
        dx[n] = 0
        for oy in range(Ho):
            for ox in range(Wo):
                for ky in range(k):
                    y = oy * stride + ky - padding
                    if y < 0 or y >= H:
                        continue
                    for kx in range(k):
                        xx = ox * stride + kx - padding
                        if xx < 0 or xx >= W:
                            continue
                        for c in range(C):
                            dx[n, y, xx, c] += dcols[n, oy, ox, ky, kx, c]


def _output_size(size, k, stride, padding):
    return (size + 2 * padding - k) // stride + 1


def im2col(x, k, stride, padding):
    """The reference's im2col (same arguments, same result): x (N, H, W, C) -> (N, Ho, Wo, k*k*C)."""
    x = np.ascontiguousarray(x)
    N, H, W, C = x.shape
    Ho, Wo = _output_size(H, k, stride, padding), _output_size(W, k, stride, padding)
    cols = np.empty((N, Ho, Wo, k, k, C), dtype=x.dtype)
    im2col_kernel(x, k, stride, padding, cols)
    return cols.reshape(N, Ho, Wo, k * k * C)


def col2im(dcols, image_shape, k, stride, padding):
    """The reference's col2im: dcols (N, Ho, Wo, k*k*C) -> dx (N, H, W, C)."""
    N, H, W, C = image_shape
    Ho, Wo = dcols.shape[1], dcols.shape[2]
    d = np.ascontiguousarray(dcols).reshape(N, Ho, Wo, k, k, C)
    dx = np.empty((N, H, W, C), dtype=dcols.dtype)
    col2im_kernel(d, k, stride, padding, dx)
    return dx
