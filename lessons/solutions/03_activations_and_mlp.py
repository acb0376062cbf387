"""Solutions to the exercises of lessons/03_activations_and_mlp.ipynb.

Each section, from its `# %% exercise: <id>` line to the next, replaces the source of the exercise cell
with that id when tests/test_lessons.py runs the lesson in "solutions" mode. Try the exercise
before you read its section.
"""

# %% exercise: quick_gelu_backward
def my_quick_gelu_backward(dout, cache):
    x, s = cache
    return dout * (s + A * x * s * (1 - s))

# %% exercise: mlp_backward
def my_mlp_backward(dout, cache):
    c_fc, c_act, c_proj = cache
    da, dw_proj, db_proj = linear_backward(dout, c_proj)      # undoes y = a W_proj^T + b_proj
    dh = quick_gelu_backward(da, c_act)                       # undoes a = act(h)
    dx, dw_fc, db_fc = linear_backward(dh, c_fc)              # undoes h = x W_fc^T + b_fc
    return dx, {"c_fc.weight": dw_fc, "c_fc.bias": db_fc,
                "c_proj.weight": dw_proj, "c_proj.bias": db_proj}

# %% exercise: best_slope
def best_slope():
    grid_x = np.linspace(-6, 6, 2401)
    cdf = normal_cdf(grid_x)
    slopes = np.arange(1.6, 1.8, 0.001)
    worst = [np.abs(sigmoid(a * grid_x) - cdf).max() for a in slopes]
    i = int(np.argmin(worst))
    return slopes[i], worst[i]
