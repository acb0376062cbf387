"""Tiled shared-memory matrix multiply for the GPU, written with numba-cuda.

The linear layer needs three products (``miniclip.nn.linear`` is the reference):

    forward    y  = x  @ W^T (+ b)     x (M, K), W (N, K)  -> y  (M, N)     "A @ B^T"
    backward   dx = dy @ W             dy (M, N), W (N, K) -> dx (M, K)     "A @ B"
               dW = dy^T @ x           dy (M, N), x (M, K) -> dW (N, K)     "A^T @ B"

All three are one kernel, ``C = op(A) @ op(B)``, where ``op`` transposes or not. The flags are
compile-time constants, so each variant compiles to straight code with no branch left in it.

How the kernel works (CUDA's standard tiled matmul, with register blocking):

* The output C is cut into ``block x block`` tiles; one thread block computes one tile.
* The thread block walks along K in steps of ``depth``. At each step its threads copy an
  (block x depth) slab of op(A) and a (depth x block) slab of op(B) from global memory into
  *shared memory* (fast, on-chip, visible to the whole block), wait at a barrier
  (``cuda.syncthreads()``), and multiply out of shared memory. Every number loaded from global
  memory is reused ``block`` times instead of once.
* Each thread owns ``micro x micro`` outputs, accumulated in registers (``cuda.local.array``).
  Thread (ty, tx) of a ``(block/micro)^2`` block owns rows ``ty, ty + block/micro, ...`` and
  columns ``tx, tx + block/micro, ...`` of the tile: neighbouring threads touch neighbouring
  columns, so their reads from shared memory and their writes to C are contiguous.
* Bounds guards make every shape work: the K loop runs ceil(K / depth) times (from the shape, not
  from the grid size), loads outside A or B read as 0, and outputs outside C are not written.

Sizes: ``block`` (tile edge, default 64 on a GPU), ``depth`` (K step, 16), ``micro`` (outputs per
thread along each edge, 4): 256 threads per block. The CUDA simulator runs each thread as a Python
thread, so its tests use tiny tiles (8, 4, 2).

    >>> import numpy as np
    >>> a = np.arange(6.0).reshape(2, 3); b = np.ones((4, 3))
    >>> matmul(cuda.to_device(a), cuda.to_device(b), transpose_b=True).copy_to_host()  # a @ b.T
    array([[ 3.,  3.,  3.,  3.],
           [12., 12., 12., 12.]])
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda

from miniclip.kernels.cuda.common import (
    DEFAULT_TILES,
    HALF_BITS,
    Tiles,
    element_readers,
    numba_float,
)

MAX_GRID_Y = 65_535  # CUDA's limit on the number of blocks along y


@functools.lru_cache(maxsize=None)
def matmul_kernel(dtype, transpose_a, transpose_b, with_bias, block, depth, micro,
                  half_a=False, half_b=False):
    """Compile (once per argument tuple) the kernel computing C = op(A) @ op(B) (+ bias).

    op(A) is (M, K): A is stored (M, K), or (K, M) when transpose_a.
    op(B) is (K, N): B is stored (K, N), or (N, K) when transpose_b.
    half_a / half_b: that operand holds 16-bit patterns (uint16), widened to float32 through the
    kernel's last argument, ``table`` (common.widen_table), as each number is loaded into shared
    memory; ``dtype`` is then float32, the type of every sum. Without them ``table`` is not read.
    Launch with grid (ceil(N / block), ceil(M / block)) and (block // micro)**2 threads.
    """
    if block % micro:
        raise ValueError(f"block must be a multiple of micro, got block={block}, micro={micro}")
    real = numba_float(dtype)
    zero = np.dtype(dtype).type(0)  # a typed constant: a bare 0 would promote float32 to float64
    side = block // micro  # threads along each edge of the block
    n_threads = side * side
    read_a, _ = element_readers(bool(half_a))
    read_b, _ = element_readers(bool(half_b))

    @cuda.jit
    def kernel(a, b, bias, c, table):
        M, N = c.shape
        K = a.shape[0] if transpose_a else a.shape[1]
        tid = cuda.threadIdx.x
        ty, tx = tid // side, tid % side
        row0 = cuda.blockIdx.y * block  # first row of this block's tile of C
        col0 = cuda.blockIdx.x * block  # first column

        a_tile = cuda.shared.array((depth, block), real)  # a_tile[k, i] = op(A)[row0 + i, k0 + k]
        b_tile = cuda.shared.array((depth, block), real)  # b_tile[k, j] = op(B)[k0 + k, col0 + j]
        acc = cuda.local.array((micro, micro), real)  # this thread's outputs, in registers
        a_frag = cuda.local.array(micro, real)  # one column of a_tile, this thread's rows
        b_frag = cuda.local.array(micro, real)  # one row of b_tile, this thread's columns
        for i in range(micro):
            for j in range(micro):
                acc[i, j] = 0

        for k0 in range(0, K, depth):  # ceil(K / depth) steps along K
            # 1. all threads copy the two slabs into shared memory. Element e of a slab goes to
            #    thread e % n_threads; the index order makes consecutive threads read
            #    consecutive addresses of the array as it is stored in global memory.
            for e in range(tid, block * depth, n_threads):
                if transpose_a:  # A is (K, M): consecutive e walk along M
                    k, i = e // block, e % block
                    inside = k0 + k < K and row0 + i < M
                    a_tile[k, i] = read_a(a, table, k0 + k, row0 + i) if inside else zero
                else:  # A is (M, K): consecutive e walk along K
                    i, k = e // depth, e % depth
                    inside = row0 + i < M and k0 + k < K
                    a_tile[k, i] = read_a(a, table, row0 + i, k0 + k) if inside else zero
                if transpose_b:  # B is (N, K): consecutive e walk along K
                    j, k = e // depth, e % depth
                    inside = col0 + j < N and k0 + k < K
                    b_tile[k, j] = read_b(b, table, col0 + j, k0 + k) if inside else zero
                else:  # B is (K, N): consecutive e walk along N
                    k, j = e // block, e % block
                    inside = k0 + k < K and col0 + j < N
                    b_tile[k, j] = read_b(b, table, k0 + k, col0 + j) if inside else zero
            cuda.syncthreads()  # the slabs are complete before anyone reads them

            # 2. multiply out of shared memory: an outer product per k
            for k in range(depth):
                for i in range(micro):
                    a_frag[i] = a_tile[k, ty + i * side]
                for j in range(micro):
                    b_frag[j] = b_tile[k, tx + j * side]
                for i in range(micro):
                    for j in range(micro):
                        acc[i, j] += a_frag[i] * b_frag[j]
            cuda.syncthreads()  # everyone is done reading before the next slabs overwrite

        # 3. write the outputs that fall inside C
        for i in range(micro):
            row = row0 + ty + i * side
            for j in range(micro):
                col = col0 + tx + j * side
                if row < M and col < N:
                    if with_bias:
                        c[row, col] = acc[i, j] + bias[col]
                    else:
                        c[row, col] = acc[i, j]

    return kernel


def matmul(a, b, bias=None, *, transpose_a=False, transpose_b=False, out=None,
           tiles: Tiles = DEFAULT_TILES, half_table=None):
    """C = op(A) @ op(B) (+ bias) on device arrays; returns C (M, N), a new device array
    unless ``out`` is given. Tile sizes come from ``tiles`` (see ``common.Tiles``).

    Mixed precision: with ``half_table`` (common.widen_table of a 16-bit format), an operand
    that is a uint16 array holds that format's bit patterns and is widened as it is loaded; the
    other operand, the bias and C are float32, and so is every sum."""
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"a and b must be 2-D, got shapes {a.shape} and {b.shape}")
    half_a, half_b = a.dtype == HALF_BITS, b.dtype == HALF_BITS
    if (half_a or half_b) and half_table is None:
        raise TypeError("a uint16 operand holds 16-bit patterns: pass half_table "
                        "(common.widen_table of its format)")
    compute = np.dtype(np.float32) if half_a or half_b else np.dtype(a.dtype)
    for operand, half in ((a, half_a), (b, half_b)):
        if not half and operand.dtype != compute:
            raise TypeError(f"a and b must have one dtype (float32 beside a 16-bit operand), "
                            f"got {a.dtype} and {b.dtype}")
    M, K = (a.shape[1], a.shape[0]) if transpose_a else a.shape
    K_b, N = (b.shape[1], b.shape[0]) if transpose_b else b.shape
    if K != K_b:
        raise ValueError(f"inner dimensions differ: op(a) is ({M}, {K}), op(b) is ({K_b}, {N})")
    if bias is not None and bias.shape != (N,):
        raise ValueError(f"bias must have shape ({N},), got {bias.shape}")
    if out is None:
        out = cuda.device_array((M, N), dtype=compute)
    block, depth, micro = tiles.matmul_block, tiles.matmul_depth, tiles.matmul_micro
    kernel = matmul_kernel(compute, transpose_a, transpose_b, bias is not None,
                           block, depth, micro, half_a, half_b)
    if M == 0 or N == 0:
        return out
    grid = (math.ceil(N / block), math.ceil(M / block))
    if grid[1] > MAX_GRID_Y:  # rows of C map to the grid's y axis, which CUDA caps at 65,535
        raise ValueError(f"matmul: {M} rows of output need {grid[1]} blocks along the grid's y "
                         f"axis, more than CUDA's {MAX_GRID_Y:,}; at most {MAX_GRID_Y * block:,} "
                         "rows per call with these tiles (split the batch)")
    # a kernel argument cannot be None: without a bias (or a table), pass C itself (the kernel
    # never reads it)
    kernel[grid, (block // micro) ** 2](a, b, out if bias is None else bias, out,
                                        out if half_table is None else half_table)
    return out
