"""AdamW's update as one GPU kernel per parameter tensor.

``miniclip.optim.AdamW.step`` is written as NumPy lines (m *= b1, m += (1 - b1) g, ...). On
DeviceArrays each line is a kernel launch of its own, about 15 per tensor: over a thousand
launches per step for the toy model, each costing more in Python and in the driver than the
arithmetic it launches. This kernel does the same arithmetic, in the same order, in one pass:

    m = b1 m + (1 - b1) g
    v = b2 v + ((1 - b2) g) g
    p = p - lr ((m / bc1) / (sqrt(v / bc2) + eps) + wd p)         (wd p only where decay)

with bc1 = 1 - b1^t and bc2 = 1 - b2^t computed on the host. Each thread updates its elements of
p, m and v in place (a grid-stride loop), reading every array once and writing three.
"""

from __future__ import annotations

import math

from numba import cuda

from miniclip.kernels.cuda.common import launch_size


@cuda.jit
def adamw_kernel(p, g, m, v, lr, b1, b2, one_minus_b1, one_minus_b2, bc1, bc2, eps,
                 weight_decay):
    """p, g, m, v: flat arrays of one size and dtype; the rest numbers of that dtype (computed
    on the host: a literal 1.0 here would turn float32 arithmetic into float64). weight_decay is
    0 for the tensors that do not decay."""
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        gi = g[i]
        m[i] = b1 * m[i] + one_minus_b1 * gi
        v[i] = b2 * v[i] + one_minus_b2 * gi * gi
        update = (m[i] / bc1) / (math.sqrt(v[i] / bc2) + eps) + weight_decay * p[i]
        p[i] -= lr * update


def adamw_step(p, g, m, v, *, lr, betas, t, eps, weight_decay, threads):
    """Update the DeviceArrays p, m, v in place from the gradient g (same shape, any layout;
    t is the step number, from 1). p, m and v are C-contiguous (made so by AdamW)."""
    if not (p.is_contiguous() and m.is_contiguous() and v.is_contiguous()):
        raise ValueError("adamw_step updates contiguous p, m and v in place")
    if g.shape != p.shape or g.dtype != p.dtype:
        raise ValueError(f"gradient {g.shape} {g.dtype} does not match its parameter "
                         f"{p.shape} {p.dtype}")
    if p.size == 0:
        return
    real = p.dtype.type
    b1, b2 = betas
    flat = [a.contiguous().device_view().reshape(p.size) for a in (p, g, m, v)]
    blocks, threads = launch_size(p.size, threads)
    adamw_kernel[blocks, threads](*flat, real(lr), real(b1), real(b2), real(1 - b1), real(1 - b2),
                                  real(1 - b1**t), real(1 - b2**t), real(eps), real(weight_decay))
