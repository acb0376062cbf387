"""Pooling a sequence to one vector per item.

The text tower pools at the end-of-text token. In CLIP's vocabulary that token has the largest
id (49407), so its position is ``argmax(tokens)`` along the sequence: no separate length array
is needed. The vision tower simply takes the class token, position 0.
"""

import numpy as np


def eot_pool_forward(x, tokens):
    """x (N, T, C), tokens (N, T) int -> (N, C): x at each row's largest token id.

    >>> x = np.arange(12.0).reshape(1, 4, 3); tokens = np.array([[49406, 320, 49407, 0]])
    >>> eot_pool_forward(x, tokens)[0]
    array([[6., 7., 8.]])
    """
    rows = np.arange(x.shape[0])
    cols = tokens.argmax(axis=-1)  # (N,) first position of the largest id
    return x[rows, cols], (rows, cols, x.shape)


def eot_pool_backward(dout, cache):
    """dout (N, C) -> dx (N, T, C): the gradient goes back to the pooled position only."""
    rows, cols, shape = cache
    dx = np.zeros_like(dout, shape=shape)  # where dout lives (host or GPU)
    dx[rows, cols] = dout
    return dx
