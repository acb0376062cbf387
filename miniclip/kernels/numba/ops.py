"""The "numba" backend: the ops of miniclip.nn, computed by the Numba kernels beside this file.

Same signatures and return conventions as the NumPy reference (``*_forward -> (out, cache)``,
``*_backward(dout, cache) -> grads``); the caches are this backend's own. Every array handed
to a kernel is first made C-contiguous in its own dtype, so each kernel compiles exactly once
per dtype (float32, float64). Outputs have the inputs' dtype.

Matmuls: by default (``matmul="auto"``) each product runs on the hand-written kernel
(matmul.py) or on BLAS, whichever was faster when this machine first met that product: both are
timed, taking turns (routing.py; ``python -m miniclip.kernels --explain`` lists the choices).
``"kernel"`` sends every product to the hand-written kernel (lessons and tests do: their results
then do not depend on the machine), ``"blas"`` every product to BLAS. ``handwritten_matmul=True``
is the same as ``matmul="kernel"``; the environment variable ``MINICLIP_MATMUL`` sets the
default:

    >>> from miniclip import backend
    >>> with backend.use_backend("numba", matmul="kernel"):
    ...     pass

Why measured: on the 2-core machine of benchmarks/README.md, on one thread, OpenBLAS ran the toy
model's products at 87-99 GFLOP/s and the kernel at 50-83 (2026-11-29), while with Numba's two
threads against one BLAS thread (the training command's setting) the kernel won. A rule fixed in
the source is right for one of the two at best.

Editing a kernel? Numba's on-disk cache (``cache=True``; NUMBA_CACHE_DIR, or ``__pycache__``)
notices a change only in the file of the function it cached, not in the helpers it calls from
other files (``fast_exp``, ``block_nt``): after editing one of those, delete the cache.
"""

from __future__ import annotations

import os

# Numba's parallel loops run on OpenMP threads, which by default keep spinning for a while after
# each loop, waiting for the next one. Between two kernels the model runs NumPy code on the main
# thread; the spinning threads take the cores from it (and from other processes). Measured on
# the 2-core machine of benchmarks/README.md, one toy training step took 1.9 s with spinning
# threads and 0.73 s with sleeping ones. So, unless the user chose otherwise, idle threads sleep.
# (This must happen before Numba starts its thread pool, i.e. before the first kernel runs.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402
import numpy as np  # noqa: E402

from miniclip.kernels.checks import (  # noqa: E402
    check_half_linear_args,
    check_linear_args,
    float_dtype,
    same_dtype,
    same_half_dtype,
)
from miniclip.kernels.dtypes import is_half  # noqa: E402
from miniclip.kernels.memory import keep_freed_memory  # noqa: E402
from miniclip.kernels.numba import attention as numba_attention
from miniclip.kernels.numba import elementwise as numba_elementwise
from miniclip.kernels.numba import (
    halfconv,  # noqa: E402
    routing,
)
from miniclip.kernels.numba import matmul as numba_matmul  # noqa: E402

# Freed arrays stay in the heap for the next step's arrays (no page faults on fresh pages):
# kernels/memory.py. MINICLIP_KEEP_FREED_MEMORY=0 turns it off.
keep_freed_memory()

MATMUL_CHOICES = ("auto", "kernel", "blas")
DEFAULT_MATMUL = os.environ.get("MINICLIP_MATMUL", "auto")
if DEFAULT_MATMUL not in MATMUL_CHOICES:
    raise ValueError(f"MINICLIP_MATMUL must be one of {MATMUL_CHOICES}, got {DEFAULT_MATMUL!r}")
_options = {"matmul": DEFAULT_MATMUL, "fused": True}

