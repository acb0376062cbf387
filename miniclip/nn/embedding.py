"""Token embedding with learned absolute positions: x[n, t] = W[tokens[n, t]] + pos[t]."""

import numpy as np


def token_embedding_forward(tokens, weight, positional_embedding):
    """tokens (N, T) int, weight (V, C), positional_embedding (T, C) -> (N, T, C).

    cache = (tokens, V): the gradient is a scatter, so only the ids are needed.
    """
    return weight[tokens] + positional_embedding, (tokens, weight.shape[0])


def token_embedding_backward(dout, cache):
    """dout (N, T, C) -> dweight (V, C), dpositional_embedding (T, C).

    The forward gathers rows of W, so the backward scatters rows back and ADDS them: a token id
    that appears k times receives the sum of its k gradients. ``np.add.at`` does this; plain
    fancy assignment ``dW[tokens] += dout`` would keep only one of the repeats.
    """
    tokens, vocab_size = cache
    C = dout.shape[-1]
    if dout.dtype.itemsize == 2:  # 16-bit (bfloat16, float16): sum in float32, not in 16 bits
        dout = dout.astype(np.float32)
    dweight = np.zeros_like(dout, shape=(vocab_size, C))  # where dout lives (host or GPU)
    np.add.at(dweight, tokens.reshape(-1), dout.reshape(-1, C))
    return dweight, dout.sum(axis=0)
