"""2-D convolution, the textbook way: cut out every window (im2col), then one matrix product.

A k x k convolution with C_in input and C_out output channels, stride s and zero padding p,
reads at each output pixel the k x k x C_in window under it and takes C_out dot products with
it. Lay every window out as one row and the whole layer is a Linear layer over the rows:

    x (N, H, W, C_in) -> cols (N, Ho, Wo, k*k*C_in) -> cols @ w_mat.T + b = out (N, Ho, Wo, C_out)
    Ho = (H + 2p - k) // s + 1, likewise Wo

Images here are channels-last (N, H, W, C): a window's k*k*C_in numbers are then k runs of
k*C_in contiguous floats, and the output of one conv is the next one's input with no transpose.
The weight is stored as PyTorch stores a conv, (C_out, C_in, k, k); ``weight_matrix`` lays it out
in the (ky, kx, c) order of a window row.

Backward is the Linear layer's backward and the way back from rows to pixels (col2im): a pixel
that sat in several windows (windows overlap when k > s) collects the gradient of each.
"""

import numpy as np


def output_size(size, k, stride, padding):
    """Pixels along one side of the output: (size + 2 padding - k) // stride + 1."""
    return (size + 2 * padding - k) // stride + 1


def im2col(x, k, stride, padding):
    """x (N, H, W, C) -> cols (N, Ho, Wo, k*k*C): row (n, oy, ox) is the k x k window whose top-left
    corner is at (oy*stride - padding, ox*stride - padding), in (ky, kx, c) order; pixels outside
    the image are 0.

    >>> x = np.arange(9.0).reshape(1, 3, 3, 1)
    >>> im2col(x, k=2, stride=1, padding=0)[0, 0, 0]      # the top-left 2 x 2 window
    array([0., 1., 3., 4.])
    """
    N, H, W, C = x.shape
    Ho, Wo = output_size(H, k, stride, padding), output_size(W, k, stride, padding)
    padded = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    cols = np.empty((N, Ho, Wo, k, k, C), dtype=x.dtype)
    for ky in range(k):  # one kernel offset at a time: every window's pixel (ky, kx) at once
        for kx in range(k):
            cols[:, :, :, ky, kx] = padded[:, ky:ky + stride * Ho:stride, kx:kx + stride * Wo:stride]
    return cols.reshape(N, Ho, Wo, k * k * C)


def col2im(dcols, image_shape, k, stride, padding):
    """The adjoint of im2col: dcols (N, Ho, Wo, k*k*C) -> dx (N, H, W, C), each pixel summing the
    entries of every window it was copied into (those in the padding are dropped)."""
    N, H, W, C = image_shape
    Ho, Wo = dcols.shape[1], dcols.shape[2]
    dpadded = np.zeros((N, H + 2 * padding, W + 2 * padding, C), dtype=dcols.dtype)
    d = dcols.reshape(N, Ho, Wo, k, k, C)
    for ky in range(k):
        for kx in range(k):
            dpadded[:, ky:ky + stride * Ho:stride, kx:kx + stride * Wo:stride] += d[:, :, :, ky, kx]
    return dpadded[:, padding:padding + H, padding:padding + W]


def weight_matrix(w):
    """w (C_out, C_in, k, k), PyTorch's layout -> (C_out, k*k*C_in) in a window row's (ky, kx, c)
    order."""
    return w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)


def weight_from_matrix(w_mat, w_shape):
    """The inverse of weight_matrix: (C_out, k*k*C_in) -> (C_out, C_in, k, k)."""
    C_out, C_in, k, _ = w_shape
    return w_mat.reshape(C_out, k, k, C_in).transpose(0, 3, 1, 2)


def conv2d_forward(x, w, b, stride=1, padding=0):
    """x (N, H, W, C_in), w (C_out, C_in, k, k), b (C_out,) or None -> out (N, Ho, Wo, C_out).
    cache = (cols, w, has_bias, x.shape, stride, padding)."""
    if x.ndim != 4 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"x must be (N, H, W, {w.shape[1]}) for a weight of shape {w.shape}, got "
                         f"{x.shape}")
    k = w.shape[-1]
    cols = im2col(x, k, stride, padding)  # (N, Ho, Wo, k*k*C_in)
    out = cols @ weight_matrix(w).T  # (N, Ho, Wo, C_out)
    if b is not None:
        out = out + b
    return out, (cols, w, b is not None, x.shape, stride, padding)


def conv2d_backward(dout, cache, need_dx=True):
    """dout (N, Ho, Wo, C_out) -> dx (N, H, W, C_in) or None, dw (C_out, C_in, k, k), db or None.
    The first layer of a network never needs dx: ask for it with need_dx."""
    cols, w, has_bias, x_shape, stride, padding = cache
    C_out, k = w.shape[0], w.shape[-1]
    rows = cols.reshape(-1, cols.shape[-1])  # (N*Ho*Wo, k*k*C_in)
    drows = dout.reshape(-1, C_out)  # (N*Ho*Wo, C_out)
    dw = weight_from_matrix(drows.T @ rows, w.shape)
    db = drows.sum(axis=0) if has_bias else None
    dx = None
    if need_dx:
        dcols = dout @ weight_matrix(w)  # (N, Ho, Wo, k*k*C_in)
        dx = col2im(dcols, x_shape, k, stride, padding)
    return dx, dw, db
