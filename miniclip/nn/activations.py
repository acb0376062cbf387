"""Activations: QuickGELU, which OpenAI's CLIP uses, and exact GELU, which some CLIPs use."""

import math

import numpy as np

QUICK_GELU_ALPHA = 1.702  # sigmoid(1.702 x) is close to the normal CDF Phi(x)


def sigmoid(x):
    """Logistic function 1 / (1 + exp(-x)), written as 0.5 (1 + tanh(x / 2)): the same function,
    but tanh never overflows, so large |x| needs no special case."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


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
