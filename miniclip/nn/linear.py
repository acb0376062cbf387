"""Linear layer: y = x @ W^T + b, with PyTorch's/OpenAI's (out_features, in_features) weights.

Leading axes are flattened into one, M = prod(x.shape[:-1]), so every product is a single
2-D matrix multiply: (M, C_in) @ (C_in, C_out).
"""


def linear_forward(x, w, b=None):
    """x: (..., C_in), w: (C_out, C_in), b: (C_out,) or None -> out: (..., C_out).

    cache = (x, w, has_bias): backward needs x for dW and w for dx; nothing else is kept.
    """
    out = x.reshape(-1, x.shape[-1]) @ w.T  # (M, C_out)
    if b is not None:
        out += b
    return out.reshape(*x.shape[:-1], w.shape[0]), (x, w, b is not None)


def linear_backward(dout, cache):
    """dout: (..., C_out) -> dx (..., C_in), dw (C_out, C_in), db (C_out,) or None."""
    x, w, has_bias = cache
    dout2d = dout.reshape(-1, dout.shape[-1])  # (M, C_out)
    x2d = x.reshape(-1, x.shape[-1])  # (M, C_in)
    dx = (dout2d @ w).reshape(x.shape)  # undoes out = x @ W^T:  (M, C_out) @ (C_out, C_in)
    dw = dout2d.T @ x2d  # (C_out, C_in): each output row's weights see every input row
    db = dout2d.sum(axis=0) if has_bias else None  # b was broadcast over M rows
    return dx, dw, db
