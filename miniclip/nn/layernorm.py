"""LayerNorm over the last axis: out = (x - mean) / sqrt(var + eps) * w + b, eps = 1e-5."""

import numpy as np

EPS = 1e-5


def layernorm_forward(x, w, b, eps=EPS):
    """x: (..., C), w: (C,), b: (C,) -> out: (..., C).

    cache = (xhat, rstd, w): one array the size of x plus one number per row. x itself and
    the mean are not kept; xhat already holds what backward needs of them.
    """
    mean = x.mean(axis=-1, keepdims=True)  # (..., 1)
    xc = x - mean  # (..., C)
    var = (xc * xc).mean(axis=-1, keepdims=True)  # (..., 1), biased, as PyTorch
    rstd = 1.0 / np.sqrt(var + eps)  # (..., 1)
    xhat = xc * rstd  # (..., C), zero mean and unit variance per row
    out = xhat * w + b
    return out, (xhat, rstd, w)


def layernorm_backward(dout, cache):
    """dout: (..., C) -> dx (..., C), dw (C,), db (C,).

    With g = dout * w (the gradient reaching xhat), the chain rule through the mean and the
    variance gives the compact form
        dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
    where the two means are over the last axis: the first undoes subtracting the mean, the
    second undoes dividing by the standard deviation.
    """
    xhat, rstd, w = cache
    lead = tuple(range(dout.ndim - 1))
    db = dout.sum(axis=lead)  # undoes "+ b"
    dw = (dout * xhat).sum(axis=lead)  # undoes "* w"
    g = dout * w  # (..., C) gradient with respect to xhat
    dx = rstd * (g - g.mean(axis=-1, keepdims=True)
                 - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, dw, db
