"""Solutions to the exercises of lessons/16_training_on_many_machines.ipynb.

Each section, from its `# %% exercise: <id>` line to the next, replaces the source of the exercise cell
with that id when tests/test_lessons.py runs the lesson in "solutions" mode. Try the exercise
before you read its section.
"""

# %% exercise: reduce_scatter
def my_reduce_scatter(partials, sizes):
    total = np.sum(partials, axis=0)                       # (N, E): the sum over the workers
    bounds = np.concatenate([[0], np.cumsum(sizes)])       # where each worker's rows start
    return [total[bounds[r]:bounds[r + 1]] for r in range(len(sizes))]

# %% exercise: siglip_variant_b
def siglip_variant_B(U, V, A, B, shares, params):
    X, Y = U @ A, V @ B                                    # the all-gather, without gradient
    dAs, dBs = [], []
    for s in shares:
        _, dX, dY, _ = local_loss_and_grads("siglip", X, Y, s, params)
        dAs.append(U[s].T @ dX[s]); dBs.append(V[s].T @ dY[s])      # own rows only
    return np.mean(dAs, axis=0), np.mean(dBs, axis=0)      # the framework averages

def siglip_exact(U, V, A, B, params):
    _, cache = batch_loss_forward("siglip", U @ A, V @ B, params)
    dX, dY, _ = batch_loss_backward(cache)
    return U.T @ dX, V.T @ dY

# %% exercise: best_factor
def best_factor(wrong, exact):
    c = float((wrong * exact).sum() / (wrong * wrong).sum())
    left = float(np.abs(c * wrong - exact).max() / np.abs(exact).max())
    return c, left
