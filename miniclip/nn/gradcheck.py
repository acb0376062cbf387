"""Numerical gradients by central differences, to check hand-written backward passes.

The check, for a function ``f`` with output ``y = f(x)`` and a random upstream gradient ``dy``:
the scalar ``L(x) = sum(f(x) * dy)`` has gradient ``dL/dx``, which is exactly what a backward
pass computes from ``dy``. Central differences estimate it one entry at a time:

    dL/dx[i] ~ (L(x + h e_i) - L(x - h e_i)) / (2 h)        error O(h^2)

Run it in float64: with h = 1e-5 the truncation error (~h^2) and the rounding error (~eps/h)
are both around 1e-10, far below the 1e-7 we ask of a correct backward pass.

    >>> import numpy as np
    >>> x = np.array([1.0, 2.0]); dy = np.array([1.0, 1.0])
    >>> numerical_gradient(lambda x: x**2, x, dy)       # d/dx sum(x^2) = 2x
    array([2., 4.])
"""

from __future__ import annotations

import numpy as np


def numerical_gradient(f, x: np.ndarray, dout: np.ndarray, h: float = 1e-5, indices=None):
    """Central-difference gradient of ``sum(f(x) * dout)`` with respect to ``x``.

    ``x`` is perturbed in place and restored, so ``f`` may close over it (handy for parameters
    stored in a dict). ``indices`` (a list of flat indices) checks only those entries; the other
    entries of the result are NaN. Returns an array shaped like ``x``.
    """
    if x.dtype != np.float64:
        raise TypeError(f"x must be float64 for a gradient check, got {x.dtype}")
    grad = np.full(x.shape, np.nan) if indices is not None else np.zeros(x.shape)
    flat_x, flat_g = x.reshape(-1), grad.reshape(-1)  # views into x and grad
    for i in range(flat_x.size) if indices is None else indices:
        old = flat_x[i]
        flat_x[i] = old + h
        plus = np.sum(np.asarray(f(x)) * dout)
        flat_x[i] = old - h
        minus = np.sum(np.asarray(f(x)) * dout)
        flat_x[i] = old
        flat_g[i] = (plus - minus) / (2 * h)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """max|a - b| / max(1e-8, max(|a| + |b|)) over one tensor, ignoring NaN entries of ``numeric``.

    The denominator makes the error scale-free. It is taken over the whole tensor, not entry by
    entry, on purpose: some gradients are exactly zero in theory (the key bias of attention,
    since softmax ignores a constant added to a whole row; an activation far in its flat tail),
    and there the numerical estimate is pure round-off, ~1e-10. Divided entry by entry by the
    1e-8 floor that noise would read as a 1% error. Against the tensor's scale it reads as what it
    is. The 1e-8 floor keeps an all-zero gradient from dividing by zero.
    """
    a = np.asarray(analytic, dtype=np.float64)
    b = np.asarray(numeric, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: analytic {a.shape} vs numeric {b.shape}")
    mask = ~np.isnan(b)
    if not mask.any():
        raise ValueError("numeric gradient has no checked entries")
    a, b = a[mask], b[mask]
    return float(np.max(np.abs(a - b)) / max(1e-8, float(np.max(np.abs(a) + np.abs(b)))))


def check_gradient(f, x, dout, analytic, h=1e-5, indices=None) -> float:
    """Relative error between ``analytic`` and the numerical gradient of sum(f(x) * dout)."""
    return relative_error(analytic, numerical_gradient(f, x, dout, h=h, indices=indices))
