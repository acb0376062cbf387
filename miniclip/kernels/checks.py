"""Argument checks shared by the fast backends: they take float32 or float64 and never cast.
(16-bit arrays reach them widened to float32 by kernels/mixed.py, except the activations a
backend reads in 16 bits itself, its READS_16_BIT: the last two checks are for those.)"""

import numpy as np

from miniclip.kernels.dtypes import WIDE_DTYPES


def float_dtype(name, array, types=(np.ndarray,)):
    """The dtype of ``array``, which must be a float32 or float64 array of one of ``types``
    (``name`` is the argument's name, for the error)."""
    if not isinstance(array, types):
        expected = " or ".join(t.__name__ if t is not np.ndarray else "numpy.ndarray"
                               for t in types)
        raise TypeError(f"{name} must be a {expected}, got {type(array).__name__}")
    if array.dtype not in WIDE_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {array.dtype}")
    return array.dtype


def same_dtype(dtype, types=(np.ndarray,), **arrays):
    """Every array given by keyword has exactly ``dtype``: a kernel compiled for one dtype is
    never handed another, and nothing is cast silently."""
    for name, array in arrays.items():
        if float_dtype(name, array, types) != dtype:
            raise TypeError(f"{name} must have the input's dtype {dtype}, got {array.dtype} "
                            "(nothing is cast silently)")


def check_linear_args(x, w, b, types=(np.ndarray,)):
    """x (..., C_in), w (C_out, C_in), b (C_out,) or None, all of one float dtype -> dtype."""
    dtype = float_dtype("x", x, types)
    same_dtype(dtype, types, w=w)
    if x.ndim < 1:
        raise ValueError(f"x must have at least one axis (..., C_in), got shape {x.shape}")
    if w.ndim != 2 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"w must be (C_out, {x.shape[-1]}) for x of shape {x.shape}, "
                         f"got {w.shape}")
    if b is not None:
        same_dtype(dtype, types, b=b)
        if b.shape != (w.shape[0],):
            raise ValueError(f"b must have shape ({w.shape[0]},), got {b.shape}")
    return dtype


def check_half_linear_args(x, w, b, types=(np.ndarray,)):
    """A bfloat16/float16 x (..., C_in) with a float32 w (C_out, C_in) and b (C_out,) or None:
    the linear layer of a backend that reads x in 16 bits."""
    for name, a in (("w", w), ("b", b)):
        if a is not None and (not isinstance(a, types) or a.dtype != np.float32):
            raise TypeError(f"{name} must be a float32 array beside a {x.dtype} x, got "
                            f"{getattr(a, 'dtype', type(a).__name__)}")
    if w.ndim != 2 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"w must be (C_out, {x.shape[-1]}) for x of shape {x.shape}, "
                         f"got {w.shape}")
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"b must have shape ({w.shape[0]},), got {b.shape}")


def same_half_dtype(q, **arrays):
    """Every array given by keyword is a NumPy array of q's 16-bit dtype (attention's k and v
    beside a 16-bit q: one format, nothing converted)."""
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.dtype != q.dtype:
            raise TypeError(f"{name} must be a {q.dtype} array like q, got "
                            f"{getattr(a, 'dtype', type(a).__name__)}")
