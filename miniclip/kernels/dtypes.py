"""The float formats miniclip knows, defined once: their names, their NumPy dtypes, and which of
them are 16-bit storage formats that compute in float32.

    name        bits  sign/exponent/fraction  unit roundoff u = 2^-(fraction+1)   largest finite
    float64      64   1 / 11 / 52             1.1e-16                             1.8e308
    float32      32   1 /  8 / 23             6.0e-8                              3.4e38
    bfloat16     16   1 /  8 /  7             3.9e-3                              3.4e38
    float16      16   1 /  5 / 10             4.9e-4                              65504

bfloat16 is float32 with the low 16 fraction bits cut off: the same range, 3 significant digits.
float16 keeps 3 more fraction bits but only 5 exponent bits: anything above 65504 is inf, and
gradients below 6e-8 are 0 (hence loss scaling, train/precision.py). NumPy has float16 but no
bfloat16; ``ml_dtypes`` (from the JAX project) adds it as a NumPy dtype whose ``astype`` rounds
to nearest, ties to even.

This module sits in kernels/, the lowest layer, so that every layer above can import it (nn/
cannot, by design: the textbook layers work on whatever float arrays they are given).

    >>> dtype_of("bfloat16").itemsize, dtype_of(np.float32) == np.float32
    (2, True)
    >>> compute_dtype(dtype_of("float16")), compute_dtype(np.float64)
    (dtype('float32'), dtype('float64'))
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

bfloat16 = np.dtype(ml_dtypes.bfloat16)
float16 = np.dtype(np.float16)
float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)

# name -> dtype, widest first
FLOAT_DTYPES = {"float64": float64, "float32": float32, "bfloat16": bfloat16, "float16": float16}
WIDE_DTYPES = (float64, float32)  # computed in as they are
HALF_DTYPES = (bfloat16, float16)  # stored in 16 bits, computed in float32

# the training CLI's names for a precision -> the dtype of the weights' working copies
PRECISIONS = {"fp32": float32, "bf16": bfloat16, "fp16": float16}


def dtype_of(dtype) -> np.dtype:
    """A float dtype from a name ("bfloat16", ...), a NumPy type or dtype; anything else is a
    TypeError that lists the choices."""
    if isinstance(dtype, str) and dtype in FLOAT_DTYPES:
        return FLOAT_DTYPES[dtype]
    try:
        found = np.dtype(dtype)
    except TypeError:
        found = None
    if found is None or found not in FLOAT_DTYPES.values():
        raise TypeError(f"dtype must be one of {list(FLOAT_DTYPES)} (or their NumPy types), "
                        f"got {dtype!r}")
    return found


def dtype_name(dtype) -> str:
    """'float32', 'bfloat16', ... for a float dtype."""
    return dtype_of(dtype).name


def is_float(dtype) -> bool:
    """True for the four float formats (np.issubdtype says False for bfloat16, whose NumPy kind
    is 'V': it is an extension type)."""
    return np.dtype(dtype) in FLOAT_DTYPES.values()


def is_half(dtype) -> bool:
    """True for the 16-bit formats, bfloat16 and float16."""
    return np.dtype(dtype) in HALF_DTYPES


def compute_dtype(dtype) -> np.dtype:
    """The dtype arithmetic on this format is done in: float32 for the 16-bit formats, the
    format itself otherwise. Also the accumulation dtype of every sum over 16-bit numbers."""
    dtype = np.dtype(dtype)
    return float32 if dtype in HALF_DTYPES else dtype


def unit_roundoff(dtype) -> float:
    """u = 2^-p for a format with p significant bits (fraction bits + 1): the largest relative
    error of rounding one real number to nearest.

    >>> unit_roundoff("bfloat16"), unit_roundoff("float16")
    (0.00390625, 0.00048828125)
    """
    return float(2.0 ** -(ml_dtypes.finfo(dtype_of(dtype)).nmant + 1))


def finfo(dtype):
    """np.finfo that also knows bfloat16 (ml_dtypes.finfo)."""
    return ml_dtypes.finfo(dtype_of(dtype))
