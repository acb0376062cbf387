"""Multi-head self-attention, as OpenAI's CLIP packs it.

Two layers live here:

* ``attention_forward/backward``: scaled dot-product attention on already-split heads,
  softmax(q k^T / sqrt(D) + mask) v. This is the primitive a fast kernel replaces.
* ``self_attention_forward/backward``: the full layer with the packed projection
  ``in_proj_weight`` (3C, C; rows q, then k, then v), ``in_proj_bias`` (3C,), and ``out_proj``.

Shapes: B batch, T tokens, C width, H heads, D = C / H head size.
"""

import numpy as np

from .. import kernels


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


def self_attention_forward(x, p, n_heads, causal=False):
    """x: (B, T, C); p: dict with in_proj_weight (3C, C), in_proj_bias (3C,),
    out_proj.weight (C, C), out_proj.bias (C,) -> out: (B, T, C)."""
    ops = kernels.ops
    C = x.shape[-1]
    qkv, c_in = ops.linear_forward(x, p["in_proj_weight"], p["in_proj_bias"])  # (B, T, 3C)
    q, k, v = (split_heads(qkv[..., i * C:(i + 1) * C], n_heads) for i in range(3))
    heads, c_attn = ops.attention_forward(q, k, v, causal)  # (B, H, T, D)
    out, c_out = ops.linear_forward(merge_heads(heads), p["out_proj.weight"], p["out_proj.bias"])
    return out, (c_in, c_attn, c_out, n_heads)


def self_attention_backward(dout, cache):
    """dout: (B, T, C) -> dx (B, T, C), grads: dict with the same keys as p."""
    ops = kernels.ops
    c_in, c_attn, c_out, n_heads = cache
    dmerged, dw_out, db_out = ops.linear_backward(dout, c_out)
    dq, dk, dv = ops.attention_backward(split_heads(dmerged, n_heads), c_attn)
    dqkv = np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)  # (B,T,3C)
    dx, dw_in, db_in = ops.linear_backward(dqkv, c_in)
    grads = {"in_proj_weight": dw_in, "in_proj_bias": db_in,
             "out_proj.weight": dw_out, "out_proj.bias": db_out}
    return dx, grads
