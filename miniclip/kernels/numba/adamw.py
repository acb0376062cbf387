"""AdamW's update of one parameter tensor in one pass over memory, on the CPU.

``miniclip.train.optim.AdamW.step`` writes the update as NumPy lines (m *= b1, m += (1 - b1) g,
..., p -= lr update): about ten passes over each tensor, most of them making a temporary array
as large as the tensor. At ViT-B/32 size (126M parameters) that took 0.5-0.8 s of a 4.5 s
training step on one core (benchmarks/README.md). This kernel reads p, g, m, v once and writes
p, m, v once, with the same arithmetic in the same order:

    m = b1 m + (1 - b1) g
    v = b2 v + ((1 - b2) g) g
    p = p - lr ((m / bc1) / (sqrt(v / bc2) + eps) + wd p)       (the wd p term only where decay)

No fast-math: every operation rounds as NumPy's does, so the result is bit for bit the NumPy
lines' (tests/test_optim.py). The numbers are converted to the arrays' dtype first, as NumPy
does with a Python float beside a float32 array.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _update_one(i, p, g, m, v, lr, b1, b2, one_minus_b1, one_minus_b2, bc1, bc2, eps,
                weight_decay, decay):
    """The update of element i of p, m, v."""
    gi = g[i]
    mi = m[i] * b1
    mi = mi + one_minus_b1 * gi
    vi = v[i] * b2
    vi = vi + one_minus_b2 * gi * gi
    m[i], v[i] = mi, vi
    update = (mi / bc1) / (np.sqrt(vi / bc2) + eps)
    if decay:
        update = update + weight_decay * p[i]
    p[i] = p[i] - lr * update


@njit(parallel=True, cache=True)
def adamw_kernel(p, g, m, v, lr, b1, b2, one_minus_b1, one_minus_b2, bc1, bc2, eps,
                 weight_decay, decay):
    """p, g, m, v: flat C-contiguous arrays of one size and dtype, p, m, v updated in place; the
    numbers are of that dtype. decay: add weight_decay * p to the update (matrices only)."""
    for i in prange(p.size):
        _update_one(i, p, g, m, v, lr, b1, b2, one_minus_b1, one_minus_b2, bc1, bc2, eps,
                    weight_decay, decay)


@njit(cache=True)
def adamw_kernel_serial(p, g, m, v, lr, b1, b2, one_minus_b1, one_minus_b2, bc1, bc2, eps,
                        weight_decay, decay):
    """adamw_kernel on the calling thread, for small tensors: waking the thread pool costs more
    than their update (the toy model's 80 tensors took 5 ms per step on two threads, 1 ms on
    one)."""
    for i in range(p.size):
        _update_one(i, p, g, m, v, lr, b1, b2, one_minus_b1, one_minus_b2, bc1, bc2, eps,
                    weight_decay, decay)


SERIAL_BELOW = 1 << 16  # elements: smaller tensors are updated on the calling thread


def adamw_update(p, g, m, v, *, lr, betas, t, eps, weight_decay):
    """Update p, m, v (arrays of one shape and float dtype, C-contiguous) in place from the
    gradient g, at step t (1 for the first). weight_decay 0: no decay term."""
    for name, a in (("g", g), ("m", m), ("v", v)):
        if a.shape != p.shape or a.dtype != p.dtype:
            raise ValueError(f"{name} must have p's shape {p.shape} and dtype {p.dtype}, got "
                             f"{a.shape} {a.dtype}")
    for name, a in (("p", p), ("m", m), ("v", v)):
        if not a.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous (it is updated in place)")
    b1, b2 = betas
    t_ = p.dtype.type
    kernel = adamw_kernel_serial if p.size < SERIAL_BELOW else adamw_kernel
    kernel(p.reshape(-1), np.ascontiguousarray(g).reshape(-1), m.reshape(-1),
                 v.reshape(-1), t_(lr), t_(b1), t_(b2), t_(1 - b1), t_(1 - b2), t_(1 - b1**t),
                 t_(1 - b2**t), t_(eps), t_(weight_decay), weight_decay != 0)
