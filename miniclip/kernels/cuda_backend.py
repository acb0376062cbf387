"""The "cuda" backend: every op of ``kernels.OPS`` computed by the numba-cuda kernels.

    >>> from miniclip import kernels
    >>> with kernels.use_backend("cuda"):        # doctest: +SKIP  (needs a GPU or the simulator)
    ...     out, cache = kernels.ops.linear_forward(x, w, b)

Ops take and return NumPy arrays, with the signatures of the NumPy reference, because the
composite layers (self-attention, MLP, block, the model) do their reshapes, slices and residual
sums in NumPy between the ops. What crosses between host and device per op:

    op                       host -> device                       device -> host
    linear_forward           x, w, b                              out
    linear_backward          dout                                 dx, dw, db
    layernorm_forward        x, w, b                              out
    layernorm_backward       dout                                 dx, dw, db
    *gelu_forward            x                                    out
    *gelu_backward           dout                                 dx
    attention_forward        q, k, v                              out
    attention_backward       dout                                 dq, dk, dv

The caches are backend-private and hold *device* arrays (x, w, the LayerNorm mean and 1/std,
q, k, v, out and the attention log-sum-exp), so no backward pass uploads an input its forward
already uploaded. Inputs that are not C-contiguous (the head split of attention hands over
transposed views) are first copied on the host by ``np.ascontiguousarray``.

With ``configure(resident_weights=True)`` the weight and bias arguments (w, b of linear and
LayerNorm) are uploaded once and reused for as long as the same array object is passed and
``weights_updated()`` has not been called. That is for inference loops; a training loop that
turns it on must call ``weights_updated()`` after every optimizer step, since NumPy cannot tell
us that an array changed in place. It is off by default.

Keeping the activations on the device *between* ops would need the composite layers to be written
against an array library that has device arrays; that is not done, so every op boundary is a
round trip. ``transfer_stats()`` counts the copies, to measure it.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import NamedTuple

import numpy as np
from numba import cuda

from ..nn.layernorm import EPS
from . import cuda_attention, cuda_elementwise, cuda_matmul
from ._cuda_common import DEFAULT_TILES, FLOAT_DTYPES, SIMULATOR, SIMULATOR_TILES, Tiles

__all__ = [
    "attention_backward", "attention_forward", "configure", "gelu_backward", "gelu_forward",
    "layernorm_backward", "layernorm_forward", "linear_backward", "linear_forward",
    "quick_gelu_backward", "quick_gelu_forward", "reset_transfer_stats", "transfer_stats",
    "weights_updated",
]

if not SIMULATOR and not cuda.is_available():
    raise RuntimeError(
        "the cuda backend needs an NVIDIA GPU with its driver, and numba.cuda finds none. "
        "To run the kernels without a GPU, in numba's CUDA simulator (slow: a Python thread per "
        "CUDA thread), set NUMBA_ENABLE_CUDASIM=1 before numba is first imported.")

# ----- settings -----

_tiles: Tiles = SIMULATOR_TILES if SIMULATOR else DEFAULT_TILES
_resident_weights = False
_OPTIONS = tuple(f.name for f in dataclasses.fields(Tiles)) + ("resident_weights",)


def configure(**options) -> dict:
    """Set launch sizes (the fields of ``Tiles``: matmul_block, matmul_depth, matmul_micro,
    attention_block, threads) and ``resident_weights``. Returns the previous values of the
    options given, so ``configure(**old)`` undoes the call (``use_backend`` does that on exit).

    >>> old = configure(matmul_block=32)     # doctest: +SKIP
    """
    global _tiles, _resident_weights
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ValueError(f"unknown cuda backend options {unknown}; options are {_OPTIONS}")
    old = {name: (_resident_weights if name == "resident_weights" else getattr(_tiles, name))
           for name in options}
    tile_options = {k: v for k, v in options.items() if k != "resident_weights"}
    new_tiles = dataclasses.replace(_tiles, **tile_options)  # validates the sizes
    if "resident_weights" in options:
        if not isinstance(options["resident_weights"], bool):
            raise TypeError(f"resident_weights must be a bool, got {options['resident_weights']!r}")
        _resident_weights = options["resident_weights"]
        weights_updated()
    _tiles = new_tiles
    return old


def tiles() -> Tiles:
    """The launch sizes in use."""
    return _tiles


# ----- host <-> device, counted -----

_TRANSFER_KEYS = ("host_to_device", "host_to_device_bytes", "device_to_host",
                  "device_to_host_bytes", "host_copies", "host_copies_bytes")
_transfers = dict.fromkeys(_TRANSFER_KEYS, 0)


def transfer_stats() -> dict:
    """Copies since the last reset: count and bytes host->device, device->host, and host-side
    copies made to get a contiguous array for the upload."""
    return dict(_transfers)


def reset_transfer_stats() -> None:
    _transfers.update(dict.fromkeys(_TRANSFER_KEYS, 0))


def _upload(array, shape=None):
    """NumPy array -> new device array, C-contiguous, reshaped to ``shape`` if given."""
    if not array.flags.c_contiguous:  # a transposed view, say: copy it on the host first
        array = np.ascontiguousarray(array)
        _transfers["host_copies"] += 1
        _transfers["host_copies_bytes"] += array.nbytes
    if shape is not None:
        array = array.reshape(shape)  # a view: the array is contiguous
    _transfers["host_to_device"] += 1
    _transfers["host_to_device_bytes"] += array.nbytes
    return cuda.to_device(array)


def _download(device_array):
    """Device array -> new NumPy array."""
    _transfers["device_to_host"] += 1
    _transfers["device_to_host_bytes"] += device_array.nbytes
    return device_array.copy_to_host()


_resident: dict[int, tuple] = {}  # id(array) -> (weakref to the array, its device copy)


def weights_updated() -> None:
    """Forget the resident device copies of weights (call after changing weights in place)."""
    _resident.clear()


def _upload_weight(array):
    """Like _upload, but with resident_weights on, reuse the device copy of this same array."""
    if not _resident_weights:
        return _upload(array)
    key = id(array)
    entry = _resident.get(key)
    if entry is not None and entry[0]() is array:
        return entry[1]
    device_array = _upload(array)
    _resident[key] = (weakref.ref(array, lambda _, key=key: _resident.pop(key, None)),
                      device_array)
    return device_array


# ----- argument checks -----

def _check_float(name, array):
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(array).__name__}")
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {array.dtype}")
    return array.dtype


def _check_same_dtype(dtype, **arrays):
    for name, array in arrays.items():
        if _check_float(name, array) != dtype:
            raise TypeError(f"{name} must have the input's dtype {dtype}, got {array.dtype} "
                            "(nothing is cast silently)")


def _check_dout(dout, shape, dtype):
    _check_float("dout", dout)
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


def linear_forward(x, w, b=None):
    """x: (..., C_in), w: (C_out, C_in), b: (C_out,) or None -> out: (..., C_out)."""
    dtype = _check_float("x", x)
    _check_same_dtype(dtype, w=w)
    if x.ndim < 1:
        raise ValueError(f"x must have at least one axis (..., C_in), got shape {x.shape}")
    if w.ndim != 2 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"w must be (C_out, {x.shape[-1]}) for x of shape {x.shape}, "
                         f"got {w.shape}")
    if b is not None:
        _check_same_dtype(dtype, b=b)
        if b.shape != (w.shape[0],):
            raise ValueError(f"b must have shape ({w.shape[0]},), got {b.shape}")
    x_dev, w_dev = _upload(x, (-1, w.shape[1])), _upload_weight(w)  # x as (M, C_in)
    b_dev = None if b is None else _upload_weight(b)
    out_dev = cuda_matmul.matmul(x_dev, w_dev, b_dev, transpose_b=True, tiles=_tiles)
    out = _download(out_dev).reshape(*x.shape[:-1], w.shape[0])
    return out, _LinearCache(x_dev, w_dev, b is not None, x.shape)


def linear_backward(dout, cache):
    """dout: (..., C_out) -> dx (..., C_in), dw (C_out, C_in), db (C_out,) or None."""
    _check_cache(cache, _LinearCache, "linear_forward")
    C_out, C_in = cache.w.shape
    _check_dout(dout, (*cache.x_shape[:-1], C_out), cache.x.dtype)
    dout_dev = _upload(dout, (-1, C_out))  # (M, C_out)
    dx = cuda_matmul.matmul(dout_dev, cache.w, tiles=_tiles)  # dy @ W
    dw = cuda_matmul.matmul(dout_dev, cache.x, transpose_a=True, tiles=_tiles)  # dy^T @ x
    db = _download(cuda_elementwise.column_sum(dout_dev, _tiles)) if cache.has_bias else None
    return _download(dx).reshape(cache.x_shape), _download(dw), db


# ----- LayerNorm -----

class _LayerNormCache(NamedTuple):
    x: object  # (R, C) device
    w: object  # (C,) device
    mean: object  # (R,) device
    rstd: object  # (R,) device
    x_shape: tuple


def layernorm_forward(x, w, b, eps=EPS):
    """x: (..., C), w, b: (C,) -> out: (..., C). LayerNorm over the last axis."""
    dtype = _check_float("x", x)
    _check_same_dtype(dtype, w=w, b=b)
    if x.ndim < 1 or w.shape != x.shape[-1:] or b.shape != x.shape[-1:]:  # (C,) each
        raise ValueError(f"w and b must be {x.shape[-1:]} for x of shape {x.shape}, "
                         f"got {w.shape} and {b.shape}")
    x_dev = _upload(x, (-1, x.shape[-1]))  # (R, C)
    w_dev = _upload_weight(w)
    out_dev, mean, rstd = cuda_elementwise.layernorm_forward(x_dev, w_dev, _upload_weight(b), eps,
                                                             _tiles)
    return _download(out_dev).reshape(x.shape), _LayerNormCache(x_dev, w_dev, mean, rstd, x.shape)


def layernorm_backward(dout, cache):
    """dout: (..., C) -> dx (..., C), dw (C,), db (C,)."""
    _check_cache(cache, _LayerNormCache, "layernorm_forward")
    _check_dout(dout, cache.x_shape, cache.x.dtype)
    dout_dev = _upload(dout, cache.x.shape)
    dx, dw, db = cuda_elementwise.layernorm_backward(dout_dev, cache.x, cache.w, cache.mean,
                                                     cache.rstd, _tiles)
    return _download(dx).reshape(cache.x_shape), _download(dw), _download(db)


# ----- activations -----

class _ActivationCache(NamedTuple):
    name: str
    x: object  # (n,) device, the flattened input
    x_shape: tuple


def _activation_forward(name, x):
    _check_float("x", x)
    x_dev = _upload(x, -1)
    out = cuda_elementwise.activation_forward(name, x_dev, _tiles)
    return _download(out).reshape(x.shape), _ActivationCache(name, x_dev, x.shape)


def _activation_backward(name, dout, cache):
    _check_cache(cache, _ActivationCache, f"{name}_forward")
    if cache.name != name:
        raise TypeError(f"cache must come from {name}_forward, got one from {cache.name}_forward")
    _check_dout(dout, cache.x_shape, cache.x.dtype)
    dx = cuda_elementwise.activation_backward(name, _upload(dout, -1), cache.x, _tiles)
    return _download(dx).reshape(cache.x_shape)


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


def attention_forward(q, k, v, causal=False):
    """q, k, v: (B, H, T, D) -> out: (B, H, T, D); softmax(q k^T / sqrt(D) [+ causal mask]) v."""
    dtype = _check_float("q", q)
    _check_same_dtype(dtype, k=k, v=v)
    if q.ndim != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q, k, v must be one (B, H, T, D) shape, got {q.shape}, {k.shape}, "
                         f"{v.shape}")
    if q.shape[-1] == 0:
        raise ValueError(f"the head size D must be at least 1, got q of shape {q.shape}")
    B, H, T, D = q.shape
    q_dev, k_dev, v_dev = (_upload(a, (B * H, T, D)) for a in (q, k, v))
    out_dev, lse = cuda_attention.flash_attention_forward(q_dev, k_dev, v_dev, bool(causal),
                                                          _tiles)
    cache = _AttentionCache(q_dev, k_dev, v_dev, out_dev, lse, bool(causal), q.shape)
    return _download(out_dev).reshape(q.shape), cache


def attention_backward(dout, cache):
    """dout: (B, H, T, D) -> dq, dk, dv, each (B, H, T, D)."""
    _check_cache(cache, _AttentionCache, "attention_forward")
    _check_dout(dout, cache.shape, cache.q.dtype)
    dout_dev = _upload(dout, cache.q.shape)
    grads = cuda_attention.flash_attention_backward(dout_dev, cache.q, cache.k, cache.v,
                                                    cache.out, cache.lse, cache.causal, _tiles)
    return tuple(_download(g).reshape(cache.shape) for g in grads)
