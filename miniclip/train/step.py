"""One optimizer step: augment, normalise, loss and gradients (exact in any number of
micro-batches), clip, stop on NaN/inf, AdamW, clamp the temperature."""

from __future__ import annotations

import math

import numpy as np

from miniclip.model.gradcache import loss_and_grads
from miniclip.pretrained.checkpoint import load_checkpoint
from miniclip.train.optim import clip_grad_norm

MAX_LOGIT_SCALE = math.log(100.0)  # the clamp of OpenAI's and OpenCLIP's trainers


class TrainingDiverged(RuntimeError):
    """The loss (or the gradient) became NaN or inf; the last good checkpoint is kept."""


def take_step(model, optimizer, preprocess, images, tokens, lr, args, aug_rng, last_checkpoint,
              step, world=None, toy_augment=True, precision=None,
              extra_tokens=None) -> tuple[float, float]:
    """One optimizer step on a batch: images uint8 (B, R, R, 3), tokens (B, T).

    augment -> normalise -> loss and gradients (in args.accum micro-batches) -> clip the global
    gradient norm (if args.grad_clip) -> stop on NaN/inf -> AdamW -> clamp logit_scale.
    Returns (loss, gradient norm before clipping).
    world: train/distributed.py's World under --distributed: the batch is the global one,
        augmented whole, then this process keeps its rows.
    toy_augment: False for your own data, whose images were cropped at random when read
        (train/owndata.py).
    precision: a train.precision.MixedPrecision for --precision bf16/fp16 (None: float32).
    extra_tokens: (K, T) texts without an image (--hard-negatives, train/hardneg.py), or None.
    """
    if extra_tokens is not None and (world is not None or precision is not None):
        raise ValueError("--hard-negatives works in one process at --precision fp32 only")
    if args.augment and toy_augment:
        from miniclip.datasets import augment

        images = augment(images, aug_rng)  # keeps the captions true: no flips, tiny shifts
    if world is not None:
        rows = world.rows(len(images))
        images, tokens = images[rows], tokens[rows]
    x = preprocess(images)  # (B, 3, R, R) float32

    def diverged(loss, grad_norm):
        kept = (f"the last good checkpoint is {last_checkpoint} (step "
                f"{load_checkpoint(last_checkpoint).step})" if last_checkpoint.exists()
                else "no checkpoint was written yet")
        raise TrainingDiverged(
            f"step {step + 1}: the loss became {loss} (gradient norm {grad_norm}); stopping "
            f"without saving this step: {kept}. Try a lower --lr, a longer --warmup or "
            "--grad-clip 1.0.")

    if precision is not None:  # 16-bit copies, float32 masters (train/precision.py)
        if world is not None:
            raise ValueError("--precision bf16/fp16 with --distributed is not supported yet")
        from miniclip.train.precision import mixed_step

        return mixed_step(model, optimizer, precision, x, tokens, lr, args, step, diverged,
                          MAX_LOGIT_SCALE)
    if extra_tokens is not None:
        loss, grads = loss_and_grads(model.params, model.cfg, x, tokens, args.accum,
                                     extra_tokens=extra_tokens)
    else:
        loss, grads = (world.loss_and_grads if world else loss_and_grads)(
            model.params, model.cfg, x, tokens, args.accum)
    grad_norm = clip_grad_norm(grads, args.grad_clip or math.inf)
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        diverged(loss, grad_norm)
    optimizer.step(grads, lr=lr)
    scale = model.params["logit_scale"]
    np.clip(scale, 0.0, MAX_LOGIT_SCALE, out=scale)  # in place: the array the optimizer updates
    return loss, grad_norm
