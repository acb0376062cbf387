"""Activations: QuickGELU, which OpenAI's CLIP uses, and exact GELU, which some CLIPs use."""

import math

import numpy as np

QUICK_GELU_ALPHA = 1.702  # sigmoid(1.702 x) is close to the normal CDF Phi(x)


def sigmoid(x):
    """Logistic function 1 / (1 + exp(-x)), accurate to the last bit for any x.

    exp is only ever taken of -|x| <= 0, so it cannot overflow; for x < 0 the result is written
    as e / (1 + e) with e = exp(x), which keeps its full relative precision even at 1e-30.
    """
    e = np.exp(-np.abs(x))  # in (0, 1]
    r = 1.0 / (1.0 + e)  # sigmoid(|x|)
    return np.where(x >= 0, r, e * r)


def quick_gelu_forward(x):
    """out = x * sigmoid(1.702 x), any shape. cache = (x, s): s is reused by backward."""
    s = sigmoid(QUICK_GELU_ALPHA * x)
    return x * s, (x, s)


def quick_gelu_backward(dout, cache):
    """d/dx [x s(a x)] = s + a x s (1 - s)."""
    x, s = cache
    return dout * (s + QUICK_GELU_ALPHA * x * s * (1.0 - s))


_erf = np.frompyfunc(math.erf, 1, 1)  # NumPy has no erf; math.erf is exact to float64 rounding


def gelu_forward(x):
    """Exact GELU: out = x * Phi(x), Phi the standard normal CDF. cache = (x, Phi(x))."""
    cdf = 0.5 * (1.0 + _erf(x / math.sqrt(2.0)).astype(x.dtype))
    return x * cdf, (x, cdf)


def gelu_backward(dout, cache):
    """d/dx [x Phi(x)] = Phi(x) + x phi(x), phi the standard normal density."""
    x, cdf = cache
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return dout * (cdf + x * pdf)