# Mixed precision (kernels/mixed.py) widens every 16-bit input to float32 before calling an op,
# except the arguments listed here, which the op reads in 16 bits itself: linear_forward's x,
# widened row block by row block inside the matmul (matmul.matmul_nt_half), and
# attention_forward's q, k, v, widened head by head (attention.attention_forward_kernel_half).
READS_16_BIT = {"linear_forward": (0,), "attention_forward": (0, 1, 2)}
# ... and the backward ops that read a 16-bit dout themselves, with the 16-bit activations their
# forward kept: linear_backward (dx through matmul_nt_half, dW through matmul.weight_grad_half)
# and attention_backward (attention.attention_backward_kernel_half). No float32 copy of dout,
# x or q, k, v is made for them.
BACKWARD_READS_16_BIT = ("linear_backward", "attention_backward")


def configure(matmul: str | None = None, handwritten_matmul: bool | None = None,
              fused: bool | None = None) -> dict:
    """Set how products are routed: "auto" (measured, the default), "kernel" or "blas".
    ``handwritten_matmul=True`` is ``matmul="kernel"``, False is "auto". ``fused=False`` makes
    the model use only the plain ops (backend.fused then offers none; for comparisons).
    Returns the previous options, so ``configure(**old)`` restores them."""
    if fused is not None and not isinstance(fused, bool):
        raise TypeError(f"fused must be a bool, got {type(fused).__name__}")
    if handwritten_matmul is not None:
        if not isinstance(handwritten_matmul, bool):
            raise TypeError(f"handwritten_matmul must be a bool, got "
                            f"{type(handwritten_matmul).__name__}")
        if matmul is not None:
            raise ValueError("give matmul or handwritten_matmul, not both")
        matmul = "kernel" if handwritten_matmul else "auto"
    if matmul is not None and matmul not in MATMUL_CHOICES:
        raise ValueError(f"matmul must be one of {MATMUL_CHOICES}, got {matmul!r}")
    old = dict(_options)
    if matmul is not None:
        _options["matmul"] = matmul
    if fused is not None:
        _options["fused"] = fused
    return old


def options() -> dict:
    """The options in force (a copy)."""
    return dict(_options)


def _use_blas(kind, m, n, k, dtype, kernel, blas):
    """True to compute this product with BLAS. ``kernel`` and ``blas`` compute it each way;
    routing.py calls them (a few times) the first time this machine meets the product."""
    if _options["matmul"] != "auto":
        return _options["matmul"] == "blas"
    b = routing.bucket  # the sizes a batch sets (rows; heads and tokens), rounded up
    m, n, k = {"forward": (b(m), n, k), "dx": (b(m), n, k), "dw": (m, n, b(k))}.get(
        kind, (b(m), b(n), k))  # attention: (B*H, T, D)
    key = (kind, np.dtype(dtype).name, m, n, k, numba.get_num_threads())
    return routing.routes().choose(key, kernel=kernel, blas=blas) == "blas"


# ---- argument checks ---------------------------------------------------------------------

# Copies made to hand a kernel C-contiguous arrays: each is a pass over memory the kernel's own
# work does not need. Counted, so that benchmarks and tests can see them (bench_vs_torch.py
# prints them per step; tests/test_fused_kernels.py holds the fused path to its count).
copies = {"arrays": 0, "bytes": 0}


def _contiguous(a):
    if a.flags.c_contiguous and a.ndim > 0:
        return a
    copies["arrays"] += 1
    copies["bytes"] += a.nbytes
    return np.ascontiguousarray(a)


def _n_threads():
    return numba.get_num_threads()


# ---- linear ------------------------------------------------------------------------------

