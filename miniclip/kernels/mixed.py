"""Mixed precision for every backend: 16-bit arrays in and out, float32 arithmetic inside.

When any array handed to an op is bfloat16 or float16, ``mixed_op`` below

1. widens the 16-bit inputs to float32 (exact: every 16-bit number is a float32),
2. runs the backend's own float32 op on them, so every product and every sum (matmul, LayerNorm
   mean and variance, softmax normaliser, bias and weight gradients) accumulates in float32,
3. rounds the *activations* it returns (forward outputs, and the input gradients dx, dq, dk, dv
   of a backward) to the 16-bit format, once, to nearest,
4. keeps the *weight gradients* (dw, db) in float32: they are sums over the whole batch and feed
   the float32 master weights of train/precision.py,
5. stores in the cache, in 16 bits, every array that is just a 16-bit input seen again (x and w
   of a linear layer, q, k, v of attention), and in float32 what was computed (LayerNorm's xhat
   and 1/std, attention's probabilities or log-sum-exp): the activations kept for backward are
   what mixed precision saves memory on; statistics stay exact.

That is what PyTorch's autocast and a tensor core do: 16-bit operands, float32 accumulators.

The fused ops of a backend (backend.FUSED_OPS, kernels/numba/fused_ops.py) are not wrapped:
``backend.fused`` offers none when an array is 16-bit, and the model then composes the plain
ops, which this module wraps, so a 16-bit step computes exactly what it did before they existed.

Why widen first rather than compute in 16 bits? NumPy's float16 matmul has no BLAS behind it: it
runs at about 0.1-0.5 GFLOP/s (measured on the 2-core machine of benchmarks/README.md, a
256 x 256 x 256 product on one thread: 0.09 GFLOP/s against 75 for float32). ml_dtypes' bfloat16
matmul is fast (52 GFLOP/s there) but says nothing of how it accumulates, and the element-wise
ufuncs of both formats convert every number to float32 and back. So the reference backend
upcasts per op, for both formats the same way, and the float32 accumulation is then certain.

The Numba and CUDA backends take the same route, with one exception: a backend may list in
``READS_16_BIT`` the arguments its ops read in 16 bits themselves. The numba backend's
linear_forward reads x so (each thread widens its block of rows into a float32 buffer in L2,
kernels/numba/matmul.matmul_nt_half) and its attention_forward reads q, k, v so (each thread
widens its head): no float32 copy of those activations is made, and the caches keep them in 16
bits. Its ``BACKWARD_READS_16_BIT`` backward ops (linear, attention) read the 16-bit dout and
those cached activations the same way. Every other kernel is handed float32 copies made per op. The
conversions are Numba loops on the bits (kernels/numba/halfconv.py) where Numba
is installed: NumPy's float16 conversions alone made a float16 step 3x slower than its arithmetic.

    >>> import numpy as np
    >>> from miniclip.kernels.dtypes import bfloat16
    >>> def scale_forward(x, w):                    # a toy "op": out = x * w, cache = (x, w)
    ...     return x * w, (x, w)
    >>> op = mixed_op(scale_forward)
    >>> x = np.array([1.0, 3.0], bfloat16); w = np.array([1 / 3, 1 / 3], bfloat16)
    >>> out, cache = op(x, w)
    >>> out.dtype, type(cache).__name__
    (dtype(bfloat16), 'HalfCache')
"""

from __future__ import annotations

import functools

import numpy as np

from miniclip.kernels.dtypes import float32, is_half

try:  # exact conversions on the bits, 2-6x faster than NumPy's for float16 (see halfconv.py)
    from miniclip.kernels.numba.halfconv import narrow as _narrow_bits
    from miniclip.kernels.numba.halfconv import widen as _widen_bits
except ImportError:  # no Numba: NumPy's and ml_dtypes' astype, the same numbers
    _narrow_bits = _widen_bits = None


def to_float32(a):
    """A 16-bit array -> float32 (exact); anything else unchanged."""
    if not (isinstance(a, np.ndarray) and is_half(a.dtype)):
        return a
    if _widen_bits is not None:
        return _widen_bits(a, a.dtype)
    # C order (astype keeps a transposed view's order): a backend that needs C-contiguous input
    # then keeps this very array in its cache, which mixed_op stores back in 16 bits
    return a.astype(float32, order="C")


def to_half(a, dtype):
    """A float32 array -> the 16-bit ``dtype``, rounded to nearest, ties to even."""
    if _narrow_bits is not None and a.dtype == float32:
        return _narrow_bits(a, dtype)
    return a.astype(dtype)

