"""Solutions to the exercises of lessons/01_linear_and_gradcheck.ipynb.

Each section, from its `# %% exercise: <id>` line to the next, replaces the source of the exercise cell
with that id when tests/test_lessons.py runs the lesson in "solutions" mode. Try the exercise
before you read its section.
"""

# %% exercise: linear_backward
def my_linear_backward(dout, cache):
    x, w = cache
    dout2d = dout.reshape(-1, dout.shape[-1])    # (M, C_out)
    x2d = x.reshape(-1, x.shape[-1])             # (M, C_in)
    dx = dout @ w                                # (..., C_in)
    dw = dout2d.T @ x2d                          # (C_out, C_in)
    db = dout2d.sum(axis=0)                      # (C_out,)
    return dx, dw, db

# %% exercise: numerical_gradient
def my_numerical_gradient(f, x, dout, h=1e-5):
    grad = np.zeros_like(x)
    flat_x, flat_g = x.reshape(-1), grad.reshape(-1)    # views
    for i in range(flat_x.size):
        old = flat_x[i]
        flat_x[i] = old + h
        plus = np.sum(f(x) * dout)
        flat_x[i] = old - h
        minus = np.sum(f(x) * dout)
        flat_x[i] = old
        flat_g[i] = (plus - minus) / (2 * h)
    return grad

# %% exercise: proj
def proj_forward(x, proj):
    return x @ proj, (x, proj)

def proj_backward(dout, cache):
    x, proj = cache
    return dout @ proj.T, x.T @ dout         # dx (M, W), dproj (W, E)
