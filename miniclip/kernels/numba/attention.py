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
holds. FlashAttention makes the same trade on GPUs. The price, measured on one core at the toy
config's vision shapes (batch 128, 4 heads, 65 tokens, D = 32, float32): recomputing S and P
takes 3.0 ms of the backward's 12.5 ms (forward: 6.5 ms), i.e. 16% of forward + backward.

The causal mask is never materialised: a row block of queries i0..i0+3 only computes the
scores of the keys it may see (j <= i + 3), and the softmax only reads j <= i. Masked
probabilities are exact zeros, as in the reference.

The products call ``block_nt`` from numba_matmul (the same 4 x 4 register tiles), so the
operands are laid out with the summed axis contiguous: v, k, q, dout and P are transposed into
small per-thread buffers first.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from miniclip.kernels.numba.fast_exp import fast_exp
from miniclip.kernels.numba.matmul import FASTMATH, block_nt, transpose


@njit(fastmath=FASTMATH, cache=True)
def _head_product(a, b, c, causal_scores):
    """c = a @ b^T for one head (block_nt over the whole matrix).

    causal_scores: c is a (T, T) matrix of scores (or of their gradients) under a causal mask;
    row block i0..i0+3 then only computes the columns j < i0 + 4 that it may see, which halves
    the work. The other entries of c are left as they were: the softmax never reads them.
    (Products that *sum* over a masked axis, P v and the like, are done in full: the masked
    probabilities are exact zeros, and skipping them measured no faster, because the short
    sums it leaves do not fill the SIMD lanes.)
    """
    M, K = a.shape
    N = b.shape[0]
    if not causal_scores:
        block_nt(a, b, c, 0, M, 0, N, 0, K, False)
        return
    for i0 in range(0, M, 4):
        i1 = min(M, i0 + 4)
        block_nt(a, b, c, i0, i1, 0, min(N, i1), 0, K, False)


@njit(fastmath=FASTMATH, cache=True)
def _row_max(row, n):
    """max(row[:n]) with four independent running maxima: a single one would wait on the
    previous comparison at every step (LLVM does not vectorise a float max on its own)."""
    m0 = m1 = m2 = m3 = row[0]
    n4 = n // 4 * 4
    for j in range(0, n4, 4):
        m0 = max(m0, row[j])
        m1 = max(m1, row[j + 1])
        m2 = max(m2, row[j + 2])
        m3 = max(m3, row[j + 3])
    for j in range(n4, n):
        m0 = max(m0, row[j])
    return max(max(m0, m1), max(m2, m3))


@njit(fastmath=FASTMATH, cache=True)
def _probs_from_scores(scores, scale, causal, lse, recompute):
    """In place: scores (T, T) -> softmax probabilities of scale * scores, row by row.

    Forward (recompute=False): P = exp(scale S - m) / l with m the row's max and l the row's
    sum of exponentials; saves lse[i] = m + log l, so that P = exp(scale S - lse).
    Backward (recompute=True): reads lse and sets P = exp(scale S - lse) directly.
    Masked entries (j > i when causal) become exact zeros.
    """
    T = scores.shape[0]
    zero, one = scores.dtype.type(0), scores.dtype.type(1)
    for i in range(T):
        visible = i + 1 if causal else T
        row = scores[i]
        if recompute:
            row_lse = lse[i]
            for j in range(visible):
                row[j] = fast_exp(scale * row[j] - row_lse)
        else:
            row_max = scale * _row_max(row, visible)  # scale > 0: max(scale s) = scale max(s)
            total = zero
            for j in range(visible):
                p = fast_exp(scale * row[j] - row_max)  # <= 1: no overflow
                row[j] = p
                total += p
            inv_total = one / total
            for j in range(visible):
                row[j] *= inv_total
            lse[i] = row_max + math.log(total)
        for j in range(visible, T):
            row[j] = zero


