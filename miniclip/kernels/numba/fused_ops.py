"""The numba backend's fused ops: one call where the plain ops take two passes over memory.

The model calls these (through ``backend.fused``) when the backend has them; on the numpy
backend it composes the plain ops instead, which compute the same numbers (miniclip/model/mlp.py
and block.py show both paths side by side). Each op equals a composition of plain ops:

    linear_act_forward(x, w, b, act)   = act_forward(linear_forward(x, w, b))
    linear_act_backward(dout, cache)   = linear_backward(act_backward(dout)) -> dx, dw, db
    linear_residual_forward(x, w, b, r) = linear_forward(x, w, b) + r  (backward: linear_backward)
    layernorm_backward_add(dout, cache, dres) = layernorm_backward(dout) with dres added to dx
    attention_qkv_forward(qkv, H, causal) = merge_heads(attention_forward(split q, k, v))
    attention_qkv_backward(dout, cache)   = concatenate(merge_heads(dq), ..(dk), ..(dv))

Float32 and float64 only: mixed precision (16-bit arrays) wraps the plain ops alone
(kernels/mixed.py), so ``backend.fused`` hands out no fused op for 16-bit arrays.
Products follow the backend's matmul route (ops.configure): on the BLAS route the epilogue
(bias, activation, residual) is one Numba pass after the BLAS product, and attention on up to
128 tokens runs its per-head products on BLAS (attention_blas.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from miniclip.kernels.checks import check_linear_args, float_dtype, same_dtype
from miniclip.kernels.numba import attention as numba_attention
from miniclip.kernels.numba import attention_blas, fused
from miniclip.kernels.numba import ops as plain
from miniclip.kernels.numba.matmul import FASTMATH


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def _bias_act(h, bias, act, out):
    """In place h += bias, and out = act(h), (M, N): the epilogue after a BLAS product."""
    M, N = h.shape
    k = fused._constants(h)
    for i in prange(M):
        h_row, out_row = h[i], out[i]
        for j in range(N):
            hij = h_row[j] + bias[j]
            h_row[j] = hij
            out_row[j] = fused._act(hij, act, k)


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def _add_bias_residual(out, bias, residual):
    """In place out += bias + residual, (M, N): the epilogue after a BLAS product."""
    M, N = out.shape
    for i in prange(M):
        out_row, res_row = out[i], residual[i]
        for j in range(N):
            out_row[j] += bias[j] + res_row[j]


def _act_code(activation):
    if activation not in fused.ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(fused.ACTIVATIONS)}, got "
                         f"{activation!r}")
    return fused.ACTIVATIONS[activation]


def linear_act_forward(x, w, b, activation):
    """x: (..., C_in), w: (C_out, C_in), b: (C_out,), activation "quick_gelu" | "gelu"
    -> out = act(x W^T + b) (..., C_out).

    cache = (x2d, w, h, act, x.shape): h (M, C_out) is the pre-activation, which the plain
    activation op keeps too (its backward recomputes the sigmoid or the normal CDF from it).
    """
    act = _act_code(activation)
    dtype = check_linear_args(x, w, b)
    if b is None:
        raise ValueError("linear_act_forward needs a bias b, got None")
    x2d = plain._contiguous(x.reshape(-1, x.shape[-1]))  # (M, C_in)
    w = plain._contiguous(w)
    M, K = x2d.shape
    N = w.shape[0]
    bias = plain._contiguous(b)
    h, out = np.empty((M, N), dtype), np.empty((M, N), dtype)

    def by_blas():
        np.matmul(x2d, w.T, out=h)
        _bias_act(h, bias, act, out)

    def by_kernel():
        fused.matmul_nt_act(x2d, w, bias, act, h, out)

    (by_blas if plain._use_blas("forward", M, N, K, dtype, by_kernel, by_blas) else by_kernel)()
    return out.reshape(*x.shape[:-1], N), (x2d, w, h, act, x.shape)


def linear_act_backward(dout, cache):
    """dout: (..., C_out) -> dx (..., C_in), dw (C_out, C_in), db (C_out,)."""
    x2d, w, h, act, x_shape = cache
    same_dtype(h.dtype, dout=dout)
    if dout.shape != (*x_shape[:-1], h.shape[1]):
        raise ValueError(f"dout must have shape {(*x_shape[:-1], h.shape[1])}, got {dout.shape}")
    dh = np.empty_like(h)
    fused.act_backward(plain._contiguous(dout.reshape(h.shape)), h, act, dh)  # undoes act
    # undoes h = x W^T + b (the plain linear backward, on dh)
    return plain.linear_backward(dh.reshape(*x_shape[:-1], h.shape[1]),
                                 (x2d, w, True, x_shape))


def linear_residual_forward(x, w, b, residual):
    """x: (..., C_in), w: (C_out, C_in), b: (C_out,), residual (..., C_out)
    -> out = residual + x W^T + b, cache: that of linear_forward."""
    dtype = check_linear_args(x, w, b)
    if b is None:
        raise ValueError("linear_residual_forward needs a bias b, got None")
    same_dtype(dtype, residual=residual)
    x2d = plain._contiguous(x.reshape(-1, x.shape[-1]))  # (M, C_in)
    w = plain._contiguous(w)
    M, K = x2d.shape
    N = w.shape[0]
    if residual.shape != (*x.shape[:-1], N):
        raise ValueError(f"residual must have shape {(*x.shape[:-1], N)}, got {residual.shape}")
    res2d = plain._contiguous(residual.reshape(M, N))
    bias = plain._contiguous(b)
    out = np.empty((M, N), dtype)

    def by_blas():
        np.matmul(x2d, w.T, out=out)
        _add_bias_residual(out, bias, res2d)

    def by_kernel():
        fused.matmul_nt_residual(x2d, w, bias, res2d, out)

    (by_blas if plain._use_blas("forward", M, N, K, dtype, by_kernel, by_blas) else by_kernel)()
    return out.reshape(residual.shape), (x2d, w, True, x.shape)


def layernorm_backward_add(dout, cache, dresidual):
    """dout, dresidual: (..., C) -> dx + dresidual (..., C), dw (C,), db (C,)."""
    xhat, rstd, w, x_shape = cache
    float_dtype("dresidual", dresidual)
    same_dtype(xhat.dtype, dout=dout, dresidual=dresidual)
    if dout.shape != x_shape or dresidual.shape != x_shape:
        raise ValueError(f"dout and dresidual must have shape {x_shape}, got {dout.shape} and "
                         f"{dresidual.shape}")
    dout2d = plain._contiguous(dout.reshape(xhat.shape))
    n_parts = max(1, min(plain._n_threads(), xhat.shape[0]))
    partial_dw = np.zeros((n_parts, xhat.shape[1]), xhat.dtype)
    partial_db = np.zeros((n_parts, xhat.shape[1]), xhat.dtype)
    dx = np.empty_like(dout2d)
    fused.layernorm_backward_add_kernel(dout2d, xhat, rstd, w,
                                        plain._contiguous(dresidual.reshape(xhat.shape)),
                                        dx, partial_dw, partial_db)
    return dx.reshape(x_shape), partial_dw.sum(axis=0), partial_db.sum(axis=0)


def attention_qkv_forward(qkv, n_heads, causal=False):
    """qkv: (B, T, 3C), the packed projection (columns q, then k, then v), n_heads H
    -> out (B, T, C) with the heads merged.

    Two routes, chosen like the products (ops.configure: "kernel", "blas", or "auto": measured
    once per shape on this machine, forward + backward, routing.py; shown as
    "attention (B*H)xTxD"): the fused kernel (attention.py), whose cache keeps the row
    log-sum-exp, (B, H, T), and recomputes the probabilities in backward; or, up to
    attention_blas.MAX_TOKENS tokens, BLAS products over the heads (attention_blas.py), whose
    cache keeps the probabilities, (B, H, T, T). Either cache holds qkv itself, as the
    projection made it (the plain op keeps contiguous copies of q, k, v instead).
    """
    dtype = float_dtype("qkv", qkv)
    if qkv.ndim != 3 or qkv.shape[-1] % 3:
        raise ValueError(f"qkv must be (B, T, 3C), got {qkv.shape}")
    if not isinstance(n_heads, (int, np.integer)) or n_heads < 1 or (qkv.shape[-1] // 3) % n_heads:
        raise ValueError(f"n_heads must be a positive divisor of C = {qkv.shape[-1] // 3}, got "
                         f"{n_heads!r}")
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"causal must be a bool, got {type(causal).__name__}")
    qkv, n_heads, causal = plain._contiguous(qkv), int(n_heads), bool(causal)
    B, T, C3 = qkv.shape

    def by_kernel():
        out = np.empty((B, T, C3 // 3), dtype)
        lse = np.empty((B, n_heads, T), dtype)
        numba_attention.attention_packed_forward_kernel(qkv, n_heads, causal, out, lse)
        return out, (qkv, lse, n_heads, causal, "kernel")

    def by_blas():
        out, probs = attention_blas.attention_qkv_forward_blas(qkv, n_heads, causal)
        return out, (qkv, probs, n_heads, causal, "blas")

    def forward_and_backward(route):  # what routing.py times
        return lambda: attention_qkv_backward(*route())

    use_blas = T <= attention_blas.MAX_TOKENS and plain._use_blas(
        "attention-causal" if causal else "attention", B * n_heads, T, C3 // 3 // n_heads, dtype,
        forward_and_backward(by_kernel), forward_and_backward(by_blas))
    return by_blas() if use_blas else by_kernel()


def attention_qkv_backward(dout, cache):
    """dout: (B, T, C) -> dqkv (B, T, 3C), in the packed layout of qkv, by the route the
    forward took."""
    qkv, saved, n_heads, causal, route = cache
    same_dtype(qkv.dtype, dout=dout)
    B, T, C3 = qkv.shape
    if dout.shape != (B, T, C3 // 3):
        raise ValueError(f"dout must have shape {(B, T, C3 // 3)}, got {dout.shape}")
    dout = plain._contiguous(dout)
    if route == "blas":
        return attention_blas.attention_qkv_backward_blas(dout, qkv, saved, n_heads, causal)
    dqkv = np.empty_like(qkv)
    numba_attention.attention_packed_backward_kernel(dout, qkv, saved, n_heads, causal, dqkv)
    return dqkv


__all__ = ["attention_qkv_backward", "attention_qkv_forward", "layernorm_backward_add",
           "linear_act_backward", "linear_act_forward", "linear_residual_forward"]
