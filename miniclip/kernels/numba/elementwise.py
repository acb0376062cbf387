"""Fused element-wise kernels: LayerNorm and the activations, forward and backward.

NumPy evaluates ``x * sigmoid(1.702 x)`` as several passes, each reading and writing a whole
array; here each element is loaded once, everything is computed in registers, and the result is
stored once. LayerNorm does one row per step of a parallel loop: the row (C numbers) stays in L1
for its mean, its variance and its output.

Each kernel takes C-contiguous arrays (the backend makes them so) and writes into arrays the
backend allocates, so it compiles once per dtype. What the caches hold:

* LayerNorm: xhat (M, C) and rstd (M,), as the reference: backward needs xhat whole.
* QuickGELU / GELU: only x. Backward recomputes the sigmoid (one exp) or the normal CDF
  (one erf) instead of keeping a second array the size of the MLP's hidden layer: reading
  that array back from memory costs about as much as recomputing it.
"""

from __future__ import annotations

import math

from numba import njit, prange

from miniclip.kernels.numba.fast_exp import fast_exp
from miniclip.kernels.numba.matmul import FASTMATH

QUICK_GELU_ALPHA = 1.702


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def layernorm_forward_kernel(x, w, b, eps, out, xhat, rstd):
    """x: (M, C) -> out = xhat * w + b, xhat = (x - mean) * rstd, rstd = 1/sqrt(var + eps)."""
    M, C = x.shape
    # constants in x's dtype: a Python float is float64 and would turn float32 math into float64
    one, inv_c, eps = x.dtype.type(1), x.dtype.type(1.0 / C), x.dtype.type(eps)
    for i in prange(M):
        row = x[i]
        total = x.dtype.type(0)
        for c in range(C):
            total += row[c]
        mean = total * inv_c
        sq = x.dtype.type(0)
        for c in range(C):  # two passes (not E[x^2] - mean^2), so no cancellation
            d = row[c] - mean
            sq += d * d
        r = one / math.sqrt(sq * inv_c + eps)
        rstd[i] = r
        for c in range(C):
            xh = (row[c] - mean) * r
            xhat[i, c] = xh
            out[i, c] = xh * w[c] + b[c]


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def layernorm_backward_kernel(dout, xhat, rstd, w, dx, partial_dw, partial_db):
    """dout, xhat: (M, C) -> dx (M, C); partial_dw, partial_db: (P, C) sums over P row shares.

    dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  g = dout * w   (as the reference).
    Each of the P parts sums dw = sum(dout * xhat) and db = sum(dout) over its own rows; the
    caller adds the P partial sums (no two threads write the same number).
    """
    M, C = dout.shape
    inv_c = dout.dtype.type(1.0 / C)
    n_parts = partial_dw.shape[0]
    rows_per_part = (M + n_parts - 1) // n_parts
    for part in prange(n_parts):
        for i in range(part * rows_per_part, min(M, (part + 1) * rows_per_part)):
            g_mean, gx_mean = layernorm_row_sums(dout, xhat, w, i, inv_c, partial_dw[part],
                                                 partial_db[part])
            r = rstd[i]
            for c in range(C):
                dx[i, c] = r * (dout[i, c] * w[c] - g_mean - xhat[i, c] * gx_mean)


@njit(fastmath=FASTMATH, cache=True, inline="always")
def layernorm_row_sums(dout, xhat, w, i, inv_c, dw_part, db_part):
    """Row i of LayerNorm's backward, the sums: adds dout * xhat and dout to this part's dw and
    db, and returns (mean(g), mean(g * xhat)) over the row, g = dout * w."""
    g_mean = dout.dtype.type(0)
    gx_mean = dout.dtype.type(0)
    for c in range(dout.shape[1]):
        g = dout[i, c] * w[c]
        g_mean += g
        gx_mean += g * xhat[i, c]
        db_part[c] += dout[i, c]
        dw_part[c] += dout[i, c] * xhat[i, c]
    return g_mean * inv_c, gx_mean * inv_c


@njit(fastmath=FASTMATH, inline="always", cache=True)
def _sigmoid(z, one):
    """1 / (1 + exp(-z)); for z -> -inf, exp overflows to inf and the result is an exact 0.
    ``one`` is 1 in z's dtype (a literal 1.0 would make the float32 kernels compute in float64)."""
    return one / (one + fast_exp(-z))


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def quick_gelu_forward_kernel(x, out):
    """x, out: (n,) -> out = x * sigmoid(1.702 x)."""
    alpha, one = x.dtype.type(QUICK_GELU_ALPHA), x.dtype.type(1)
    for i in prange(x.size):
        out[i] = x[i] * _sigmoid(alpha * x[i], one)


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def quick_gelu_backward_kernel(dout, x, dx):
    """dx = dout * (s + 1.702 x s (1 - s)), s = sigmoid(1.702 x) recomputed."""
    alpha, one = x.dtype.type(QUICK_GELU_ALPHA), x.dtype.type(1)
    for i in prange(x.size):
        s = _sigmoid(alpha * x[i], one)
        dx[i] = dout[i] * (s + alpha * x[i] * s * (one - s))


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def gelu_forward_kernel(x, out):
    """x, out: (n,) -> out = x * Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2."""
    inv_sqrt2, half, one = x.dtype.type(1.0 / math.sqrt(2.0)), x.dtype.type(0.5), x.dtype.type(1)
    for i in prange(x.size):
        out[i] = x[i] * half * (one + math.erf(x[i] * inv_sqrt2))


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def gelu_backward_kernel(dout, x, dx):
    """dx = dout * (Phi(x) + x phi(x)), phi the standard normal density; Phi recomputed."""
    inv_sqrt2 = x.dtype.type(1.0 / math.sqrt(2.0))
    inv_sqrt2pi = x.dtype.type(1.0 / math.sqrt(2.0 * math.pi))
    half, one = x.dtype.type(0.5), x.dtype.type(1)
    for i in prange(x.size):
        cdf = half * (one + math.erf(x[i] * inv_sqrt2))
        pdf = fast_exp(-half * x[i] * x[i]) * inv_sqrt2pi
        dx[i] = dout[i] * (cdf + x[i] * pdf)