# which results of a backward are activation gradients (rounded to 16 bits); the rest are
# parameter gradients, kept in float32. None: the backward returns one array, dx.
ACTIVATION_GRADS = {
    "linear_backward": (0,),  # dx, dw, db
    "layernorm_backward": (0,),  # dx, dw, db
    "attention_backward": (0, 1, 2),  # dq, dk, dv
    "quick_gelu_backward": None,
    "gelu_backward": None,
}


class HalfCache:
    """A backend's cache, with the arrays that were 16-bit inputs held in 16 bits (``_Half``)."""

    __slots__ = ("inner", "act_dtype")

    def __init__(self, inner, act_dtype):
        self.inner, self.act_dtype = inner, act_dtype


class _Half:
    """A cache entry kept in 16 bits; widened back to float32 for the backward."""

    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array


def _half_dtype(arrays):
    """The 16-bit dtype among the arrays (None if none). Two different 16-bit formats in one
    call is an error: nothing is converted between them silently."""
    found = {a.dtype for a in arrays if isinstance(a, np.ndarray) and is_half(a.dtype)}
    if len(found) > 1:
        raise TypeError(f"an op got arrays of two 16-bit formats, {sorted(map(str, found))}; "
                        "use one")
    return found.pop() if found else None


def _same_kind(cache, items):
    """A tuple like ``cache`` (a NamedTuple stays that NamedTuple: backends check their caches'
    types) holding ``items``."""
    return type(cache)(*items) if hasattr(cache, "_fields") else tuple(items)


def _narrow_cache(cache, widened, act_dtype):
    """Replace each float32 array of the cache that is (a view of) a widened 16-bit input by
    that input in 16 bits; leave everything else (computed statistics) as it is."""
    if isinstance(cache, tuple):
        return _same_kind(cache, [_narrow_cache(c, widened, act_dtype) for c in cache])
    if not isinstance(cache, np.ndarray) or cache.dtype != float32:
        return cache
    for wide, half in widened:
        if cache is wide:
            return _Half(half)  # the caller's own 16-bit array: no copy
        if np.may_share_memory(cache, wide):
            return _Half(to_half(cache, half.dtype))  # a reshaped view: exact in 16 bits
    return cache


def _widen_cache(cache):
    if isinstance(cache, tuple):
        return _same_kind(cache, [_widen_cache(c) for c in cache])
    if isinstance(cache, _Half):
        return to_float32(cache.array)
    return cache


def mixed_op(forward, reads_16_bit=()):
    """A forward op ``(arrays..., options...) -> (out, cache)`` that also takes 16-bit arrays
    (see the module docstring); float32/float64 calls go straight through. ``reads_16_bit``:
    positions of arguments the backend's op reads in 16 bits itself (not widened here)."""

    def op(*args, **kwargs):
        act_dtype = _half_dtype(args)
        if act_dtype is None:
            return forward(*args, **kwargs)
        wide_args = [a if i in reads_16_bit else to_float32(a) for i, a in enumerate(args)]
        widened = [(w, a) for w, a in zip(wide_args, args, strict=True) if w is not a]
        out, cache = forward(*wide_args, **kwargs)  # float32 arithmetic, float32 sums
        return to_half(out, act_dtype), HalfCache(_narrow_cache(cache, widened, act_dtype),
                                                act_dtype)

    return functools.wraps(forward)(op)  # name, docstring, and __wrapped__: the backend's op


def mixed_backward(backward, name, reads_16_bit=False):
    """The backward of a ``mixed_op``: widens the cache and dout, runs the float32 backward,
    rounds the activation gradients to the cache's 16-bit format, keeps the rest float32.
    ``reads_16_bit``: the backend's backward reads a 16-bit dout itself (not widened here)."""
    activation_grads = ACTIVATION_GRADS[name]

    def op(dout, cache):
        if not isinstance(cache, HalfCache):
            return backward(dout, cache)
        grads = backward(dout if reads_16_bit else to_float32(dout), _widen_cache(cache.inner))
        if activation_grads is None:  # one array: dx
            return to_half(grads, cache.act_dtype)
        return tuple(to_half(g, cache.act_dtype) if i in activation_grads and g is not None else g
                     for i, g in enumerate(grads))

    return functools.wraps(backward)(op)


def mixed_ops(module, names):
    """{name: op} for a backend module: every forward wrapped by mixed_op, every backward by
    mixed_backward. A module's ``READS_16_BIT`` ({op name: argument positions}) names the
    16-bit arguments its ops read themselves (the numba backend's linear_forward reads x)."""
    ops = {}
    reads_16_bit = getattr(module, "READS_16_BIT", {})
    backward_reads_16_bit = getattr(module, "BACKWARD_READS_16_BIT", ())
    for name in names:
        fn = getattr(module, name)
        ops[name] = (mixed_backward(fn, name, name in backward_reads_16_bit)
                     if name.endswith("_backward")
                     else mixed_op(fn, reads_16_bit.get(name, ())))
    return ops
