"""Solutions to the exercises of lesson 18 (numbers in 16 bits)."""

import numpy as np


def my_round_to_bfloat16(x):
    """float32 array -> the bit patterns (uint16) of x rounded to bfloat16, to nearest, ties to
    even. bfloat16 is the top 16 bits of a float32; rounding adds half of the dropped range
    (0x7FFF), plus 1 when the kept part is odd (ties go to the even neighbour), then drops the
    low 16 bits. (NaN is not handled: the exercise leaves it out.)"""
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    lsb = (bits >> 16) & 1  # the last bit that is kept
    return ((bits + 0x7FFF + lsb) >> 16).astype(np.uint16)


def my_scaler_update(scale, good_steps, finite, growth_interval=2000):
    """One step of dynamic loss scaling -> (take the step?, new scale, new good_steps)."""
    if not finite:
        return False, scale / 2, 0
    good_steps += 1
    if good_steps == growth_interval:
        return True, scale * 2, 0
    return True, scale, good_steps
