"""CLIP's contrastive loss: symmetric cross-entropy with a learned temperature.

For a batch of N matching (image, text) pairs with embeddings x (N, E) and y (N, E):

    xhat, yhat = x / |x|, y / |y|                 (rows of unit length)
    logits     = exp(logit_scale) * xhat yhat^T   (N, N); row i: image i against every text
    loss       = (CE(logits, diag) + CE(logits^T, diag)) / 2

CE(z, diag) = mean_i [ logsumexp(z_i) - z_ii ]: each image must pick out its own text among the
N, and each text its own image. ``logit_scale`` is stored as a log, so the scale exp(.) stays
positive; it starts at ln(1/0.07) ~ 2.66, a temperature of 0.07.

The backward pass, line by line:
    dlogits  = (softmax_rows(logits) - I) / (2N) + (softmax_rows(logits^T) - I)^T / (2N)
    dS       = scale * dlogits                     S = xhat yhat^T
    dxhat    = dS yhat,   dyhat = dS^T xhat
    dlogit_scale = sum(dlogits * logits)           since d logits / d logit_scale = logits
and then through the normalisation (nn/normalize.py).
"""

import warnings

import numpy as np

from .nn.normalize import l2_normalize_backward, l2_normalize_forward


def log_softmax(z):
    """Row-wise log-softmax, stable for large logits: subtract the row max before exp."""
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def clip_logits(image_features, text_features, logit_scale):
    """(N_img, E), (N_txt, E), scalar -> logits_per_image (N_img, N_txt)."""
    xhat, _ = l2_normalize_forward(image_features)
    yhat, _ = l2_normalize_forward(text_features)
    return np.exp(logit_scale) * (xhat @ yhat.T)


def contrastive_loss_forward(image_features, text_features, logit_scale):
    """image_features (N, E), text_features (N, E), logit_scale () -> loss (float), cache.

    A batch of one has nothing to contrast: its loss is exactly 0 (a one-way softmax is 1), and
    every gradient is 0. That is allowed, with a warning, rather than an error.
    """
    N = image_features.shape[0]
    if text_features.shape != image_features.shape:
        raise ValueError(f"image_features {image_features.shape} and text_features "
                         f"{text_features.shape} must have the same shape (N, E)")
    if N == 1:
        warnings.warn("contrastive loss on a batch of 1 is 0 by construction: nothing to "
                      "contrast, no gradient. Use a batch of 2 or more.", stacklevel=2)
    xhat, c_x = l2_normalize_forward(image_features)
    yhat, c_y = l2_normalize_forward(text_features)
    scale = np.exp(logit_scale)
    logits = scale * (xhat @ yhat.T)  # (N, N)
    logp_i2t = log_softmax(logits)  # row i: image i over all texts
    logp_t2i = log_softmax(logits.T)  # row j: text j over all images
    diag = np.arange(N)
    loss = -0.5 * (logp_i2t[diag, diag].mean() + logp_t2i[diag, diag].mean())
    return float(loss), (xhat, yhat, c_x, c_y, scale, logits, logp_i2t, logp_t2i)


def contrastive_loss_backward(cache, dloss=1.0):
    """-> dimage_features (N, E), dtext_features (N, E), dlogit_scale (0-d array)."""
    xhat, yhat, c_x, c_y, scale, logits, logp_i2t, logp_t2i = cache
    N = logits.shape[0]
    eye = np.eye(N, dtype=logits.dtype)
    # undoes the two cross-entropies (each a mean over N, then halved)
    dlogits = ((np.exp(logp_i2t) - eye) + (np.exp(logp_t2i) - eye).T) * (dloss / (2 * N))
    dlogit_scale = np.asarray((dlogits * logits).sum(), dtype=logits.dtype)  # undoes exp(.) * S
    dS = scale * dlogits  # (N, N)
    dxhat = dS @ yhat  # undoes S = xhat @ yhat^T
    dyhat = dS.T @ xhat
    return l2_normalize_backward(dxhat, c_x), l2_normalize_backward(dyhat, c_y), dlogit_scale
