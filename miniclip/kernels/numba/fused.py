"""Fused kernels: work the layer-by-layer ops do in separate passes over memory, done in one.

Each one computes exactly what a sequence of the backend's plain ops computes (tests compare
them with the NumPy reference), and saves a pass over a large array:

    matmul_nt_act         h = x W^T + b and a = act(h) while the row block of h is in cache
                          (the MLP's first layer; the plain ops write h, then read it back)
    act_backward          dh = dout * act'(h) for the MLP's first layer (one pass)
    matmul_nt_residual    out = x W^T + b + r: the attention's output projection adds the
                          residual stream while its rows are in cache (plain: out, then x + out)
    layernorm_backward_add_kernel
                          dx = LayerNorm's dx + the residual's gradient, in the same pass that
                          computes dx and the dw, db partial sums (plain: dx, then dout + dx)

``act`` is a small integer: 0 QuickGELU, 1 exact GELU (ACTIVATIONS). Every kernel takes
C-contiguous float32 or float64 arrays and writes into arrays the caller allocates.
"""

from __future__ import annotations

import math

from numba import njit, prange

from miniclip.kernels.numba.elementwise import QUICK_GELU_ALPHA, _sigmoid, layernorm_row_sums
from miniclip.kernels.numba.fast_exp import fast_exp
from miniclip.kernels.numba.matmul import B_BLOCK_ELEMENTS, FASTMATH, ROWS_PER_TASK, block_nt

ACTIVATIONS = {"quick_gelu": 0, "gelu": 1}


@njit(fastmath=FASTMATH, inline="always", cache=True)
def _act(h, act, k):
    """QuickGELU (act 0) or exact GELU (act 1) of one number. k = _constants(dtype): the
    constants in h's dtype (a Python float is float64 and would turn float32 math into float64).
    The same expressions as elementwise.py's kernels, so the same bits."""
    one, alpha, half, inv_sqrt2 = k[0], k[1], k[2], k[3]
    if act == 0:
        return h * _sigmoid(alpha * h, one)
    return h * half * (one + math.erf(h * inv_sqrt2))


@njit(fastmath=FASTMATH, inline="always", cache=True)
def _act_grad(h, act, k):
    """d act / d h: QuickGELU s + a h s (1 - s), s = sigmoid(a h); GELU Phi(h) + h phi(h)."""
    one, alpha, half, inv_sqrt2, inv_sqrt2pi = k[0], k[1], k[2], k[3], k[4]
    if act == 0:
        s = _sigmoid(alpha * h, one)
        return s + alpha * h * s * (one - s)
    cdf = half * (one + math.erf(h * inv_sqrt2))
    pdf = fast_exp(-half * h * h) * inv_sqrt2pi
    return cdf + h * pdf


@njit(cache=True)
def _constants(a):
    """(1, 1.702, 1/2, 1/sqrt 2, 1/sqrt(2 pi)) in a's dtype."""
    t = a.dtype.type
    return (t(1), t(QUICK_GELU_ALPHA), t(0.5), t(1.0 / math.sqrt(2.0)),
            t(1.0 / math.sqrt(2.0 * math.pi)))


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def matmul_nt_act(a, b, bias, act, h, out):
    """h = a @ b^T + bias, out = act(h).   a: (M, K), b: (N, K), bias: (N,), h, out: (M, N).

    matmul_nt with an epilogue: each thread finishes its ROWS_PER_TASK rows of h (bias added)
    and applies the activation to them while they are still in its cache.
    """
    M, K = a.shape
    N = b.shape[0]
    k = _constants(h)
    b_rows = max(4, B_BLOCK_ELEMENTS // max(K, 1) // 4 * 4)
    for task in prange((M + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        i0 = task * ROWS_PER_TASK
        i1 = min(M, i0 + ROWS_PER_TASK)
        for j0 in range(0, N, b_rows):
            block_nt(a, b, h, i0, i1, j0, min(N, j0 + b_rows), 0, K, False)
        for i in range(i0, i1):  # row views indexed from 0: the loop vectorises
            h_row, out_row = h[i], out[i]
            for j in range(N):
                hij = h_row[j] + bias[j]
                h_row[j] = hij
                out_row[j] = _act(hij, act, k)


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def act_backward(dout, h, act, dh):
    """dh = dout * act'(h), all (M, N): undoes out = act(h)."""
    M, N = dout.shape
    k = _constants(h)
    for i in prange(M):
        dout_row, h_row, dh_row = dout[i], h[i], dh[i]
        for j in range(N):
            dh_row[j] = dout_row[j] * _act_grad(h_row[j], act, k)


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def matmul_nt_residual(a, b, bias, residual, out):
    """out = a @ b^T + bias + residual.   a: (M, K), b: (N, K), bias: (N,), residual, out: (M, N).

    The bias and the residual are added to each thread's rows while they are in its cache.
    ``out`` may be ``residual`` itself (each entry is read before it is written).
    """
    M, K = a.shape
    N = b.shape[0]
    b_rows = max(4, B_BLOCK_ELEMENTS // max(K, 1) // 4 * 4)
    for task in prange((M + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        i0 = task * ROWS_PER_TASK
        i1 = min(M, i0 + ROWS_PER_TASK)
        for j0 in range(0, N, b_rows):
            block_nt(a, b, out, i0, i1, j0, min(N, j0 + b_rows), 0, K, False)
        for i in range(i0, i1):
            out_row, res_row = out[i], residual[i]
            for j in range(N):
                out_row[j] += bias[j] + res_row[j]


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def layernorm_backward_add_kernel(dout, xhat, rstd, w, dresidual, dx, partial_dw, partial_db):
    """layernorm_backward_kernel with the residual's gradient added to dx in the same pass:
    dx = dresidual + rstd * (g - mean(g) - xhat * mean(g * xhat)),  g = dout * w.
    All (M, C) except rstd (M,), w (C,), partial_dw, partial_db (P, C)."""
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
                dx[i, c] = dresidual[i, c] + r * (dout[i, c] * w[c] - g_mean
                                                  - xhat[i, c] * gx_mean)
