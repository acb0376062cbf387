"""Fused attention for the GPU in the flash-attention style, written with numba-cuda.

The reference (``miniclip.nn.attention.attention_forward``) builds the whole (T, T) matrix of
probabilities per head and keeps it for backward. These kernels never build it:

Forward. One thread block takes ``block`` query rows of one (batch, head), one thread per row.
It walks over the keys ``block`` rows at a time: the block copies a tile of K and V into shared
memory, and each thread scores its query against the tile and folds the tile into a running
softmax (the *online softmax*). For a row with scores s_1, s_2, ... it keeps

    m   the largest score so far
    l   sum_j exp(s_j - m)                  (the softmax denominator, relative to m)
    acc sum_j exp(s_j - m) v_j              (the unnormalised output)

and when a tile raises the maximum from m to m', it multiplies l and acc by exp(m - m') before
adding the tile's terms. After the last tile, out = acc / l. The row's log-sum-exp,
lse = m + log(l) = log sum_j exp(s_j), is the only thing kept besides out: one number per row,
instead of T probabilities.

Backward, by recomputation. Any probability can be rebuilt from the lse: p_ij = exp(s_ij - lse_i).
With dout the upstream gradient and delta_i = sum_d dout_id out_id (= sum_j p_ij dp_ij):

    dp_ij = dout_i . v_j        ds_ij = p_ij (dp_ij - delta_i)        (the softmax backward)
    dv_j  = sum_i p_ij dout_i   dk_j  = scale sum_i ds_ij q_i    dq_i = scale sum_j ds_ij k_j

Two kernels, so that no two threads add into the same number: one thread per *key* row sums over
the queries for dk and dv; one thread per *query* row sums over the keys for dq. Each recomputes
s and p itself: twice the arithmetic of the forward, in exchange for O(T) memory instead of
O(T^2).

The causal mask (query t sees keys 0..t) is applied by skipping: key tiles entirely above the
diagonal are never loaded, and inside a tile a thread stops at its own row.

Arrays are (BH, T, D): batch and heads flattened into one axis (BH = B * H), contiguous.
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


def _block_for(head_dim, dtype, tiles: Tiles, n_tiles: int):
    """Rows per thread block: tiles.attention_block, made smaller if ``n_tiles`` (block, D)
    tiles would not fit the 48 KiB of static shared memory a block may use."""
    per_row = n_tiles * head_dim * np.dtype(dtype).itemsize + 2 * np.dtype(dtype).itemsize
    return max(1, min(tiles.attention_block, (48 * 1024) // per_row))


@functools.lru_cache(maxsize=None)
def attention_forward_kernel(dtype, head_dim, block, causal, half=False):
    """Kernel(q, k, v, out, lse, scale, table): q, k, v, out (BH, T, D), lse (BH, T).
    half: q, k, v hold 16-bit patterns, widened through ``table`` as they are loaded (see
    common.element_readers); ``dtype`` is then float32. Launch with grid (BH, ceil(T / block))
    and ``block`` threads."""
    real = numba_float(dtype)
    _, read = element_readers(bool(half))
    D = head_dim
    minus_inf = np.dtype(dtype).type(-np.inf)
    zero = np.dtype(dtype).type(0)

    @cuda.jit
    def kernel(q, k, v, out, lse, scale, table):
        T = q.shape[1]
        bh = cuda.blockIdx.x
        q_start = cuda.blockIdx.y * block
        tid = cuda.threadIdx.x
        row = q_start + tid  # this thread's query
        active = row < T  # threads past the end still help load tiles

        k_tile = cuda.shared.array((block, D), real)
        v_tile = cuda.shared.array((block, D), real)
        q_row = cuda.local.array(D, real)
        acc = cuda.local.array(D, real)  # sum_j exp(s_j - m) v_j
        scores = cuda.local.array(block, real)  # this tile's scores, then exp(s - m)
        for d in range(D):
            q_row[d] = read(q, table, bh, row, d) if active else zero
            acc[d] = 0
        m = minus_inf  # running max of the scores
        l = zero  # running sum of exp(s - m)

        # causal: the block's last query is q_start + block - 1; later keys are all masked
        kv_end = min(T, q_start + block) if causal else T
        for kv_start in range(0, kv_end, block):
            for e in range(tid, block * D, block):  # the block copies the K and V tiles
                j, d = e // D, e % D
                if kv_start + j < T:
                    k_tile[j, d] = read(k, table, bh, kv_start + j, d)
                    v_tile[j, d] = read(v, table, bh, kv_start + j, d)
            cuda.syncthreads()

            n_keys = min(block, T - kv_start)  # keys of this tile that exist ...
            if causal:
                n_keys = min(n_keys, row - kv_start + 1)  # ... and that this row may see
            if active and n_keys > 0:
                tile_max = minus_inf
                for j in range(n_keys):
                    s = zero
                    for d in range(D):
                        s += q_row[d] * k_tile[j, d]
                    s *= scale
                    scores[j] = s
                    tile_max = max(tile_max, s)
                m_new = max(m, tile_max)
                rescale = math.exp(m - m_new)  # 0 on the first tile, where m = -inf
                l *= rescale
                for d in range(D):
                    acc[d] *= rescale
                for j in range(n_keys):
                    p = math.exp(scores[j] - m_new)
                    l += p
                    for d in range(D):
                        acc[d] += p * v_tile[j, d]
                m = m_new
            cuda.syncthreads()  # done with the tiles before the next copy overwrites them

        if active:
            for d in range(D):
                out[bh, row, d] = acc[d] / l
            lse[bh, row] = m + math.log(l)

    return kernel


@functools.lru_cache(maxsize=None)
def attention_delta_kernel(dtype, head_dim):
    """Kernel(dout, out, delta): delta[bh, i] = sum_d dout[bh, i, d] * out[bh, i, d].
    One thread per row, any 1-D launch (grid-stride loop)."""
    zero = np.dtype(dtype).type(0)

    @cuda.jit
    def kernel(dout, out, delta):
        BH, T = delta.shape
        for r in range(cuda.grid(1), BH * T, cuda.gridsize(1)):
            bh, i = r // T, r % T
            s = zero
            for d in range(head_dim):
                s += dout[bh, i, d] * out[bh, i, d]
            delta[bh, i] = s

    return kernel


@functools.lru_cache(maxsize=None)
def attention_dkdv_kernel(dtype, head_dim, block, causal, half=False):
    """Kernel(q, k, v, dout, lse, delta, dk, dv, scale, table): one thread per key row j sums
    over the queries i that see it (half: as in attention_forward_kernel). Launch with grid
    (BH, ceil(T / block)) and ``block`` threads."""
    real = numba_float(dtype)
    _, read = element_readers(bool(half))
    D = head_dim
    zero = np.dtype(dtype).type(0)

    @cuda.jit
    def kernel(q, k, v, dout, lse, delta, dk, dv, scale, table):
        T = q.shape[1]
        bh = cuda.blockIdx.x
        kv_start = cuda.blockIdx.y * block
        tid = cuda.threadIdx.x
        col = kv_start + tid  # this thread's key
        active = col < T

        q_tile = cuda.shared.array((block, D), real)
        dout_tile = cuda.shared.array((block, D), real)
        lse_tile = cuda.shared.array(block, real)
        delta_tile = cuda.shared.array(block, real)
        # Each thread's own key and value rows. Registers would be the natural home, but with
        # the two accumulators that is 4 D numbers per thread, past the 255 registers a thread
        # can have (D = 64). In shared memory, stored (D, block): at a given d, neighbouring
        # threads read neighbouring addresses, i.e. different memory banks, in one step.
        k_own = cuda.shared.array((D, block), real)
        v_own = cuda.shared.array((D, block), real)
        dk_acc = cuda.local.array(D, real)
        dv_acc = cuda.local.array(D, real)
        for d in range(D):
            k_own[d, tid] = read(k, table, bh, col, d) if active else zero
            v_own[d, tid] = read(v, table, bh, col, d) if active else zero
            dk_acc[d] = 0
            dv_acc[d] = 0

        # causal: queries before this block's first key see none of its keys
        q_begin = kv_start if causal else 0
        for q_start in range(q_begin, T, block):
            for e in range(tid, block * D, block):  # the block copies q, dout, lse, delta
                i, d = e // D, e % D
                if q_start + i < T:
                    q_tile[i, d] = read(q, table, bh, q_start + i, d)
                    dout_tile[i, d] = dout[bh, q_start + i, d]
            if q_start + tid < T:
                lse_tile[tid] = lse[bh, q_start + tid]
                delta_tile[tid] = delta[bh, q_start + tid]
            cuda.syncthreads()

            if active:
                for i in range(min(block, T - q_start)):
                    if causal and q_start + i < col:
                        continue  # query i does not see key col
                    s = zero
                    dp = zero
                    for d in range(D):
                        s += q_tile[i, d] * k_own[d, tid]
                        dp += dout_tile[i, d] * v_own[d, tid]
                    p = math.exp(s * scale - lse_tile[i])  # the forward's probability, rebuilt
                    ds = p * (dp - delta_tile[i])
                    for d in range(D):
                        dv_acc[d] += p * dout_tile[i, d]
                        dk_acc[d] += ds * q_tile[i, d]
            cuda.syncthreads()

        if active:
            for d in range(D):
                dk[bh, col, d] = dk_acc[d] * scale
                dv[bh, col, d] = dv_acc[d]

    return kernel


@functools.lru_cache(maxsize=None)
def attention_dq_kernel(dtype, head_dim, block, causal, half=False):
    """Kernel(q, k, v, dout, lse, delta, dq, scale, table): one thread per query row i sums
    over the keys it sees (half: as in attention_forward_kernel). Launch with grid
    (BH, ceil(T / block)) and ``block`` threads."""
    real = numba_float(dtype)
    _, read = element_readers(bool(half))
    D = head_dim
    zero = np.dtype(dtype).type(0)

    @cuda.jit
    def kernel(q, k, v, dout, lse, delta, dq, scale, table):
        T = q.shape[1]
        bh = cuda.blockIdx.x
        q_start = cuda.blockIdx.y * block
        tid = cuda.threadIdx.x
        row = q_start + tid
        active = row < T

        k_tile = cuda.shared.array((block, D), real)
        v_tile = cuda.shared.array((block, D), real)
        q_own = cuda.shared.array((D, block), real)  # this thread's q and dout rows, as in the
        dout_own = cuda.shared.array((D, block), real)  # dk/dv kernel: too many for registers
        dq_acc = cuda.local.array(D, real)
        for d in range(D):
            q_own[d, tid] = read(q, table, bh, row, d) if active else zero
            dout_own[d, tid] = dout[bh, row, d] if active else zero
            dq_acc[d] = 0
        lse_i = lse[bh, row] if active else zero
        delta_i = delta[bh, row] if active else zero

        kv_end = min(T, q_start + block) if causal else T
        for kv_start in range(0, kv_end, block):
            for e in range(tid, block * D, block):
                j, d = e // D, e % D
                if kv_start + j < T:
                    k_tile[j, d] = read(k, table, bh, kv_start + j, d)
                    v_tile[j, d] = read(v, table, bh, kv_start + j, d)
            cuda.syncthreads()

            n_keys = min(block, T - kv_start)
            if causal:
                n_keys = min(n_keys, row - kv_start + 1)
            if active:
                for j in range(n_keys):
                    s = zero
                    dp = zero
                    for d in range(D):
                        s += q_own[d, tid] * k_tile[j, d]
                        dp += dout_own[d, tid] * v_tile[j, d]
                    p = math.exp(s * scale - lse_i)
                    ds = p * (dp - delta_i)
                    for d in range(D):
                        dq_acc[d] += ds * k_tile[j, d]
            cuda.syncthreads()

        if active:
            for d in range(D):
                dq[bh, row, d] = dq_acc[d] * scale

    return kernel


def _check_qkv(q, k, v, half_table):
    """The checks, and the dtype every number is computed in: q's, or float32 when q, k, v are
    16-bit patterns (uint16, read through ``half_table``)."""
    if q.ndim != 3 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"q, k, v must be one (BH, T, D) shape, got {q.shape}, {k.shape}, "
                         f"{v.shape}")
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"q, k, v must have one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.dtype == HALF_BITS:
        if half_table is None:
            raise TypeError("uint16 q, k, v hold 16-bit patterns: pass half_table "
                            "(common.widen_table of their format)")
        return np.dtype(np.float32)
    return np.dtype(q.dtype)


def flash_attention_forward(q, k, v, causal=False, tiles: Tiles = DEFAULT_TILES,
                            half_table=None):
    """q, k, v: (BH, T, D) device arrays -> out (BH, T, D), lse (BH, T) device arrays.

    Mixed precision: uint16 q, k, v are the bit patterns of a 16-bit format whose
    ``half_table`` (common.widen_table) is given; out and lse are then float32.

    With all scores 0, row t of a causal mask sees t + 1 keys, so lse = log(t + 1):

    >>> import numpy as np
    >>> zeros = cuda.to_device(np.zeros((1, 3, 2)))     # one head, T = 3, D = 2
    >>> out, lse = flash_attention_forward(zeros, zeros, zeros, causal=True)
    >>> lse.copy_to_host()                               # log 1, log 2, log 3
    array([[0.        , 0.69314718, 1.09861229]])
    """
    dtype = _check_qkv(q, k, v, half_table)
    half = q.dtype == HALF_BITS
    BH, T, D = q.shape
    out = cuda.device_array((BH, T, D), dtype=dtype)
    lse = cuda.device_array((BH, T), dtype=dtype)
    if BH * T == 0:
        return out, lse
    block = _block_for(D, dtype, tiles, n_tiles=2)
    scale = dtype.type(D ** -0.5)
    kernel = attention_forward_kernel(dtype, D, block, bool(causal), half)
    # a kernel argument cannot be None: without a table, pass lse (the kernel never reads it)
    kernel[(BH, math.ceil(T / block)), block](q, k, v, out, lse, scale,
                                              half_table if half else lse)
    return out, lse


def flash_attention_backward(dout, q, k, v, out, lse, causal=False,
                             tiles: Tiles = DEFAULT_TILES, half_table=None):
    """dout, q, k, v, out: (BH, T, D), lse: (BH, T), device arrays -> dq, dk, dv.
    16-bit q, k, v as in flash_attention_forward; dout, out, lse, dq, dk, dv are then float32."""
    dtype = _check_qkv(q, k, v, half_table)
    half = q.dtype == HALF_BITS
    BH, T, D = q.shape
    if dout.shape != q.shape or dout.dtype != dtype:
        raise ValueError(f"dout must be {q.shape} {dtype}, got {dout.shape} {dout.dtype}")
    table = half_table if half else lse  # lse stands in when there is no table (never read)
    dq, dk, dv = (cuda.device_array((BH, T, D), dtype=dtype) for _ in range(3))
    if BH * T == 0:
        return dq, dk, dv
    scale = dtype.type(D ** -0.5)
    delta = cuda.device_array((BH, T), dtype=dtype)
    threads = tiles.threads
    attention_delta_kernel(dtype, D)[math.ceil(BH * T / threads), threads](dout, out, delta)
    block = _block_for(D, dtype, tiles, n_tiles=4)
    grid = (BH, math.ceil(T / block))
    attention_dkdv_kernel(dtype, D, block, bool(causal), half)[grid, block](
        q, k, v, dout, lse, delta, dk, dv, scale, table)
    attention_dq_kernel(dtype, D, block, bool(causal), half)[grid, block](
        q, k, v, dout, lse, delta, dq, scale, table)
    return dq, dk, dv
