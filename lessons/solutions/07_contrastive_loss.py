"""Solutions to the exercises of lessons/07_contrastive_loss.ipynb.

Each section, from its `# %% exercise: <id>` line to the next, replaces the source of the exercise cell
with that id when tests/test_lessons.py runs the lesson in "solutions" mode. Try the exercise
before you read its section.
"""

# %% exercise: contrastive_backward
def my_contrastive_backward(x, y, s):
    nx, ny = np.linalg.norm(x, axis=1, keepdims=True), np.linalg.norm(y, axis=1, keepdims=True)
    xhat, yhat = x / nx, y / ny
    z = np.exp(s) * xhat @ yhat.T
    N, eye = len(x), np.eye(len(x))
    dz = ((softmax(z) - eye) + (softmax(z.T) - eye).T) / (2 * N)
    ds = np.sum(dz * z)
    dS = np.exp(s) * dz
    dxhat, dyhat = dS @ yhat, dS.T @ xhat
    dx = (dxhat - xhat * (xhat * dxhat).sum(axis=1, keepdims=True)) / nx
    dy = (dyhat - yhat * (yhat * dyhat).sum(axis=1, keepdims=True)) / ny
    return dx, dy, ds

# %% exercise: siglip
def log_sigmoid(u):
    return np.minimum(u, 0) - np.log1p(np.exp(-np.abs(u)))

def _siglip_logits(x, y, s, b):
    nx, ny = np.linalg.norm(x, axis=1, keepdims=True), np.linalg.norm(y, axis=1, keepdims=True)
    xhat, yhat = x / nx, y / ny
    logits = np.exp(s) * xhat @ yhat.T + b                    # (N, N)
    signs = 2 * np.eye(len(x)) - 1                            # +1 on the diagonal, -1 elsewhere
    return xhat, yhat, nx, ny, logits, signs

def siglip_loss(x, y, s, b):
    *_, logits, signs = _siglip_logits(x, y, s, b)
    return -log_sigmoid(signs * logits).sum() / len(x)

def siglip_backward(x, y, s, b):
    xhat, yhat, nx, ny, logits, signs = _siglip_logits(x, y, s, b)
    dlogits = -signs * np.exp(log_sigmoid(-signs * logits)) / len(x)   # -z sigma(-z l) / N
    db = dlogits.sum()
    ds = np.sum(dlogits * (logits - b))
    dS = np.exp(s) * dlogits
    dxhat, dyhat = dS @ yhat, dS.T @ xhat
    dx = (dxhat - xhat * (xhat * dxhat).sum(axis=1, keepdims=True)) / nx
    dy = (dyhat - yhat * (yhat * dyhat).sum(axis=1, keepdims=True)) / ny
    return dx, dy, ds, db

# %% exercise: best_log_scale
def best_log_scale(x, y):
    def dloss_ds(s):
        return float(contrastive_loss_backward(contrastive_loss_forward(x, y, np.array(s))[1])[2])
    lo, hi = math.log(1.0), math.log(100.0)
    assert dloss_ds(lo) < 0 < dloss_ds(hi)              # the loss falls, then rises
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if dloss_ds(mid) < 0 else (lo, mid)
    return lo
