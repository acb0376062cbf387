"""The transformer's MLP: c_fc (C -> 4C), activation, c_proj (4C -> C)."""

from miniclip import backend


def mlp_forward(x, p, activation="quick_gelu"):
    """x: (..., C); p: c_fc.weight (4C, C), c_fc.bias (4C,), c_proj.weight (C, 4C),
    c_proj.bias (C,) -> out: (..., C)."""
    ops = backend.ops
    act_forward = getattr(ops, f"{activation}_forward")
    h, c_fc = ops.linear_forward(x, p["c_fc.weight"], p["c_fc.bias"])  # (..., 4C)
    a, c_act = act_forward(h)
    out, c_proj = ops.linear_forward(a, p["c_proj.weight"], p["c_proj.bias"])  # (..., C)
    return out, (c_fc, c_act, c_proj, activation)


def mlp_backward(dout, cache):
    """dout: (..., C) -> dx (..., C), grads dict with the keys of p."""
    ops = backend.ops
    c_fc, c_act, c_proj, activation = cache
    da, dw_proj, db_proj = ops.linear_backward(dout, c_proj)
    dh = getattr(ops, f"{activation}_backward")(da, c_act)
    dx, dw_fc, db_fc = ops.linear_backward(dh, c_fc)
    return dx, {"c_fc.weight": dw_fc, "c_fc.bias": db_fc,
                "c_proj.weight": dw_proj, "c_proj.bias": db_proj}
