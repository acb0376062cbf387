"""float32 <-> bfloat16 / float16 conversions on bit patterns, in Numba loops.

Mixed precision (kernels/mixed.py) widens every 16-bit input of an op to float32 and rounds the
outputs back. NumPy's own conversions run at about 10 ns per number for float16 on a CPU without
F16C code paths (measured: 12.8 ms for 2^20 numbers float32 -> float16, against 2.7 ms for a
float32 copy), which made a float16 training step 3x slower than its arithmetic. Numba has no
float16 type on the CPU, so these kernels work on the bits, with integers only, and are exact:
tests/test_precision.py checks them against NumPy / ml_dtypes on all 65,536 16-bit patterns and
on float32 numbers at every rounding boundary.

Bits:    float32  s eeeeeeee fffffffffffffffffffffff   (bias 127)
         bfloat16 s eeeeeeee fffffff                   (the top half of float32)
         float16  s eeeee ffffffffff                   (bias 15)
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def bf16_bits_to_f32_bits(src, dst):
    """src uint16 (bfloat16 bits) -> dst uint32 (float32 bits): a 16-bit shift, exact."""
    for i in range(src.size):
        dst[i] = np.uint32(src[i]) << np.uint32(16)


@njit(cache=True)
def f32_bits_to_bf16_bits(src, dst):
    """src uint32 (float32 bits) -> dst uint16, rounded to nearest, ties to even.

    Adding 0x7FFF (just under half of the 16 dropped bits) plus the last kept bit, then cutting,
    rounds up exactly when the dropped part is over half, or half with an odd kept part. A carry
    runs into the exponent as it should (the largest float32s round to inf). NaN stays NaN."""
    for i in range(src.size):
        x = np.uint32(src[i])
        if (x & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):  # NaN: keep it a (quiet) NaN
            dst[i] = np.uint16((x >> np.uint32(16)) | np.uint32(0x40))
        else:
            lsb = (x >> np.uint32(16)) & np.uint32(1)
            dst[i] = np.uint16((x + np.uint32(0x7FFF) + lsb) >> np.uint32(16))


@njit(cache=True)
def f16_bits_to_f32_bits(src, dst):
    """src uint16 (float16 bits) -> dst uint32 (float32 bits), exact (every float16 is a
    float32): re-bias the exponent by 127 - 15 = 112; normalise subnormals; inf/NaN keep their
    payload."""
    for i in range(src.size):
        h = np.uint32(src[i])
        sign = (h & np.uint32(0x8000)) << np.uint32(16)
        exp = (h >> np.uint32(10)) & np.uint32(0x1F)
        mant = h & np.uint32(0x3FF)
        if exp == 0x1F:  # inf or NaN
            dst[i] = sign | np.uint32(0x7F800000) | (mant << np.uint32(13))
        elif exp != 0:  # normal
            dst[i] = sign | ((exp + np.uint32(112)) << np.uint32(23)) | (mant << np.uint32(13))
        elif mant == 0:  # +-0
            dst[i] = sign
        else:  # subnormal: mant * 2^-24; shift the leading 1 up to the implicit bit
            e = np.uint32(113)  # the exponent field of 2^-14, float16's smallest normal
            while (mant & np.uint32(0x400)) == 0:
                mant <<= np.uint32(1)
                e -= np.uint32(1)
            dst[i] = sign | (e << np.uint32(23)) | ((mant & np.uint32(0x3FF)) << np.uint32(13))


@njit(cache=True)
def f32_bits_to_f16_bits(src, dst):
    """src uint32 (float32 bits) -> dst uint16 (float16 bits), to nearest, ties to even;
    overflow to inf (at 65520 and above), gradual underflow to subnormals and 0."""
    for i in range(src.size):
        x = np.uint32(src[i])
        sign = np.uint32((x >> np.uint32(16)) & np.uint32(0x8000))
        ax = x & np.uint32(0x7FFFFFFF)
        if ax > np.uint32(0x7F800000):  # NaN
            dst[i] = np.uint16(sign | np.uint32(0x7E00))
        elif ax >= np.uint32(0x477FF000):  # >= 65520 (65504 plus half a step): inf
            dst[i] = np.uint16(sign | np.uint32(0x7C00))
        elif ax >= np.uint32(0x38800000):  # >= 2^-14: a normal float16
            lsb = (ax >> np.uint32(13)) & np.uint32(1)
            rounded = (ax + np.uint32(0xFFF) + lsb) >> np.uint32(13)  # a carry may bump the exponent
            dst[i] = np.uint16(sign | (rounded - np.uint32(112 << 10)))
        else:  # a subnormal float16 (or 0): round ax's value to a multiple of 2^-24
            e = ax >> np.uint32(23)
            if e < np.uint32(102):  # below 2^-25 (half the smallest subnormal): 0
                dst[i] = np.uint16(sign)
            else:
                m = (ax & np.uint32(0x7FFFFF)) | np.uint32(0x800000)  # value = m * 2^(e - 150)
                s = np.uint32(126) - e  # value / 2^-24 = m >> s, s in 14..24
                q = m >> s
                rem = m & ((np.uint32(1) << s) - np.uint32(1))
                half = np.uint32(1) << (s - np.uint32(1))
                if rem > half or (rem == half and (q & np.uint32(1)) == 1):
                    q += np.uint32(1)  # 0x400 is the smallest normal: its encoding too
                dst[i] = np.uint16(sign | q)


@njit(cache=True)
def lookup(src, table, dst):
    """dst[i] = table[src[i]]: float16 -> float32 through a table of all 65,536 patterns (the
    branches of f16_bits_to_f32_bits keep LLVM from vectorising it; a lookup is 4x faster)."""
    for i in range(src.size):
        dst[i] = table[src[i]]


_TABLES = {}  # 16-bit format name -> float32 bits of each of its 65,536 patterns


def widen_table(half_dtype) -> np.ndarray:
    """(65536,) uint32: the float32 bits of every bfloat16 or float16 bit pattern."""
    name = np.dtype(half_dtype).name
    if name not in _TABLES:
        patterns = np.arange(65536, dtype=np.uint32).astype(np.uint16)
        table = np.empty(65536, np.uint32)
        if np.dtype(half_dtype) == np.float16:
            f16_bits_to_f32_bits(patterns, table)
        else:
            bf16_bits_to_f32_bits(patterns, table)
        _TABLES[name] = table
    return _TABLES[name]


def widen(a: np.ndarray, half_dtype) -> np.ndarray:
    """A 16-bit array (bfloat16 or float16) -> float32, same shape. (bfloat16: ml_dtypes'
    astype, a shift, is as fast as a Numba loop.)"""
    if half_dtype != np.float16:
        return a.astype(np.float32, order="C")  # C order: a kernel can keep it without a copy
    src = np.ascontiguousarray(a).view(np.uint16).reshape(-1)
    out = np.empty(src.size, np.uint32)
    lookup(src, widen_table(half_dtype), out)
    return out.view(np.float32).reshape(a.shape)


def narrow(a: np.ndarray, half_dtype) -> np.ndarray:
    """A float32 array -> ``half_dtype`` (bfloat16 or float16), rounded to nearest even."""
    src = np.ascontiguousarray(a, np.float32).view(np.uint32).reshape(-1)
    out = np.empty(src.size, np.uint16)
    if half_dtype == np.float16:
        f32_bits_to_f16_bits(src, out)
    else:
        f32_bits_to_bf16_bits(src, out)
    return out.view(half_dtype).reshape(a.shape)
