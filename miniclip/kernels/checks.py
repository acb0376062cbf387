"""Argument checks shared by the fast backends: they take float32 or float64 and never cast.
(16-bit arrays reach them widened to float32 by kernels/mixed.py.)"""

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
