"""Gradient accumulation for a contrastive loss: the same gradient as one big batch.

With an ordinary loss (a mean over examples) a big batch can be cut into micro-batches whose
gradients are simply added up. CLIP's loss is not a mean over examples: every image is compared
with every text of the batch, so the loss of a micro-batch of 64 pairs (64 x 64 logits) is a
different function from the loss of the full batch of 256 (256 x 256 logits), and summing the
former does not give the latter.

The way out (the "gradient cache" of Gao et al., 2021) splits the computation at the embeddings,
which are small: (N, E) for N pairs.

    1. embed:    for each micro-batch, run both towers forward and keep only the embeddings
                 (the activations are dropped, so memory is that of one micro-batch)
    2. loss:     on the full (N, E) embeddings compute the loss and d(loss)/d(embeddings): the
                 exact big-batch loss, every pair against every other
    3. backward: for each micro-batch, run the towers forward again, this time keeping the
                 activations, and back-propagate its rows of d(embeddings); add the gradients up

Step 3 is right because each tower sees each example on its own: the gradient of the loss with
respect to a weight is the sum over examples of (d loss / d embedding_i) (d embedding_i / d weight),
and step 2 already holds every d loss / d embedding_i. The price is one more forward pass.

    >>> import numpy as np, miniclip
    >>> cfg = miniclip.CONFIGS["tiny"]
    >>> params = miniclip.CLIP(cfg, seed=0, dtype=np.float64).params
    >>> rng = np.random.default_rng(0)
    >>> images = rng.standard_normal((6, 3, 8, 8)); tokens = rng.integers(1, 49, (6, 7))
    >>> tokens[:, 3] = 49                                   # the end-of-text token: the largest id
    >>> big, g1 = loss_and_grads(params, cfg, images, tokens, accum_steps=1)
    >>> small, g3 = loss_and_grads(params, cfg, images, tokens, accum_steps=3)
    >>> abs(big - small) < 1e-12, bool(max(np.abs(g1[k] - g3[k]).max() for k in g1) < 1e-12)
    (True, True)
"""

from __future__ import annotations

import numpy as np

from miniclip.model.loss import batch_loss_backward, batch_loss_forward
from miniclip.model.towers import text_backward, text_forward, vision_backward, vision_forward

LOSS_PARAMS = ("logit_scale", "logit_bias")  # parameters of the loss itself, not of a tower


def micro_batches(n: int, accum_steps: int) -> list[slice]:
    """Cut range(n) into accum_steps consecutive slices whose sizes differ by at most one.

    >>> micro_batches(10, 3)
    [slice(0, 4, None), slice(4, 7, None), slice(7, 10, None)]
    """
    if isinstance(accum_steps, bool) or not isinstance(accum_steps, (int, np.integer)):
        raise TypeError(f"accum_steps must be an int, got {type(accum_steps).__name__}")
    if not 1 <= accum_steps <= n:
        raise ValueError(f"accum_steps must be between 1 and the batch size {n}, got {accum_steps}")
    bounds = np.linspace(0, n, accum_steps + 1).round().astype(int)  # n=10, k=3: 0, 3, 7, 10
    sizes = np.diff(bounds)
    sizes = np.sort(sizes)[::-1]  # the larger slices first: 4, 3, 3
    ends = np.cumsum(sizes)
    return [slice(int(e - s), int(e)) for s, e in zip(sizes, ends, strict=True)]


