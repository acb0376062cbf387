"""L2 normalisation of embeddings: xhat = x / ||x||, row by row."""

import numpy as np


def l2_normalize_forward(x):
    """x (N, E) -> xhat (N, E), unit rows. cache = (xhat, norm)."""
    norm = np.sqrt((x * x).sum(axis=-1, keepdims=True))  # (N, 1)
    xhat = x / norm
    return xhat, (xhat, norm)


def l2_normalize_backward(dxhat, cache):
    """dxhat (N, E) -> dx (N, E).

    d(x/|x|) removes the radial part of the gradient: dx = (dxhat - xhat <xhat, dxhat>) / |x|.
    Moving x along itself does not change xhat, so that component must be zero.
    """
    xhat, norm = cache
    return (dxhat - xhat * (xhat * dxhat).sum(axis=-1, keepdims=True)) / norm
