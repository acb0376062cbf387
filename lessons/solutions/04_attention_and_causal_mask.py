"""Solutions to the exercises of lessons/04_attention_and_causal_mask.ipynb.

Each section, from its `# %% exercise: <id>` line to the next, replaces the source of the exercise cell
with that id when tests/test_lessons.py runs the lesson in "solutions" mode. Try the exercise
before you read its section.
"""

# %% exercise: attention_backward
def my_attention_backward(dout, cache):
    q, k, v, probs = cache
    scale = q.shape[-1] ** -0.5
    dv = probs.swapaxes(-1, -2) @ dout                                   # undoes out = probs @ v
    dprobs = dout @ v.swapaxes(-1, -2)                                   # (B, H, T, T)
    dscores = probs * (dprobs - (probs * dprobs).sum(axis=-1, keepdims=True))   # softmax
    dq = dscores @ k * scale                                             # undoes scores = q k^T * scale
    dk = dscores.swapaxes(-1, -2) @ q * scale
    return dq, dk, dv

# %% exercise: causal_mask
def causal_mask(T):
    return np.triu(np.full((T, T), -np.inf), k=1)

# %% exercise: causal_by_prefixes
def causal_by_prefixes(x, p, n_heads):
    out = np.empty_like(x)
    for t in range(x.shape[1]):
        out[:, t] = self_attention_forward(x[:, :t + 1], p, n_heads, causal=False)[0][:, -1]
    return out
