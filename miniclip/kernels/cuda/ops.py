"""The "cuda" backend: every op of ``backend.OPS`` computed by the numba-cuda kernels.

    >>> import numpy as np
    >>> from miniclip import backend
    >>> x, w = np.ones((2, 3)), np.ones((4, 3))
    >>> with backend.use_backend("cuda"):        # on a GPU, or in the simulator
    ...     out, cache = backend.ops.linear_forward(x, w)
    >>> out
    array([[3., 3., 3., 3.],
           [3., 3., 3., 3.]])

Results live where the inputs live. The ops take NumPy arrays or ``DeviceArray``s (device/array.py:
arrays in GPU memory that NumPy's functions dispatch to), with the signatures of the NumPy
reference:

* If any array argument is a DeviceArray (or, for a backward, the forward's inputs were), every
  result is a DeviceArray and nothing is copied to the host. A model whose parameters are
  DeviceArrays (``backend.to_device(model.params)``) therefore keeps its whole training step on
  the GPU: the composite layers' NumPy lines (residual sums, head splits, concatenations, the
  loss, AdamW) run as DeviceArray kernels too. The host sees the loss (``float``), and what a
  person asks for: ``encode_image``/``encode_text`` results, ``state_dict``, checkpoints.
* With NumPy arguments (a model with host parameters), each op uploads its inputs and downloads
  its results: a drop-in replacement for the CPU backends, simple and slow. To keep a step on
  the GPU, put the parameters there (above); nothing in this path tries to save copies.

The copies of the NumPy path, per op:

    op                    host -> device                          device -> host
    linear_forward        x, w, b                                 out
    linear_backward       dout                                    dx, dw, db
    layernorm_forward     x, w, b                                 out
    layernorm_backward    dout                                    dx, dw, db
    *gelu_forward         x                                       out
    *gelu_backward        dout                                    dx
    attention_forward     q, k, v (host copies first: see below)  out
    attention_backward    dout (host copy first)                  dq, dk, dv

Backward uploads nothing its forward uploaded: the caches are backend-private and hold *device*
arrays (x, w, LayerNorm's mean and 1/std, q, k, v, out and attention's log-sum-exp). The head
split of attention hands over transposed views; they are made contiguous on the host
(``np.ascontiguousarray``) before the upload: counted as ``host_copies``.

``transfer_stats()`` counts every copy, on both paths.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
from numba import cuda

from miniclip.kernels.checks import (
    check_half_linear_args,
    check_linear_args,
    float_dtype,
    same_dtype,
    same_half_dtype,
)
from miniclip.kernels.cuda import attention as cuda_attention
from miniclip.kernels.cuda import elementwise as cuda_elementwise
from miniclip.kernels.cuda import matmul as cuda_matmul
from miniclip.kernels.cuda.common import (
    HALF_BITS,
    SIMULATOR,
    TRANSFER_KEYS,
    TRANSFERS,
    Tiles,
    count_transfer,
    set_tiles,
    tiles,
    widen_table,
)
from miniclip.kernels.cuda.device.array import DeviceArray, to_device
from miniclip.kernels.dtypes import is_half

ARRAY_TYPES = (np.ndarray, DeviceArray)  # what the ops take

# Mixed precision (kernels/mixed.py) widens every bfloat16/float16 input to float32 on the host
# before calling an op, except the arguments listed here: linear_forward's x and
# attention_forward's q, k, v go to the GPU as 16-bit patterns (half the bytes) and the kernels
# widen each number as they load it (common.element_readers). The caches keep them in 16 bits,
# and the backward kernels read them so too; every sum is float32.
READS_16_BIT = {"linear_forward": (0,), "attention_forward": (0, 1, 2)}

__all__ = [
    "attention_backward", "attention_forward", "configure", "gelu_backward", "gelu_forward",
    "layernorm_backward", "layernorm_forward", "linear_backward", "linear_forward",
    "quick_gelu_backward", "quick_gelu_forward", "reset_transfer_stats", "tiles", "to_device",
    "transfer_stats", "DeviceArray",
]

if not SIMULATOR and not cuda.is_available():
    raise RuntimeError(
        "the cuda backend needs an NVIDIA GPU with its driver, and numba.cuda finds none. "
        "To run the kernels without a GPU, in numba's CUDA simulator (slow: a Python thread per "
        "CUDA thread), set NUMBA_ENABLE_CUDASIM=1 before numba is first imported.")

# ----- settings -----

_OPTIONS = tuple(f.name for f in dataclasses.fields(Tiles))


def configure(**options) -> dict:
    """Set launch sizes (the fields of ``Tiles``: matmul_block, matmul_depth, matmul_micro,
    attention_block, threads). Returns the previous values of the options given, so
    ``configure(**old)`` undoes the call (``use_backend("cuda", **options)`` does that on exit).
    """
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ValueError(f"unknown cuda backend options {unknown}; options are {_OPTIONS}")
    old = {name: getattr(tiles(), name) for name in options}
    set_tiles(dataclasses.replace(tiles(), **options))  # validates the sizes
    return old


# ----- host <-> device, counted -----

def transfer_stats() -> dict:
    """Copies since the last reset: count and bytes host->device and device->host, host-side
    copies made to get a contiguous array to upload. Counts the DeviceArray operations' copies
    too."""
    return dict(TRANSFERS)


def reset_transfer_stats() -> None:
    TRANSFERS.update(dict.fromkeys(TRANSFER_KEYS, 0))


def _upload(array, shape=None):
    """NumPy array or DeviceArray -> numba device array, C-contiguous, reshaped to ``shape`` if
    given. A DeviceArray is already there (a non-contiguous view is copied on the device)."""
    if isinstance(array, DeviceArray):
        if shape is not None:
            array = array.reshape(shape)  # a contiguous result (copied on the device if need be)
        return array.contiguous().device_view()
    if not array.flags.c_contiguous:  # a transposed view, say: copy it on the host first
        array = np.ascontiguousarray(array)
        count_transfer("host_copies", array.nbytes)
    if shape is not None:
        array = array.reshape(shape)  # a view: the array is contiguous
    count_transfer("host_to_device", array.nbytes)
    return cuda.to_device(array)


def _download(device_array, shape, on_device=False):
    """Device array -> a result of ``shape``: a DeviceArray if ``on_device``, else a new NumPy
    array."""
    if on_device:
        return DeviceArray.wrap(device_array).reshape(shape)
    count_transfer("device_to_host", device_array.nbytes)
    return device_array.copy_to_host().reshape(shape)


def _any_on_device(*arrays):
    return any(isinstance(a, DeviceArray) for a in arrays)


# ----- argument checks -----

def _check_dout(dout, shape, dtype):
    float_dtype("dout", dout, ARRAY_TYPES)
    if dout.shape != tuple(shape) or dout.dtype != dtype:
        raise ValueError(f"dout must be {tuple(shape)} {dtype} like the forward's output, "
                         f"got {dout.shape} {dout.dtype}")


def _check_cache(cache, kind, op):
    if not isinstance(cache, kind):
        raise TypeError(f"cache must come from the cuda backend's {op}, "
                        f"got {type(cache).__name__}")


# ----- linear -----

class _LinearCache(NamedTuple):
    x: object  # (M, C_in) device
    w: object  # (C_out, C_in) device
    has_bias: bool
    x_shape: tuple  # (..., C_in)
    on_device: bool  # the forward had DeviceArray inputs: backward returns DeviceArrays
    half: object = None  # x's 16-bit dtype when x is kept as 16-bit patterns (uint16)


def _is_half_host(a):
    return isinstance(a, np.ndarray) and is_half(a.dtype)


def _upload_half(a, shape):
    """A bfloat16/float16 host array -> its bit patterns on the device (uint16, ``shape``)."""
    return _upload(a.view(HALF_BITS), shape)


def _linear_forward_half(x, w, b):
    """x (..., C_in) bfloat16/float16 on the host, w, b float32 -> out (..., C_out) float32."""
    check_half_linear_args(x, w, b, ARRAY_TYPES)
    on_device = _any_on_device(w, b)
    x_dev, w_dev = _upload_half(x, (-1, w.shape[1])), _upload(w)  # x as (M, C_in) uint16
    b_dev = None if b is None else _upload(b)
    out_dev = cuda_matmul.matmul(x_dev, w_dev, b_dev, transpose_b=True, tiles=tiles(),
                                 half_table=widen_table(x.dtype))
    out = _download(out_dev, (*x.shape[:-1], w.shape[0]), on_device)
    return out, _LinearCache(x_dev, w_dev, b is not None, x.shape, on_device, x.dtype)


def linear_forward(x, w, b=None):
    """x: (..., C_in), w: (C_out, C_in), b: (C_out,) or None -> out: (..., C_out).
    A bfloat16/float16 x (with float32 w, b) is read in 16 bits: see READS_16_BIT."""
    if _is_half_host(x):
        return _linear_forward_half(x, w, b)
    check_linear_args(x, w, b, ARRAY_TYPES)
    on_device = _any_on_device(x, w, b)
    x_dev, w_dev = _upload(x, (-1, w.shape[1])), _upload(w)  # x as (M, C_in)
    b_dev = None if b is None else _upload(b)
    out_dev = cuda_matmul.matmul(x_dev, w_dev, b_dev, transpose_b=True, tiles=tiles())
    out = _download(out_dev, (*x.shape[:-1], w.shape[0]), on_device)
    return out, _LinearCache(x_dev, w_dev, b is not None, x.shape, on_device)


def linear_backward(dout, cache):
    """dout: (..., C_out) -> dx (..., C_in), dw (C_out, C_in), db (C_out,) or None."""
    _check_cache(cache, _LinearCache, "linear_forward")
    C_out, C_in = cache.w.shape
    _check_dout(dout, (*cache.x_shape[:-1], C_out), cache.w.dtype)
    on_device = cache.on_device or _any_on_device(dout)
    dout_dev = _upload(dout, (-1, C_out))  # (M, C_out)
    table = None if cache.half is None else widen_table(cache.half)  # x in 16 bits
    dx = cuda_matmul.matmul(dout_dev, cache.w, tiles=tiles())  # dy @ W
    dw = cuda_matmul.matmul(dout_dev, cache.x, transpose_a=True, tiles=tiles(),
                            half_table=table)  # dy^T @ x
    db = (_download(cuda_elementwise.column_sum(dout_dev, tiles()), C_out, on_device)
          if cache.has_bias else None)
    return (_download(dx, cache.x_shape, on_device),
            _download(dw, (C_out, C_in), on_device), db)


# ----- LayerNorm -----

class _LayerNormCache(NamedTuple):
    x: object  # (R, C) device
    w: object  # (C,) device
    mean: object  # (R,) device
    rstd: object  # (R,) device
    x_shape: tuple
    on_device: bool


def layernorm_forward(x, w, b, eps):
    """x: (..., C), w, b: (C,) -> out: (..., C). LayerNorm over the last axis."""
    dtype = float_dtype("x", x, ARRAY_TYPES)
    same_dtype(dtype, ARRAY_TYPES, w=w, b=b)
    on_device = _any_on_device(x, w, b)
    if x.ndim < 1 or w.shape != x.shape[-1:] or b.shape != x.shape[-1:]:  # (C,) each
        raise ValueError(f"w and b must be {x.shape[-1:]} for x of shape {x.shape}, "
                         f"got {w.shape} and {b.shape}")
    x_dev = _upload(x, (-1, x.shape[-1]))  # (R, C)
    w_dev = _upload(w)
    out_dev, mean, rstd = cuda_elementwise.layernorm_forward(x_dev, w_dev, _upload(b), eps,
                                                             tiles())
    out = _download(out_dev, x.shape, on_device)
    return out, _LayerNormCache(x_dev, w_dev, mean, rstd, x.shape, on_device)


def layernorm_backward(dout, cache):
    """dout: (..., C) -> dx (..., C), dw (C,), db (C,)."""
    _check_cache(cache, _LayerNormCache, "layernorm_forward")
    _check_dout(dout, cache.x_shape, cache.x.dtype)
    on_device = cache.on_device or _any_on_device(dout)
    dout_dev = _upload(dout, cache.x.shape)
    dx, dw, db = cuda_elementwise.layernorm_backward(dout_dev, cache.x, cache.w, cache.mean,
                                                     cache.rstd, tiles())
    C = cache.x_shape[-1]
    return (_download(dx, cache.x_shape, on_device), _download(dw, C, on_device),
            _download(db, C, on_device))


# ----- activations -----

class _ActivationCache(NamedTuple):
    name: str
    x: object  # (n,) device, the flattened input
    x_shape: tuple
    on_device: bool


def _activation_forward(name, x):
    float_dtype("x", x, ARRAY_TYPES)
    on_device = _any_on_device(x)
    x_dev = _upload(x, x.size)
    out = cuda_elementwise.activation_forward(name, x_dev, tiles())
    return (_download(out, x.shape, on_device),
            _ActivationCache(name, x_dev, x.shape, on_device))


def _activation_backward(name, dout, cache):
    _check_cache(cache, _ActivationCache, f"{name}_forward")
    if cache.name != name:
        raise TypeError(f"cache must come from {name}_forward, got one from {cache.name}_forward")
    _check_dout(dout, cache.x_shape, cache.x.dtype)
    on_device = cache.on_device or _any_on_device(dout)
    dx = cuda_elementwise.activation_backward(name, _upload(dout, dout.size), cache.x, tiles())
    return _download(dx, cache.x_shape, on_device)


def quick_gelu_forward(x):
    """out = x * sigmoid(1.702 x), any shape."""
    return _activation_forward("quick_gelu", x)


def quick_gelu_backward(dout, cache):
    return _activation_backward("quick_gelu", dout, cache)


def gelu_forward(x):
    """Exact GELU: out = x * Phi(x), any shape."""
    return _activation_forward("gelu", x)


def gelu_backward(dout, cache):
    return _activation_backward("gelu", dout, cache)


# ----- attention -----

class _AttentionCache(NamedTuple):
    q: object  # (BH, T, D) device, as are k, v, out
    k: object
    v: object
    out: object
    lse: object  # (BH, T) device: the row log-sum-exp, all backward keeps of the softmax
    causal: bool
    shape: tuple  # (B, H, T, D)
    on_device: bool
    half: object = None  # the 16-bit dtype when q, k, v are kept as 16-bit patterns (uint16)


def attention_forward(q, k, v, causal=False):
    """q, k, v: (B, H, T, D) -> out: (B, H, T, D); softmax(q k^T / sqrt(D) [+ causal mask]) v.
    bfloat16/float16 q, k, v (one format) are read in 16 bits, out is float32: READS_16_BIT."""
    half = q.dtype if _is_half_host(q) else None
    if half is not None:
        same_half_dtype(q, k=k, v=v)
    else:
        dtype = float_dtype("q", q, ARRAY_TYPES)
        same_dtype(dtype, ARRAY_TYPES, k=k, v=v)
    on_device = _any_on_device(q, k, v)
    if q.ndim != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q, k, v must be one (B, H, T, D) shape, got {q.shape}, {k.shape}, "
                         f"{v.shape}")
    if q.shape[-1] == 0:
        raise ValueError(f"the head size D must be at least 1, got q of shape {q.shape}")
    B, H, T, D = q.shape
    upload = _upload if half is None else _upload_half
    q_dev, k_dev, v_dev = (upload(a, (B * H, T, D)) for a in (q, k, v))
    table = None if half is None else widen_table(half)
    out_dev, lse = cuda_attention.flash_attention_forward(q_dev, k_dev, v_dev, bool(causal),
                                                          tiles(), half_table=table)
    cache = _AttentionCache(q_dev, k_dev, v_dev, out_dev, lse, bool(causal), q.shape, on_device,
                            half)
    return _download(out_dev, q.shape, on_device), cache


def attention_backward(dout, cache):
    """dout: (B, H, T, D) -> dq, dk, dv, each (B, H, T, D)."""
    _check_cache(cache, _AttentionCache, "attention_forward")
    _check_dout(dout, cache.shape, cache.out.dtype)
    on_device = cache.on_device or _any_on_device(dout)
    dout_dev = _upload(dout, cache.q.shape)
    table = None if cache.half is None else widen_table(cache.half)
    grads = cuda_attention.flash_attention_backward(dout_dev, cache.q, cache.k, cache.v,
                                                    cache.out, cache.lse, cache.causal, tiles(),
                                                    half_table=table)
    return tuple(_download(g, cache.shape, on_device) for g in grads)
