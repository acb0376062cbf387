"""Argument checks shared by the fast backends: they take float32 or float64 and never cast."""

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_dtype(name, array):
    """The dtype of ``array``, which must be a float32 or float64 ndarray (``name`` is the
    argument's name, for the error)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(array).__name__}")
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {array.dtype}")
    return array.dtype


def same_dtype(dtype, **arrays):
    """Every array given by keyword has exactly ``dtype``: a kernel compiled for one dtype is
    never handed another, and nothing is cast silently."""
    for name, array in arrays.items():
        if float_dtype(name, array) != dtype:
            raise TypeError(f"{name} must have the input's dtype {dtype}, got {array.dtype} "
                            "(nothing is cast silently)")