def linear_forward(x, w, b=None):
    """x: (..., C_in), w: (C_out, C_in), b: (C_out,) or None -> out: (..., C_out).

    cache = (x2d, w, has_bias, x.shape): x flattened to (M, C_in), as the reference keeps x.
    A bfloat16/float16 x (with float32 w and b) is read in 16 bits: see _linear_forward_half.
    """
    if isinstance(x, np.ndarray) and is_half(x.dtype):
        return _linear_forward_half(x, w, b)
    dtype = check_linear_args(x, w, b)
    x2d = _contiguous(x.reshape(-1, x.shape[-1]))  # (M, C_in)
    w = _contiguous(w)
    M, K = x2d.shape
    N = w.shape[0]
    bias = _contiguous(b) if b is not None else np.zeros(N, dtype)

    def by_blas():
        out = x2d @ w.T  # (M, N)
        if b is not None:
            out += bias
        return out

    def by_kernel():
        out = np.empty((M, N), dtype)
        numba_matmul.matmul_nt(x2d, w, bias, out)
        return out

    out = by_blas() if _use_blas("forward", M, N, K, dtype, by_kernel, by_blas) else by_kernel()
    return out.reshape(*x.shape[:-1], N), (x2d, w, b is not None, x.shape)


def _linear_forward_half(x, w, b):
    """x (..., C_in) bfloat16 or float16, w (C_out, C_in) float32, b (C_out,) float32 or None
    -> out (..., C_out) float32 with float32 sums; cache holds x in 16 bits (it is not copied)."""
    check_half_linear_args(x, w, b)
    x2d = _contiguous(x.reshape(-1, x.shape[-1]))  # (M, C_in), 16-bit
    N = w.shape[0]
    out = np.empty((x2d.shape[0], N), np.float32)
    bias = _contiguous(b) if b is not None else np.zeros(N, np.float32)
    numba_matmul.matmul_nt_half(x2d.view(np.uint16), halfconv.widen_table(x.dtype),
                                _contiguous(w), bias, out)
    return out.reshape(*x.shape[:-1], N), (x2d, w, b is not None, x.shape)


def _widen_if_half(a):
    return halfconv.widen(a, a.dtype) if isinstance(a, np.ndarray) and is_half(a.dtype) else a


def linear_backward(dout, cache):
    """dout: (..., C_out) -> dx (..., C_in), dw (C_out, C_in), db (C_out,) or None.
    A 16-bit dout with the 16-bit x its forward kept: read in 16 bits (_linear_backward_half)."""
    x2d, w, has_bias, x_shape = cache
    if is_half(x2d.dtype) and getattr(dout, "dtype", None) == x2d.dtype:
        return _linear_backward_half(dout, cache)
    x2d, dout = _widen_if_half(x2d), _widen_if_half(dout)  # one of them 16-bit: widened
    same_dtype(x2d.dtype, dout=dout)
    N, K = w.shape
    if dout.shape != (*x_shape[:-1], N):
        raise ValueError(f"dout must have shape {(*x_shape[:-1], N)}, got {dout.shape}")
    dout2d = _contiguous(dout.reshape(-1, N))  # (M, C_out)
    M = dout2d.shape[0]
    dtype = x2d.dtype
    # dx = dout @ W   (undoes out = x @ W^T)
    def dx_by_blas():
        return dout2d @ w  # (M, K)

    def dx_by_kernel():
        dx = np.empty((M, K), dtype)
        w_t = np.empty((K, N), dtype)
        numba_matmul.transpose(w, w_t)
        numba_matmul.matmul_nt(dout2d, w_t, np.zeros(K, dtype), dx)
        return dx

    dx = (dx_by_blas() if _use_blas("dx", M, K, N, dtype, dx_by_kernel, dx_by_blas)
          else dx_by_kernel())

    # dW = dout^T @ x, db = column sums of dout   (b was broadcast over the M rows)
    def dw_by_blas():
        return dout2d.T @ x2d, dout2d.sum(axis=0)  # (N, K), (N,)

    def dw_by_kernel():
        dw, db = np.empty((N, K), dtype), np.empty(N, dtype)
        numba_matmul.weight_grad(dout2d, x2d, dw, db, _n_threads())
        return dw, db

    dw, db = (dw_by_blas() if _use_blas("dw", N, K, M, dtype, dw_by_kernel, dw_by_blas)
              else dw_by_kernel())
    return dx.reshape(x_shape), dw, (db if has_bias else None)