@njit(fastmath=FASTMATH, cache=True, inline="always")
def softmax_backward_rows(probs, dscores, scale, causal):
    """In place: dscores (T, T), holding dP, becomes dS: undoes the softmax,
    dS = P * (dP - sum_j P_j dP_j), then "* scale". Masked entries (j > i when causal) become
    exact zeros."""
    T = probs.shape[0]
    zero = probs.dtype.type(0)
    for i in range(T):
        visible = i + 1 if causal else T
        weighted = zero
        for j in range(visible):
            weighted += probs[i, j] * dscores[i, j]
        for j in range(visible):
            dscores[i, j] = probs[i, j] * (dscores[i, j] - weighted) * scale
        for j in range(visible, T):
            dscores[i, j] = zero


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _head_forward(q, k, v, causal, out, lse):
    """One head's forward: q, k, v (T, D) -> fills out (T, D) and lse (T,)."""
    T, D = q.shape
    scale = q.dtype.type(1.0 / math.sqrt(D))
    probs = np.empty((T, T), q.dtype)  # this head's scores, then probabilities
    v_t = np.empty((D, T), q.dtype)
    _head_product(q, k, probs, causal)  # S = q k^T
    _probs_from_scores(probs, scale, causal, lse, False)
    transpose(v, v_t)
    _head_product(probs, v_t, out, False)  # out = P v


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def attention_forward_kernel(q, k, v, causal, out, lse):
    """q, k, v: (B, H, T, D) C-contiguous -> fills out (B, H, T, D) and lse (B, H, T)."""
    B, H = q.shape[:2]
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        _head_forward(q[b, h], k[b, h], v[b, h], causal, out[b, h], lse[b, h])


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _head_backward(dout, q, k, v, lse, causal, dq, dk, dv):
    """One head's backward: dout, q, k, v (T, D), lse (T,) -> fills dq, dk, dv (T, D)."""
    T, D = q.shape
    scale = q.dtype.type(1.0 / math.sqrt(D))
    probs = np.empty((T, T), q.dtype)
    dscores = np.empty((T, T), q.dtype)
    square_t = np.empty((T, T), q.dtype)  # P^T, then dS^T
    thin_t = np.empty((D, T), q.dtype)  # dout^T, then k^T, then q^T
    _head_product(q, k, probs, causal)  # S again
    _probs_from_scores(probs, scale, causal, lse, True)  # P again, from lse
    _head_product(dout, v, dscores, causal)  # dP = dout v^T
    softmax_backward_rows(probs, dscores, scale, causal)  # dP -> dS
    transpose(probs, square_t)
    transpose(dout, thin_t)
    _head_product(square_t, thin_t, dv, False)  # dv = P^T dout
    transpose(k, thin_t)
    _head_product(dscores, thin_t, dq, False)  # dq = dS k
    transpose(dscores, square_t)
    transpose(q, thin_t)
    _head_product(square_t, thin_t, dk, False)  # dk = dS^T q


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def attention_backward_kernel(dout, q, k, v, lse, causal, dq, dk, dv):
    """dout, q, k, v: (B, H, T, D), lse: (B, H, T) -> fills dq, dk, dv (B, H, T, D)."""
    B, H = q.shape[:2]
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        _head_backward(dout[b, h], q[b, h], k[b, h], v[b, h], lse[b, h], causal,
                       dq[b, h], dk[b, h], dv[b, h])


# ---- packed: q, k, v read from the projection's (B, T, 3C) output -------------------------
#
# The plain op takes q, k, v as (B, H, T, D) arrays; the projection makes (B, T, 3C), so the
# model's split_heads hands it transposed views, which the op copies (three copies of the
# activations), and its output is copied again by merge_heads; backward copies dout and
# concatenates dq, dk, dv. These kernels read each head's columns straight out of qkv into
# small per-thread (T, D) buffers (in L1/L2) and write the results back into the (B, T, C) and
# (B, T, 3C) layouts: none of those copies of whole arrays is made.

