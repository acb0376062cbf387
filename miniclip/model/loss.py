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

Hard negatives (NegCLIP, Yuksekgonul et al. 2023): K extra texts with no image of their own, such
as "a blue circle and a red square" made from the true "a red circle and a blue square", come after
the N true captions, so text_features is (N + K, E) and logits is (N, N + K). Each image then
picks its caption among N + K texts; each of the N true captions still picks its image among the
N images (an extra text has no image to pick, so it has no text -> image term):

    loss = (CE(logits, diag) + CE(logits[:, :N]^T, diag)) / 2
    dlogits          = (softmax_rows(logits) - I_{N, N+K}) / (2N)
    dlogits[:, :N]  += (softmax_rows(logits[:, :N]^T) - I)^T / (2N)
With K = 0 this is the loss above.
"""

import warnings

import numpy as np

from miniclip.model.config import LOSSES
from miniclip.nn.normalize import l2_normalize_backward, l2_normalize_forward


def sum_0d(x):
    """The sum of every entry as a 0-d array of x's dtype, not a NumPy scalar: a gradient must be
    an array that the optimizer can update in place, like the 0-d parameter it belongs to.

    >>> sum_0d(np.ones((2, 2), np.float32))
    array(4., dtype=float32)
    """
    return x.sum(keepdims=True).reshape(())


def log_softmax(z):
    """Row-wise log-softmax, stable for large logits: subtract the row max before exp."""
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def widen(x):
    """x in the dtype the loss computes in: float32 for 16-bit features (a 16-bit model's loss,
    softmax and temperature are float32, as in every mixed-precision trainer), else unchanged.

    >>> widen(np.ones(2, np.float16)).dtype, widen(np.ones(2)).dtype
    (dtype('float32'), dtype('float64'))
    """
    wide = np.promote_types(x.dtype, np.float32)  # bfloat16, float16 -> float32
    return x if x.dtype == wide else x.astype(wide)


def clip_logits(image_features, text_features, logit_scale):
    """(N_img, E), (N_txt, E), scalar -> logits_per_image (N_img, N_txt), in float32 or wider."""
    xhat, _ = l2_normalize_forward(widen(image_features))
    yhat, _ = l2_normalize_forward(widen(text_features))
    return np.exp(logit_scale) * (xhat @ yhat.T)


def contrastive_loss_forward(image_features, text_features, logit_scale):
    """image_features (N, E), text_features (N + K, E), logit_scale () -> loss (float), cache.

    Text rows N .. N+K-1 (K >= 0) are hard negatives: texts without an image (module docstring).
    A batch of one has nothing to contrast: its loss is exactly 0 (a one-way softmax is 1), and
    every gradient is 0. That is allowed, with a warning, rather than an error.
    """
    N = image_features.shape[0]
    if (image_features.ndim != 2 or text_features.ndim != 2
            or text_features.shape[1] != image_features.shape[1]
            or text_features.shape[0] < N):
        raise ValueError(f"image_features {image_features.shape} and text_features "
                         f"{text_features.shape} must be (N, E) and (N + K, E) with K >= 0 extra "
                         "texts (hard negatives)")
    if N == 1 and text_features.shape[0] == 1:
        warnings.warn("contrastive loss on a batch of 1 is 0 by construction: nothing to "
                      "contrast, no gradient. Use a batch of 2 or more.", stacklevel=2)
    xhat, c_x = l2_normalize_forward(image_features)
    yhat, c_y = l2_normalize_forward(text_features)
    scale = np.exp(logit_scale)
    logits = scale * (xhat @ yhat.T)  # (N, N + K)
    logp_i2t = log_softmax(logits)  # row i: image i over all N + K texts
    logp_t2i = log_softmax(logits[:, :N].T)  # row j: true text j over the N images
    diag = np.arange(N)
    nll_i2t = -logp_i2t[diag, diag].mean()  # each image picking its text
    nll_t2i = -logp_t2i[diag, diag].mean()  # each text picking its image
    loss = 0.5 * (nll_i2t + nll_t2i) + 0.0  # + 0.0 turns a -0.0 into 0.0
    return float(loss), (xhat, yhat, c_x, c_y, scale, logits, logp_i2t, logp_t2i)


def contrastive_loss_backward(cache, dloss=1.0):
    """-> dimage_features (N, E), dtext_features (N + K, E), dlogit_scale (0-d array)."""
    xhat, yhat, c_x, c_y, scale, logits, logp_i2t, logp_t2i = cache
    N = logits.shape[0]
    eye = np.eye(N, logits.shape[1], dtype=logits.dtype)  # (N, N + K): ones on the diagonal
    # undoes the image -> text cross-entropy (a mean over N, then halved): every column
    dlogits = (np.exp(logp_i2t) - eye) * (dloss / (2 * N))  # (N, N + K)
    # undoes the text -> image cross-entropy: only the N columns of the true captions
    dlogits[:, :N] += (np.exp(logp_t2i) - eye[:, :N]).T * (dloss / (2 * N))
    dlogit_scale = sum_0d(dlogits * logits)  # undoes exp(.) * S
    dS = scale * dlogits  # (N, N + K)
    dxhat = dS @ yhat  # undoes S = xhat @ yhat^T
    dyhat = dS.T @ xhat
    return l2_normalize_backward(dxhat, c_x), l2_normalize_backward(dyhat, c_y), dlogit_scale


# ------------------------------------------------------------------------------------------
# SigLIP: a sigmoid per pair instead of a softmax per row
# ------------------------------------------------------------------------------------------
#
# SigLIP (Zhai et al., 2023) scores every (image, text) pair on its own, as a yes/no question:
#
#     logits = exp(logit_scale) * xhat yhat^T + logit_bias       (N, N)
#     z_ij   = +1 if i == j (a matching pair) else -1
#     loss   = -(1/N) sum_ij log sigmoid(z_ij * logits_ij)
#
# No row or column normalisation couples the pairs, so each term has its own gradient. Of the N^2
# pairs only N match: the bias starts at -10 so that at first every pair reads as "no match"
# (sigmoid(-10) ~ 5e-5) and the many negatives do not swamp the loss; the scale starts at ln 10.
# The division is by N (the batch), not N^2, as in the paper.
#
# Backward, with d/dl [-log sigmoid(z l)] = -z sigmoid(-z l):
#     dlogits_ij   = -z_ij sigmoid(-z_ij logits_ij) / N
#     dlogit_bias  = sum(dlogits)
#     dlogit_scale = sum(dlogits * (logits - logit_bias))   (the scaled cosines)
#     dS = scale * dlogits,  then as for the softmax loss.

SIGLIP_INIT_LOGIT_SCALE = 2.302585092994046  # ln 10
SIGLIP_INIT_LOGIT_BIAS = -10.0


def log_sigmoid(x):
    """log(1 / (1 + exp(-x))), stable for large |x|: min(x, 0) - log1p(exp(-|x|))."""
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def siglip_loss_forward(image_features, text_features, logit_scale, logit_bias):
    """image_features (N, E), text_features (N, E), logit_scale (), logit_bias () -> loss, cache.

    >>> x = np.eye(2); loss, _ = siglip_loss_forward(x, x, np.log(10.0), -10.0)
    >>> round(loss, 4)     # (2 matches at -log sigmoid(10 - 10) = ln 2, 2 others ~ 0) / N
    0.6932
    """
    N = image_features.shape[0]
    if text_features.shape != image_features.shape:
        raise ValueError(f"image_features {image_features.shape} and text_features "
                         f"{text_features.shape} must have the same shape (N, E)")
    xhat, c_x = l2_normalize_forward(image_features)
    yhat, c_y = l2_normalize_forward(text_features)
    scale = np.exp(logit_scale)
    scaled = scale * (xhat @ yhat.T)  # (N, N), scaled cosine similarities
    logits = scaled + logit_bias
    signs = 2 * np.eye(N, dtype=logits.dtype) - 1  # z: +1 on the diagonal, -1 elsewhere
    loss = -log_sigmoid(signs * logits).sum() / N
    return float(loss), (xhat, yhat, c_x, c_y, scale, scaled, logits, signs)


def siglip_loss_backward(cache, dloss=1.0):
    """-> dimage_features (N, E), dtext_features (N, E), dlogit_scale (), dlogit_bias ()."""
    xhat, yhat, c_x, c_y, scale, scaled, logits, signs = cache
    N = logits.shape[0]
    z_logits = signs * logits
    # sigmoid(-z l), written stably: exp(log_sigmoid(-z l))
    dlogits = -signs * np.exp(log_sigmoid(-z_logits)) * (dloss / N)  # (N, N)
    dlogit_bias = sum_0d(dlogits)  # undoes "+ logit_bias"
    dlogit_scale = sum_0d(dlogits * scaled)  # undoes exp(.) * S
    dS = scale * dlogits
    dxhat = dS @ yhat  # undoes S = xhat @ yhat^T
    dyhat = dS.T @ xhat
    return (l2_normalize_backward(dxhat, c_x), l2_normalize_backward(dyhat, c_y),
            dlogit_scale, dlogit_bias)


# ------------------------------------------------------------------------------------------
# one entry point for the training code: which loss, and the gradients of its own parameters
# ------------------------------------------------------------------------------------------



def batch_loss_forward(kind, image_features, text_features, params):
    """The batch loss named by ``kind`` ('clip' or 'siglip') -> (loss, cache).

    ``params`` holds the loss's own parameters: 'logit_scale', and 'logit_bias' for SigLIP.
    16-bit features are widened to float32 first (``widen``): the loss is float32 arithmetic.
    """
    image_features, text_features = widen(image_features), widen(text_features)
    if kind == "siglip" and text_features.shape[0] != image_features.shape[0]:
        raise ValueError(f"extra texts (hard negatives) work with the 'clip' loss only; got "
                         f"{image_features.shape[0]} images and {text_features.shape[0]} texts")
    if kind == "clip":
        loss, cache = contrastive_loss_forward(image_features, text_features,
                                               params["logit_scale"])
    elif kind == "siglip":
        loss, cache = siglip_loss_forward(image_features, text_features, params["logit_scale"],
                                          params["logit_bias"])
    else:
        raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")
    return loss, (kind, cache)


def batch_loss_backward(cache, dloss=1.0):
    """-> dimage_features, dtext_features, {'logit_scale': ..., ['logit_bias': ...]}: the
    gradients of ``dloss * loss`` (dloss > 1 is fp16 loss scaling: train/precision.py)."""
    kind, cache = cache
    if kind == "clip":
        dimg, dtxt, dscale = contrastive_loss_backward(cache, dloss)
        return dimg, dtxt, {"logit_scale": dscale}
    dimg, dtxt, dscale, dbias = siglip_loss_backward(cache, dloss)
    return dimg, dtxt, {"logit_scale": dscale, "logit_bias": dbias}
