"""Scaled dot-product attention and the causal mask.

The primitive: scaled dot-product attention on already-split heads,
softmax(q k^T / sqrt(D) + mask) v, the op a fast kernel replaces. The full layer, with OpenAI's
packed q/k/v projection, is built on it in miniclip.model.attention.

Shapes: B batch, T tokens, C width, H heads, D = C / H head size.
"""

import numpy as np


def causal_mask(T, dtype=np.float64):
    """(T, T) additive mask: 0 on and below the diagonal, -inf above (token t sees 0..t).

    >>> causal_mask(3)
    array([[  0., -inf, -inf],
           [  0.,   0., -inf],
           [  0.,   0.,   0.]])
    """
    return np.triu(np.full((T, T), -np.inf, dtype=dtype), k=1)


def attention_forward(q, k, v, causal=False):
    """q, k, v: (B, H, T, D) -> out: (B, H, T, D).

    cache = (q, k, v, probs): probs is (B, H, T, T), the largest thing kept. A fused kernel
    would keep only the row log-sum-exp and recompute probs; this reference keeps them to stay
    plain.
    """
    scale = q.shape[-1] ** -0.5
    scores = (q @ k.swapaxes(-1, -2)) * scale  # (B, H, T, T)
    if causal:
        scores = scores + causal_mask(q.shape[-2], q.dtype)
    scores = scores - scores.max(axis=-1, keepdims=True)  # stable softmax; the diagonal is finite
    probs = np.exp(scores)
    probs /= probs.sum(axis=-1, keepdims=True)  # (B, H, T, T), rows sum to 1
    out = probs @ v  # (B, H, T, D)
    return out, (q, k, v, probs)


def attention_backward(dout, cache):
    """dout: (B, H, T, D) -> dq, dk, dv, each (B, H, T, D)."""
    q, k, v, probs = cache
    scale = q.shape[-1] ** -0.5
    dv = probs.swapaxes(-1, -2) @ dout  # undoes out = probs @ v
    dprobs = dout @ v.swapaxes(-1, -2)  # (B, H, T, T)
    # undoes the softmax: dscores = p * (dp - sum_j p_j dp_j). Masked entries have p = 0,
    # so they get no gradient, as they should.
    dscores = probs * (dprobs - (dprobs * probs).sum(axis=-1, keepdims=True))
    dscores *= scale  # undoes "* scale" (the mask is a constant)
    dq = dscores @ k  # undoes scores = q @ k^T
    dk = dscores.swapaxes(-1, -2) @ q
    return dq, dk, dv


def split_heads(x, n_heads):
    """(B, T, C) -> (B, H, T, D)."""
    B, T, C = x.shape
    return x.reshape(B, T, n_heads, C // n_heads).transpose(0, 2, 1, 3)


def merge_heads(x):
    """(B, H, T, D) -> (B, T, C), the inverse of split_heads."""
    B, H, T, D = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, H * D)