@njit(fastmath=FASTMATH, cache=True, inline="always")
def _gather(src, b, c0, dst):
    """dst (T, D) = src[b, :, c0:c0+D]. (Row views indexed from 0, as in matmul._tile_4x4:
    Numba then drops its negative-index check and the copy vectorises.)"""
    T, D = dst.shape
    for t in range(T):
        src_row, dst_row = src[b, t, c0:c0 + D], dst[t]
        for d in range(D):
            dst_row[d] = src_row[d]


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _scatter(src, dst, b, c0):
    """dst[b, :, c0:c0+D] = src (T, D)."""
    T, D = src.shape
    for t in range(T):
        src_row, dst_row = src[t], dst[b, t, c0:c0 + D]
        for d in range(D):
            dst_row[d] = src_row[d]


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def attention_packed_forward_kernel(qkv, n_heads, causal, out, lse):
    """qkv: (B, T, 3C) (columns q, then k, then v; head h at h*D:(h+1)*D of each)
    -> fills out (B, T, C) (heads merged) and lse (B, H, T)."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    H = n_heads
    D = C // H
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        qh, kh, vh = (np.empty((T, D), qkv.dtype), np.empty((T, D), qkv.dtype),
                      np.empty((T, D), qkv.dtype))
        out_h = np.empty((T, D), qkv.dtype)
        _gather(qkv, b, h * D, qh)
        _gather(qkv, b, C + h * D, kh)
        _gather(qkv, b, 2 * C + h * D, vh)
        _head_forward(qh, kh, vh, causal, out_h, lse[b, h])
        _scatter(out_h, out, b, h * D)


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def attention_packed_backward_kernel(dout, qkv, lse, n_heads, causal, dqkv):
    """dout: (B, T, C), qkv: (B, T, 3C), lse: (B, H, T) -> fills dqkv (B, T, 3C)."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    H = n_heads
    D = C // H
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        heads = np.empty((7, T, D), qkv.dtype)  # q, k, v, dout, dq, dk, dv of this head
        _gather(qkv, b, h * D, heads[0])
        _gather(qkv, b, C + h * D, heads[1])
        _gather(qkv, b, 2 * C + h * D, heads[2])
        _gather(dout, b, h * D, heads[3])
        _head_backward(heads[3], heads[0], heads[1], heads[2], lse[b, h], causal,
                       heads[4], heads[5], heads[6])
        _scatter(heads[4], dqkv, b, h * D)
        _scatter(heads[5], dqkv, b, C + h * D)
        _scatter(heads[6], dqkv, b, 2 * C + h * D)


@njit(cache=True, inline="always")
def _widen_head(bits, table):
    """(T, D) uint16 bit patterns -> (T, D) float32, through the 65,536-entry table."""
    T, D = bits.shape
    wide = np.empty((T, D), np.uint32)
    for t in range(T):
        for d in range(D):
            wide[t, d] = table[bits[t, d]]
    return wide.view(np.float32)


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def attention_forward_kernel_half(q_bits, k_bits, v_bits, table, causal, out, lse):
    """attention_forward_kernel for 16-bit q, k, v given as uint16 bit patterns (B, H, T, D):
    each head is widened to float32 by its own thread just before use (halfconv.widen_table's
    table), then computed exactly as attention_forward_kernel does: out (B, H, T, D) and lse
    (B, H, T) are float32, bit for bit the float32 kernel's on the widened inputs."""
    B, H = q_bits.shape[:2]
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        _head_forward(_widen_head(q_bits[b, h], table), _widen_head(k_bits[b, h], table),
                      _widen_head(v_bits[b, h], table), causal, out[b, h], lse[b, h])


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def attention_backward_kernel_half(dout_bits, q_bits, k_bits, v_bits, table, lse, causal,
                                   dq, dk, dv):
    """attention_backward_kernel for 16-bit dout, q, k, v given as uint16 bit patterns
    (B, H, T, D): each head's four arrays are widened by its own thread just before use, then
    the same _head_backward runs, so dq, dk, dv (float32) are bit for bit the float32 kernel's
    on the widened inputs. lse (B, H, T) is float32, as attention_forward_kernel_half left it."""
    B, H = q_bits.shape[:2]
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        _head_backward(_widen_head(dout_bits[b, h], table), _widen_head(q_bits[b, h], table),
                       _widen_head(k_bits[b, h], table), _widen_head(v_bits[b, h], table),
                       lse[b, h], causal, dq[b, h], dk[b, h], dv[b, h])