def loss_and_grads(params: dict, cfg, images: np.ndarray, tokens: np.ndarray,
                   accum_steps: int = 1, loss_scale: float = 1.0,
                   extra_tokens: np.ndarray | None = None):
    """Loss of the whole batch and its gradient for every parameter, computed in accum_steps
    micro-batches (1: all at once). images (N, 3, R, R) float, tokens (N, T) int.

    extra_tokens: (K, T) texts without an image (hard negatives, 'clip' loss only): they join
    the N captions in the text tower and in every image's softmax (model/loss.py).

    loss_scale: the gradients returned are those of ``loss_scale * loss`` (the loss itself is
    returned unscaled). float16 training multiplies by 2^k so that small gradients do not
    underflow to 0 in 16 bits, and divides the float32 gradients by it afterwards.

    -> (loss: float, grads: dict keyed like params). The result equals the one-batch result up
    to floating-point rounding, whatever accum_steps is.
    """
    loss_params = {k: params[k] for k in LOSS_PARAMS if k in params}
    n_extra = 0
    if extra_tokens is not None:
        if not isinstance(extra_tokens, np.ndarray) or extra_tokens.ndim != 2 \
                or extra_tokens.shape[1] != tokens.shape[1]:
            raise ValueError(f"extra_tokens must be a (K, {tokens.shape[1]}) array like tokens, "
                             f"got {getattr(extra_tokens, 'shape', type(extra_tokens).__name__)}")
        n_extra = extra_tokens.shape[0]
        tokens = np.concatenate([tokens, extra_tokens])  # (N + K, T): captions, then negatives

    def whole_batch_loss(img, txt):  # (N, E), (N + K, E) -> loss, d img, d txt, loss grads
        loss, c_loss = batch_loss_forward(cfg.loss, img, txt, loss_params)
        return (loss, *batch_loss_backward(c_loss, loss_scale))

    return towers_around(params, cfg, images, tokens, accum_steps, whole_batch_loss, n_extra)


def towers_around(params: dict, cfg, images: np.ndarray, tokens: np.ndarray, accum_steps: int,
                  head, n_extra: int = 0):
    """The three steps above around any ``head``: the towers embed ``images`` and ``tokens`` in
    accum_steps micro-batches; ``head(img (n, E), txt (n + k, E))`` returns (loss, d img (n, E),
    d txt (n + k, E), {loss parameter: gradient}); the towers back-propagate d img and d txt.
    n_extra: the last k rows of ``tokens`` are texts without an image (hard negatives).

    -> (loss, grads keyed like params). ``loss_and_grads`` passes the batch loss as the head;
    ``model/distributed.py`` passes one that first gathers the embeddings of every process.
    """
    if images.shape[0] + n_extra != tokens.shape[0]:
        raise ValueError(f"images and tokens must pair up: got {images.shape[0]} images and "
                         f"{tokens.shape[0] - n_extra} texts")

    if accum_steps == 1:  # one pass: keep the activations from the start
        img, c_vis = vision_forward(params, cfg, images)  # (N, E)
        txt, c_txt = text_forward(params, cfg, tokens)  # (N + K, E)
        loss, dimg, dtxt, grads = head(img, txt)
        grads.update(vision_backward(dimg, c_vis, cfg))
        grads.update(text_backward(dtxt, c_txt, cfg))
        return loss, {k: grads[k] for k in params}

    image_parts = micro_batches(images.shape[0], accum_steps)
    text_parts = micro_batches(tokens.shape[0], accum_steps)  # N + K rows
    # 1. embed every micro-batch; the caches are dropped at once
    img = np.concatenate([vision_forward(params, cfg, images[s])[0] for s in image_parts])
    txt = np.concatenate([text_forward(params, cfg, tokens[s])[0] for s in text_parts])
    # 2. the loss of the full batch, and its gradient with respect to every embedding
    loss, dimg, dtxt, grads = head(img, txt)  # (N, E), (N + K, E), loss-parameter grads
    # 3. forward again with caches, backward each micro-batch's rows of d(embeddings), add up
    for s_img, s_txt in zip(image_parts, text_parts, strict=True):
        _, c_vis = vision_forward(params, cfg, images[s_img])
        _accumulate(grads, vision_backward(dimg[s_img], c_vis, cfg))
        del c_vis
        _, c_txt = text_forward(params, cfg, tokens[s_txt])
        _accumulate(grads, text_backward(dtxt[s_txt], c_txt, cfg))
        del c_txt
    return loss, {k: grads[k] for k in params}


def _accumulate(total: dict, part: dict) -> None:
    """total[k] += part[k], adding keys total does not have yet."""
    for k, g in part.items():
        if k in total:
            total[k] += g
        else:
            total[k] = g.copy()
