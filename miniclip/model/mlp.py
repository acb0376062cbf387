"""The transformer's MLP: c_fc (C -> 4C), activation, c_proj (4C -> C).

Two ways to the same numbers: the plain ops one after the other (the numpy reference, and any
backend without fused ops), or, where the backend has them (backend.fused: the numba backend),
c_fc with its bias and activation in one op and c_proj with the block's residual added in its
epilogue, which saves passes over the (..., 4C) and (..., C) arrays.
"""

from miniclip import backend
from miniclip.model.residual import linear_add_forward


def mlp_forward(x, p, activation="quick_gelu", residual=None):
    """x: (..., C); p: c_fc.weight (4C, C), c_fc.bias (4C,), c_proj.weight (C, 4C),
    c_proj.bias (C,); residual: None or (..., C), added to the output
    -> out: (..., C) (+ residual)."""
    ops = backend.ops
    fc_act = backend.fused("linear_act_forward", x)
    if fc_act is not None:  # h = x W^T + b and act(h) in one op: (..., 4C)
        a, c_fc = fc_act(x, p["c_fc.weight"], p["c_fc.bias"], activation)
        c_act = None
    else:
        h, c_fc = ops.linear_forward(x, p["c_fc.weight"], p["c_fc.bias"])  # (..., 4C)
        a, c_act = getattr(ops, f"{activation}_forward")(h)
    out, c_proj = linear_add_forward(a, p["c_proj.weight"], p["c_proj.bias"], residual)  # (..., C)
    return out, (c_fc, c_act, c_proj, activation)


def mlp_backward(dout, cache):
    """dout: (..., C) -> dx (..., C), grads dict with the keys of p. (With a residual, its
    gradient is dout itself: the caller adds it.)"""
    ops = backend.ops
    c_fc, c_act, c_proj, activation = cache
    da, dw_proj, db_proj = ops.linear_backward(dout, c_proj)
    if c_act is None:  # the forward fused c_fc and the activation
        dx, dw_fc, db_fc = backend.fused("linear_act_backward", da, required=True)(da, c_fc)
    else:
        dh = getattr(ops, f"{activation}_backward")(da, c_act)
        dx, dw_fc, db_fc = ops.linear_backward(dh, c_fc)
    return dx, {"c_fc.weight": dw_fc, "c_fc.bias": db_fc,
                "c_proj.weight": dw_proj, "c_proj.bias": db_proj}