def _linear_backward_half(dout, cache):
    """linear_backward for a bfloat16/float16 dout and x (the forward's 16-bit x, kept in its
    cache): dx, dw, db float32, every sum in float32, bit for bit the float32 kernels' results
    on the widened arrays; neither dout nor x is copied to float32 whole."""
    x2d, w, has_bias, x_shape = cache
    N, K = w.shape
    if dout.shape != (*x_shape[:-1], N):
        raise ValueError(f"dout must have shape {(*x_shape[:-1], N)}, got {dout.shape}")
    dout_bits = _contiguous(dout.reshape(-1, N)).view(np.uint16)  # (M, C_out)
    table = halfconv.widen_table(dout.dtype)
    M = dout_bits.shape[0]
    w_t = np.empty((K, N), np.float32)
    numba_matmul.transpose(_contiguous(w), w_t)
    dx = np.empty((M, K), np.float32)
    numba_matmul.matmul_nt_half(dout_bits, table, w_t, np.zeros(K, np.float32), dx)  # dy W
    dw, db = np.empty((N, K), np.float32), np.empty(N, np.float32)
    numba_matmul.weight_grad_half(dout_bits, x2d.view(np.uint16), table, dw, db, _n_threads())
    return dx.reshape(x_shape), dw, (db if has_bias else None)


# ---- LayerNorm ---------------------------------------------------------------------------

def layernorm_forward(x, w, b, eps):
    """x: (..., C), w: (C,), b: (C,) -> out (..., C). cache = (xhat (M, C), rstd (M,), w, shape)."""
    dtype = float_dtype("x", x)
    same_dtype(dtype, w=w, b=b)
    C = x.shape[-1]
    if w.shape != (C,) or b.shape != (C,):
        raise ValueError(f"w and b must have shape ({C},), got {w.shape} and {b.shape}")
    x2d = _contiguous(x.reshape(-1, C))
    out, xhat = np.empty_like(x2d), np.empty_like(x2d)
    rstd = np.empty(x2d.shape[0], dtype)
    numba_elementwise.layernorm_forward_kernel(x2d, _contiguous(w), _contiguous(b), float(eps),
                                               out, xhat, rstd)
    return out.reshape(x.shape), (xhat, rstd, _contiguous(w), x.shape)


def layernorm_backward(dout, cache):
    """dout: (..., C) -> dx (..., C), dw (C,), db (C,)."""
    xhat, rstd, w, x_shape = cache
    same_dtype(xhat.dtype, dout=dout)
    if dout.shape != x_shape:
        raise ValueError(f"dout must have shape {x_shape}, got {dout.shape}")
    dout2d = _contiguous(dout.reshape(xhat.shape))
    n_parts = max(1, min(_n_threads(), xhat.shape[0]))
    partial_dw = np.zeros((n_parts, xhat.shape[1]), xhat.dtype)
    partial_db = np.zeros((n_parts, xhat.shape[1]), xhat.dtype)
    dx = np.empty_like(dout2d)
    numba_elementwise.layernorm_backward_kernel(dout2d, xhat, rstd, w, dx, partial_dw, partial_db)
    return dx.reshape(x_shape), partial_dw.sum(axis=0), partial_db.sum(axis=0)


# ---- activations -------------------------------------------------------------------------

def _elementwise_forward(kernel, x):
    float_dtype("x", x)
    flat = _contiguous(x).reshape(-1)
    out = np.empty_like(flat)
    kernel(flat, out)
    return out.reshape(x.shape), (flat, x.shape)


def _elementwise_backward(kernel, dout, cache):
    flat, shape = cache
    same_dtype(flat.dtype, dout=dout)
    if dout.shape != shape:
        raise ValueError(f"dout must have shape {shape}, got {dout.shape}")
    dx = np.empty_like(flat)
    kernel(_contiguous(dout).reshape(-1), flat, dx)
    return dx.reshape(shape)


