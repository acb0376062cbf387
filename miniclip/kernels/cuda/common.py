"""What the CUDA kernel files share: launch sizes and the float types they compile for."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from numba import config, cuda, float32, float64

from miniclip.kernels.dtypes import WIDE_DTYPES, dtype_of, is_half

SIMULATOR = bool(config.ENABLE_CUDASIM)  # NUMBA_ENABLE_CUDASIM=1: kernels run as Python threads

KERNEL_DTYPES = WIDE_DTYPES  # what the kernels compile for (16-bit arrays: kernels/mixed.py)


@dataclasses.dataclass(frozen=True)
class Tiles:
    """Launch sizes. Each value is a compile-time constant of the kernels that use it.

    matmul_block      edge of the output tile one thread block computes
    matmul_depth      how far along K one shared-memory slab reaches
    matmul_micro      outputs per thread along each edge (registers); block % micro == 0
    attention_block   query rows (and key rows) per thread block, one thread per row
    threads           threads per block of the row-wise and element-wise kernels (power of 2)
    """

    matmul_block: int = 64
    matmul_depth: int = 16
    matmul_micro: int = 4
    attention_block: int = 32
    threads: int = 128

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{field.name} must be a positive int, got {value!r}")
        if self.matmul_block % self.matmul_micro:
            raise ValueError(f"matmul_block ({self.matmul_block}) must be a multiple of "
                             f"matmul_micro ({self.matmul_micro})")
        if self.threads & (self.threads - 1):
            raise ValueError(f"threads must be a power of 2 (tree reductions), got {self.threads}")
        if (self.matmul_block // self.matmul_micro) ** 2 > 1024 or self.attention_block > 1024:
            raise ValueError("a thread block holds at most 1024 threads: got "
                             f"{(self.matmul_block // self.matmul_micro) ** 2} for the matmul, "
                             f"{self.attention_block} for attention")


DEFAULT_TILES = Tiles()
# Tiny tiles for the simulator, where each thread is a Python thread: every shape in the tests is
# then several tiles wide, so the bounds guards and the tile loops are exercised.
SIMULATOR_TILES = Tiles(matmul_block=8, matmul_depth=4, matmul_micro=2, attention_block=4,
                        threads=8)


def numba_float(dtype):
    """numba's type for a NumPy float dtype, for shared and local arrays."""
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return float32
    if dtype == np.float64:
        return float64
    raise TypeError(f"kernels take float32 or float64, got {dtype}")


# ----- 16-bit operands (mixed precision) -----
#
# A bfloat16 or float16 array goes to the GPU as its 16-bit patterns (a uint16 array: half the
# bytes of float32), and a kernel widens each number to float32 as it loads it, then does all its
# arithmetic, every sum included, in float32. The widening is a lookup in a table of the float32
# value of each of the 65,536 patterns (256 KiB, uploaded once per format, read through the
# caches): one code path that is exact for both formats, in the simulator and on a GPU. (A GPU can
# also convert with one instruction, cvt.f32.f16 for float16 and a 16-bit shift for bfloat16;
# numba-cuda's simulator has neither, and the table keeps the kernels the same in both places.)

HALF_BITS = np.uint16  # how a 16-bit operand is stored on the device


@functools.lru_cache(maxsize=None)
def widen_table_host(dtype) -> np.ndarray:
    """(65536,) float32: the value of every bit pattern of the 16-bit ``dtype``, exact."""
    dtype = dtype_of(dtype)
    if not is_half(dtype):
        raise TypeError(f"widen_table takes bfloat16 or float16, got {dtype}")
    patterns = np.arange(1 << 16, dtype=np.uint32).astype(HALF_BITS)
    return patterns.view(dtype).astype(np.float32)


_device_tables: dict = {}


def widen_table(dtype):
    """The table of ``widen_table_host`` on the device, uploaded on first use per format."""
    name = dtype_of(dtype).name
    if name not in _device_tables:
        table = widen_table_host(dtype)
        count_transfer("host_to_device", table.nbytes)
        _device_tables[name] = cuda.to_device(table)
    return _device_tables[name]


@functools.lru_cache(maxsize=None)
def element_readers(half: bool):
    """Device functions (read2, read3) returning a[i, j] / a[i, j, k] as a number to compute with.

    half=False: the element itself (``table`` is not read). half=True: ``a`` holds 16-bit
    patterns and the number is ``table[a[...]]``, the pattern widened to float32. Chosen when a
    kernel is compiled, so no branch is left in the kernel."""
    if half:
        @cuda.jit(device=True)
        def read2(a, table, i, j):
            return table[a[i, j]]

        @cuda.jit(device=True)
        def read3(a, table, i, j, k):
            return table[a[i, j, k]]
    else:
        @cuda.jit(device=True)
        def read2(a, table, i, j):
            return a[i, j]

        @cuda.jit(device=True)
        def read3(a, table, i, j, k):
            return a[i, j, k]
    return read2, read3


# ----- host <-> device copies, counted (cuda_backend.transfer_stats() reports them) -----

TRANSFER_KEYS = ("host_to_device", "host_to_device_bytes", "device_to_host",
                 "device_to_host_bytes", "host_copies", "host_copies_bytes")
TRANSFERS = dict.fromkeys(TRANSFER_KEYS, 0)


def count_transfer(kind: str, nbytes: int) -> None:
    """Add one copy of ``nbytes`` to the counters of ``kind`` ("host_to_device", ...)."""
    TRANSFERS[kind] += 1
    TRANSFERS[kind + "_bytes"] += int(nbytes)


def launch_size(n: int, threads: int) -> tuple[int, int]:
    """(blocks, threads) for a grid-stride loop over n items: enough blocks to give each
    thread about one item, at most 1024 blocks on a GPU and 2 in the simulator (where every
    thread is a Python thread, so fewer threads that loop longer run faster)."""
    most = 2 if SIMULATOR else 1024
    return max(1, min(most, -(-n // threads))), threads


# the launch sizes in use: set by the cuda backend's configure(), read by every launch
_tiles: Tiles = SIMULATOR_TILES if SIMULATOR else DEFAULT_TILES


def tiles() -> Tiles:
    """The launch sizes in use."""
    return _tiles


def set_tiles(new: Tiles) -> None:
    """Use these launch sizes from now on (the cuda backend's ``configure`` calls this)."""
    global _tiles
    _tiles = new
