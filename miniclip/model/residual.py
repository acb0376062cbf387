"""The residual block's adds, done inside a neighbouring op where the backend fuses them.

    forward   out = residual + x W^T + b       (attention's out_proj, the MLP's c_proj)
    backward  dx  = dresidual + LayerNorm's dx  (ln_1, ln_2: the residual passes its gradient on)

On the numpy backend, and for 16-bit arrays, each is the plain op and then the add; where the
backend has the fused op (``backend.fused``: the numba backend) it is one pass over memory. The
numbers are the same either way (tests/test_fused_kernels.py).
"""

from miniclip import backend


def linear_add_forward(x, w, b, residual=None):
    """x: (..., C_in), w: (C_out, C_in), b: (C_out,), residual: None or (..., C_out)
    -> out = x W^T + b (+ residual): (..., C_out), and linear_forward's cache (the residual's
    gradient is dout itself, so backward is ``ops.linear_backward``)."""
    fused = None if residual is None else backend.fused("linear_residual_forward", x, residual)
    if fused is not None:
        return fused(x, w, b, residual)
    out, cache = backend.ops.linear_forward(x, w, b)
    return (out if residual is None else residual + out), cache


def layernorm_backward_add(dout, cache, dresidual):
    """LayerNorm's backward with the residual's gradient added to its dx: dx + dresidual, dw,
    db. One op where the backend fuses them (numba), else the plain op and an add."""
    fused = backend.fused("layernorm_backward_add", dout, dresidual)
    if fused is not None:
        return fused(dout, cache, dresidual)
    dx, dw, db = backend.ops.layernorm_backward(dout, cache)
    return dresidual + dx, dw, db
