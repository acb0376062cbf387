"""Fused multi-head attention, forward and backward, parallel over batch x heads.

One thread takes one (batch, head) pair at a time and does all of its work in buffers of
T x T and D x T numbers that stay in its L1/L2 cache:

    forward                               backward (P recomputed from the saved lse)
    S = q k^T                (T, T)       P  = exp(scale S - lse)       (T, T)
    lse = logsumexp(scale S) (T,)         dP = dout v^T                 (T, T)
    P = exp(scale S - lse)   (T, T)       dS = P * (dP - rowsum(P dP)) * scale
    out = P v                (T, D)       dv = P^T dout,  dq = dS k,  dk = dS^T q

What is kept between forward and backward: q, k, v (contiguous copies, (B, H, T, D) each)
and the row log-sum-exp, (B, H, T): one number per query. The probabilities P, (B, H, T, T),
are NOT kept; backward recomputes them (one extra T x T x D product per head and one exp per
score). Why: P grows with T^2 while everything else grows with T. At the toy config's 65 tokens
and head size 32, P would be twice the size of q; at ViT-L/14@336px (577 tokens, D = 64) it
would be 9x the size of q, for every head of every layer, the largest thing a training step
holds. FlashAttention makes the same trade on GPUs. On this CPU at T = 65 the recomputation
costs about 15% of the backward time (the benchmark README has the measurement).

The causal mask is never materialised: a row block of queries i0..i0+3 only computes the
scores, and only sums over the keys, it may see (j <= i), which halves the work of the text
tower. Masked probabilities are exact zeros, as in the reference.

The products call ``block_nt`` from numba_matmul (the same 4 x 4 register tiles), so the
operands are laid out with the summed axis contiguous: v, k, q, dout and P are transposed into
small per-thread buffers first.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .numba_exp import fast_exp
from .numba_matmul import FASTMATH, block_nt, transpose

# which part of a (T x T)-shaped product a causal head needs; see _head_product
ALL, KEYS_UP_TO_ROW, SUM_UP_TO_ROW, SUM_FROM_ROW = 0, 1, 2, 3


@njit(fastmath=FASTMATH, cache=True)
def _head_product(a, b, c, causal, part):
    """c = a @ b^T for one head, skipping what the causal mask makes zero.

    part (only used when causal; rows are queries i, and keys j <= i are visible):
      KEYS_UP_TO_ROW: c is (T, T) scores; row block i0..i0+3 needs columns j < i0 + 4
      SUM_UP_TO_ROW:  c[i] sums over keys j <= i          (out = P v, dq = dS k)
      SUM_FROM_ROW:   c[j] sums over queries i >= j       (dv = P^T dout, dk = dS^T q)
    Entries outside these ranges are left untouched (KEYS_UP_TO_ROW) or are exact sums of
    zeros that are skipped (the two SUM modes), so the result equals the full product.
    """
    M, K = a.shape
    N = b.shape[0]
    if not causal or part == ALL:
        block_nt(a, b, c, 0, M, 0, N, 0, K, False)
        return
    for i0 in range(0, M, 4):
        i1 = min(M, i0 + 4)
        if part == KEYS_UP_TO_ROW:
            block_nt(a, b, c, i0, i1, 0, min(N, i1), 0, K, False)
        elif part == SUM_UP_TO_ROW:
            block_nt(a, b, c, i0, i1, 0, N, 0, min(K, i1), False)
        else:  # SUM_FROM_ROW: row j of a = P^T sums over i >= j, so from i0 on
            block_nt(a, b, c, i0, i1, 0, N, i0, K, False)


@njit(fastmath=FASTMATH, cache=True)
def _probs_from_scores(scores, scale, causal, lse, recompute):
    """In place: scores (T, T) -> softmax probabilities of scale * scores, row by row.

    Forward (recompute=False): finds each row's max m and sum l, writes lse[i] = m + log l.
    Backward (recompute=True): reads lse and sets P = exp(scale S - lse) directly.
    Masked entries (j > i when causal) become exact zeros.
    """
    T = scores.shape[0]
    zero = scores.dtype.type(0)
    for i in range(T):
        visible = i + 1 if causal else T
        row = scores[i]
        if recompute:
            row_lse = lse[i]
        else:
            row_max = scale * row[0]
            for j in range(1, visible):
                row_max = max(row_max, scale * row[j])
            total = zero
            for j in range(visible):
                total += fast_exp(scale * row[j] - row_max)
            row_lse = row_max + math.log(total)
            lse[i] = row_lse
        for j in range(visible):
            row[j] = fast_exp(scale * row[j] - row_lse)
        for j in range(visible, T):
            row[j] = zero


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def attention_forward_kernel(q, k, v, causal, out, lse):
    """q, k, v: (B, H, T, D) C-contiguous -> fills out (B, H, T, D) and lse (B, H, T)."""
    B, H, T, D = q.shape
    scale = q.dtype.type(1.0 / math.sqrt(D))
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        probs = np.empty((T, T), q.dtype)
        v_t = np.empty((D, T), q.dtype)
        _head_product(q[b, h], k[b, h], probs, causal, KEYS_UP_TO_ROW)  # S = q k^T
        _probs_from_scores(probs, scale, causal, lse[b, h], False)
        transpose(v[b, h], v_t)
        _head_product(probs, v_t, out[b, h], causal, SUM_UP_TO_ROW)  # out = P v


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def attention_backward_kernel(dout, q, k, v, lse, causal, dq, dk, dv):
    """dout, q, k, v: (B, H, T, D), lse: (B, H, T) -> fills dq, dk, dv (B, H, T, D)."""
    B, H, T, D = q.shape
    scale = q.dtype.type(1.0 / math.sqrt(D))
    zero = q.dtype.type(0)
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        probs = np.empty((T, T), q.dtype)
        dscores = np.empty((T, T), q.dtype)
        square_t = np.empty((T, T), q.dtype)  # P^T, then dS^T
        thin_t = np.empty((D, T), q.dtype)  # dout^T, then k^T, then q^T
        _head_product(q[b, h], k[b, h], probs, causal, KEYS_UP_TO_ROW)  # S again
        _probs_from_scores(probs, scale, causal, lse[b, h], True)  # P again, from lse
        _head_product(dout[b, h], v[b, h], dscores, causal, KEYS_UP_TO_ROW)  # dP = dout v^T
        # undo the softmax: dS = P * (dP - sum_j P_j dP_j); then undo "* scale"
        for i in range(T):
            visible = i + 1 if causal else T
            weighted = zero
            for j in range(visible):
                weighted += probs[i, j] * dscores[i, j]
            for j in range(visible):
                dscores[i, j] = probs[i, j] * (dscores[i, j] - weighted) * scale
            for j in range(visible, T):
                dscores[i, j] = zero
        transpose(probs, square_t)
        transpose(dout[b, h], thin_t)
        _head_product(square_t, thin_t, dv[b, h], causal, SUM_FROM_ROW)  # dv = P^T dout
        transpose(k[b, h], thin_t)
        _head_product(dscores, thin_t, dq[b, h], causal, SUM_UP_TO_ROW)  # dq = dS k
        transpose(dscores, square_t)
        transpose(q[b, h], thin_t)
        _head_product(square_t, thin_t, dk[b, h], causal, SUM_FROM_ROW)  # dk = dS^T q
