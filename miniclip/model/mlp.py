"""The transformer's MLP: c_fc (C -> 4C), activation, c_proj (4C -> C).

Two ways to the same numbers: the plain ops one after the other (the numpy reference, and any
backend without fused ops), or, where the backend has them (backend.fused: the numba backend),
c_fc with its bias and activation in one op and c_proj with the block's residual added in its
epilogue, which saves passes over the (..., 4C) and (..., C) arrays.
"""

from miniclip import backend
from miniclip.model.residual import linear_add_forward


def linear_act_forward(x, w, b, activation):
    """x: (..., C_in), w: (C_out, C_in), b: (C_out,) -> act(x W^T + b): (..., C_out), and the
    cache (c_lin, c_act): c_act is None where the backend ran product and activation as one op
    (never for 16-bit arrays, x's or the weights'). Used by the MLP's c_fc and by the
    convolutional stem (model/stem.py)."""
    fused = backend.fused("linear_act_forward", x, w, b)
    if fused is not None:  # h = x W^T + b and act(h) in one op
        out, c_lin = fused(x, w, b, activation)
        return out, (c_lin, None)
    h, c_lin = backend.ops.linear_forward(x, w, b)
    out, c_act = getattr(backend.ops, f"{activation}_forward")(h)
    return out, (c_lin, c_act)


def linear_act_backward(dout, cache, activation):
    """dout: (..., C_out) -> dx (..., C_in), dw, db, for linear_act_forward's cache."""
    c_lin, c_act = cache
    if c_act is None:  # the forward fused the product and the activation
        return backend.fused("linear_act_backward", dout, required=True)(dout, c_lin)
    dh = getattr(backend.ops, f"{activation}_backward")(dout, c_act)
    return backend.ops.linear_backward(dh, c_lin)


def mlp_forward(x, p, activation="quick_gelu", residual=None):
    """x: (..., C); p: c_fc.weight (4C, C), c_fc.bias (4C,), c_proj.weight (C, 4C),
    c_proj.bias (C,); residual: None or (..., C), added to the output
    -> out: (..., C) (+ residual)."""
    a, (c_fc, c_act) = linear_act_forward(x, p["c_fc.weight"], p["c_fc.bias"], activation)
    out, c_proj = linear_add_forward(a, p["c_proj.weight"], p["c_proj.bias"], residual)  # (..., C)
    return out, (c_fc, c_act, c_proj, activation)


def mlp_backward(dout, cache):
    """dout: (..., C) -> dx (..., C), grads dict with the keys of p. (With a residual, its
    gradient is dout itself: the caller adds it.)"""
    c_fc, c_act, c_proj, activation = cache
    da, dw_proj, db_proj = backend.ops.linear_backward(dout, c_proj)
    dx, dw_fc, db_fc = linear_act_backward(da, (c_fc, c_act), activation)
    return dx, {"c_fc.weight": dw_fc, "c_fc.bias": db_fc,
                "c_proj.weight": dw_proj, "c_proj.bias": db_proj}
