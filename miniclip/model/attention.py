"""Multi-head self-attention, as OpenAI's CLIP packs it: one projection ``in_proj_weight``
(3C, C; rows q, then k, then v) with ``in_proj_bias`` (3C,), the attention core, and ``out_proj``.

Shapes: B batch, T tokens, C width, H heads, D = C / H head size.
"""

import numpy as np

from miniclip import backend
from miniclip.model.residual import linear_add_forward
from miniclip.nn.attention import merge_heads, split_heads


def self_attention_forward(x, p, n_heads, causal=False, residual=None):
    """x: (B, T, C); p: dict with in_proj_weight (3C, C), in_proj_bias (3C,),
    out_proj.weight (C, C), out_proj.bias (C,); residual: None or (B, T, C), added to the
    output (in out_proj's epilogue where the backend fuses it) -> out: (B, T, C)."""
    ops = backend.ops
    C = x.shape[-1]
    qkv, c_in = ops.linear_forward(x, p["in_proj_weight"], p["in_proj_bias"])  # (B, T, 3C)
    packed = backend.fused("attention_qkv_forward", qkv)
    if packed is not None:  # the heads read from qkv and merged in the kernel: no copies
        merged, c_attn = packed(qkv, n_heads, causal)  # (B, T, C)
    else:
        q, k, v = (split_heads(qkv[..., i * C:(i + 1) * C], n_heads) for i in range(3))
        heads, c_attn = ops.attention_forward(q, k, v, causal)  # (B, H, T, D)
        merged = merge_heads(heads)  # (B, T, C)
    out, c_out = linear_add_forward(merged, p["out_proj.weight"], p["out_proj.bias"], residual)
    return out, (c_in, c_attn, c_out, n_heads, packed is not None)


def self_attention_backward(dout, cache):
    """dout: (B, T, C) -> dx (B, T, C), grads: dict with the same keys as p."""
    ops = backend.ops
    c_in, c_attn, c_out, n_heads, packed = cache
    dmerged, dw_out, db_out = ops.linear_backward(dout, c_out)
    if packed:  # the forward ran the fused op on the packed qkv
        dqkv = backend.fused("attention_qkv_backward", dmerged, required=True)(
            dmerged, c_attn)  # (B, T, 3C)
    else:
        dq, dk, dv = ops.attention_backward(split_heads(dmerged, n_heads), c_attn)
        dqkv = np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)],
                              axis=-1)  # (B, T, 3C)
    dx, dw_in, db_in = ops.linear_backward(dqkv, c_in)
    grads = {"in_proj_weight": dw_in, "in_proj_bias": db_in,
             "out_proj.weight": dw_out, "out_proj.bias": db_out}
    return dx, grads
