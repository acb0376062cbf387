"""The pre-LN residual block CLIP uses in both towers:

    x = x + attn(ln_1(x))
    x = x + mlp(ln_2(x))

The residual adds are handed to the attention and MLP layers (``residual=x``), which add them in
their output projection's epilogue where the backend fuses that (numba), and in backward the
residual's gradient is added inside LayerNorm's backward pass the same way (model/residual.py).
"""

from miniclip import backend
from miniclip.model.attention import self_attention_backward, self_attention_forward
from miniclip.model.mlp import mlp_backward, mlp_forward
from miniclip.model.residual import layernorm_backward_add
from miniclip.nn.layernorm import EPS


def sub_params(p, prefix):
    """The entries of p under 'prefix.', with 'prefix.' removed.

    >>> sub_params({"attn.in_proj_bias": 1, "ln_1.bias": 2}, "attn")
    {'in_proj_bias': 1}
    """
    n = len(prefix) + 1
    return {k[n:]: v for k, v in p.items() if k.startswith(prefix + ".")}


def block_forward(x, p, n_heads, causal=False, activation="quick_gelu"):
    """x: (B, T, C); p: the block's params keyed as in OpenAI's state dict below
    'resblocks.{i}.' (ln_1.weight, attn.in_proj_weight, mlp.c_fc.weight, ...) -> (B, T, C)."""
    ops = backend.ops
    h, c_ln1 = ops.layernorm_forward(x, p["ln_1.weight"], p["ln_1.bias"], EPS)
    x, c_attn = self_attention_forward(h, sub_params(p, "attn"), n_heads, causal,
                                       residual=x)  # x + attn(...): first residual
    h, c_ln2 = ops.layernorm_forward(x, p["ln_2.weight"], p["ln_2.bias"], EPS)
    x, c_mlp = mlp_forward(h, sub_params(p, "mlp"), activation, residual=x)  # second residual
    return x, (c_ln1, c_attn, c_ln2, c_mlp)


def block_backward(dout, cache):
    """dout: (B, T, C) -> dx (B, T, C), grads keyed like p."""
    c_ln1, c_attn, c_ln2, c_mlp = cache
    grads = {}
    # the residual passes dout straight through, and the mlp branch adds its part
    dh, g = mlp_backward(dout, c_mlp)
    grads.update({f"mlp.{k}": v for k, v in g.items()})
    dx, grads["ln_2.weight"], grads["ln_2.bias"] = layernorm_backward_add(dh, c_ln2, dout)
    dh, g = self_attention_backward(dx, c_attn)
    grads.update({f"attn.{k}": v for k, v in g.items()})
    dx, grads["ln_1.weight"], grads["ln_1.bias"] = layernorm_backward_add(dh, c_ln1, dx)
    return dx, grads

