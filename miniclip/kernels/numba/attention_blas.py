"""Attention on short sequences with its products on BLAS: the route the numba backend measures
against its fused kernel (attention.py) for each attention shape it meets.

At the toy model's sizes a head is (T, D) = (17, 32) or (32, 32): each of its products is tiny,
and the fused kernel's register tiles (matmul.block_nt: sums over D or T in 16-lane vectors, one
horizontal sum per entry) spend most of their time outside the multiply-adds. OpenBLAS has
kernels for small matrices. Measured on one core of the 2-core machine of benchmarks/README.md
(forward + backward, float32): toy vision (256 x 3 heads, T = 17) 7.4 ms fused against 2.0 ms
here, toy text (256 x 2, T = 32, causal) 10.6 against 5.3, tok65 (64 x 4, T = 65) 17.2 against
9.3. With several Numba threads against one BLAS thread the fused kernel can win instead; the
backend times both (routing.py) and keeps the faster.

The arithmetic is the NumPy reference's (nn/attention.py), on the packed projection output:

    q, k, v = views of qkv (B, T, 3C) as (B, H, T, D)     (strided: no copies)
    S = q k^T                (B, H, T, T)    np.matmul over the (B, H) stack: one BLAS call each
    P = softmax(S / sqrt(D)) (in place; Numba, attention._probs_from_scores, with the lse)
    out = P v                written straight into the (B, T, C) layout of the heads merged

    backward: dv = P^T dout, dP = dout v^T, dS = softmax_backward(P, dP), dq = dS k,
              dk = dS^T q: each written into its columns of dqkv (B, T, 3C)

Unlike the fused kernel it keeps P (B, H, T, T) for backward instead of recomputing it: T / D
times the size of q (2x at T = 128, D = 64), growing with T. So it is offered only up to
MAX_TOKENS tokens; longer sequences always take the fused kernel.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from miniclip.kernels.numba.attention import _probs_from_scores, softmax_backward_rows
from miniclip.kernels.numba.matmul import FASTMATH

MAX_TOKENS = 128  # longer sequences always use the fused kernel (P would be T^2 per head)


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def softmax_heads(scores, scale, causal, lse):
    """In place: scores (B, H, T, T) -> softmax probabilities of scale * scores; fills lse
    (B, H, T). Masked entries (j > i when causal) become exact zeros."""
    B, H = scores.shape[:2]
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        _probs_from_scores(scores[b, h], scale, causal, lse[b, h], False)


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def softmax_backward_heads(probs, dscores, scale, causal):
    """In place: dscores (B, H, T, T), holding dP, becomes dS (attention.softmax_backward_rows
    for every head)."""
    B, H = probs.shape[:2]
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        softmax_backward_rows(probs[b, h], dscores[b, h], scale, causal)


def _heads(packed, n_heads):
    """(B, T, 3C) -> (3, B, H, T, D): q, k, v as strided views (no copy)."""
    B, T, C3 = packed.shape
    return packed.reshape(B, T, 3, n_heads, C3 // 3 // n_heads).transpose(2, 0, 3, 1, 4)


def attention_qkv_forward_blas(qkv, n_heads, causal):
    """qkv: (B, T, 3C) C-contiguous -> out (B, T, C), probs (B, H, T, T)."""
    B, T, C3 = qkv.shape
    D = C3 // 3 // n_heads
    q, k, v = _heads(qkv, n_heads)
    probs = np.matmul(q, k.transpose(0, 1, 3, 2))  # S, (B, H, T, T)
    lse = np.empty((B, n_heads, T), qkv.dtype)
    softmax_heads(probs, qkv.dtype.type(1.0 / math.sqrt(D)), causal, lse)  # S -> P
    out = np.empty((B, T, n_heads, D), qkv.dtype)  # heads merged: (B, T, H, D) = (B, T, C)
    np.matmul(probs, v, out=out.transpose(0, 2, 1, 3))  # P v, into the merged layout
    return out.reshape(B, T, C3 // 3), probs


def attention_qkv_backward_blas(dout, qkv, probs, n_heads, causal):
    """dout: (B, T, C), qkv: (B, T, 3C), probs (B, H, T, T) -> dqkv (B, T, 3C)."""
    B, T, C3 = qkv.shape
    D = C3 // 3 // n_heads
    q, k, v = _heads(qkv, n_heads)
    dout_heads = dout.reshape(B, T, n_heads, D).transpose(0, 2, 1, 3)  # (B, H, T, D) view
    dqkv = np.empty_like(qkv)
    dq, dk, dv = _heads(dqkv, n_heads)  # views into dqkv's columns
    np.matmul(probs.transpose(0, 1, 3, 2), dout_heads, out=dv)  # dv = P^T dout
    dscores = np.matmul(dout_heads, v.transpose(0, 1, 3, 2))  # dP = dout v^T
    softmax_backward_heads(probs, dscores, qkv.dtype.type(1.0 / math.sqrt(D)), causal)
    np.matmul(dscores, k, out=dq)  # dq = dS k
    np.matmul(dscores.transpose(0, 1, 3, 2), q, out=dk)  # dk = dS^T q
    return dqkv
