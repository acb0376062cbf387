"""The "local loss": the terms of the batch loss that belong to some of the pairs, and their
gradient with respect to ALL the embeddings.

Both losses of loss.py are sums of per-pair terms. CLIP's softmax loss over N pairs is

    loss = 1/(2N) [ sum_i CE(logits[i, :], i)  +  sum_j CE(logits[:, j], j) ]
                    image i picks its text         text j picks its image

and SigLIP's is -1/N sum_i sum_j log sigmoid(z_ij logits_ij), a sum over rows i. Cut the N pairs
into W groups of rows ("own" rows, one group per process); the part of the loss that belongs to a
group, its local loss, is

    clip:    1/(2N) [ sum_{i own} CE(row i)  +  sum_{j own} CE(column j) ]   rows AND columns
    siglip:  -1/N  sum_{i own} sum_j log sigmoid(z_ij logits_ij)             rows only

The W local losses add up to the loss, exactly. Each one needs every embedding (row i runs over
all N texts), and its gradient reaches every embedding too: the other pairs are the negatives.
So d(local loss)/d(embeddings) is (N, E), not (n_own, E); summing it over the W groups gives
d(loss)/d(embeddings), and the logit_scale / logit_bias gradients also add up over the groups.

The work of one group is n_own x N logits instead of N x N: with W processes each computes 1/W of
the loss. ``model/distributed.py`` uses this; with one group (own = every row) it is the loss of
loss.py, which the tests check.
"""

from __future__ import annotations

import numpy as np

from miniclip.model.config import LOSSES
from miniclip.model.loss import log_sigmoid, log_softmax, sum_0d
from miniclip.nn.normalize import l2_normalize_backward, l2_normalize_forward


def local_loss_and_grads(kind: str, image_features, text_features, own: slice, params: dict):
    """The local loss of the pairs ``own`` (a slice of range(N)) and its gradient.

    image_features (N, E), text_features (N, E): the embeddings of the whole batch.
    params: 'logit_scale' (0-d), and 'logit_bias' (0-d) for SigLIP.
    -> (loss: float, dimage_features (N, E), dtext_features (N, E), {loss parameter: grad 0-d})
    """
    N = image_features.shape[0]
    if text_features.shape != image_features.shape:
        raise ValueError(f"image_features {image_features.shape} and text_features "
                         f"{text_features.shape} must have the same shape (N, E)")
    if not isinstance(own, slice) or own.step not in (None, 1):
        raise TypeError(f"own must be a slice of consecutive rows, got {own!r}")
    a, b, _ = own.indices(N)
    if kind not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")
    xhat, c_x = l2_normalize_forward(image_features)  # (N, E), unit rows
    yhat, c_y = l2_normalize_forward(text_features)
    scale = np.exp(params["logit_scale"])
    mine = np.arange(b - a)  # row k of the own block is pair a + k
    dxhat, dyhat = np.zeros_like(xhat), np.zeros_like(yhat)

    if kind == "clip":
        rows = scale * (xhat[a:b] @ yhat.T)  # (n, N): own images against every text
        cols = scale * (yhat[a:b] @ xhat.T)  # (n, N): own texts against every image
        logp_rows, logp_cols = log_softmax(rows), log_softmax(cols)
        loss = -(logp_rows[mine, a + mine].sum() + logp_cols[mine, a + mine].sum()) / (2 * N)
        # d CE / d logits = softmax - one-hot, for every own row and every own column
        d_rows = np.exp(logp_rows)
        d_rows[mine, a + mine] -= 1
        d_cols = np.exp(logp_cols)
        d_cols[mine, a + mine] -= 1
        d_rows /= 2 * N
        d_cols /= 2 * N
        grads = {"logit_scale": sum_0d(d_rows * rows) + sum_0d(d_cols * cols)}
        dxhat[a:b] += scale * (d_rows @ yhat)  # undoes rows = s xhat_own yhat^T
        dyhat += scale * (d_rows.T @ xhat[a:b])
        dyhat[a:b] += scale * (d_cols @ xhat)  # undoes cols = s yhat_own xhat^T
        dxhat += scale * (d_cols.T @ yhat[a:b])
    else:  # siglip: a sigmoid per pair, the own rows only
        scaled = scale * (xhat[a:b] @ yhat.T)  # (n, N)
        logits = scaled + params["logit_bias"]
        signs = -np.ones_like(logits)
        signs[mine, a + mine] = 1  # +1 for the matching pair
        loss = -log_sigmoid(signs * logits).sum() / N
        d_logits = -signs * np.exp(log_sigmoid(-signs * logits)) / N  # (n, N)
        grads = {"logit_scale": sum_0d(d_logits * scaled), "logit_bias": sum_0d(d_logits)}
        dxhat[a:b] = scale * (d_logits @ yhat)
        dyhat += scale * (d_logits.T @ xhat[a:b])

    dimg = l2_normalize_backward(dxhat, c_x)  # (N, E)
    dtxt = l2_normalize_backward(dyhat, c_y)
    return float(loss) + 0.0, dimg, dtxt, grads
