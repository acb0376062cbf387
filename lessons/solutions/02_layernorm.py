"""Solutions to the exercises of lessons/02_layernorm.ipynb.

Each section, from its `# %% exercise: <id>` line to the next, replaces the source of the exercise cell
with that id when tests/test_lessons.py runs the lesson in "solutions" mode. Try the exercise
before you read its section.
"""

# %% exercise: layernorm_backward
def my_layernorm_backward(dout, xhat, rstd, w):
    lead = tuple(range(dout.ndim - 1))
    g = dout * w
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, (dout * xhat).sum(axis=lead), dout.sum(axis=lead)

# %% exercise: rmsnorm
def rmsnorm_forward(x, w, eps=EPS):
    rstd = 1.0 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)   # (..., 1)
    xhat = x * rstd
    return xhat * w, (xhat, rstd, w)

def rmsnorm_backward(dout, cache):
    xhat, rstd, w = cache
    g = dout * w
    dx = rstd * (g - xhat * (g * xhat).mean(axis=-1, keepdims=True))    # no "- mean(g)"
    dw = (dout * xhat).reshape(-1, xhat.shape[-1]).sum(axis=0)
    return dx, dw
