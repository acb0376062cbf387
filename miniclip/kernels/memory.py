"""Keep freed memory in the process for reuse, instead of handing it back to the system.

A training step allocates the same large arrays every step (activations, caches, gradients) and
frees them at its end. glibc's malloc serves blocks above a threshold with their own ``mmap``
and returns them to the system on ``free``; the next step maps fresh pages, and the system zeroes
each 4 KiB page on its first touch. On the 2-core machine of benchmarks/README.md that costs
10-14% of a toy or tok65 step (page faults; ``sys`` time). ``keep_freed_memory()`` raises the
thresholds with ``mallopt``, so a freed block stays in the heap and the next step's array reuses
its pages (what PyTorch users get from jemalloc or tcmalloc).

The setting is for the whole process and only on glibc (Linux); elsewhere it does nothing. The
numba backend applies it when it loads, and ``python -m miniclip.train`` for every backend;
``MINICLIP_KEEP_FREED_MEMORY=0`` turns it off. The price: the process keeps its peak heap
until it exits.

    >>> isinstance(keep_freed_memory(), bool)
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt's parameter numbers (glibc's malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # the largest glibc accepts on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 1 << 30  # free heap kept at the top before it is trimmed
TOP_PAD = 64 * 1024 * 1024  # extra asked of the system each time the heap grows

_applied = None


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks up to 32 MiB for reuse; True if it took the setting.
    Does nothing (False) off glibc or with MINICLIP_KEEP_FREED_MEMORY=0. Applied once per process."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("MINICLIP_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith(
            "linux"):
        return _applied
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return _applied
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = all(mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (M_TOP_PAD, TOP_PAD)))
    return _applied