def quick_gelu_forward(x):
    """out = x * sigmoid(1.702 x). cache = (x flattened, shape): the sigmoid is recomputed."""
    return _elementwise_forward(numba_elementwise.quick_gelu_forward_kernel, x)


def quick_gelu_backward(dout, cache):
    return _elementwise_backward(numba_elementwise.quick_gelu_backward_kernel, dout, cache)


def gelu_forward(x):
    """out = x * Phi(x). cache = (x flattened, shape): Phi is recomputed."""
    return _elementwise_forward(numba_elementwise.gelu_forward_kernel, x)


def gelu_backward(dout, cache):
    return _elementwise_backward(numba_elementwise.gelu_backward_kernel, dout, cache)


# ---- attention ---------------------------------------------------------------------------

def attention_forward(q, k, v, causal=False):
    """q, k, v: (B, H, T, D) -> out (B, H, T, D).

    cache = (q, k, v as contiguous copies, lse (B, H, T), causal): the probabilities are
    recomputed in backward from the log-sum-exp (see numba_attention for why). 16-bit q, k, v
    (one format) are read in 16 bits and kept so in the cache; out and lse are float32.
    """
    if isinstance(q, np.ndarray) and is_half(q.dtype):
        return _attention_forward_half(q, k, v, causal)
    dtype = float_dtype("q", q)
    same_dtype(dtype, k=k, v=v)
    if q.ndim != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q, k, v must all be (B, H, T, D), got {q.shape}, {k.shape}, {v.shape}")
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"causal must be a bool, got {type(causal).__name__}")
    q, k, v = _contiguous(q), _contiguous(k), _contiguous(v)
    out = np.empty_like(q)
    lse = np.empty(q.shape[:3], dtype)
    numba_attention.attention_forward_kernel(q, k, v, bool(causal), out, lse)
    return out, (q, k, v, lse, bool(causal))


def _attention_forward_half(q, k, v, causal):
    same_half_dtype(q, k=k, v=v)
    if q.ndim != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q, k, v must all be (B, H, T, D), got {q.shape}, {k.shape}, {v.shape}")
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"causal must be a bool, got {type(causal).__name__}")
    q, k, v = _contiguous(q), _contiguous(k), _contiguous(v)  # (B, H, T, D), 16-bit
    out = np.empty(q.shape, np.float32)
    lse = np.empty(q.shape[:3], np.float32)
    numba_attention.attention_forward_kernel_half(
        q.view(np.uint16), k.view(np.uint16), v.view(np.uint16), halfconv.widen_table(q.dtype),
        bool(causal), out, lse)
    return out, (q, k, v, lse, bool(causal))


def attention_backward(dout, cache):
    """dout: (B, H, T, D) -> dq, dk, dv, each (B, H, T, D)."""
    q, k, v, lse, causal = cache
    if dout.shape != q.shape:
        raise ValueError(f"dout must have shape {q.shape}, got {dout.shape}")
    if is_half(q.dtype) and getattr(dout, "dtype", None) == q.dtype:  # all four in 16 bits
        dq, dk, dv = (np.empty(q.shape, np.float32) for _ in range(3))
        numba_attention.attention_backward_kernel_half(
            *(_contiguous(a).view(np.uint16) for a in (dout, q, k, v)),
            halfconv.widen_table(q.dtype), lse, causal, dq, dk, dv)
        return dq, dk, dv
    q, k, v, dout = (_widen_if_half(a) for a in (q, k, v, dout))  # a mix: widened
    same_dtype(q.dtype, dout=dout)
    dq, dk, dv = np.empty_like(q), np.empty_like(q), np.empty_like(q)
    numba_attention.attention_backward_kernel(_contiguous(dout), q, k, v, lse, causal, dq, dk, dv)
    return dq, dk, dv


__all__ = [
    "attention_backward", "attention_forward", "configure", "gelu_backward", "gelu_forward",
    "layernorm_backward", "layernorm_forward", "linear_backward", "linear_forward", "options",
    "quick_gelu_backward", "quick_gelu_forward",
]
