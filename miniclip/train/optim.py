"""AdamW and a cosine learning-rate schedule with linear warmup, written out by hand.

AdamW (Loshchilov & Hutter) keeps two running averages per parameter, of the gradient (m) and
of its square (v), and applies weight decay directly to the weights rather than through the
gradient:

    m = b1 m + (1 - b1) g            v = b2 v + (1 - b2) g^2
    mhat = m / (1 - b1^t)            vhat = v / (1 - b2^t)          (bias correction)
    p = p - lr * (mhat / (sqrt(vhat) + eps) + wd * p)

CLIP's settings: b1 = 0.9, b2 = 0.98, eps = 1e-6, weight decay 0.2 on matrices only.

``AdamW.step`` below is these lines in NumPy (the textbook). Each line is a pass over the tensor,
so the numba backend offers the same arithmetic as one kernel (kernels/numba/adamw.py, bit for
bit the same numbers), and the cuda backend as one GPU kernel; step() uses them when present.
"""

from __future__ import annotations

import math

import numpy as np

from miniclip import backend

NO_DECAY_KEYS = ("positional_embedding", "class_embedding", "logit_scale")


def decays(name: str, param: np.ndarray) -> bool:
    """Weight decay applies to weight matrices (and the conv kernel), not to LayerNorm gains,
    biases, positional and class embeddings, or logit_scale.

    >>> decays("transformer.resblocks.0.mlp.c_fc.weight", np.zeros((4, 2)))
    True
    >>> decays("visual.positional_embedding", np.zeros((5, 2)))
    False
    """
    return param.ndim >= 2 and not name.endswith(NO_DECAY_KEYS)


def _same_layout(p, *others) -> bool:
    """p and the others are C-contiguous NumPy arrays of p's dtype (what the one-pass kernel
    takes; anything else goes through the NumPy lines, which give the same numbers)."""
    return all(isinstance(a, np.ndarray) and a.dtype == p.dtype and a.flags.c_contiguous
               for a in (p, *others))


class AdamW:
    """AdamW over a dict of NumPy arrays, updated in place.

    >>> params = {"w": np.ones((2, 2))}
    >>> opt = AdamW(params, lr=0.1)
    >>> opt.step({"w": np.ones((2, 2))})
    >>> round(float(params["w"][0, 0]), 6)     # 1 - 0.1 * (1 + 0.2 * 1): Adam's first step is lr
    0.88
    """

    def __init__(self, params: dict, lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2):
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
        if lr < 0 or eps <= 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"need lr >= 0, eps > 0, weight_decay >= 0, 0 <= betas < 1; got "
                             f"lr={lr}, eps={eps}, weight_decay={weight_decay}, betas={betas}")
        self.params, self.lr, self.betas = params, lr, tuple(betas)
        self.eps, self.weight_decay = eps, weight_decay
        self.t = 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.decay = {k: decays(k, v) for k, v in params.items()}

    def step(self, grads: dict, lr: float | None = None):
        """One update of every parameter, in place. ``lr`` overrides the default for this step."""
        if set(grads) != set(self.params):
            raise KeyError(f"grads must have the params' keys: missing "
                           f"{sorted(set(self.params) - set(grads))}, unexpected "
                           f"{sorted(set(grads) - set(self.params))}")
        lr = self.lr if lr is None else lr
        b1, b2 = self.betas
        self.t += 1
        bc1, bc2 = 1 - b1**self.t, 1 - b2**self.t
        for k, p in self.params.items():
            g, m, v = grads[k], self.m[k], self.v[k]
            if backend.on_device(p):  # on the GPU: these lines as one kernel (cuda_adamw.py)
                backend.cuda_adamw_step(p, g, m, v, lr=lr, betas=self.betas, t=self.t,
                                        eps=self.eps,
                                        weight_decay=self.weight_decay if self.decay[k] else 0.0)
                continue
            one_pass = backend.fused("adamw_update", p, g)  # the numba backend's kernel
            if one_pass is not None and _same_layout(p, g, m, v):  # (kernels/numba/adamw.py)
                one_pass(p, g, m, v, lr=lr, betas=self.betas, t=self.t, eps=self.eps,
                         weight_decay=self.weight_decay if self.decay[k] else 0.0)
                continue
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            update = (m / bc1) / (np.sqrt(v / bc2) + self.eps)
            if self.decay[k]:
                update += self.weight_decay * p
            p -= (lr * update).astype(p.dtype, copy=False)

    def state_dict(self) -> dict:
        """Everything needed to resume exactly: step count and both moment estimates."""
        return {"t": self.t, "m": {k: v.copy() for k, v in self.m.items()},
                "v": {k: v.copy() for k, v in self.v.items()}}

    def load_state_dict(self, state: dict):
        for name in ("m", "v"):
            for k, ref in self.params.items():
                if k not in state[name] or state[name][k].shape != ref.shape:
                    raise ValueError(f"optimizer state {name}[{k!r}] is missing or mis-shaped")
        self.t = int(state["t"])
        self.m = {k: np.array(state["m"][k], dtype=self.params[k].dtype) for k in self.params}
        self.v = {k: np.array(state["v"][k], dtype=self.params[k].dtype) for k in self.params}


def cosine_lr(step: int, total_steps: int, base_lr: float, warmup_steps: int = 0,
              min_lr: float = 0.0) -> float:
    """Learning rate at ``step`` (0-based): linear warmup to base_lr over warmup_steps, then a
    half cosine down to min_lr at total_steps.

    >>> [round(cosine_lr(s, 10, 1.0, warmup_steps=2), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))


def clip_grad_norm(grads: dict, max_norm: float) -> float:
    """Scale all gradients together, in place, so their global L2 norm is at most max_norm.
    Returns the norm before clipping."""
    # the squares summed in float64 where the gradients live (host or GPU); one number comes back
    total = math.sqrt(float(sum((g.astype(np.float64) ** 2).sum() for g in grads.values())))
    if total > max_norm:
        scale = max_norm / (total + 1e-12)
        for g in grads.values():
            g *= scale
    return total
